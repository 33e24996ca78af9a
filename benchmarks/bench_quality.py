"""Benchmark: picking quality of topazpu (and optionally Topaz 0.3.20) on the real data sets.

For each data set (see benchmarks/splits.py for the seeded splits and the protocol) it runs our
pipeline through the command line exactly as a user would:

  topazpu preprocess -s SCALE -o W/pre <train + validation raw micrographs>
  topazpu train --train-images <preprocessed train list> --train-targets <labels / SCALE>
                --test-images <preprocessed val list> --test-targets <all val particles / SCALE>
                -n N --particle-radius R/SCALE --seed S -o W/model.pt [--epochs E --epoch-size U ...]
  topazpu pick --model W/model.pt -o W/picks_auto.txt <raw val micrographs>         (auto threshold)
  topazpu pick --model W/model.pt --threshold=-inf -o W/picks_all.txt <raw val>     (every peak: AP)
  topazpu extract --model W/model.pt --threshold=-inf -x SCALE <preprocessed val>   (extract timing)

and scores the picks with topazpu_core.metrics.evaluate at the assignment radius R (raw px):
AP and best F1 from the -inf picks, precision / recall / F1 at the auto threshold, picks per
micrograph, training wall time, pick and extract seconds per micrograph (process start
included). Targets: apoferritin AP >= 0.85 and best F1 >= 0.85 with training under 600 s;
bgal AP >= 0.75; ribosome recall of the (incomplete) labels >= 0.9 at the auto threshold.

--topaz also runs Topaz 0.3.20 (its own venv) on the same split: `topaz preprocess -s SCALE
-d -1`, `topaz train` (resnet8, 500 updates: --num-epochs 1 --epoch-size 500, -n N, -r 3),
`topaz extract -r R/SCALE --threshold=-inf`, picks scaled back by SCALE and scored with OUR
metrics; the table shows both side by side. Slow (~5 min of training per data set on 2 cores).

Protocols (--protocols, default both): "dense" validates training on the held-out micrographs
with ALL their particles (--test-images/--test-targets: the threshold is chosen on the
micrographs scored, and until 5 December 2026 the epoch too, an optimistic setting; the model
is now the mean weights of the second half of the epochs in both protocols); "sparse" is what
users have: training gets only its sparse labels with the CLI's defaults (no validation: every
label trains, the threshold comes from -n; `--train-args "--val-labels 0.2"` validates on a held-out
fifth of the labels instead), and is scored on the same densely labelled micrographs, which it
never saw. --seeds 0,1,2 repeats everything per seed (split, labels, initialisation) and
prints mean +- sd per data set and protocol. Reported besides AP and F1: count_ratio = picks at
the auto threshold / particles present, and F1 at the model's estimated best-F1 threshold.
--no-timing skips the extract and thresholded pick runs (the auto picks are the every-peak picks
at or above the threshold: NMS is greedy by score, so this is what pick -t auto returns).

--objectives trains the four objectives (PN, NNPU, GE-KL, GE-binomial) in-process
(topazpu_core.training.fit; the micrographs are preprocessed once) at 10, 50, 200 and 1000
labels on the apoferritin split, 3 replicates each (replicate r draws labels and initialises
with seed r; the micrograph split stays that of --seed), and prints mean +- sd validation AP
per objective x label count. Long: 48 trainings by default.

--ceiling trains PN and GE-binomial on the protocol's 200 and on ALL labels of the 8 apoferritin
training micrographs and prints the AP held out and on those training micrographs themselves:
what the annotations allow this network, whatever the objective.

    python benchmarks/bench_quality.py [--datasets apoferritin,bgal,ribosome] [--seed 0 | --seeds 0,1,2]
        [--protocols dense,sparse] [--no-timing] [--epochs E] [--epoch-size U] [--topaz] [--objectives] [--ceiling] [--quick] [--out results.json]
    python benchmarks/bench_quality.py --quick            # smoke test, a few minutes
"""
import argparse
import glob
import json
import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from splits import DATASETS, TOPAZ, make_split, parse_list, write_image_list, write_split  # noqa: E402
from topazpu_core.coordinates import Coordinates, read_coordinates, write_coordinates  # noqa: E402
from topazpu_core.images import image_name  # noqa: E402
from topazpu_core.metrics import evaluate  # noqa: E402

TOPAZ_REFERENCE_AP = 0.55  # Topaz 0.3.20, 500 updates, 200 apoferritin labels (issue 3)
OBJECTIVES = "PN,NNPU,GE-KL,GE-binomial"
LABEL_COUNTS = "10,50,200,1000"

logger = logging.getLogger("bench_quality")


# ----------------------------------------------------------------------------------------------
# helpers


def run(cmd, log_path, env=None, cwd=ROOT):
    """Run a command in `cwd` (default: the repository), log its output to log_path; -> wall seconds.
    Raises on failure."""
    cmd = [str(c) for c in cmd]
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.update(env or {})
    logger.info("$ %s", " ".join(shlex.quote(c) for c in cmd))
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        log.write("$ %s\n" % " ".join(shlex.quote(c) for c in cmd))
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise RuntimeError("command failed (exit %d), log %s:\n%s" % (proc.returncode, log_path, tail))
    return dt


def topazpu(*args):
    return [sys.executable, "-m", "topazpu_core"] + [str(a) for a in args]


def expected_n(split, opts):
    """-n for training: --num-particles NAME=N when given, else the data set's estimate."""
    for item in parse_list(opts.num_particles or ""):
        name, _, value = item.partition("=")
        if name.strip() == split.dataset.name:
            return float(value)
    return split.expected_per_micrograph


def labels_for(name, opts):
    """Training labels for data set `name`: --labels NAME=N (or NAME=all) when given, else the protocol's."""
    for item in parse_list(opts.labels or ""):
        key, _, value = item.partition("=")
        if key.strip() == name:
            return None if value.strip() == "all" else int(value)
    return "default"


def start_model_for(name, opts, split):
    """What the training of data set `name` starts from, as `topazpu train --start-model` takes it.

    --start-model lopo (the default): as the CLI's 'auto', which starts from the bundled model while
    the labels are few, but with the leave-one-protein-out model of `name` (`start_model_without`) in
    place of the bundled one, which was trained on every labelled micrograph here, the held-out ones
    included. Few is the CLI's rule (`training.labels_are_few`), here on counts: the labels against
    -n x the training micrographs (the CLI compares the same label disks as pixel fractions);
    otherwise 'none', so that the bundled model never starts a run of this script unless asked
    ('auto'). 'auto', 'none' or a model file: passed on as given.
    """
    from topazpu_core.training import labels_are_few

    choice = opts.start_model or "lopo"
    if choice != "lopo":
        return choice
    if not labels_are_few(expected_n(split, opts) * len(split.train_paths), len(split.train_labels)):
        return "none"
    if not other_data_sets(name, opts):
        print("start model without %s: no other data set in %s, so a random start" % (name, opts.data), flush=True)
        return "none"
    return start_model_without(name, opts)


def other_data_sets(name, opts):
    """The data sets other than `name` (None: every one) whose micrographs the data folder holds."""
    return [n for n in DATASETS if n != name and os.path.isdir(DATASETS[n].micrograph_dir(opts.data))]


def start_model_without(name, opts):
    """A starting model trained on every labelled micrograph of `other_data_sets(name)` (leave one
    protein out; None: of every data set, the bundled model's recipe), through the command line,
    cached in WORK/start_models/without-NAME (or all)/model.pt.

    Each data set is preprocessed at its own scale (its particles then measure 13-17 px across, as
    the benchmark's scales make them); all their labels train one model with -n = the expected
    particles over all those micrographs per micrograph, --arch, --epochs and --epoch-size as the main
    runs, --start-model none, the CLI's defaults otherwise, seed 0.
    """
    work = os.path.join(opts.work, "start_models", "without-" + name if name else "all")
    model = os.path.join(work, "model.pt")
    if os.path.exists(model):
        return model
    others = other_data_sets(name, opts)
    logs = os.path.join(work, "logs")
    images, coords, expected, radii = [], [], 0.0, []
    for other in others:
        d = DATASETS[other]
        raw = d.micrographs(opts.data)
        pre = os.path.join(opts.work, "start_models", "pre-" + other)
        if not os.path.exists(os.path.join(pre, "preprocess.json")):
            run(topazpu("preprocess", "-s", d.scale, "-o", pre, *raw), os.path.join(logs, "preprocess-%s.log" % other))
        images += [os.path.join(pre, image_name(p) + ".mrc") for p in raw]
        coords.append(d.particles(opts.data).scaled(1.0 / d.scale))
        expected += d.expected_per_micrograph(opts.data) * len(raw)
        radii.append(d.radius_pre)
    image_list = write_image_list(images, os.path.join(work, "images.txt"))
    targets = os.path.join(work, "targets.pre.txt")
    write_coordinates(Coordinates.concat(coords), targets, fmt="coord")
    cmd = topazpu("train", "--train-images", image_list, "--train-targets", targets,
                  "-n", "%.2f" % (expected / len(images)), "--particle-radius", "%.2f" % np.mean(radii),
                  "--start-model", "none", "--seed", 0, "--threads", opts.threads, "--no-progress", "-o", model)
    for flag, value in (("--arch", opts.arch), ("--epochs", opts.epochs), ("--epoch-size", opts.epoch_size)):
        if value is not None:  # --quick: a quick start model too
            cmd += [flag, str(value)]
    what = "without " + name if name else "of every data set"
    print("start model %s: training on %s (%d micrographs) -> %s" % (what, ", ".join(others), len(images), model),
          flush=True)
    seconds = run(cmd, os.path.join(logs, "train.log"))
    print("start model %s: %.0f s" % (what, seconds), flush=True)
    return model


def fresh_dir(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def score_picks(picks_all, picks_auto, targets, radius, val_names):
    """AP / best F1 from the unthresholded picks (and AP per micrograph: one poorly labelled
    micrograph shows there), P / R / F1 at the auto threshold."""
    out = {}
    if picks_all is not None:
        r = evaluate(picks_all, targets, radius, images=val_names)
        out.update(ap=r["ap"], best_f1=r["best_f1"], threshold_at_best_f1=r["threshold_at_best_f1"],
                   precision_at_best_f1=r["precision_at_best_f1"], recall_at_best_f1=r["recall_at_best_f1"],
                   n_targets=r["n_targets"],
                   ap_per_micrograph={n: evaluate(picks_all, targets, radius, images=[n])["ap"] for n in val_names})
    if picks_auto is not None:
        names = set(val_names)
        n_auto = int(sum(1 for n in picks_auto.image_name if n in names))
        r = evaluate(picks_auto, targets, radius, images=val_names) if n_auto else None
        tp = r["n_true_positives"] if r else 0
        n_t = r["n_targets"] if r else len(targets)
        p = tp / n_auto if n_auto else 0.0
        rec = tp / n_t if n_t else 0.0
        out.update(n_picks_at_threshold=n_auto, picks_per_micrograph=n_auto / max(1, len(val_names)),
                   count_ratio=n_auto / max(1, n_t),
                   precision_at_threshold=p, recall_at_threshold=rec,
                   f1_at_threshold=2 * p * rec / (p + rec) if p + rec > 0 else 0.0)
    return out


def check_targets(dataset, result):
    """-> {metric: {"value", "target", "pass"}} and the overall verdict."""
    checks = {}
    for key, target in dataset.targets.items():
        if key.endswith("_max"):
            name = key[:-4]
            value = result.get(name)
            checks[name] = {"value": value, "target": target, "at_most": True,
                            "pass": value is not None and value <= target}
        else:
            value = result.get(key)
            checks[key] = {"value": value, "target": target, "pass": value is not None and value >= target}
    return checks, all(c["pass"] for c in checks.values())


# ----------------------------------------------------------------------------------------------
# our pipeline (command line)


def write_overlays(split, picks, folder, threshold):
    """One PNG per validation micrograph: the picks at the default threshold (circles) over the
    micrograph with its labels (crosses), to see what the picks the labels call false are."""
    from topazpu_core.images import read_image
    from topazpu_core.plots import plot_overlay

    os.makedirs(folder, exist_ok=True)
    by_pick, by_target = picks.by_image(), split.val_targets.by_image()
    for name, path in zip(split.val_names, split.val_paths):
        mine = by_pick.get(name, Coordinates.empty())
        plot_overlay(read_image(path), mine, os.path.join(folder, name + ".png"), split.dataset.radius,
                     threshold=threshold, labels=by_target.get(name, Coordinates.empty()),
                     title="%s: %d picks at the default threshold, %d labels" % (name, len(mine),
                                                                                  len(by_target.get(name, ()))))


def run_ours(split, files, work, opts, protocol="dense"):
    d = split.dataset
    w = fresh_dir(os.path.join(work, "topazpu" if protocol == "dense" else "topazpu_" + protocol))
    logs = os.path.join(w, "logs")
    res = {"tool": "topazpu", "dataset": d.name, "protocol": protocol, "seed": split.seed}
    pre = os.path.join(w, "pre")
    res["preprocess_seconds"] = run(topazpu("preprocess", "-s", d.scale, "-o", pre, files["train_images"],
                                            files["val_images"]), os.path.join(logs, "preprocess.log"))
    pre_path = lambda p: os.path.join(pre, image_name(p) + ".mrc")  # noqa: E731
    train_list = write_image_list([pre_path(p) for p in split.train_paths], os.path.join(w, "pre_train.txt"))
    val_list = write_image_list([pre_path(p) for p in split.val_paths], os.path.join(w, "pre_val.txt"))
    model = os.path.join(w, "model.pt")
    validation = ["--test-images", val_list, "--test-targets", files["val_targets_pre"]] if protocol == "dense" else []
    cmd = topazpu("train", "--train-images", train_list, "--train-targets", files["train_targets_pre"], *validation,
                  "-n", "%.2f" % expected_n(split, opts), "--particle-radius", "%g" % d.radius_pre,
                  "--seed", split.seed, "--threads", opts.threads, "--no-progress", "-o", model)
    for flag, value in (("--epochs", opts.epochs), ("--epoch-size", opts.epoch_size), ("--arch", opts.arch),
                        ("--objective", opts.objective)):
        if value is not None:
            cmd += [flag, str(value)]
    res["start_model"] = start_model_for(d.name, opts, split)
    cmd += ["--start-model", res["start_model"]]
    cmd += shlex.split(opts.train_args or "")
    res["train_seconds"] = run(cmd, os.path.join(logs, "train.log"))
    with open(os.path.splitext(model)[0] + ".json") as f:
        meta = json.load(f)
    res.update(auto_threshold=meta.get("threshold"), val_ap_during_training=meta.get("val_ap"),
               val_estimate=meta.get("val_estimate"), f1_threshold=meta.get("val_threshold_at_best_f1"),
               best_epoch=meta.get("best_epoch"), epochs_trained=meta.get("epochs_trained"),
               architecture=meta.get("architecture"), method=meta.get("method"), pi=meta.get("pi"))
    n_val = len(split.val_paths)
    auto = os.path.join(w, "picks_auto.txt")
    every = os.path.join(w, "picks_all.txt")
    ext = os.path.join(w, "extract_all.txt")
    common = ["--threads", opts.threads, "--no-progress"]
    if not opts.no_timing:
        res["pick_seconds_per_micrograph"] = run(
            topazpu("pick", "--model", model, "-o", auto, *common, files["val_images"]),
            os.path.join(logs, "pick_auto.log")) / n_val
    res["pick_all_seconds_per_micrograph"] = run(
        topazpu("pick", "--model", model, "--threshold=-inf", "-o", every, *common, files["val_images"]),
        os.path.join(logs, "pick_all.log")) / n_val
    targets = split.val_targets
    picks = read_coordinates(every)
    auto_picks = picks.subset(picks.score >= meta["threshold"]) if opts.no_timing else read_coordinates(auto)
    res.update(score_picks(picks, auto_picks, targets, d.radius, split.val_names))
    if opts.overlays:
        write_overlays(split, auto_picks, os.path.join(w, "overlays"), meta["threshold"])
    if res.get("f1_threshold") is not None:
        at_f1 = score_picks(None, picks.subset(picks.score >= res["f1_threshold"]), targets, d.radius, split.val_names)
        res.update(f1_at_f1_threshold=at_f1["f1_at_threshold"], count_ratio_at_f1_threshold=at_f1["count_ratio"])
    if not opts.no_timing:
        res["extract_seconds_per_micrograph"] = run(
            topazpu("extract", "--model", model, "--threshold=-inf", "-x", d.scale, "-o", ext, *common, val_list),
            os.path.join(logs, "extract_all.log")) / n_val
        res["ap_extract"] = score_picks(read_coordinates(ext), None, targets, d.radius, split.val_names)["ap"]
    return res


# ----------------------------------------------------------------------------------------------
# Topaz 0.3.20 (its own venv)


def run_topaz(split, files, work, opts):
    d = split.dataset
    w = fresh_dir(os.path.join(work, "topaz"))
    logs = os.path.join(w, "logs")
    res = {"tool": "topaz", "dataset": d.name}
    pre = os.path.join(w, "pre")
    os.makedirs(pre)
    inputs = split.train_paths + split.val_paths
    if any(not p.lower().endswith(".mrc") for p in inputs):
        # topaz 0.3.20 cannot read JPEG or PNG micrographs (stats.py: 'JpegImageFile' object has no
        # attribute 'astype'): give it float32 MRC copies, read by our reader
        from topazpu_core.images import read_image, write_mrc
        raw = os.path.join(w, "raw_mrc")
        os.makedirs(raw)
        converted = []
        for p in inputs:
            converted.append(os.path.join(raw, image_name(p) + ".mrc"))
            write_mrc(converted[-1], read_image(p).astype(np.float32))
        inputs = converted
        res["inputs_converted_to_mrc"] = True
    # -j 1: Topaz's GMM fit is many small torch reductions, much faster on one thread
    res["preprocess_seconds"] = run([TOPAZ, "preprocess", "-s", d.scale, "-d", "-1", "-j", "1", "-o", pre]
                                    + inputs, os.path.join(logs, "preprocess.log"))
    pre_path = lambda p: os.path.join(pre, image_name(p) + ".mrc")  # noqa: E731
    train_list = write_image_list([pre_path(p) for p in split.train_paths], os.path.join(w, "train_images.txt"))
    targets = os.path.join(w, "train_targets.txt")  # Topaz wants .txt and rounds to int anyway
    lab = split.train_labels.scaled(1.0 / d.scale)
    write_coordinates(Coordinates.from_arrays(lab.image_name, np.round(lab.x), np.round(lab.y)), targets, fmt="coord")
    prefix = os.path.join(w, "model")
    cmd = [TOPAZ, "train", "-d", "-1", "-j", opts.threads, "--train-images", train_list, "--train-targets", targets,
           "-n", str(int(round(expected_n(split, opts)))), "-r", "3", "-m", "resnet8",
           "--num-epochs", opts.topaz_epochs, "--epoch-size", opts.topaz_epoch_size,
           "--save-prefix", prefix, "-o", os.path.join(w, "train_curve.tsv")]
    if opts.topaz_no_pretrained:
        cmd.append("--no-pretrained")
    res["train_seconds"] = run(cmd, os.path.join(logs, "train.log"))
    saved = sorted(glob.glob(prefix + "_epoch*.sav"), key=lambda p: int(p.rsplit("epoch", 1)[1][:-4]))
    if not saved:
        raise RuntimeError("topaz train wrote no model (%s_epoch*.sav)" % prefix)
    picks_path = os.path.join(w, "picks_all.txt")
    radius = max(1, int(round(d.radius_pre)))
    n_val = len(split.val_paths)
    res["extract_seconds_per_micrograph"] = run(
        [TOPAZ, "extract", "-m", saved[-1], "-r", radius, "--threshold=-inf", "-d", "-1", "-j", opts.threads,
         "-o", picks_path] + [pre_path(p) for p in split.val_paths], os.path.join(logs, "extract.log")) / n_val
    picks = read_coordinates(picks_path).scaled(d.scale)
    res.update(model=saved[-1], extract_radius=radius)
    res.update(score_picks(picks, None, split.val_targets, d.radius, split.val_names))
    # Topaz has no validated threshold: report logit 0 (p = 0.5) for information
    at0 = picks.subset(picks.score >= 0)
    s0 = score_picks(None, at0, split.val_targets, d.radius, split.val_names)
    res.update({k.replace("_at_threshold", "_at_logit0"): v for k, v in s0.items() if "threshold" in k})
    res["picks_per_micrograph_at_logit0"] = s0["picks_per_micrograph"]
    return res


# ----------------------------------------------------------------------------------------------
# in-process apoferritin runs (preprocessed once): the objectives side by side


def apoferritin_in_process(opts):
    """Preprocess the apoferritin split's micrographs once (scale 4, gmm) -> (split, micrographs)
    where micrographs(names, coords) pairs the preprocessed images with coordinates / scale."""
    import torch

    from topazpu_core.preprocessing import preprocess_images
    from topazpu_core.training import Micrograph

    d = DATASETS["apoferritin"]
    base = make_split(d, opts.seed, root=opts.data)
    paths = base.train_paths + base.val_paths
    print("preprocessing %d apoferritin micrographs (scale %d) ..." % (len(paths), d.scale), flush=True)
    images = {p["image_name"]: a for a, p in preprocess_images(paths, d.scale, method="gmm", seed=0, progress=False)}
    if opts.threads:
        torch.set_num_threads(int(opts.threads))

    def micrographs(names, coords):
        groups = coords.scaled(1.0 / d.scale).by_image()
        empty = np.zeros(0)
        return [Micrograph(n, images[n], groups[n].x if n in groups else empty, groups[n].y if n in groups else empty)
                for n in names]

    return base, micrographs


def in_process_config(opts, split, method, seed, **extra):
    """TrainConfig of an in-process apoferritin run: the CLI's defaults, -m/--epochs/--epoch-size
    when given, from random weights (the bundled starting model saw these micrographs)."""
    from topazpu_core.training import TrainConfig

    d = split.dataset
    overrides = {key: v for key, v in (("epochs", opts.epochs), ("epoch_size", opts.epoch_size)) if v is not None}
    overrides.setdefault("start_model", "none")
    return TrainConfig(particle_radius=d.radius_pre, method=method, architecture=opts.arch or "resnet8",
                       n_per_micrograph=expected_n(split, opts), seed=seed, scale=float(d.scale),
                       **overrides, **extra)


def run_objectives(opts, work):
    from topazpu_core.training import fit

    d = DATASETS["apoferritin"]
    methods = parse_list(opts.objective_methods)
    counts = parse_list(opts.label_counts, int)
    replicates = list(range(opts.replicates))
    base, micrographs = apoferritin_in_process(opts)
    val = micrographs(base.val_names, base.val_targets)
    rows = []
    total = len(methods) * len(counts) * len(replicates)
    k = 0
    for n_labels in counts:
        for rep in replicates:
            split = make_split(d, opts.seed, n_labels=n_labels, label_seed=rep, root=opts.data)
            train = micrographs(split.train_names, split.train_labels)
            for method in methods:
                k += 1
                config = in_process_config(
                    opts, split, method, rep,
                    autoencoder=opts.objective_autoencoder if opts.objective_autoencoder == "auto"
                    else float(opts.objective_autoencoder))
                model_path = os.path.join(fresh_dir(os.path.join(work, "objectives", "%s_n%d_r%d"
                                                                 % (method, n_labels, rep))), "model.pt")
                t0 = time.perf_counter()
                meta = fit(config, train, val, model_path, progress=False)
                dt = time.perf_counter() - t0
                row = {"method": method, "n_labels": n_labels, "replicate": rep, "ap": meta.get("val_ap"),
                       "best_f1": meta.get("val_best_f1"), "best_epoch": meta.get("best_epoch"),
                       "train_seconds": dt}
                rows.append(row)
                print("  [%d/%d] %-11s %4d labels  replicate %d: AP %.3f  F1 %.3f  (%.0f s)"
                      % (k, total, method, n_labels, rep, row["ap"], row["best_f1"], dt), flush=True)
    print()
    print("validation AP, mean +- sd over %d replicates (apoferritin, %d validation micrographs, %d targets)"
          % (len(replicates), len(val), len(base.val_targets)))
    header = "%-12s" % "objective" + "".join("%16s" % ("%d labels" % n) for n in counts)
    print(header)
    print("-" * len(header))
    table = {}
    for method in methods:
        line = "%-12s" % method
        for n in counts:
            aps = np.array([r["ap"] for r in rows if r["method"] == method and r["n_labels"] == n], float)
            mean, sd = float(np.mean(aps)), float(np.std(aps, ddof=1)) if len(aps) > 1 else 0.0
            table.setdefault(method, {})[str(n)] = {"mean": mean, "sd": sd, "n": int(len(aps))}
            line += "%16s" % ("%.3f +- %.3f" % (mean, sd))
        print(line)
    return {"runs": rows, "table": table}


# ----------------------------------------------------------------------------------------------
# what the labels allow: supervised training with every label (in-process)


def run_ceiling(opts, work):
    """How far the apoferritin target is from what the annotations allow this model class.

    For each method of --ceiling-methods, trains on the protocol's 200 labels and on ALL labels
    of the same 8 training micrographs (~6.5x more, no unlabelled positives left to the PU term),
    and scores each best-epoch model on the 4 held-out micrographs (the protocol's AP) and on
    its own labelled training micrographs, whose every label it was trained on (the fit AP).
    """
    from topazpu_core.checkpoint import load_model
    from topazpu_core.training import edge_margin_of, fit, validate

    d = DATASETS["apoferritin"]
    base, micrographs = apoferritin_in_process(opts)
    val = micrographs(base.val_names, base.val_targets)
    full = make_split(d, opts.seed, n_labels=None, root=opts.data)
    labelled = [m for m in micrographs(full.train_names, full.train_labels) if len(m.x)]
    rows = []
    for split in (base, full):
        train = micrographs(split.train_names, split.train_labels)
        for method in parse_list(opts.ceiling_methods):
            config = in_process_config(opts, split, method, opts.seed)
            tag = "%s_%s" % (method, "all" if split is full else "protocol")
            model_path = os.path.join(fresh_dir(os.path.join(work, "ceiling", tag)), "model.pt")
            t0 = time.perf_counter()
            meta = fit(config, train, val, model_path, progress=False)
            dt = time.perf_counter() - t0
            model, _ = load_model(model_path)
            on_train = validate(model, labelled, d.radius_pre, edge_margin=edge_margin_of(config))
            row = {"method": method, "n_labels": len(split.train_labels), "val_ap": meta["val_ap"],
                   "val_best_f1": meta["val_best_f1"], "train_ap": on_train["ap"],
                   "train_best_f1": on_train["best_f1"], "best_epoch": meta["best_epoch"], "train_seconds": dt}
            rows.append(row)
            print("  %-11s %4d labels: held-out AP %.3f F1 %.3f | its own %d training micrographs, all %d labels: "
                  "AP %.3f F1 %.3f  (best epoch %s, %.0f s)"
                  % (method, row["n_labels"], row["val_ap"], row["val_best_f1"], len(labelled), len(full.train_labels),
                     row["train_ap"], row["train_best_f1"], row["best_epoch"], dt), flush=True)
    print("(target: held-out AP >= 0.85 and best F1 >= 0.85 with 200 labels)")
    return {"runs": rows}


# ----------------------------------------------------------------------------------------------
# report


def fmt(v, spec="%.3f"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return spec % v


def print_table(results):
    cols = [("data set", "%-12s", "dataset"), ("tool", "%-8s", "tool"), ("protocol", "%-9s", "protocol"),
            ("seed", "%5s", "seed"), ("AP", "%7s", "ap"),
            ("bestF1", "%7s", "best_f1"), ("P@thr", "%7s", "precision_at_threshold"),
            ("R@thr", "%7s", "recall_at_threshold"), ("F1@thr", "%7s", "f1_at_threshold"),
            ("picks/mic", "%10s", "picks_per_micrograph"), ("count", "%7s", "count_ratio"),
            ("F1@f1thr", "%9s", "f1_at_f1_threshold"), ("train s", "%9s", "train_seconds"),
            ("pick s/mic", "%11s", "pick_seconds_per_micrograph"),
            ("extract s/mic", "%14s", "extract_seconds_per_micrograph"), ("targets", "  %s", "verdict")]
    header = "".join(spec % name for name, spec, _ in cols)
    print(header)
    print("-" * len(header))
    for r in results:
        cells = []
        for name, spec, key in cols:
            v = r.get(key)
            if key in ("dataset", "tool", "verdict", "protocol", "seed"):
                cells.append(spec % (v if v is not None else ""))
            elif key == "picks_per_micrograph" or key.endswith("seconds") or "seconds" in key:
                cells.append(spec % fmt(v, "%.1f" if key in ("train_seconds", "picks_per_micrograph") else "%.2f"))
            else:
                cells.append(spec % fmt(v))
        print("".join(cells))
    for r in results:
        if r.get("ap_per_micrograph"):
            print("AP per micrograph, %s %s %s seed %s: %s" % (
                r.get("dataset"), r.get("tool"), r.get("protocol") or "", r.get("seed"),
                ", ".join("%s %.3f" % kv for kv in r["ap_per_micrograph"].items())))
    print("(P/R/F1@thr: at the model's auto threshold; count: picks there / particles present; F1@f1thr: F1 at "
          "the model's estimated best-F1 threshold; Topaz has none, its P/R at logit 0 are in the JSON. "
          "Seconds include process start; pick = preprocess + score + NMS from raw micrographs.)")


SUMMARY_KEYS = ("ap", "best_f1", "f1_at_threshold", "count_ratio", "f1_at_f1_threshold", "recall_at_threshold",
                "val_ap_during_training", "train_seconds")


def print_seed_summary(results):
    """Mean +- sd over seeds per data set, tool and protocol -> {group: {key: {mean, sd, values}}}."""
    groups = {}
    for r in results:
        groups.setdefault((r["dataset"], r["tool"], r.get("protocol", "")), []).append(r)
    print("%-12s %-8s %-9s %3s" % ("data set", "tool", "protocol", "n") + "".join("%20s" % k[:19] for k in SUMMARY_KEYS))
    out = {}
    for (name, tool, protocol), rows in groups.items():
        line = "%-12s %-8s %-9s %3d" % (name, tool, protocol, len(rows))
        cell = {}
        for k in SUMMARY_KEYS:
            v = np.array([r[k] for r in rows if isinstance(r.get(k), (int, float))], float)
            if v.size:
                cell[k] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                           "values": v.tolist()}
                line += "%20s" % ("%.3f +- %.3f" % (cell[k]["mean"], cell[k]["sd"]))
            else:
                line += "%20s" % "-"
        out["%s/%s/%s" % (name, tool, protocol)] = cell
        print(line)
    return out


def add_train_args(p):
    """The topazpu training options that run_ours reads (also used by bench_downstream.py)."""
    p.add_argument("--epochs", type=int, help="topazpu train --epochs (default: the CLI's)")
    p.add_argument("--epoch-size", type=int, help="topazpu train --epoch-size (default: the CLI's)")
    p.add_argument("--arch", help="topazpu train --arch (default: the CLI's, resnet8)")
    p.add_argument("--objective", help="topazpu train --objective (default: the CLI's, GE-binomial)")
    p.add_argument("--num-particles", metavar="NAME=N[,NAME=N]",
                   help="expected particles per micrograph (-n) per data set (default: splits.py's estimate)")
    p.add_argument("--train-args", help="more topazpu train arguments, one quoted string")
    p.add_argument("--labels", metavar="NAME=N[,NAME=N]",
                   help="training labels per data set (a number or 'all'; default: the protocol's: apoferritin 200, "
                        "bgal 500, ribosome all)")
    p.add_argument("--start-model", default="lopo", metavar="lopo|auto|none|MODEL.pt",
                   help="what training starts from: 'lopo' = as the CLI's 'auto' (a starting model while the labels "
                        "are few), but the model trained on the other data sets (leave one protein out, built once "
                        "in WORK/start_models/) in place of the bundled one, which saw these micrographs; 'auto', "
                        "'none' or a model file: topazpu train --start-model as given (default: lopo)")


def add_topaz_train_args(p):
    """The Topaz training options that run_topaz reads (also used by bench_downstream.py)."""
    p.add_argument("--topaz-epochs", type=int, default=1, help="topaz train --num-epochs (default: 1)")
    p.add_argument("--topaz-epoch-size", type=int, default=500, help="topaz train --epoch-size (default: 500)")
    p.add_argument("--topaz-no-pretrained", action="store_true",
                   help="topaz train --no-pretrained (default: Topaz's default, start from its shipped resnet8)")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--datasets", default=",".join(DATASETS),
                   help="comma-separated data sets, or 'none' (default: %s)" % ",".join(DATASETS))
    p.add_argument("--data", help="shared data folder (default: $TOPAZPU_DATA or ../shared/data from the repository)")
    p.add_argument("--seed", type=int, default=0, help="split and training seed (default: 0)")
    p.add_argument("--seeds", help="comma-separated seeds, each a full run (default: --seed)")
    p.add_argument("--protocols", default="dense,sparse",
                   help="dense (validate on the scored micrographs' full labels) and/or sparse (validate on held-out "
                        "training labels) (default: %(default)s)")
    p.add_argument("--overlays", action="store_true",
                   help="write WORK/<data set>/topazpu*/overlays/<micrograph>.png: the default-threshold picks over "
                        "each validation micrograph with its labels")
    p.add_argument("--no-timing", action="store_true",
                   help="skip the thresholded pick and the extract runs (timing only; same quality numbers)")
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "topazpu_bench_quality"),
                   help="work folder (default: %(default)s); its per-data-set tool folders are replaced")
    p.add_argument("--out", help="write the results as JSON here (default: WORK/results.json)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for both tools (default: 2)")
    add_train_args(p)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 2 epochs x 10 updates, Topaz 5 updates, objectives 2 label counts x 1 "
                        "replicate x 2 epochs")
    g = p.add_argument_group("Topaz")
    g.add_argument("--topaz", action="store_true", help="also run Topaz 0.3.20 on the same splits (slow)")
    add_topaz_train_args(g)
    g = p.add_argument_group("objectives")
    g.add_argument("--objectives", action="store_true",
                   help="also compare the four objectives on apoferritin (long)")
    g.add_argument("--objective-methods", default=OBJECTIVES, help="(default: %(default)s)")
    g.add_argument("--label-counts", default=LABEL_COUNTS, help="(default: %(default)s)")
    g.add_argument("--replicates", type=int, default=3, help="seeds 0..R-1 per cell (default: 3)")
    g.add_argument("--objective-autoencoder", default="0",
                   help="autoencoder weight for the objective runs, or 'auto' (default: 0)")
    g = p.add_argument_group("ceiling")
    g.add_argument("--ceiling", action="store_true",
                   help="train on the protocol's 200 and on all apoferritin labels of the training micrographs; "
                        "AP held out and on the training micrographs themselves")
    g.add_argument("--ceiling-methods", default="PN,GE-binomial", help="(default: %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="log commands and training progress")
    opts = p.parse_args()
    logging.basicConfig(level=logging.INFO if opts.verbose else logging.WARNING, format="%(message)s")
    if opts.quick:
        opts.epochs = opts.epochs or 2
        opts.epoch_size = opts.epoch_size or 10
        opts.topaz_epoch_size = 5
        if opts.label_counts == LABEL_COUNTS:
            opts.label_counts = "10,200"
        if opts.replicates == 3:
            opts.replicates = 1
    names = [] if opts.datasets.strip().lower() == "none" else parse_list(opts.datasets)
    for n in names:
        if n not in DATASETS:
            p.error("unknown data set %r (choose from %s)" % (n, ", ".join(DATASETS)))
    if opts.topaz and not os.path.exists(TOPAZ):
        p.error("--topaz: %s not found (set TOPAZ=path/to/topaz)" % TOPAZ)
    os.makedirs(opts.work, exist_ok=True)
    out_path = opts.out or os.path.join(opts.work, "results.json")

    print("bench_quality: %d CPU(s), load average %.2f, threads %d, seed %d, work %s%s"
          % (os.cpu_count(), os.getloadavg()[0], opts.threads, opts.seed, opts.work,
             ", QUICK smoke-test settings" if opts.quick else ""), flush=True)
    results, summary = [], {"settings": {k: v for k, v in vars(opts).items()}, "datasets": {}}
    t_start = time.time()
    seeds = parse_list(opts.seeds, int) if opts.seeds else [opts.seed]
    protocols = parse_list(opts.protocols)
    for protocol in protocols:
        if protocol not in ("dense", "sparse"):
            p.error("unknown protocol %r (dense, sparse)" % protocol)
    for seed in seeds:
        for name in names:
            split = make_split(name, seed, n_labels=labels_for(name, opts), root=opts.data)
            work = os.path.join(opts.work, name if len(seeds) == 1 else os.path.join("seed%d" % seed, name))
            files = write_split(split, os.path.join(work, "split"))
            s = split.summary()
            print("\n== %s, seed %d: %d training micrographs (%d labels), %d validation micrographs (%d targets), "
                  "scale %d, assignment radius %g px, -n %.1f"
                  % (name, seed, len(s["train_micrographs"]), s["n_train_labels"], len(s["val_micrographs"]),
                     s["n_val_targets"], s["scale"], s["radius"], expected_n(split, opts)), flush=True)
            entry = {"split": s}
            for protocol in protocols:
                try:
                    ours = run_ours(split, files, work, opts, protocol)
                except RuntimeError as e:
                    print("topazpu failed: %s" % e, flush=True)
                    ours = {"tool": "topazpu", "dataset": name, "protocol": protocol, "seed": seed, "error": str(e),
                            "train_seconds": None}
                checks, ok = check_targets(split.dataset, ours)
                ours.update(targets=checks, verdict=("PASS" if ok else "FAIL") + " (" + ", ".join(
                    "%s %s %s %g" % (k, fmt(c["value"], "%.0f" if c.get("at_most") else "%.3f"),
                                     "<=" if c.get("at_most") else ">=", c["target"]) for k, c in checks.items()) + ")")
                print("topazpu (%s): AP %s, best F1 %s, at auto threshold %s: P %s R %s F1 %s (%s picks/mic, %s x the "
                      "particles); train %s s; %s"
                      % (protocol, fmt(ours.get("ap")), fmt(ours.get("best_f1")), fmt(ours.get("auto_threshold"), "%.2f"),
                         fmt(ours.get("precision_at_threshold")), fmt(ours.get("recall_at_threshold")),
                         fmt(ours.get("f1_at_threshold")), fmt(ours.get("picks_per_micrograph"), "%.1f"),
                         fmt(ours.get("count_ratio"), "%.2f"), fmt(ours.get("train_seconds"), "%.0f"),
                         ours["verdict"]), flush=True)
                results.append(ours)
                entry["topazpu" if protocol == "dense" else "topazpu_" + protocol] = ours
            if opts.topaz:
                try:
                    tz = run_topaz(split, files, work, opts)
                    tz.update(verdict="(reference)", seed=seed)
                    print("topaz:   AP %s, best F1 %s; train %.0f s, extract %.2f s/mic"
                          % (fmt(tz.get("ap")), fmt(tz.get("best_f1")), tz["train_seconds"],
                             tz["extract_seconds_per_micrograph"]), flush=True)
                    results.append(tz)
                    entry["topaz"] = tz
                except RuntimeError as e:
                    print("topaz failed: %s" % e, flush=True)
                    entry["topaz"] = {"error": str(e)}
            summary["datasets"][name if len(seeds) == 1 else "%s/seed%d" % (name, seed)] = entry
    if results:
        print("\n== summary (seeds %s%s)" % (",".join(map(str, seeds)), ", quick settings" if opts.quick else ""))
        print_table(results)
        if opts.topaz and "apoferritin" in names:
            print("(issue 3 reference: Topaz 0.3.20, 500 updates, 200 apoferritin labels, AP ~%.2f)"
                  % TOPAZ_REFERENCE_AP)
        if len(seeds) > 1:
            print("\n== mean +- sd over seeds %s" % ",".join(map(str, seeds)))
            summary["over_seeds"] = print_seed_summary(results)
    if opts.objectives:
        print("\n== objectives on apoferritin")
        summary["objectives"] = run_objectives(opts, opts.work)
    if opts.ceiling:
        print("\n== what the apoferritin labels allow")
        summary["ceiling"] = run_ceiling(opts, opts.work)
    summary["wall_seconds"] = time.time() - t_start
    with open(out_path, "w") as f:
        json.dump(summary, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    print("\nresults -> %s (%.0f s)" % (out_path, summary["wall_seconds"]))
    failed = [r["dataset"] for r in results if r.get("tool") == "topazpu" and not r["verdict"].startswith("PASS")]
    if failed:
        print("targets missed: %s" % ", ".join(failed))


if __name__ == "__main__":
    main()
