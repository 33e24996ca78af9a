"""Pick particles on PREPROCESSED micrographs with a trained model (score, NMS, threshold).

Coordinates come out in the preprocessed frame, times -x/--up-scale and divided by
-s/--down-scale. Use `topazpu pick` to start from raw micrographs. An unreadable micrograph
is skipped and named on a "skipped: <path>: <reason>" line; the exit status is then 3.

An interrupted run resumes: each finished micrograph is kept in OUTPUT.parts/ until the output
is written, and the same command run again picks only the micrographs still missing (a
different model, options or micrograph list starts afresh).

example:
  topazpu extract --model model.pt -t auto -o picks.txt pre/*.mrc
"""
from topazpu_core.commands.pick_common import (add_pick_args, open_journal, options_from_args, set_threads,
                                               write_picks)


def add_args(p):
    add_pick_args(p, "preprocessed")
    p.add_argument("-x", "--up-scale", type=float, default=1.0,
                   help="multiply output coordinates by this factor: output pixels per input pixel (default: 1)")
    p.add_argument("-s", "--down-scale", type=float, default=1.0,
                   help="divide output coordinates by this factor: input pixels per output pixel (default: 1)")


def main(args):
    from topazpu_core.checkpoint import load_model, torch_device
    from topazpu_core.images import list_images
    from topazpu_core.picking import pick_preprocessed_files

    set_threads(args.threads)
    model, meta = load_model(args.model, device=torch_device(args.device))
    options = options_from_args(args, meta, "preprocessed")
    factor = args.up_scale / args.down_scale
    journal = open_journal(args, "extract", options, {"factor": factor})
    coords, shapes, skipped = pick_preprocessed_files(model, list_images(args.micrographs), options, factor=factor,
                                                      progress=not args.no_progress, journal=journal)
    return write_picks(coords, args, shapes, skipped, journal)
