"""Pick particles on PREPROCESSED micrographs with a trained model (score, NMS, threshold).

Coordinates come out in the preprocessed frame, times -x/--up-scale and divided by
-s/--down-scale. Use `topazpu pick` to start from raw micrographs.

example:
  topazpu extract -m model.pt -r 8 -t auto -o picks.txt pre/*.mrc
"""
import numpy as np

from topazpu_core.errors import TopazPuError
from topazpu_core.picking import add_pick_args, resolve_threshold, write_picks


def add_args(p):
    add_pick_args(p, "NMS radius in px of the preprocessed images (default: the model's particle radius)")
    p.add_argument("-x", "--up-scale", type=float, default=1.0, help="multiply output coordinates (default: 1)")
    p.add_argument("-s", "--down-scale", type=float, default=1.0, help="divide output coordinates (default: 1)")


def main(args):
    from topazpu_core.checkpoint import load_model
    from topazpu_core.images import image_name, list_images, read_image
    from topazpu_core.picking import pick_images, set_threads

    if args.device >= 0:
        raise TopazPuError("GPU picking is not available in this build; use -d -1")
    set_threads(args.threads)
    model, meta = load_model(args.model)
    radius = args.radius if args.radius is not None else meta["particle_radius"]
    threshold = resolve_threshold(args.threshold, meta)
    paths = list_images(args.micrographs)
    shapes = {}

    def images():
        for p in paths:
            im = read_image(p)
            shapes[image_name(p)] = im.shape
            yield image_name(p), im

    edge_margin = args.edge_margin if args.edge_margin is not None else meta.get("edge_margin", 0)
    coords = pick_images(model, images(), radius, threshold, args.max_per_micrograph, edge_margin,
                         args.dense, progress=not args.no_progress)
    factor = args.up_scale / args.down_scale
    coords = coords.scaled(factor)
    shapes = {n: tuple(int(np.floor(d * factor)) for d in s) for n, s in shapes.items()}
    write_picks(coords, args, shapes)
