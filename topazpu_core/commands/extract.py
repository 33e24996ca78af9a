"""Pick particles on PREPROCESSED micrographs with a trained model (score, NMS, threshold).

Coordinates come out in the preprocessed frame, times -x/--up-scale and divided by
-s/--down-scale. Use `topazpu pick` to start from raw micrographs. Unreadable micrographs are
reported and skipped.

example:
  topazpu extract -m model.pt -t auto -o picks.txt pre/*.mrc
"""
import numpy as np

from topazpu_core.picking import add_pick_args, write_picks


def add_args(p):
    add_pick_args(p, "preprocessed")
    p.add_argument("-x", "--up-scale", type=float, default=1.0, help="multiply output coordinates (default: 1)")
    p.add_argument("-s", "--down-scale", type=float, default=1.0, help="divide output coordinates (default: 1)")


def main(args):
    from topazpu_core.checkpoint import load_model, torch_device
    from topazpu_core.images import image_name, list_images, read_image
    from topazpu_core.errors import TopazPuError
    from topazpu_core.picking import options_from_args, pick_images, require_some_picked, set_threads

    set_threads(args.threads)
    model, meta = load_model(args.model, device=torch_device(args.device))
    options = options_from_args(args, meta)
    paths = list_images(args.micrographs)
    skipped, shapes = [], {}

    def images():
        for p in paths:
            try:
                im = read_image(p)
            except TopazPuError as e:  # a corrupt micrograph is reported and skipped
                skipped.append((p, str(e)))
                continue
            shapes[image_name(p)] = im.shape
            yield image_name(p), im

    coords = pick_images(model, images(), options, progress=not args.no_progress)
    require_some_picked(paths, shapes, skipped)
    factor = args.up_scale / args.down_scale
    shapes = {n: tuple(int(np.floor(d * factor)) for d in s) for n, s in shapes.items()}
    write_picks(coords.scaled(factor), args, shapes, skipped)
