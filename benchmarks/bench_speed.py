"""Benchmark: extraction and training speed of topazpu on 2 CPU threads (and optionally Topaz's extract).

Prints, on --threads torch threads (default 2):
  1. extraction time of one 620x600 micrograph (a bundled one, topazpu_core.datasets, normalised)
     = scoring + non-maximum suppression (radius 16 px, threshold -inf, the worst case) for an
     untrained conv31 and resnet8 (and the trained --model): strided scoring of one orientation,
     of 4 rotations averaged (the default of pick/extract), of 8 rotations/flips, and --dense
     (shift-and-stitch), median of --repeats. Target: < 0.5 s per micrograph for resnet8;
     Topaz's extract takes ~4 s (resnet8) / ~14 s (resnet16).
  2. the average-precision effect of each scoring: the trained model picks the apoferritin
     validation split (benchmarks/splits.py, --seed) in each of the four ways and the picks
     are scored against all particles (assignment radius 32 raw px). The model is --model, else
     the one bench_quality.py leaves in its default work folder, else a quick one trained here.
  3. training seconds per update (one Adam step on a minibatch of --tiles-per-batch tiles) on the
     apoferritin training split, conv31 and resnet8, with 90-degree and any-angle tiles, in float32
     and (on a CPU with bfloat16 instructions) bfloat16; Topaz: ~0.6 s per update for resnet8.
  4. with --topaz: `topaz extract` seconds per 620x600 micrograph with a trained Topaz resnet8
     (--topaz-model, else bench_quality's, else a 5-update one trained here), next to
     `topazpu extract` through its command line, both as (time for 4 - time for 1) / 3 so that
     process start-up cancels, and the single-micrograph time with start-up.

    python benchmarks/bench_speed.py [--model MODEL.pt] [--threads 2] [--repeats 5] [--topaz]
    python benchmarks/bench_speed.py --quick      # smoke test
"""
import argparse
import glob
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import torch  # noqa: E402

from splits import DATASETS, TOPAZ, make_split  # noqa: E402
from topazpu_core.coordinates import read_coordinates, write_coordinates  # noqa: E402
from topazpu_core.datasets import BUNDLED_PARTICLE_DIAMETER, bundled_micrographs, bundled_particles  # noqa: E402
from topazpu_core.images import image_name, read_image, write_mrc  # noqa: E402
from topazpu_core.metrics import evaluate  # noqa: E402
from topazpu_core.models import Classifier, score_map  # noqa: E402
from topazpu_core.nms import non_maximum_suppression  # noqa: E402
from topazpu_core.normalize import normalize_arrays  # noqa: E402
from topazpu_core.options import model_nms_radius_px  # noqa: E402
from topazpu_core.preprocessing import preprocess_images  # noqa: E402

QUALITY_WORK = os.path.join(tempfile.gettempdir(), "topazpu_bench_quality", "apoferritin")
EXTRACT_TARGET_S = 0.5
# (name, dense, orientations averaged); strided4 is what `topazpu pick/extract` and validation do by default
SCORINGS = (("strided", False, 1), ("strided4", False, 4), ("strided8", False, 8), ("dense", True, 1))
TOPAZ_EXTRACT_S = {"resnet8": 4.0, "resnet16": 14.0}
TOPAZ_UPDATE_S = 0.6

logger = logging.getLogger("bench_speed")


def median_time(fn, repeats, warmup=1):
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def bundled_image():
    path = bundled_micrographs()[0]
    (image,), _ = normalize_arrays([read_image(path)], method="gmm")
    return path, image


# ----------------------------------------------------------------------------------------------
# 1. extraction time


def time_extraction(models, image, radius, repeats, dense_repeats):
    rows = []
    for label, model in models:
        model.eval()
        for scoring, dense, orientations in SCORINGS:
            n = dense_repeats if dense else repeats
            t_score, scores = median_time(lambda: score_map(model, image, dense=dense, orientations=orientations), n)
            t_nms, picks = median_time(lambda: non_maximum_suppression(scores, radius, threshold=-np.inf), n)
            rows.append({"model": label, "scoring": scoring, "orientations": orientations, "score_s": t_score,
                         "nms_s": t_nms, "total_s": t_score + t_nms, "n_picks": int(len(picks[0])),
                         "receptive_field": model.receptive_field, "stride": model.stride})
            print("  %-22s %-9s score %.3f s + NMS %.3f s = %.3f s  (%d picks)"
                  % (label, rows[-1]["scoring"], t_score, t_nms, t_score + t_nms, rows[-1]["n_picks"]), flush=True)
    return rows


# ----------------------------------------------------------------------------------------------
# 2. strided vs dense average precision


def find_model(opts):
    if opts.model:
        return opts.model, "given"
    default = os.path.join(QUALITY_WORK, "topazpu", "model.pt")
    if os.path.isfile(default):
        return default, "bench_quality.py's"
    return None, None


def train_quick_model(opts, work):
    from topazpu_core.training import Micrograph, TrainConfig, fit

    d = DATASETS["apoferritin"]
    split = make_split(d, opts.seed, root=opts.data)
    images = {p["image_name"]: a for a, p in preprocess_images(split.train_paths + split.val_paths, d.scale,
                                                              progress=False)}

    def mics(names, coords):
        g = coords.scaled(1.0 / d.scale).by_image()
        e = np.zeros(0)
        return [Micrograph(n, images[n], g[n].x if n in g else e, g[n].y if n in g else e) for n in names]

    config = TrainConfig(particle_radius=d.radius_pre, n_per_micrograph=split.expected_per_micrograph,
                         epochs=opts.train_epochs, epoch_size=opts.train_epoch_size, seed=opts.seed,
                         scale=float(d.scale), pseudo_labels=0.0,  # one round: a quick model,
                         start_model="none")  # from random weights: the bundled model saw these micrographs
    path = os.path.join(work, "quick_model", "model.pt")
    t = time.perf_counter()
    meta = fit(config, mics(split.train_names, split.train_labels), mics(split.val_names, split.val_targets), path,
               progress=False)
    print("  trained a quick model: %d x %d updates in %.0f s, validation AP %.3f -> %s"
          % (opts.train_epochs, opts.train_epoch_size, time.perf_counter() - t, meta["val_ap"], path), flush=True)
    return path


def strided_vs_dense(model, meta, opts):
    from topazpu_core.picking import PickOptions, pick_images

    d = DATASETS["apoferritin"]
    split = make_split(d, opts.seed, root=opts.data)
    scale = float(meta.get("scale", d.scale))
    radius = model_nms_radius_px(meta, "preprocessed")  # as `extract` picks with this model
    named = [(p["image_name"], a) for a, p in preprocess_images(split.val_paths, scale,
                                                               method=meta.get("normalization", "gmm"),
                                                               progress=False)]
    out = {}
    margin = float(meta.get("edge_margin", 0))
    for key, dense, orientations in SCORINGS:
        t = time.perf_counter()
        picks = pick_images(model, named, PickOptions(radius, edge_margin=margin, dense=dense,
                                                      orientations=orientations))
        dt = (time.perf_counter() - t) / len(named)
        r = evaluate(picks.scaled(scale), split.val_targets, d.radius, images=split.val_names)
        out[key] = {"ap": r["ap"], "best_f1": r["best_f1"], "n_picks": r["n_picks"], "seconds_per_micrograph": dt}
        print("  %-8s AP %.4f  best F1 %.4f  (%d picks on %d micrographs, %.2f s per micrograph of %dx%d)"
              % (key, r["ap"], r["best_f1"], r["n_picks"], len(named), dt, named[0][1].shape[1],
                 named[0][1].shape[0]), flush=True)
    for key, _, _ in SCORINGS[1:]:
        out["ap_%s_minus_strided" % key] = out[key]["ap"] - out["strided"]["ap"]
    print("  AP minus strided (1 orientation): " + ", ".join("%s %+.4f" % (key, out["ap_%s_minus_strided" % key])
                                                         for key, _, _ in SCORINGS[1:]))
    return out


# ----------------------------------------------------------------------------------------------
# 3. training seconds per update


def time_training(opts):
    """Seconds per update of each architecture, with the tiles turned by multiples of 90 degrees and
    by any angle (`--tile-rotation`), the feature layers in float32 and, on a CPU with bfloat16
    instructions, in bfloat16 (`--precision`)."""
    from topazpu_core.training import Micrograph, TrainConfig, Trainer, cpu_computes_bfloat16

    d = DATASETS["apoferritin"]
    split = make_split(d, opts.seed, root=opts.data)
    images = {p["image_name"]: a for a, p in preprocess_images(split.train_paths, d.scale, progress=False)}
    g = split.train_labels.scaled(1.0 / d.scale).by_image()
    e = np.zeros(0)
    train = [Micrograph(n, images[n], g[n].x if n in g else e, g[n].y if n in g else e) for n in split.train_names]
    precisions = ["float32"] + (["bfloat16"] if cpu_computes_bfloat16() else [])
    rows = []
    for arch in opts.archs:
        for precision in precisions:
            for rotation in ("90", "any"):
                config = TrainConfig(particle_radius=d.radius_pre, architecture=arch,
                                     n_per_micrograph=split.expected_per_micrograph,
                                     tiles_per_batch=opts.tiles_per_batch, seed=opts.seed, scale=float(d.scale),
                                     precision=precision, tile_rotation=rotation)
                trainer = Trainer(config, train, [])
                trainer.model.train()
                rng = np.random.default_rng(opts.seed)
                for _ in range(2):
                    trainer.step(rng)
                t = time.perf_counter()
                for _ in range(opts.updates):
                    trainer.step(rng)
                dt = (time.perf_counter() - t) / opts.updates
                tile = config.tile_size or trainer.model.receptive_field + 24 * trainer.model.stride
                n_out = ((tile - trainer.model.receptive_field) // trainer.model.stride + 1) ** 2
                rows.append({"model": arch, "precision": precision, "tile_rotation": rotation,
                             "seconds_per_update": dt, "tiles_per_batch": opts.tiles_per_batch, "tile": tile,
                             "outputs_per_update": n_out * opts.tiles_per_batch})
                print("  %-8s %-8s tiles turned by %-3s %.3f s per update (%d tiles of %d px, %d scored positions "
                      "per update)" % (arch, precision, rotation, dt, opts.tiles_per_batch, tile,
                                       n_out * opts.tiles_per_batch), flush=True)
    return rows


# ----------------------------------------------------------------------------------------------
# 4. command-line extraction, topazpu and Topaz


def timed_run(cmd, env=None):
    t = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})))
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError("%s failed (exit %d): %s" % (cmd[0], proc.returncode, (proc.stderr or proc.stdout)[-2000:]))
    return dt


def one_vs_all(make_cmd, mics, out_dir):
    t1 = timed_run(make_cmd(mics[:1], os.path.join(out_dir, "one.txt")))
    tn = timed_run(make_cmd(mics, os.path.join(out_dir, "all.txt")))
    marginal = (tn - t1) / (len(mics) - 1)
    return {"one_micrograph_with_start_s": t1, "all_s": tn, "n": len(mics), "per_micrograph_s": marginal}


def find_topaz_model(opts):
    if opts.topaz_model:
        return opts.topaz_model
    saved = glob.glob(os.path.join(QUALITY_WORK, "topaz", "model_epoch*.sav"))
    return sorted(saved)[-1] if saved else None


def cli_extraction(opts, work, model_path):
    """topazpu extract and topaz extract on the normalised bundled micrographs (620x600)."""
    mic_dir = os.path.join(work, "bundled_normalised")
    os.makedirs(mic_dir, exist_ok=True)
    raw = bundled_micrographs()
    arrays, _ = normalize_arrays([read_image(p) for p in raw], method="gmm")
    mics = []
    for p, a in zip(raw, arrays):
        mics.append(os.path.join(mic_dir, image_name(p) + ".mrc"))
        write_mrc(mics[-1], a)
    radius = int(BUNDLED_PARTICLE_DIAMETER // 2)
    out = {}
    ours = one_vs_all(lambda m, o: [sys.executable, "-m", "topazpu_core", "extract", "--model", model_path,
                                    "--nms-radius", radius, "--threshold=-inf", "--threads", opts.threads,
                                    "--no-progress", "-o", o] + m,
                      mics, work)
    out["topazpu"] = ours
    print("  topazpu extract (-t -inf, default 4 orientations): %.3f s per micrograph; one micrograph with start-up %.2f s"
          % (ours["per_micrograph_s"], ours["one_micrograph_with_start_s"]), flush=True)
    if not opts.topaz:
        return out
    tmodel = find_topaz_model(opts)
    if tmodel is None:
        pdir = os.path.join(work, "topaz_quick")
        os.makedirs(pdir, exist_ok=True)
        targets = os.path.join(pdir, "targets.txt")
        write_coordinates(read_coordinates(bundled_particles()), targets, fmt="coord")
        timed_run([TOPAZ, "train", "-d", "-1", "-j", opts.threads, "--train-images", mic_dir, "--train-targets",
                   targets, "-n", "158", "-m", "resnet8", "--num-epochs", "1", "--epoch-size", "5",
                   "--save-prefix", os.path.join(pdir, "model"), "-o", os.path.join(pdir, "curve.tsv")])
        tmodel = sorted(glob.glob(os.path.join(pdir, "model_epoch*.sav")))[-1]
        print("  trained a 5-update Topaz resnet8 for timing -> %s" % tmodel, flush=True)
    models = [("resnet8 (trained)", tmodel)] + ([("resnet16 (pretrained)", "resnet16")] if opts.topaz_resnet16 else [])
    for label, m in models:
        for thr in ("-6", "-inf"):
            r = one_vs_all(lambda mm, o: [TOPAZ, "extract", "-m", m, "-r", radius, "--threshold=" + thr, "-d", "-1",
                                          "-j", opts.threads, "-o", o] + mm, mics, work)
            out["topaz %s t=%s" % (label, thr)] = r
            print("  topaz extract %s, -t %s: %.3f s per micrograph; one micrograph with start-up %.2f s"
                  % (label, thr, r["per_micrograph_s"], r["one_micrograph_with_start_s"]), flush=True)
    return out


# ----------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", help="trained topazpu model (default: bench_quality.py's apoferritin model if "
                                   "present, else train a quick one)")
    p.add_argument("--data", help="shared data folder (default: $TOPAZPU_DATA or ../shared/data from the repository)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats, strided scoring (default: 5)")
    p.add_argument("--dense-repeats", type=int, default=2, help="timed repeats, dense scoring (default: 2)")
    p.add_argument("--archs", default="conv31,resnet8", help="untrained architectures timed (default: %(default)s)")
    p.add_argument("--updates", type=int, default=10, help="timed training updates per architecture (default: 10)")
    p.add_argument("--tiles-per-batch", type=int, default=8, help="training minibatch tiles (default: 8)")
    p.add_argument("--train-epochs", type=int, default=3, help="quick model: epochs (default: 3)")
    p.add_argument("--train-epoch-size", type=int, default=50, help="quick model: updates per epoch (default: 50)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: extract,ap,train,cli")
    p.add_argument("--work", help="work folder (default: a temporary one, removed at the end)")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 repeat, 3 updates, a 1 x 10-update model")
    g = p.add_argument_group("Topaz")
    g.add_argument("--topaz", action="store_true", help="also time `topaz extract` (Topaz 0.3.20 venv)")
    g.add_argument("--topaz-model", help="trained Topaz .sav (default: bench_quality.py's, else a 5-update one)")
    g.add_argument("--topaz-resnet16", action="store_true", help="also time Topaz's default pretrained resnet16")
    opts = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if opts.quick:
        opts.repeats, opts.dense_repeats, opts.updates = 1, 1, 3
        opts.train_epochs, opts.train_epoch_size = 1, 10
    opts.archs = [a.strip() for a in opts.archs.split(",") if a.strip()]
    skip = {s.strip() for s in opts.skip.split(",") if s.strip()}
    if opts.topaz and not os.path.exists(TOPAZ):
        p.error("--topaz: %s not found (set TOPAZ=path/to/topaz)" % TOPAZ)
    torch.set_num_threads(opts.threads)
    work = opts.work or tempfile.mkdtemp(prefix="topazpu_bench_speed_")
    os.makedirs(work, exist_ok=True)
    results = {"threads": opts.threads, "cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}
    print("bench_speed: %d torch threads, %d CPU(s), load average %.2f%s"
          % (torch.get_num_threads(), os.cpu_count(), os.getloadavg()[0], ", QUICK settings" if opts.quick else ""))
    try:
        from topazpu_core.checkpoint import load_model

        model_path, origin = find_model(opts)
        need_model = not {"ap", "cli"} <= skip
        if model_path is None and need_model:
            print("\n== no trained model given: training a quick one on the apoferritin split")
            model_path, origin = train_quick_model(opts, work), "quick"
        trained, meta = load_model(model_path) if model_path else (None, None)
        if model_path:
            print("model: %s (%s; %s, scale %g, particle radius %g px, validation AP %s)"
                  % (model_path, origin, meta.get("architecture"), meta.get("scale", 1), meta["particle_radius"],
                     "%.3f" % meta["val_ap"] if meta.get("val_ap") is not None else "n/a"))
            results["model"] = {"path": model_path, "origin": origin, "architecture": meta.get("architecture")}

        if "extract" not in skip:
            path, image = bundled_image()
            radius = int(BUNDLED_PARTICLE_DIAMETER // 2)
            print("\n== 1. extraction (score + NMS, radius %d, threshold -inf) of one %dx%d micrograph (%s), "
                  "median of %d (dense: %d)" % (radius, image.shape[1], image.shape[0], os.path.basename(path),
                                                opts.repeats, opts.dense_repeats))
            torch.manual_seed(0)
            models = [("%s (untrained)" % a, Classifier(a)) for a in opts.archs]
            if trained is not None:
                models.append(("%s (trained)" % meta.get("architecture"), trained))
            rows = time_extraction(models, image, radius, opts.repeats, opts.dense_repeats)
            results["extraction"] = rows
            default = [r for r in rows if r["scoring"] in ("strided", "strided4") and r["model"].startswith("resnet8")]
            for r in default:
                verdict = "PASS" if r["total_s"] < EXTRACT_TARGET_S else "FAIL"
                print("  target: %s %s extraction %.3f s < %.1f s per 620x600 micrograph: %s "
                      "(Topaz extract ~%.0f s resnet8, ~%.0f s resnet16: %.0fx faster)"
                      % (r["model"], r["scoring"], r["total_s"], EXTRACT_TARGET_S, verdict, TOPAZ_EXTRACT_S["resnet8"],
                         TOPAZ_EXTRACT_S["resnet16"], TOPAZ_EXTRACT_S["resnet8"] / r["total_s"]))
                r["target"] = verdict

        if "ap" not in skip:
            print("\n== 2. strided vs dense scoring: apoferritin validation split (seed %d), assignment radius %g px"
                  % (opts.seed, DATASETS["apoferritin"].radius))
            results["strided_vs_dense"] = strided_vs_dense(trained, meta, opts)

        if "train" not in skip:
            print("\n== 3. training seconds per update (apoferritin split, mean of %d updates after 2 warm-up "
                  "updates)" % opts.updates)
            rows = time_training(opts)
            results["training"] = rows
            for r in rows:
                if r["model"] == "resnet8" and r["precision"] == "float32" and r["tile_rotation"] == "90":
                    print("  Topaz resnet8: ~%.1f s per update (256 crops of 71 px); apoferritin target: training "
                          "under 10 minutes = %d updates at this speed"
                          % (TOPAZ_UPDATE_S, 600 / r["seconds_per_update"]))

        if "cli" not in skip:
            print("\n== 4. command-line extraction of the 4 bundled 620x600 micrographs "
                  "((time for 4 - time for 1) / 3)")
            try:
                results["cli_extraction"] = cli_extraction(opts, work, model_path)
            except RuntimeError as e:
                print("  failed: %s" % e)
                results["cli_extraction"] = {"error": str(e)}
    finally:
        if not opts.work:
            shutil.rmtree(work, ignore_errors=True)
    if opts.out:
        with open(opts.out, "w") as f:
            json.dump(results, f, indent=1)
        print("\nresults -> %s" % opts.out)


if __name__ == "__main__":
    main()
