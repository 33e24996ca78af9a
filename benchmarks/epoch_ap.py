"""Per epoch of a bench_quality run: the AP training estimated from its sparse validation labels
next to the true AP on the densely labelled held-out micrographs (every epoch checkpoint is a
model). Shows how well the estimate tracks the truth and what each epoch choice would score; for
a run without validation (the default), the true AP per epoch only.

    python benchmarks/epoch_ap.py WORK/apoferritin/topazpu_sparse WORK/apoferritin/split

Scored on the run's preprocessed held-out micrographs (pre_val.txt), preprocessed-frame targets,
the same picking as training's validation (4 rotations, the model's NMS radius and edge margin).
"""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from topazpu_core.checkpoint import load_model  # noqa: E402
from topazpu_core.coordinates import read_coordinates  # noqa: E402
from topazpu_core.images import image_name, list_images, read_image  # noqa: E402
from topazpu_core.metrics import evaluate  # noqa: E402
from topazpu_core.options import model_nms_radius_px  # noqa: E402
from topazpu_core.picking import PickOptions, pick_images  # noqa: E402


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    run, split = sys.argv[1:]
    targets = read_coordinates(os.path.join(split, "val_targets.pre.txt"))
    images = [(image_name(p), read_image(p)) for p in list_images(os.path.join(run, "pre_val.txt"))]
    with open(os.path.join(run, "model.training.tsv")) as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    history = [dict(zip(rows[0], r)) for r in rows[1:]]
    with open(os.path.join(run, "model.json")) as f:
        final = json.load(f)
    print("epoch  estimated AP  true AP%s" % ("  (kept: epoch %d)" % final["best_epoch"]))
    for path in sorted(glob.glob(os.path.join(run, "model.checkpoints", "epoch*.pt"))):
        model, meta = load_model(path)
        options = PickOptions(radius=model_nms_radius_px(meta, "preprocessed"), edge_margin=meta["edge_margin"])
        result = evaluate(pick_images(model, images, options), targets, meta["particle_radius"],
                          images=targets.image_names())
        estimate = history[meta["epoch"] - 1].get("val_ap")  # none without validation (the default)
        print("%5d  %12s  %7.3f" % (meta["epoch"], "%.3f" % float(estimate) if estimate else "-", result["ap"]),
              flush=True)


if __name__ == "__main__":
    main()
