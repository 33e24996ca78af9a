"""Per epoch of a bench_quality run: the AP training estimated from its sparse validation labels
next to the true AP on the densely labelled held-out micrographs (every epoch checkpoint is a
model). Shows how well the estimate tracks the truth and what each epoch choice would score; for
a run without validation (the default), the true AP per epoch only.

    python benchmarks/epoch_ap.py WORK/apoferritin/topazpu_sparse WORK/apoferritin/split
    python benchmarks/epoch_ap.py RUN SPLIT --windows 1,6,11,16   # mean weights of epochs k..last

`--windows K1,K2,...` scores instead the mean of the weights of epochs k..last (1-based) for each
k, as training's final model averages them (`training.averaged_weights`), with the AP and best F1.
`--ensemble RUN2[,RUN3...]` scores the final models (model.pt) of RUN and of runs trained on the
same split with other training seeds, each alone and as one model that averages their logits.
`--orientations 1|4|8` (default 4, as `extract`) sets how many orientations the scores average.

Scored on the run's preprocessed held-out micrographs (pre_val.txt), preprocessed-frame targets,
the same picking as training's validation (4 rotations, the model's NMS radius and edge margin).
"""
import argparse
import glob
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from topazpu_core.checkpoint import checkpoint_path, load_model  # noqa: E402
from topazpu_core.coordinates import read_coordinates  # noqa: E402
from topazpu_core.images import image_name, list_images, read_image  # noqa: E402
from topazpu_core.metrics import evaluate  # noqa: E402
from topazpu_core.options import model_nms_radius_px  # noqa: E402
from topazpu_core.picking import PickOptions, pick_images  # noqa: E402
from topazpu_core.training import averaged_weights  # noqa: E402


def held_out(run, split):
    """The run's preprocessed held-out micrographs [(name, image)] and their targets (preprocessed frame)."""
    targets = read_coordinates(os.path.join(split, "val_targets.pre.txt"))
    images = [(image_name(p), read_image(p)) for p in list_images(os.path.join(run, "pre_val.txt"))]
    return targets, images


def model_picks(model, meta, images, orientations=4):
    """Every peak of `model` on the preprocessed `images`, picked as `extract` picks with it by default."""
    options = PickOptions(radius=model_nms_radius_px(meta, "preprocessed"), edge_margin=meta["edge_margin"],
                          orientations=orientations)
    return pick_images(model, images, options)


def score(model, meta, images, targets, orientations=4):
    return evaluate(model_picks(model, meta, images, orientations), targets, meta["particle_radius"],
                    images=targets.image_names())


class MeanLogits(torch.nn.Module):
    """Several trained models of one architecture as one: the mean of their logits."""

    def __init__(self, models):
        super().__init__()
        self.members = torch.nn.ModuleList(models)
        self.stride, self.receptive_field = models[0].stride, models[0].receptive_field

    def forward(self, x):
        return sum(m(x) for m in self.members) / len(self.members)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a bench_quality run folder (model.pt, model.checkpoints/, pre_val.txt)")
    parser.add_argument("split", help="its split folder (val_targets.pre.txt)")
    parser.add_argument("--windows", help="first epochs k (1-based) of the mean weights k..last to score")
    parser.add_argument("--ensemble", help="other run folders on the same split: score each final model and the "
                                           "mean of their logits")
    parser.add_argument("--orientations", type=int, default=4, choices=(1, 4, 8))
    args = parser.parse_args()
    targets, images = held_out(args.run, args.split)
    model_path = os.path.join(args.run, "model.pt")
    if args.ensemble or args.orientations != 4:
        runs = [args.run] + (args.ensemble.split(",") if args.ensemble else [])
        loaded = [load_model(os.path.join(r, "model.pt")) for r in runs]
        meta = loaded[0][1]
        members = [(r, m) for r, (m, _) in zip(runs, loaded)]
        if len(members) > 1:
            members.append(("mean logits of the %d" % len(members), MeanLogits([m for _, m in members])))
        for name, model in members:
            result = score(model, meta, images, targets, args.orientations)
            print("%-60s  true AP %.3f  best F1 %.3f" % (name, result["ap"], result["best_f1"]), flush=True)
        return
    checkpoints = sorted(glob.glob(os.path.join(args.run, "model.checkpoints", "epoch*.pt")))
    if args.windows:
        last = len(checkpoints) - 1
        model, meta = load_model(checkpoint_path(model_path, last))
        print("mean weights of epochs  true AP  best F1")
        for first in [int(k) for k in args.windows.split(",")]:
            model.load_state_dict(averaged_weights(model_path, first - 1, last))
            result = score(model, meta, images, targets, args.orientations)
            print("%10d-%-11d  %7.3f  %7.3f" % (first, last + 1, result["ap"], result["best_f1"]), flush=True)
        return
    with open(os.path.join(args.run, "model.training.tsv")) as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    history = [dict(zip(rows[0], r)) for r in rows[1:]]
    with open(os.path.join(args.run, "model.json")) as f:
        final = json.load(f)
    print("epoch  estimated AP  true AP%s" % ("  (kept: epoch %d)" % final["best_epoch"]))
    for path in checkpoints:
        model, meta = load_model(path)
        result = score(model, meta, images, targets)
        estimate = history[meta["epoch"] - 1].get("val_ap")  # none without validation (the default)
        print("%5d  %12s  %7.3f" % (meta["epoch"], "%.3f" % float(estimate) if estimate else "-", result["ap"]),
              flush=True)


if __name__ == "__main__":
    main()
