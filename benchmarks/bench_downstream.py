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
 4. judges each set at the PARTICLE LEVEL, the criterion of the target (particle_share): every
    extracted image is correlated with the reference (the mean of the extracted training labels,
    no alignment, averaged over in-plane rotations: apoferritin is round, and 200 particles
    alone are noisy), both low-pass filtered (Gaussian, sigma 2 raw px), inside a disc of 1.25
    particle radii, the best of shifts up to 4 raw px. Two sets calibrate it: every hand label of
    the picked micrographs (they are labelled in full: a share of 1) and as many random
    background positions at least 2 particle radii from every hand label (a share of 0). A set's
    mean correlation, placed between theirs, is its particle share; junk share = 1 - share,
    clipped to [0, 1], good particles kept = share x particles. A bootstrap gives its 90 %
    interval, and a known-answer check (calibrated on random halves of the hand labels and the
    background, judged on a mixture of the other halves) shows what it reads for 0, 30 and 50 %
    junk. A set whose share is above 1 is on average more particle-like than the hand labels
    (better centred, or the clearer particles): it could hide a little junk behind them, which the
    per-class shares below would show;
 5. 2D-classifies each set (and the hand labels mixed with --mixture-junk background, a known
    answer) without CTF correction once per RELION seed (`relion_refine`, --classes 8,
    --iterations 10, mask --mask-diameter, --random-seeds 0,1,2, --j --threads, no MPI) and
    judges the classes too: a class is good when the correlation of its average with the
    reference (the same filter and disc, maximised over in-plane rotations every 10 degrees
    and shifts) is at least the lowest among the classes RELION makes of the hand labels
    themselves (--junk-threshold X: at least X). That class-level verdict is printed per RELION
    seed, with each class's particle share (its members' mean correlation, placed as above);
    it is not the criterion of the target: RELION forms one large mixed class in most sets, and
    whether it falls above or below the threshold flips the verdict from one seed to the next;
 6. draws the class averages of the first RELION seed (good: green frame, junk: red; particle
    count, correlation and particle share above each) and the histograms of the particle
    correlations per set as PNGs, and writes the numbers as JSON.

Every stage is cached in --work (default $TMPDIR/topazpu_bench_downstream): training and picking
are skipped when their picks exist, extraction when its particles STAR exists for the same
picks (WORK/relion/SET/picks.sha1), classification when its last iteration exists
(WORK/relion/SET/class2d_rsSEED); --redo STAGE[,STAGE] (train, topaz, extract, classify) or a
new --work runs them again. Needs Debian's relion package (3.1.3; apt-get install relion) and, for
the Topaz side, Topaz 0.3.20 at .venv-topaz/bin/topaz in the repository (or $TOPAZ).

    python benchmarks/bench_downstream.py [--seed 0] [--threads 2] [--micrographs val|all]
        [--no-topaz | --topaz-picks FILE] [--random-seeds 0,1,2] [--mixture-junk 0.3] [--quick]

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
from topazpu_core.images import image_name, image_shape, read_image, write_mrc  # noqa: E402
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


def _comparison(caller, images, reference, radius, sigma):
    """Checked (n, B, B) images, the comparison disc and the low-pass filtered reference inside it."""
    images = np.asarray(images, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if images.ndim != 3 or images.shape[1:] != reference.shape or reference.shape[0] != reference.shape[1]:
        raise ValueError("%s: images %s and reference %s must be (n, B, B) and (B, B)"
                         % (caller, images.shape, reference.shape))
    mask = disc_mask(reference.shape[0], radius)
    return images, mask, ndi.gaussian_filter(reference, sigma)[mask]


def class_correlations(classes, reference, radius, angle_step=10.0, max_shift=2, sigma=1.0):
    """Best correlation of each class average with the reference average -> (K,) float array.

    classes: (K, B, B) images; reference: (B, B); radius: of the comparison disc, px. Both are
    low-pass filtered (Gaussian, `sigma` px); the Pearson correlation over the disc is maximised
    over in-plane rotations of the class (every `angle_step` degrees) and integer shifts up to
    `max_shift` px in x and y. A constant image correlates 0. Sign matters: an inverted
    particle correlates negatively.
    """
    classes, mask, ref = _comparison("class_correlations", classes, reference, radius, sigma)
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


def particle_correlations(images, reference, radius, sigma=1.0, max_shift=1):
    """Each particle image's correlation with a round reference -> (n,) float array.

    images: (n, B, B); reference: (B, B), rotationally symmetric (rotational_average), so that no
    rotation search is needed. Both are low-pass filtered (Gaussian, `sigma` px); the Pearson
    correlation over the disc of `radius` px is maximised over integer shifts of the particle up
    to `max_shift` px in x and y (as class_correlations does for class averages).
    """
    images, mask, ref = _comparison("particle_correlations", images, reference, radius, sigma)
    ref = (ref - ref.mean()) / (ref.std() or 1.0)
    smooth = ndi.gaussian_filter(images, (0, sigma, sigma))
    best = np.full(len(images), -1.0)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            a = np.roll(smooth, (dy, dx), axis=(1, 2))[:, mask]
            a = a - a.mean(axis=1, keepdims=True)
            sd = a.std(axis=1)
            corr = np.where(sd > 0, (a @ ref) / (len(ref) * np.where(sd > 0, sd, 1.0)), 0.0)
            best = np.maximum(best, corr)
    return best


def particle_share(scores, particle_scores, background_scores):
    """How much of a set is made of particles, from the mean of its particle correlations.

    Model: each extracted image is either like the hand-labelled particles (mean correlation
    mean(particle_scores)) or like the empty background (mean(background_scores)); the set's mean
    then lies between the two in proportion to its particle share:
        share = (mean(scores) - mean(background)) / (mean(particles) - mean(background)).
    1 = as particle-like as the hand labels, 0 = as the background; neither end is clipped (better
    centred picks than the hand labels' read above 1).
    """
    lo, hi = float(np.mean(background_scores)), float(np.mean(particle_scores))
    if not hi > lo:
        raise ValueError("particle_share: the particles' mean correlation %.3f is not above the background's %.3f"
                         % (hi, lo))
    return (float(np.mean(scores)) - lo) / (hi - lo)


def share_interval(scores, particle_scores, background_scores, rng, n=2000, level=0.9):
    """Bootstrap interval (`level`) of particle_share: the set, the particles and the background resampled."""
    scores, particle_scores, background_scores = (np.asarray(a, dtype=np.float64)
                                                  for a in (scores, particle_scores, background_scores))

    def means(a):
        return a[rng.integers(0, len(a), size=(n, len(a)))].mean(axis=1)

    s, p, b = means(scores), means(particle_scores), means(background_scores)
    shares = (s - b) / np.where(p > b, p - b, np.nan)
    q = (1 - level) / 2
    return tuple(float(v) for v in np.nanquantile(shares, [q, 1 - q]))


def known_answer_check(particle_scores, background_scores, junk, rng, repeats=200):
    """Does particle_share read a known junk share back? Each repeat splits the particles and the
    background in random halves, calibrates on the first halves and judges a mixture of the whole
    second half of the particles with a share `junk` (0 <= junk < 1) of background from the second
    half of the background -> (true junk share, mean and standard deviation of the junk share read)."""
    if not 0 <= junk < 1:
        raise ValueError("known_answer_check: junk share %r is not in [0, 1)" % junk)
    particle_scores = np.asarray(particle_scores, dtype=np.float64)
    background_scores = np.asarray(background_scores, dtype=np.float64)
    half_p, half_b = len(particle_scores) // 2, len(background_scores) // 2
    n_junk = min(len(background_scores) - half_b, int(round(junk / (1 - junk) * (len(particle_scores) - half_p))))
    read = []
    for _ in range(repeats):
        p = rng.permutation(particle_scores)
        b = rng.permutation(background_scores)
        mixture = np.concatenate([p[half_p:], b[half_b:half_b + n_junk]])
        read.append(1 - particle_share(mixture, p[:half_p], b[:half_b]))
    return n_junk / (len(particle_scores) - half_p + n_junk), float(np.mean(read)), float(np.std(read))


def background_positions(targets, shapes, distance, margin, per_micrograph, rng):
    """Random positions on each micrograph at least `distance` px from every hand label and
    `margin` px from the edges -> Coordinates (the junk end of particle_share).

    targets: Coordinates of the hand labels (the micrographs must be labelled in full);
    shapes: {micrograph name: (height, width)}; per_micrograph: {name: count}.
    """
    names, xs, ys = [], [], []
    groups = targets.by_image()
    for name, (height, width) in sorted(shapes.items()):
        labels = groups[name].xy if name in groups else np.zeros((0, 2))
        want, tries = per_micrograph.get(name, 0), 0
        kept = 0
        while kept < want:
            tries += 1
            if tries > 1000 * max(want, 1):
                raise SystemExit("%s: found only %d of %d background positions %g px from every hand label"
                                 % (name, kept, want, distance))
            x, y = rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)
            if len(labels) and np.hypot(labels[:, 0] - x, labels[:, 1] - y).min() < distance:
                continue
            names.append(name)
            xs.append(x)
            ys.append(y)
            kept += 1
    return Coordinates.from_arrays(names, xs, ys)


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


def classify(name, rdir, opts, random_seed):
    """relion_refine 2D classification of a set's particles with one random seed -> output prefix of
    the last iteration (cached in WORK/relion/SET/class2d_rsSEED)."""
    cdir = os.path.join(rdir, name, "class2d_rs%d" % random_seed)
    last = last_iteration(os.path.join(cdir, "run"), opts.iterations)
    if os.path.exists(last + "_model.star") and "classify" not in opts.redo:
        return last
    fresh_dir(cdir)
    run([RELION_REFINE, "--i", name + "/particles.star", "--o", os.path.relpath(cdir, rdir) + "/run", "--iter", opts.iterations,
         "--K", opts.classes, "--tau2_fudge", 2, "--particle_diameter", opts.mask_diameter, "--flatten_solvent",
         "--zero_mask", "--oversampling", 1, "--psi_step", 12, "--offset_range", 5, "--offset_step", 2,
         "--norm", "--scale", "--dont_combine_weights_via_disc", "--pool", 3, "--pad", 2,
         "--random_seed", random_seed, "--j", opts.threads], os.path.join(cdir, "refine.log"), cwd=rdir)
    if not os.path.exists(last + "_model.star"):
        raise SystemExit("relion_refine wrote no %s_model.star (log %s)" % (last, os.path.join(cdir, "refine.log")))
    return last


def analyse(prefix, reference, targets, opts):
    """Class averages, particles per class, each class's correlation with the reference, and which
    particles lie within the assignment radius of a hand label -> dict."""
    import mrcfile
    with mrcfile.open(prefix + "_classes.mrcs", permissive=True) as m:
        classes = np.asarray(m.data, dtype=np.float32)
    t, (mic, x, y, cls, img) = star_table(prefix + "_data.star", "particles",
                                          ["MicrographName", "CoordinateX", "CoordinateY", "ClassNumber", "ImageName"])
    class_of = np.array([int(r[cls]) for r in t.rows])
    corr = class_correlations(classes, reference, **comparison_settings(opts))
    parts = Coordinates.from_arrays([image_name(r[mic]) for r in t.rows], [float(r[x]) for r in t.rows],
                                    [float(r[y]) for r in t.rows])
    on_label = np.zeros(len(parts), dtype=bool)
    groups = targets.by_image()
    for mic_name, idx in parts.indices_by_image().items():
        if mic_name in groups:
            on_label[idx] = match_picks(parts.xy[idx], groups[mic_name].xy, opts.particle_radius)
    return {"images": classes, "class_of": class_of, "counts": np.bincount(class_of - 1, minlength=len(classes)),
            "correlation": corr, "on_label": on_label, "image_names": [r[img] for r in t.rows]}


def comparison_settings(opts):
    """The disc radius, low-pass sigma and largest shift (px of the particle images) with which
    class averages and particle images are compared with the reference: 1.25 particle radii,
    2 raw px, 4 raw px."""
    per = opts.box / opts.box_scaled  # raw px per px of the particle images
    return dict(radius=1.25 * opts.particle_radius / per, sigma=2.0 / per, max_shift=max(1, int(round(4.0 / per))))


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
    p.add_argument("--png", help="class averages figure (default: WORK/class_averages.png; the histogram of "
                   "the particle correlations, particle_correlations.png, goes beside it)")
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
    g.add_argument("--random-seeds", default="0,1,2",
                   help="relion_refine --random_seed of each classification, comma-separated: every set is "
                        "classified once per seed (default: %(default)s)")
    g.add_argument("--mixture-junk", type=float, default=0.3,
                   help="also judge the hand labels mixed with this share of background positions, a known answer "
                        "for both criteria (default: %(default)s; 0: leave out)")
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
    try:
        opts.random_seeds = [int(s) for s in opts.random_seeds.split(",") if s.strip()]
    except ValueError:
        p.error("--random-seeds: comma-separated integers, not %r" % opts.random_seeds)
    if not opts.random_seeds:
        p.error("--random-seeds: at least one seed")
    if not 0 <= opts.mixture_junk < 1:
        p.error("--mixture-junk: a share in [0, 1), not %g" % opts.mixture_junk)
    if opts.quick:
        opts.epochs, opts.epoch_size, opts.topaz_epoch_size, opts.iterations = opts.epochs or 2, opts.epoch_size or 10, 5, 3
        opts.random_seeds = opts.random_seeds[:1]
    for tool in (RELION_PREPROCESS, RELION_REFINE):
        if not shutil.which(tool):
            p.error("%s not found: install RELION 3.1 (Debian: apt-get install relion)" % tool)
    opts.particle_radius = None
    opts.work = os.path.abspath(opts.work)  # the commands run in the repository or in WORK/relion
    os.makedirs(opts.work, exist_ok=True)
    out_path = opts.out or os.path.join(opts.work, "results.json")
    png_path = opts.png or os.path.join(opts.work, "class_averages.png")
    scores_png = os.path.join(os.path.dirname(png_path), "particle_correlations.png")
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

    # the particle end and the junk end of the particle-level criterion, and a known mixture of both
    sets["labels"] = targets  # every hand label there (the micrographs are labelled in full)
    rdir = os.path.join(opts.work, "relion")
    by_name = {image_name(q): q for q in d.micrographs(opts.data)}
    ref_names = split.train_names
    shapes = {}
    # RELION reads float32 copies in WORK/relion/Micrographs (RELION 3.1 reads the uint16 MRC files
    # of this set, mode 6, as signed int16: values above 32767 wrap), one folder per particle set
    for n in sorted(set(names) | set(ref_names)):
        copy = os.path.join(rdir, "Micrographs", n + ".mrc")
        if not os.path.exists(copy):
            write_mrc(copy, read_image(by_name[n]), pixel_size=opts.pixel_size)
        if n in names:
            shapes[n] = image_shape(copy)
    label_counts = {n: len(c) for n, c in targets.by_image().items()}
    background = background_positions(targets, shapes, distance=2 * d.radius, margin=opts.box / 2,
                                      per_micrograph=label_counts, rng=np.random.default_rng(opts.seed))
    sets["background"] = background
    if opts.mixture_junk > 0:
        n_junk = int(round(opts.mixture_junk / (1 - opts.mixture_junk) * len(targets)))
        sets["mixture"] = Coordinates.concat([targets, background.subset(np.arange(min(n_junk, len(background))))])
    mics_star = write_micrographs_star(sorted(set(names) | set(ref_names)), os.path.join(rdir, "micrographs.star"),
                                       opts.pixel_size)
    ref_star = extract("reference", split.train_labels, mics_star, rdir, opts)
    ref_coords, ref_images = read_particles(ref_star)
    reference = rotational_average(read_stack_images(ref_images, rdir).mean(axis=0))
    print("reference: rotational average of the mean of the %d extracted training labels (box %d px -> %d px, "
          "%.2f A/px)"
          % (len(ref_images), opts.box, opts.box_scaled, opts.pixel_size * opts.box / opts.box_scaled), flush=True)
    compare = comparison_settings(opts)

    results = {"settings": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(opts).items()},
               "split": split.summary(), "micrographs": names, "n_hand_labels": len(targets),
               "topazpu_training": ours_res, "topaz_training": topaz_res}

    # particle level: each extracted image's correlation with the reference
    scores, extracted = {}, {}
    for name, coords in sets.items():
        star = extract(name, coords, mics_star, rdir, opts)
        _, images = read_particles(star)
        extracted[name] = len(images)
        scores[name] = dict(zip(images, particle_correlations(read_stack_images(images, rdir), reference, **compare)))
    values = {name: np.array(list(s.values())) for name, s in scores.items()}
    lab, bg = values["labels"], values["background"]
    rng = np.random.default_rng(opts.seed)
    particle = {}
    print("\n== particle level: each extracted image's correlation with the reference (disc %.1f px, low-pass "
          "sigma %.1f px, shifts up to %d px), its set's mean placed between the hand labels' (%.3f, share 1) and "
          "the background's (%.3f, share 0)" % (compare["radius"], compare["sigma"], compare["max_shift"],
                                                lab.mean(), bg.mean()))
    print("%-12s %7s %10s %10s %20s %11s %10s" % ("set", "picks", "extracted", "mean corr", "particle share (90 %)",
                                                "junk share", "good kept"))
    for name in sets:
        share = particle_share(values[name], lab, bg)
        lo, hi = share_interval(values[name], lab, bg, rng)
        kept = min(1.0, max(0.0, share))
        particle[name] = {"picks": len(sets[name]), "extracted": extracted[name], "mean_correlation": float(values[name].mean()),
                          "particle_share": share, "particle_share_90": [lo, hi], "junk_share": 1 - kept,
                          "good_particles": int(round(kept * extracted[name]))}
        print("%-12s %7d %10d %10.3f %8.2f (%.2f-%.2f) %10.1f%% %10d"
              % (name, len(sets[name]), extracted[name], values[name].mean(), share, lo, hi, 100 * (1 - kept),
                 particle[name]["good_particles"]))
    checks = [known_answer_check(lab, bg, j, rng) for j in (0.0, 0.3, 0.6)]
    print("known-answer check (calibrated on random halves of the hand labels and the background, judged on the "
          "other halves mixed): true junk share -> read %s"
          % ", ".join("%.0f %% -> %.1f +- %.1f %%" % (100 * a, 100 * m, 100 * s) for a, m, s in checks))
    results["particle_level"] = {"sets": particle, "compare": compare,
                                 "known_answer": [{"junk_share": a, "read_mean": m, "read_sd": s} for a, m, s in checks]}
    from topazpu_core.plots import plot_histograms
    plot_histograms([(name, values[name]) for name in sets], scores_png,
                    xlabel="correlation of each extracted image with the reference",
                    title="apoferritin, seed %d: %s" % (opts.seed, ", ".join(
                        "%s %.0f %% junk" % (n, 100 * particle[n]["junk_share"]) for n in sets if n != "background")))

    # class level: RELION 2D classes, good or junk by their average's correlation, per RELION seed
    classified = [name for name in sets if name != "background"]
    per_seed = {}
    for rs in opts.random_seeds:
        tables = {}
        for name in classified:
            t0 = time.time()
            prefix = classify(name, rdir, opts, rs)
            tables[name] = analyse(prefix, reference, targets, opts)
            tables[name].update(classify_seconds=time.time() - t0, prefix=os.path.relpath(prefix, opts.work))
            members = [scores[name][ref] for ref in tables[name]["image_names"]]
            tables[name]["purity"] = [particle_share(np.array(members)[tables[name]["class_of"] == k + 1], lab, bg)
                                      if np.any(tables[name]["class_of"] == k + 1) else float("nan")
                                      for k in range(len(tables[name]["counts"]))]
        if opts.junk_threshold == "labels":
            threshold, rule = baseline_threshold(tables["labels"]), "the lowest class correlation of the hand labels' classes"
        else:
            threshold, rule = float(opts.junk_threshold), "--junk-threshold"
        print("\n== class level, RELION seed %d: junk threshold %.3f (%s)" % (rs, threshold, rule))
        per_seed[rs] = {"threshold": threshold, "rule": rule, "sets": {}}
        for name, table in tables.items():
            summary = judge(table, threshold)
            summary.update({k: table[k] for k in ("classify_seconds", "prefix")}, tool=name)
            for c in summary["classes"]:
                c["particle_share"] = table["purity"][c["class"] - 1]
            per_seed[rs]["sets"][name] = summary
            print("  %-10s junk %5.1f %%, good kept %4d; classes (particles: correlation / particle share): %s"
                  % (name, 100 * summary["junk_share"], summary["good_particles"],
                     " ".join("%d:%.2f/%.2f%s" % (c["particles"], c["correlation"], c["particle_share"],
                                                  "" if c["good"] else "J")
                              for c in sorted(summary["classes"], key=lambda c: -c["particles"]) if c["particles"])),
                  flush=True)
        if rs == opts.random_seeds[0]:
            gallery = []
            for name in classified:
                summary = per_seed[rs]["sets"][name]
                gallery.append((name, [{"image": tables[name]["images"][c["class"] - 1],
                                        "color": None if not c["particles"] else "green" if c["good"] else "red",
                                        "caption": "n=%d r=%.2f p=%.2f" % (c["particles"], c["correlation"],
                                                                           c["particle_share"])}
                                       for c in sorted(summary["classes"], key=lambda c: -c["particles"])]))
            gallery.append(("reference", [{"image": reference, "caption": "%d labels" % len(ref_images)}]))
            from topazpu_core.plots import plot_image_gallery
            plot_image_gallery(gallery, png_path, title="RELION 2D classes (K=%d, %d iterations, seed %d) of apoferritin "
                               "picks; green: correlation r with the reference >= %.3f; p: particle share of the class's "
                               "members" % (opts.classes, opts.iterations, rs, threshold))
    results["class_level"] = {str(rs): v for rs, v in per_seed.items()}

    # summary and the target
    print("\n== summary (seed %d, %s micrographs, RELION seeds %s)" % (opts.seed, opts.micrographs,
                                                                       ",".join(map(str, opts.random_seeds))))
    print("%-12s %7s | %-27s | %-38s" % ("set", "picks", "particle level: junk, good kept",
                                        "class level: junk mean (range), good mean"))
    for name in classified:
        junk = [per_seed[rs]["sets"][name]["junk_share"] for rs in opts.random_seeds]
        good = [per_seed[rs]["sets"][name]["good_particles"] for rs in opts.random_seeds]
        print("%-12s %7d | %10.1f %% %10d      | %6.1f %% (%.1f-%.1f %%) %8.0f"
              % (name, len(sets[name]), 100 * particle[name]["junk_share"], particle[name]["good_particles"],
                 100 * np.mean(junk), 100 * min(junk), 100 * max(junk), np.mean(good)))
    if "mixture" in sets:
        print("(mixture: the hand labels with %.0f %% background added, a known answer for both criteria)"
              % (100 * (len(sets["mixture"]) - len(targets)) / len(sets["mixture"])))
    if opts.topaz_name in sets:
        a, b = particle["topazpu"], particle[opts.topaz_name]
        met = (b["junk_share"] - a["junk_share"] >= 0.10) and a["good_particles"] >= b["good_particles"]
        by_seed = [(per_seed[rs]["sets"][opts.topaz_name]["junk_share"] - per_seed[rs]["sets"]["topazpu"]["junk_share"] >= 0.10)
                   and per_seed[rs]["sets"]["topazpu"]["good_particles"] >= per_seed[rs]["sets"][opts.topaz_name]["good_particles"]
                   for rs in opts.random_seeds]
        results["target"] = {"criterion": "particle level", "junk_share_points_below_topaz": 100 * (b["junk_share"] - a["junk_share"]),
                             "good_particles_vs_topaz": a["good_particles"] - b["good_particles"], "met": met,
                             "class_level_met_in_seeds": int(sum(by_seed)), "relion_seeds": len(by_seed)}
        print("target (junk share >= 10 points below Topaz's, at least as many good particles), particle level: %s "
              "(%.1f points below, %+d good particles); class level: met in %d of %d RELION seeds"
              % ("MET" if met else "NOT MET", 100 * (b["junk_share"] - a["junk_share"]),
                 a["good_particles"] - b["good_particles"], sum(by_seed), len(by_seed)))
    results["wall_seconds"] = time.time() - t_start
    with atomic_write(out_path) as f:
        json.dump(results, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    print("class averages -> %s\nparticle correlations -> %s\nresults -> %s (%.0f s)"
          % (png_path, scores_png, out_path, results["wall_seconds"]))


if __name__ == "__main__":
    main()
