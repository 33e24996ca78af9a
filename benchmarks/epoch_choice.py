"""Epoch-choice rules, cross-validated over the held-out micrographs of a dense-protocol run.

The dense protocol chooses its epoch on the very micrographs it is scored on, so its AP flatters
any choice rule. Here the scored micrographs are split in two halves, every way: a rule chooses an
epoch on half A (its AP there, A's targets as the validation set), and that epoch is scored on
half B. Rules: the highest AP on A (argmax), the shipped rule (`training.keeps_epoch`: the latest
epoch within the AP's sampling noise of the highest), the last epoch. With `--compare MODEL.pt`
(e.g. the sparse-protocol model of the same seed: the same training without validation, its
weights the mean of the later epochs), that model is scored on the same B halves.

    python benchmarks/epoch_choice.py WORK/apoferritin/topazpu WORK/apoferritin/split \
        [--compare WORK2/apoferritin/topazpu_sparse/model.pt]

Scored as `epoch_ap.py` scores: the run's preprocessed held-out micrographs, preprocessed-frame
targets, each model's own NMS radius and edge margin, 4 rotations.
"""
import argparse
import glob
import itertools
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from epoch_ap import held_out, model_picks  # noqa: E402
from topazpu_core.checkpoint import load_model  # noqa: E402
from topazpu_core.metrics import evaluate  # noqa: E402
from topazpu_core.training import keeps_epoch  # noqa: E402


def picks_of(path, images):
    model, meta = load_model(path)
    return model_picks(model, meta, images), meta["particle_radius"], meta


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a dense-protocol run folder (model.checkpoints/, pre_val.txt)")
    p.add_argument("split", help="its split folder (val_targets.pre.txt)")
    p.add_argument("--compare", help="another model to score on the same halves")
    args = p.parse_args()
    targets, images = held_out(args.run, args.split)
    names = sorted(targets.image_names())
    counts = {n: len(c) for n, c in targets.by_image().items()}
    by_epoch = {}
    for path in sorted(glob.glob(os.path.join(args.run, "model.checkpoints", "epoch*.pt"))):
        picks, radius, meta = picks_of(path, images)
        by_epoch[meta["epoch"]] = (picks, radius)
    epochs = sorted(by_epoch)

    def ap(e, subset):
        picks, radius = by_epoch[e]
        return evaluate(picks, targets, radius, images=list(subset))["ap"]

    print("true AP per epoch on all %d micrographs: %s" % (len(names), " ".join("%.3f" % ap(e, names) for e in epochs)))
    other = picks_of(args.compare, images) if args.compare else None
    rows = []
    for a in itertools.combinations(names, len(names) // 2):
        b = [n for n in names if n not in a]
        on_a = {e: ap(e, a) for e in epochs}
        on_b = {e: ap(e, b) for e in epochs}
        argmax = max(epochs, key=lambda e: on_a[e])
        kept, highest = None, -1.0
        for e in epochs:
            if keeps_epoch(on_a[e], sum(counts[n] for n in a), highest):
                kept = e
            highest = max(highest, on_a[e])
        row = {"argmax": on_b[argmax], "shipped rule": on_b[kept], "last": on_b[epochs[-1]]}
        if other:
            row["compare"] = evaluate(other[0], targets, other[1], images=b)["ap"]
        rows.append(row)
        print("choose on %s: argmax epoch %d, shipped rule epoch %d; AP on the other half: %s" % (
            ", ".join(a), argmax, kept, ", ".join("%s %.3f" % kv for kv in row.items())))
    print("mean AP on the other half: %s" % ", ".join("%s %.4f" % (k, np.mean([r[k] for r in rows])) for k in rows[0]))


if __name__ == "__main__":
    main()
