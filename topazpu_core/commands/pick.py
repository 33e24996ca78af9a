"""Pick particles on RAW micrographs: preprocess as the model was trained, extract, original frame.

The micrographs are downsampled by the model's recorded scale and normalised with its
recorded method (the data-set mixture is fitted on the micrographs given), scored, and the
picks are written in the original micrographs' pixel frame.

example:
  topazpu pick -m model.pt -o picks.star raw/*.mrc
"""
from topazpu_core.errors import TopazPuError
from topazpu_core.picking import add_pick_args, resolve_threshold, write_picks


def add_args(p):
    add_pick_args(p, "NMS radius in px of the RAW micrographs (default: the model's particle radius x scale)")
    p.add_argument("--seed", type=int, default=0, help="seed of the normalisation's pixel sampling (default: 0)")


def main(args):
    from topazpu_core.checkpoint import load_model
    from topazpu_core.picking import pick_raw_files, set_threads

    if args.device >= 0:
        raise TopazPuError("GPU picking is not available in this build; use -d -1")
    set_threads(args.threads)
    model, meta = load_model(args.model)
    threshold = resolve_threshold(args.threshold, meta)
    coords, shapes = pick_raw_files(model, meta, args.micrographs, radius=args.radius, threshold=threshold,
                                    max_picks=args.max_per_micrograph, edge_margin=args.edge_margin,
                                    dense=args.dense, seed=args.seed, progress=not args.no_progress)
    write_picks(coords, args, shapes)
