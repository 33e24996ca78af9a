"""Compare scored picks with reference particles: precision-recall curve, average precision, best F1.

Each pick may match one reference particle (target) on the same micrograph at a distance
<= the match radius (--match-radius), and each target at most one pick; higher-scoring picks are matched
first (a later pick may still match when earlier ones can move to other targets in range).
Average precision = sum over distinct score thresholds of precision x recall increment, with
recall over ALL targets of the evaluated micrographs. Best F1 is reported with its threshold
(the lowest score kept at that point: keep picks with score >= threshold).

Prints one JSON object on stdout: ap, best_f1, threshold_at_best_f1, precision_at_best_f1,
recall_at_best_f1, n_picks, n_targets, n_true_positives, n_images.
Micrographs: --images target (default; picks on other micrographs are ignored), predicted,
or union. Pick image names are matched to the targets' by base name when they differ.

Examples:
  topazpu evaluate picks.txt particles.star --match-radius 16
  topazpu evaluate picks.txt particles.txt --match-radius 16 --plot pr.png --table pr.tsv
"""
import json
import logging
import os

import numpy as np

from topazpu_core.coordinates import FORMATS, match_image_names, micrograph_name, read_coordinates
from topazpu_core.errors import TopazPuError
from topazpu_core.metrics import IMAGE_MODES, evaluate

logger = logging.getLogger(__name__)


def add_args(parser):
    parser.add_argument("picks", metavar="PICKS", help="picked coordinates with a score per pick")
    parser.add_argument("targets", metavar="TARGETS", help="reference coordinates (scores ignored)")
    parser.add_argument("--match-radius", type=float, required=True, metavar="R",
                        help="a pick within this distance (px of the coordinates, <= R) of a target can match it "
                             "(required)")
    parser.add_argument("--images", choices=IMAGE_MODES, default="target",
                        help="micrographs evaluated: those with targets, with picks, or both (default: target)")
    parser.add_argument("--from", dest="from_format", choices=("auto",) + FORMATS, default="auto",
                        help="format of both files (default: auto, from each extension)")
    out = parser.add_argument_group("outputs")
    out.add_argument("--plot", metavar="PR.png", default=None,
                     help="write the precision-recall curve as PNG (default: none)")
    out.add_argument("--table", metavar="TABLE.tsv", default=None,
                     help="write the curve as TSV: threshold precision recall f1 (default: none)")


def align_pick_names(picks, target_names, source, mode):
    """Rename pick image names to the targets' spelling (by base name).

    In "target" mode picks on micrographs without targets are dropped (with a warning) and a
    file whose names match none of the targets' is an error; otherwise unmatched names are kept.
    """
    if len(picks) == 0:
        return picks
    if mode == "target":
        return match_image_names(picks, target_names, source, drop_unmatched=True)
    known = {}
    for name in target_names:
        known.setdefault(micrograph_name(name), name)
    targets_set = set(target_names)
    renamed = np.array([n if n in targets_set else known.get(micrograph_name(n), n)
                        for n in picks.image_name], dtype=object)
    picks = picks.subset(np.arange(len(picks)))
    picks.image_name = renamed
    if not set(renamed.tolist()) & targets_set:
        raise TopazPuError("%s: none of its %d image names (e.g. %r) is a micrograph of the targets (e.g. %r)"
                           % (source, len(picks.image_names()), picks.image_names()[0], target_names[0]))
    return picks


def write_table(curve, path):
    from topazpu_core.atomic import atomic_write

    with atomic_write(path) as f:
        f.write("threshold\tprecision\trecall\tf1\n")
        for row in zip(curve["threshold"], curve["precision"], curve["recall"], curve["f1"]):
            f.write("%r\t%.6f\t%.6f\t%.6f\n" % tuple(float(v) for v in row))
    logger.info("wrote %s", path)


def main(args):
    picks = read_coordinates(args.picks, args.from_format)
    targets = read_coordinates(args.targets, args.from_format)
    if len(targets) == 0:
        raise TopazPuError("%s: no target coordinates" % args.targets)
    missing = np.isnan(picks.score)
    if missing.any():
        raise TopazPuError("%s: %d of %d picks have no score; evaluation ranks picks by score"
                           % (args.picks, int(missing.sum()), len(picks)))
    picks = align_pick_names(picks, targets.image_names(), args.picks, args.images)
    result = evaluate(picks, targets, args.match_radius, images=args.images)
    curve = result.pop("curve")
    result.update({"match_radius": args.match_radius, "images": args.images,
                   "picks": os.fspath(args.picks), "targets": os.fspath(args.targets)})
    if args.table:
        write_table(curve, args.table)
    if args.plot:
        from topazpu_core.plots import plot_pr_curve

        plot_pr_curve(curve, args.plot, title=os.path.basename(args.picks))
        logger.info("wrote %s", args.plot)
    print(json.dumps(result))
