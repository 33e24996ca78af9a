"""Benchmark: the picks judged downstream, by RELION 2D classification (issue 12, deliverable 4).

On the apoferritin split of benchmarks/splits.py (--seed; 200 labels on 8 micrographs train, 4
micrographs are held out) it:

 1. trains and picks with topazpu through the command line exactly as bench_quality.py does
    (its run_ours, sparse protocol: preprocess, train with the CLI defaults on the labels alone,
    no validation, `topazpu pick` at the DEFAULT threshold, -t auto; the held-out micrographs
    are never seen by the training) and keeps the picks on the held-out micrographs (--micrographs all:
    also picks the 9 others with the same model; those include its training micrographs);
 2. trains and picks with Topaz 0.3.20 as bench_quality.py --topaz does (its run_topaz:
    resnet8 from Topaz's pretrained weights, 500 updates, `topaz extract --threshold=-inf`) and
    keeps Topaz's top N picks on the same micrographs, N = our pick count (the issue compares
    at the same count); --topaz-picks FILE uses picks made elsewhere (raw pixel frame, any
    format `topazpu convert` reads), --no-topaz leaves Topaz out;
 3. extracts each pick set with RELION 3.1 (`relion_preprocess --extract`, box --box raw px
    rescaled to --box-scaled, --invert-contrast so protein is white, background normalised),
    plus the user's 200 training labels as the reference set, from float32 MRC copies of the
    micrographs (RELION 3.1 reads this set's uint16 files as signed int16), a micrographs STAR and
    one coordinate STAR per micrograph written by topazpu_core.coordinates (pixel size
    --pixel-size, an estimate: the MRC headers of this set hold placeholders);
 4. 2D-classifies each pick set without CTF correction (`relion_refine`, --classes 8,
    --iterations 10, mask --mask-diameter, --random-seed 0, --j --threads, no MPI);
 5. calls each class good or junk with one stated criterion (class_correlations): the Pearson
    correlation inside a disc of 1.25 particle radii between the class average and the
    reference (the mean of the extracted labelled particles, no alignment, averaged over
    in-plane rotations: apoferritin is round, and 200 particles alone are noisy), both
    low-pass filtered (Gaussian, sigma 2 raw px), maximised over in-plane rotations (every 10
    degrees) and shifts of up to 4 raw px; the class is good when that correlation is at least
    the lowest correlation among the classes RELION makes of the hand labels themselves (the
    baseline below; --junk-threshold X: at least X). It reports the share of classified
    particles in junk classes, the number of good particles kept, and as a check of the
    criterion itself, how many particles of good and of junk classes lie within the assignment
    radius of a hand label (the held-out micrographs are labelled in full);
 6. draws the class averages of both tools and the reference as a PNG (good: green frame,
    junk: red; particle count and correlation above each) and writes the numbers as JSON.

The hand labels of the picked micrographs go through steps 3-4 too (--no-label-baseline leaves
them out, and needs a numeric --junk-threshold): the least particle-like of their classes sets
the threshold, and their junk share at fixed thresholds shows what the criterion calls junk
among true, centred particles.

Every stage is cached in --work (default $TMPDIR/topazpu_bench_downstream): training and picking
are skipped when their picks exist, extraction when its particles STAR exists for the same
picks (WORK/relion/SET/picks.sha1), classification when its last iteration exists; --redo STAGE[,STAGE] (train, topaz, extract, classify) or a new
--work runs them again. Needs Debian's relion package (3.1.3; apt-get install relion) and, for
the Topaz side, Topaz 0.3.20 at .venv-topaz/bin/topaz in the repository (or $TOPAZ).

    python benchmarks/bench_downstream.py [--seed 0] [--threads 2] [--micrographs val|all]
        [--no-topaz | --topaz-picks FILE] [--junk-threshold 0.5] [--quick]

Issue target: our junk share at least 10 points below Topaz's, with at least as many good particles.
"""
import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import scipy.ndimage as ndi

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_quality  # noqa: E402
from bench_quality import ROOT, fresh_dir, labels_for, run, run_ours, run_topaz, topazpu  # noqa: E402
from splits import make_split, write_image_list, write_split  # noqa: E402
from topazpu_core.atomic import atomic_write  # noqa: E402
from topazpu_core.coordinates import Coordinates, read_coordinates, write_coordinates  # noqa: E402
from topazpu_core.coordinates.star import parse_star  # noqa: E402
from topazpu_core.images import image_name, read_image, write_mrc  # noqa: E402
from topazpu_core.metrics import match_picks  # noqa: E402

RELION_PREPROCESS = os.environ.get("RELION_PREPROCESS", "relion_preprocess")
RELION_REFINE = os.environ.get("RELION_REFINE", "relion_refine")
STAGES = ("train", "topaz", "extract", "classify")


# ----------------------------------------------------------------------------------------------
# the junk criterion (pure functions)


def disc_mask(size, radius):
    """Boolean (size, size) disc of `radius` px about the box centre (size // 2, RELION's)."""
    c = size // 2
    y, x = np.indices((size, size))
    return np.hypot(x - c, y - c) <= radius


def rotational_average(image):
    """The image averaged over in-plane rotations about the box centre (size // 2): its radial
    profile (1-px bins) interpolated back onto every pixel."""
    image = np.asarray(image, dtype=np.float64)
    c = image.shape[0] // 2
    y, x = np.indices(image.shape)
    r = np.hypot(x - c, y - c)
    bins = np.rint(r).astype(np.intp)
    profile = np.bincount(bins.ravel(), image.ravel()) / np.maximum(np.bincount(bins.ravel()), 1)
    return np.interp(r, np.arange(len(profile)), profile)


def _pearson(a, b):
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / den) if den > 0 else 0.0


def class_correlations(classes, reference, radius, angle_step=10.0, max_shift=2, sigma=1.0):
    """Best correlation of each class average with the reference average -> (K,) float array.

    classes: (K, B, B) images; reference: (B, B); radius: of the comparison disc, px. Both are
    low-pass filtered (Gaussian, `sigma` px); the Pearson correlation over the disc is maximised
    over in-plane rotations of the class (every `angle_step` degrees) and integer shifts up to
    `max_shift` px in x and y. A constant image correlates 0. Sign matters: an inverted
    particle correlates negatively.
    """
    classes = np.asarray(classes, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if classes.ndim != 3 or classes.shape[1:] != reference.shape or reference.shape[0] != reference.shape[1]:
        raise ValueError("class_correlations: classes %s and reference %s must be (K, B, B) and (B, B)"
                         % (classes.shape, reference.shape))
    mask = disc_mask(reference.shape[0], radius)
    ref = ndi.gaussian_filter(reference, sigma)[mask]
    angles = np.arange(0.0, 360.0, angle_step)
    shifts = [(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)]
    out = np.zeros(len(classes))
    for k, image in enumerate(classes):
        smooth = ndi.gaussian_filter(image, sigma)
        best = -1.0
        for angle in angles:
            rotated = ndi.rotate(smooth, angle, reshape=False, order=1, mode="nearest")
            for dy, dx in shifts:
                best = max(best, _pearson(np.roll(rotated, (dy, dx), axis=(0, 1))[mask], ref))
        out[k] = best
    return out


def junk_summary(counts, correlations, threshold):
    """Particles per class + each class's correlation -> share in junk classes, good particles kept.

    A class is good when its correlation >= threshold; empty classes count for nothing.
    """
    counts = np.asarray(counts, dtype=np.int64)
    good = np.asarray(correlations, dtype=np.float64) >= threshold
    total = int(counts.sum())
    n_good = int(counts[good].sum())
    return {"threshold": threshold, "particles": total, "good_particles": n_good,
            "junk_particles": total - n_good, "junk_share": (total - n_good) / total if total else float("nan"),
            "good_classes": [int(k) + 1 for k in np.flatnonzero(good & (counts > 0))],
            "junk_classes": [int(k) + 1 for k in np.flatnonzero(~good & (counts > 0))]}


# ----------------------------------------------------------------------------------------------
# RELION input and output


def write_micrographs_star(names, path, pixel_size):
    """RELION 3.1 micrographs STAR (an optics group, then Micrographs/NAME.mrc per name)."""
    with atomic_write(path) as f:
        f.write("\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n"
                "_rlnMicrographPixelSize #3\n_rlnVoltage #4\n_rlnSphericalAberration #5\n"
                "_rlnAmplitudeContrast #6\nopticsGroup1 1 %g 300 2.7 0.1\n\n" % pixel_size)
        f.write("\n# version 30001\n\ndata_micrographs\n\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n")
        for n in names:
            f.write("Micrographs/%s.mrc 1\n" % n)
        f.write("\n")
    return path


def star_table(path, block, need):
    """The loop of data_`block` in a STAR file that has the columns `need` -> (table, column indices)."""
    with open(path) as f:
        tables = parse_star(f.read(), path)
    for t in tables:
        if t.block == block and t.rows and all(t.column(c) is not None for c in need):
            return t, [t.column(c) for c in need]
    raise SystemExit("%s: no data_%s loop with the columns %s" % (path, block, ", ".join(need)))


def read_particles(path):
    """A RELION particles STAR -> (Coordinates in the raw micrograph frame, image names "N@stack")."""
    t, (mic, x, y, img) = star_table(path, "particles", ["MicrographName", "CoordinateX", "CoordinateY", "ImageName"])
    coords = Coordinates.from_arrays([image_name(r[mic]) for r in t.rows], [float(r[x]) for r in t.rows],
                                     [float(r[y]) for r in t.rows])
    return coords, [r[img] for r in t.rows]


def read_stack_images(image_names, folder):
    """Images "N@stack.mrcs" (paths relative to `folder`) -> (n, B, B) float array."""
    import mrcfile
    stacks, out = {}, []
    for ref in image_names:
        number, _, stack = ref.partition("@")
        if stack not in stacks:
            with mrcfile.open(os.path.join(folder, stack), permissive=True) as m:
                stacks[stack] = np.asarray(m.data, dtype=np.float32)
        out.append(stacks[stack][int(number) - 1])
    return np.stack(out)


def last_iteration(prefix, iterations):
    return "%s_it%03d" % (prefix, iterations)


# ----------------------------------------------------------------------------------------------
# stages


def fingerprint(coords):
    """SHA-1 of a pick set's names and coordinates (0.01 px): a cached extraction of other picks is redone."""
    text = "\n".join("%s %.2f %.2f" % row for row in zip(coords.image_name, coords.x, coords.y))
    return hashlib.sha1(text.encode()).hexdigest()


def extract(name, coords, micrographs_star, rdir, opts):
    """Write one coordinate STAR per micrograph and run relion_preprocess -> particles STAR (cached
    while the picks are the same; a new extraction removes the set's classification too)."""
    out = os.path.join(rdir, name, "particles.star")
    stamp = os.path.join(rdir, name, "picks.sha1")
    key = fingerprint(coords)
    if os.path.exists(out) and os.path.exists(stamp) and "extract" not in opts.redo:
        with open(stamp) as f:
            if f.read().strip() == key:
                return out
    set_dir = fresh_dir(os.path.join(rdir, name))
    for mic, c in coords.by_image().items():
        write_coordinates(c, os.path.join(set_dir, "coords", "Micrographs", mic + "_pick.star"), fmt="star")
    bg_radius = int(round(0.75 * opts.box_scaled / 2))
    run([RELION_PREPROCESS, "--i", os.path.basename(micrographs_star), "--coord_dir", name + "/coords/",
         "--coord_suffix", "_pick.star", "--part_dir", name + "/Particles/", "--part_star", name + "/particles.tmp.star",
         "--extract", "--extract_size", opts.box, "--scale", opts.box_scaled, "--norm", "--bg_radius", bg_radius,
         "--invert_contrast"], os.path.join(set_dir, "extract.log"), cwd=rdir)
    os.replace(os.path.join(set_dir, "particles.tmp.star"), out)
    with atomic_write(stamp) as f:
        f.write(key + "\n")
    return out


def classify(name, rdir, opts):
    """relion_refine 2D classification of a set's particles -> output prefix of the last iteration (cached)."""
    cdir = os.path.join(rdir, name, "class2d")
    last = last_iteration(os.path.join(cdir, "run"), opts.iterations)
    if os.path.exists(last + "_model.star") and "classify" not in opts.redo:
        return last
    fresh_dir(cdir)
    run([RELION_REFINE, "--i", name + "/particles.star", "--o", name + "/class2d/run", "--iter", opts.iterations,
         "--K", opts.classes, "--tau2_fudge", 2, "--particle_diameter", opts.mask_diameter, "--flatten_solvent",
         "--zero_mask", "--oversampling", 1, "--psi_step", 12, "--offset_range", 5, "--offset_step", 2,
         "--norm", "--scale", "--dont_combine_weights_via_disc", "--pool", 3, "--pad", 2,
         "--random_seed", opts.random_seed, "--j", opts.threads], os.path.join(cdir, "refine.log"), cwd=rdir)
    if not os.path.exists(last + "_model.star"):
        raise SystemExit("relion_refine wrote no %s_model.star (log %s)" % (last, os.path.join(cdir, "refine.log")))
    return last


def analyse(prefix, reference, targets, opts):
    """Class averages, particles per class, each class's correlation with the reference, and which
    particles lie within the assignment radius of a hand label -> dict."""
    import mrcfile
    with mrcfile.open(prefix + "_classes.mrcs", permissive=True) as m:
        classes = np.asarray(m.data, dtype=np.float32)
    t, (mic, x, y, cls) = star_table(prefix + "_data.star", "particles",
                                     ["MicrographName", "CoordinateX", "CoordinateY", "ClassNumber"])
    class_of = np.array([int(r[cls]) for r in t.rows])
    per = opts.box / opts.box_scaled  # raw px per px of the particle images
    corr = class_correlations(classes, reference, 1.25 * opts.particle_radius / per, sigma=2.0 / per,
                              max_shift=max(1, int(round(4.0 / per))))
    parts = Coordinates.from_arrays([image_name(r[mic]) for r in t.rows], [float(r[x]) for r in t.rows],
                                    [float(r[y]) for r in t.rows])
    on_label = np.zeros(len(parts), dtype=bool)
    groups = targets.by_image()
    for mic_name, idx in parts.indices_by_image().items():
        if mic_name in groups:
            on_label[idx] = match_picks(parts.xy[idx], groups[mic_name].xy, opts.particle_radius)
    return {"images": classes, "class_of": class_of, "counts": np.bincount(class_of - 1, minlength=len(classes)),
            "correlation": corr, "on_label": on_label}


def baseline_threshold(baseline):
    """The lowest correlation among the non-empty classes of the hand labels' own classification:
    a class is junk when it resembles the particle less than every class RELION makes of true particles."""
    return float(np.min(baseline["correlation"][baseline["counts"] > 0]))


def judge(table, threshold):
    """analyse()'s table at a threshold -> the summary printed and stored per set."""
    counts, corr, class_of, on_label = table["counts"], table["correlation"], table["class_of"], table["on_label"]
    summary = junk_summary(counts, corr, threshold)
    good = np.isin(class_of, summary["good_classes"])
    summary.update(
        classes=[{"class": k + 1, "particles": int(counts[k]), "correlation": float(corr[k]),
                  "good": bool(corr[k] >= threshold), "on_label": int(on_label[class_of == k + 1].sum())}
                 for k in range(len(counts))],
        on_label_good=int(on_label[good].sum()), on_label_junk=int(on_label[~good].sum()),
        by_threshold={"%.1f" % th: junk_summary(counts, corr, th)["junk_share"] for th in (0.3, 0.4, 0.5, 0.6, 0.7)})
    return summary


def pick_stage(split, files, work, opts):
    """Our picks at the default threshold on the chosen micrographs (bench_quality.run_ours, sparse
    protocol: as a user trains, without validation on the judged micrographs; cached)."""
    w = os.path.join(work, "topazpu_sparse")
    auto, result = os.path.join(w, "picks_auto.txt"), os.path.join(w, "result.json")
    if not os.path.exists(result) or "train" in opts.redo:  # result.json is written last: a stage cut short runs again
        res = run_ours(split, files, work, opts, protocol="sparse")
        with open(result, "w") as f:
            json.dump(res, f, indent=1, default=str)
    with open(result) as f:
        res = json.load(f)
    if opts.micrographs == "val":
        return read_coordinates(auto), res
    every = os.path.join(w, "picks_auto_every_micrograph.txt")
    if not os.path.exists(every) or "train" in opts.redo:
        images = write_image_list(split.train_paths + split.val_paths, os.path.join(w, "all_images.txt"))
        run(topazpu("pick", "--model", os.path.join(w, "model.pt"), "-o", every, "--threads", opts.threads, "--no-progress",
                    images), os.path.join(w, "logs", "pick_auto_every_micrograph.log"))
    return read_coordinates(every), res


def topaz_stage(split, files, work, names, opts):
    """Topaz's scored picks on the chosen micrographs, raw frame (bench_quality.run_topaz, cached)."""
    if opts.topaz_picks:
        return read_coordinates(opts.topaz_picks), {"picks_file": os.path.abspath(opts.topaz_picks)}
    w = os.path.join(work, "topaz")
    every = os.path.join(w, "picks_all.txt")
    result = os.path.join(w, "result.json")
    if not os.path.exists(result) or "topaz" in opts.redo:
        if not os.path.exists(bench_quality.TOPAZ):
            raise SystemExit("%s not found: install Topaz 0.3.20 there (benchmarks/README.md), set TOPAZ=path, "
                             "or pass --topaz-picks FILE or --no-topaz" % bench_quality.TOPAZ)
        res = run_topaz(split, files, work, opts)
        with open(result, "w") as f:
            json.dump(res, f, indent=1, default=str)
    with open(result) as f:
        res = json.load(f)
    picks = read_coordinates(every).scaled(split.dataset.scale)
    if opts.micrographs == "all":
        every_mic = os.path.join(w, "picks_all_every_micrograph.txt")
        if not os.path.exists(every_mic) or "topaz" in opts.redo:
            pre = [os.path.join(w, "pre", n + ".mrc") for n in names]
            run([bench_quality.TOPAZ, "extract", "-m", res["model"], "-r", res["extract_radius"], "--threshold=-inf",
                 "-d", "-1", "-j", opts.threads, "-o", every_mic] + pre,
                os.path.join(w, "logs", "extract_every_micrograph.log"))
        picks = read_coordinates(every_mic).scaled(split.dataset.scale)
    return picks, res


def top_n(picks, n):
    """The n highest-scoring picks (stable order for ties)."""
    order = np.argsort(-picks.score, kind="stable")[:n]
    return picks.subset(np.sort(order))


# ----------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--data", help="shared data folder (default: $TOPAZPU_DATA or ../shared/data)")
    p.add_argument("--seed", type=int, default=0, help="split and training seed (default: 0)")
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "topazpu_bench_downstream"),
                   help="work folder, stages cached there (default: %(default)s)")
    p.add_argument("--redo", default="", help="comma-separated stages to run again: %s" % ", ".join(STAGES))
    p.add_argument("--out", help="JSON results (default: WORK/results.json)")
    p.add_argument("--png", help="class averages figure (default: WORK/class_averages.png)")
    p.add_argument("--threads", type=int, default=2, help="threads of both pickers and relion_refine --j (default: 2)")
    p.add_argument("--micrographs", choices=("val", "all"), default="val",
                   help="pick the 4 held-out micrographs (default) or all 13 (training ones included)")
    g = p.add_argument_group("topazpu training (as bench_quality.py)")
    bench_quality.add_train_args(g)
    g = p.add_argument_group("Topaz")
    g.add_argument("--no-topaz", action="store_true", help="leave Topaz out")
    g.add_argument("--topaz-picks", help="Topaz picks made elsewhere (raw frame, scored) instead of training Topaz")
    g.add_argument("--topaz-name", default="topaz",
                   help="name of Topaz's pick set: its folder in WORK/relion and its row (default: topaz)")
    bench_quality.add_topaz_train_args(g)
    g = p.add_argument_group("RELION")
    g.add_argument("--pixel-size", type=float, default=1.75, help="raw pixel size, A (default: 1.75, an estimate)")
    g.add_argument("--box", type=int, default=96, help="extraction box, raw px (default: 96)")
    g.add_argument("--box-scaled", type=int, default=24,
                   help="box after rescaling (default: 24, 7 A/px: a 16 px particle; 48 px takes ~4x longer)")
    g.add_argument("--mask-diameter", type=float, default=140.0, help="relion_refine --particle_diameter, A "
                   "(default: 140, 1.2 x the 65 px particle at 1.75 A/px)")
    g.add_argument("--classes", type=int, default=8, help="K (default: 8)")
    g.add_argument("--iterations", type=int, default=10, help="(default: 10)")
    g.add_argument("--random-seed", type=int, default=0, help="relion_refine --random_seed (default: 0)")
    g.add_argument("--no-label-baseline", action="store_true",
                   help="do not classify the hand labels of the picked micrographs (the criterion's baseline)")
    g.add_argument("--junk-threshold", default="labels",
                   help="a class is good when its correlation with the reference is >= this number; 'labels' "
                        "(default): the lowest correlation among the classes of the hand labels")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 x 10 updates, Topaz 5 updates, 3 iterations")
    p.add_argument("-v", "--verbose", action="store_true", help="log the commands")
    opts = p.parse_args()
    opts.no_timing = False  # bench_quality.run_ours then runs `topazpu pick` at the auto threshold (picks_auto.txt)
    opts.overlays = False  # (a bench_quality option run_ours reads)
    logging.basicConfig(level=logging.INFO if opts.verbose else logging.WARNING, format="%(message)s")
    opts.redo = set(s.strip() for s in opts.redo.split(",") if s.strip())
    if opts.redo - set(STAGES):
        p.error("--redo: unknown stage(s) %s (choose from %s)" % (", ".join(sorted(opts.redo - set(STAGES))),
                                                                   ", ".join(STAGES)))
    if opts.junk_threshold != "labels":
        try:
            float(opts.junk_threshold)
        except ValueError:
            p.error("--junk-threshold: a number or 'labels', not %r" % opts.junk_threshold)
    elif opts.no_label_baseline:
        p.error("--junk-threshold labels (the default) needs the hand-label baseline: give a number with "
                "--no-label-baseline")
    if opts.quick:
        opts.epochs, opts.epoch_size, opts.topaz_epoch_size, opts.iterations = opts.epochs or 2, opts.epoch_size or 10, 5, 3
    for tool in (RELION_PREPROCESS, RELION_REFINE):
        if not shutil.which(tool):
            p.error("%s not found: install RELION 3.1 (Debian: apt-get install relion)" % tool)
    opts.particle_radius = None
    opts.work = os.path.abspath(opts.work)  # the commands run in the repository or in WORK/relion
    os.makedirs(opts.work, exist_ok=True)
    out_path = opts.out or os.path.join(opts.work, "results.json")
    png_path = opts.png or os.path.join(opts.work, "class_averages.png")
    print("bench_downstream: %d CPU(s), load average %.2f, threads %d, seed %d, micrographs %s, work %s%s"
          % (os.cpu_count(), os.getloadavg()[0], opts.threads, opts.seed, opts.micrographs, opts.work,
             ", QUICK smoke-test settings" if opts.quick else ""), flush=True)
    t_start = time.time()

    split = make_split("apoferritin", opts.seed, n_labels=labels_for("apoferritin", opts), root=opts.data)
    d = split.dataset
    opts.particle_radius = d.radius
    files = write_split(split, os.path.join(opts.work, "split"))
    names = split.val_names if opts.micrographs == "val" else sorted(split.train_names + split.val_names)
    all_targets = d.particles(opts.data)
    targets = all_targets.subset(np.isin(all_targets.image_name.astype(str), names))

    ours, ours_res = pick_stage(split, files, opts.work, opts)
    ours = ours.subset(np.isin(ours.image_name.astype(str), names))
    sets = {"topazpu": ours}
    print("topazpu: %d picks at the default threshold (%s) on %d micrographs (%d hand labels there); "
          "AP %.3f on the held-out ones; best epoch %s%s"
          % (len(ours), "%.2f" % ours_res["auto_threshold"] if ours_res.get("auto_threshold") is not None else "auto",
             len(names), len(targets), ours_res.get("ap", float("nan")), ours_res.get("best_epoch"),
             "; training %.0f s" % ours_res["train_seconds"] if "train_seconds" in ours_res else ""), flush=True)
    topaz_res = None
    if not opts.no_topaz:
        tz, topaz_res = topaz_stage(split, files, opts.work, names, opts)
        tz = tz.subset(np.isin(tz.image_name.astype(str), names))
        if not tz.has_scores:
            raise SystemExit("%s: Topaz picks need scores (to keep the top %d)" % (opts.topaz_picks, len(ours)))
        sets[opts.topaz_name] = top_n(tz, len(ours))
        print("%s: top %d of %d Topaz picks on the same micrographs (score >= %.2f)%s"
              % (opts.topaz_name, len(sets[opts.topaz_name]), len(tz),
                 sets[opts.topaz_name].score.min() if len(sets[opts.topaz_name]) else float("nan"),
                 "; AP %.3f on the held-out ones" % topaz_res["ap"] if "ap" in topaz_res else ""), flush=True)

    # RELION: float32 copies of the micrographs in WORK/relion/Micrographs (RELION 3.1 reads the
    # uint16 MRC files of this set, mode 6, as signed int16: values above 32767 wrap), one folder
    # per particle set
    if not opts.no_label_baseline:
        sets["labels"] = targets  # every hand label there: the junk share of true particles
    rdir = os.path.join(opts.work, "relion")
    by_name = {image_name(q): q for q in d.micrographs(opts.data)}
    ref_names = split.train_names
    for n in sorted(set(names) | set(ref_names)):
        copy = os.path.join(rdir, "Micrographs", n + ".mrc")
        if not os.path.exists(copy):
            write_mrc(copy, read_image(by_name[n]), pixel_size=opts.pixel_size)
    mics_star = write_micrographs_star(sorted(set(names) | set(ref_names)), os.path.join(rdir, "micrographs.star"),
                                       opts.pixel_size)
    ref_star = extract("reference", split.train_labels, mics_star, rdir, opts)
    ref_coords, ref_images = read_particles(ref_star)
    reference = rotational_average(read_stack_images(ref_images, rdir).mean(axis=0))
    print("reference: rotational average of the mean of the %d extracted training labels (box %d px -> %d px, "
          "%.2f A/px)"
          % (len(ref_images), opts.box, opts.box_scaled, opts.pixel_size * opts.box / opts.box_scaled), flush=True)

    results = {"settings": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(opts).items()},
               "split": split.summary(), "micrographs": names, "n_hand_labels": len(targets),
               "topazpu_training": ours_res, "topaz_training": topaz_res, "tools": {}}
    tables = {}
    for name, coords in sets.items():
        star = extract(name, coords, mics_star, rdir, opts)
        n_extracted = len(read_particles(star)[0])
        t0 = time.time()
        prefix = classify(name, rdir, opts)
        tables[name] = analyse(prefix, reference, targets, opts)
        tables[name].update(picks=len(coords), extracted=n_extracted, classify_seconds=time.time() - t0,
                            prefix=os.path.relpath(prefix, opts.work))
    if opts.junk_threshold == "labels":
        threshold = baseline_threshold(tables["labels"])
        rule = "the lowest class correlation of the hand labels' own classes"
    else:
        threshold, rule = float(opts.junk_threshold), "--junk-threshold"
    results["junk_threshold"] = {"value": threshold, "rule": rule}
    print("\njunk threshold: correlation %.3f (%s)" % (threshold, rule))
    gallery = []
    for name, table in tables.items():
        summary = judge(table, threshold)
        summary.update({k: table[k] for k in ("picks", "extracted", "classify_seconds", "prefix")}, tool=name)
        results["tools"][name] = summary
        print("\n== %s: %d picks, %d extracted, %d classes after %d iterations (%s)"
              % (name, summary["picks"], summary["extracted"], opts.classes, opts.iterations, summary["prefix"]))
        for c in summary["classes"]:
            print("  class %d: %4d particles, correlation %6.3f -> %s  (%d on a hand label)"
                  % (c["class"], c["particles"], c["correlation"], "good" if c["good"] else "JUNK", c["on_label"]))
        print("  junk share %.1f %% (%d of %d particles), good particles kept %d; on a hand label: %d of the good, "
              "%d of the junk" % (100 * summary["junk_share"], summary["junk_particles"], summary["particles"],
                                  summary["good_particles"], summary["on_label_good"], summary["on_label_junk"]))
        print("  junk share at fixed thresholds: %s" % ", ".join("%s: %.1f %%" % (k, 100 * v)
                                                                 for k, v in summary["by_threshold"].items()),
              flush=True)
        gallery.append((name, [{"image": table["images"][c["class"] - 1], "color": None if not c["particles"] else "green" if c["good"] else "red",
                                "caption": "n=%d r=%.2f" % (c["particles"], c["correlation"])}
                               for c in sorted(summary["classes"], key=lambda c: -c["particles"])]))
    gallery.append(("reference", [{"image": reference, "caption": "%d labels" % len(ref_images)}]))
    from topazpu_core.plots import plot_image_gallery
    plot_image_gallery(gallery, png_path, title="RELION 2D classes (K=%d, %d iterations) of apoferritin picks; "
                       "green: correlation with the reference >= %.3f" % (opts.classes, opts.iterations, threshold))

    tools = results["tools"]
    print("\n== summary (seed %d, %s micrographs, junk threshold %.3f)" % (opts.seed, opts.micrographs, threshold))
    width = max(8, max(len(name) for name in tools))
    print("%-*s %7s %10s %11s %10s %14s %14s" % (width, "tool", "picks", "extracted", "junk share", "good kept",
                                                 "good on label", "junk on label"))
    for name, s in tools.items():
        print("%-*s %7d %10d %10.1f%% %10d %14d %14d" % (width, name, s["picks"], s["extracted"], 100 * s["junk_share"],
                                                       s["good_particles"], s["on_label_good"], s["on_label_junk"]))
    if opts.topaz_name in tools:
        a, b = tools["topazpu"], tools[opts.topaz_name]
        met = (b["junk_share"] - a["junk_share"] >= 0.10) and a["good_particles"] >= b["good_particles"]
        results["target"] = {"junk_share_points_below_topaz": 100 * (b["junk_share"] - a["junk_share"]),
                             "good_particles_vs_topaz": a["good_particles"] - b["good_particles"], "met": met}
        print("target (junk share >= 10 points below Topaz's, at least as many good particles): %s "
              "(%.1f points below, %+d good particles)"
              % ("MET" if met else "NOT MET", 100 * (b["junk_share"] - a["junk_share"]),
                 a["good_particles"] - b["good_particles"]))
    results["wall_seconds"] = time.time() - t_start
    with atomic_write(out_path) as f:
        json.dump(results, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    print("class averages -> %s\nresults -> %s (%.0f s)" % (png_path, out_path, results["wall_seconds"]))


if __name__ == "__main__":
    main()
