"""Pick particles on RAW micrographs: preprocess as the model was trained, extract, original frame.

The micrographs are downsampled by the model's recorded scale and normalised with its
recorded method (the data-set mixture is fitted on the micrographs given), scored, and the
picks are written in the original micrographs' pixel frame. An unreadable micrograph is
skipped and named on a "skipped: <path>: <reason>" line; the exit status is then 3.

An interrupted run resumes: each finished micrograph is kept in OUTPUT.parts/ until the output
is written, and the same command run again picks only the micrographs still missing (a
different model, options or micrograph list starts afresh).

example:
  topazpu pick --model model.pt -o picks.star raw/*.mrc
"""
from topazpu_core.commands.pick_common import (add_pick_args, open_journal, options_from_args, set_threads,
                                               write_picks)


def add_args(p):
    add_pick_args(p, "raw")
    p.add_argument("--seed", type=int, default=0, help="seed of the normalisation's pixel sampling (default: 0)")


def main(args):
    from topazpu_core.checkpoint import load_model, torch_device
    from topazpu_core.images import list_images
    from topazpu_core.picking import pick_raw_files

    set_threads(args.threads)
    model, meta = load_model(args.model, device=torch_device(args.device))
    options = options_from_args(args, meta, "raw")
    journal = open_journal(args, "pick", options, {"seed": args.seed})
    coords, shapes, skipped = pick_raw_files(model, meta, list_images(args.micrographs), options, seed=args.seed,
                                             progress=not args.no_progress, journal=journal)
    return write_picks(coords, args, shapes, skipped, journal)
