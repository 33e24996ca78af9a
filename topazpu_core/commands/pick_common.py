"""Command-line glue shared by `topazpu pick` and `topazpu extract`: their common options, the
PickOptions they make from them, the resume journal of a run and the output summary.

The library they drive is topazpu_core.picking; this module imports no torch until a command runs.
"""
import dataclasses
import os

from topazpu_core.errors import TopazPuError
from topazpu_core.options import (AUTO_PICKS_PER_PARTICLE, NMS_RADIUS_FACTOR, ORIENTATIONS, model_length_px,
                                  model_nms_radius_px)


def set_threads(threads):
    if threads and threads > 0:
        import torch

        torch.set_num_threads(int(threads))


def resolve_threshold(value, metadata):
    """'auto' -> the model's suggested threshold (from its validation curve); else a float logit."""
    if value is None or str(value) == "auto":
        if metadata.get("threshold", 0.0) is None:
            raise TopazPuError("this model has no suggested threshold (a checkpoint of a training without "
                               "validation): give -t with a number")
        return float(metadata.get("threshold", 0.0))
    try:
        return float(value)
    except ValueError:
        raise TopazPuError("threshold %r: a number (logit) or 'auto'" % (value,))


def add_pick_args(p, frame):
    """Options shared by `extract` and `pick`; lengths are in px of the `frame` micrographs."""
    p.add_argument("--model", required=True, help="model file written by `topazpu train`")
    p.add_argument("--nms-radius", type=float,
                   help="non-maximum suppression radius, px of the %s micrographs (default: the model's, "
                        "%g x its particle radius; a model that records none: its particle radius)"
                        % (frame, NMS_RADIUS_FACTOR))
    p.add_argument("-t", "--threshold", default="auto",
                   help="keep picks with score >= THRESHOLD, or 'auto' = the model's threshold, at which it picks "
                        "%g x the expected particles per micrograph (-n of training) on its validation micrographs, "
                        "or its training micrographs away from the labels (default: auto); --threshold=-inf keeps "
                        "every peak" % AUTO_PICKS_PER_PARTICLE)
    p.add_argument("--max-per-micrograph", type=int, help="keep at most N best picks per micrograph (default: all)")
    p.add_argument("--edge-margin", type=float,
                   help="no picks closer than this to the border, px of the %s micrographs "
                        "(default: the model's, half the particle radius)" % frame)
    p.add_argument("--dense", action="store_true",
                   help="exact per-pixel scoring by shift-and-stitch (stride^2 slower; default: strided + upsampling)")
    p.add_argument("--orientations", type=int, choices=ORIENTATIONS, default=4,
                   help="average the logits over this many orientations of each micrograph: 1, 4 (rotations "
                        "by 90 degrees; what training validates) or 8 (and their mirror images); scoring "
                        "time grows in proportion (default: 4; 1 is about 0.01-0.03 lower AP)")
    p.add_argument("--format", default="auto", help="output format: coord, star, box, json, csv, cs (default: by -o)")
    p.add_argument("--boxsize", type=int, help="box size for box output, px of the output frame")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: 0 = torch's choice)")
    p.add_argument("-d", "--device", type=int, default=-1, help="GPU index, -1 for CPU (default: -1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", required=True, help="output coordinates (TSV image_name x_coord y_coord score)")
    p.add_argument("micrographs", nargs="+", help="micrographs: files, directories, globs or @list")


def options_from_args(args, metadata, frame):
    """PickOptions from the command line in px of the `frame` micrographs ("raw" for `pick`,
    "preprocessed" for `extract`); the defaults are the model's lengths in that frame."""
    from topazpu_core.picking import PickOptions

    radius = args.nms_radius if args.nms_radius is not None else model_nms_radius_px(metadata, frame)
    if radius is None:
        raise TopazPuError("%s: the model records no particle radius; give --nms-radius" % args.model)
    edge_margin = args.edge_margin
    if edge_margin is None:
        edge_margin = model_length_px(metadata, "edge_margin", frame) or 0.0
    return PickOptions(
        radius=radius, threshold=resolve_threshold(args.threshold, metadata), max_picks=args.max_per_micrograph,
        edge_margin=edge_margin, dense=args.dense, orientations=args.orientations)


def open_journal(args, command, options, extra=None):
    """The PickJournal of this command line's run (resumes an interrupted identical run)."""
    from topazpu_core import __version__
    from topazpu_core.images import list_images
    from topazpu_core.pick_journal import PickJournal, file_sha256

    key = {"command": command, "version": __version__, "model_sha256": file_sha256(args.model),
           "options": dataclasses.asdict(options),
           "micrographs": [os.path.abspath(p) for p in list_images(args.micrographs)]}
    key.update(extra or {})
    return PickJournal(args.output, key)


def write_picks(coords, args, shapes, skipped=(), journal=None):
    """Write the picks, print the summary and the skipped micrographs; -> the exit status."""
    from topazpu_core.coordinates import write_coordinates
    from topazpu_core.errors import report_skipped

    write_coordinates(coords, args.output, fmt=args.format, box_size=args.boxsize, image_shapes=shapes)
    if journal is not None:
        journal.finish()
    n_mics = len(shapes)
    print("%d particles on %d micrographs (%.1f per micrograph) -> %s"
          % (len(coords), n_mics, len(coords) / max(n_mics, 1), args.output))
    return report_skipped(skipped, n_mics + len(skipped))
