"""Benchmark: memory and throughput at full micrograph size, and training memory versus data-set size.

Real data sets hold thousands of 4096x4096 to 5760x4092 micrographs. This script builds such
micrographs from the real apoferritin ones (EMPIAR-10146, 1240x1200) by tiling them (each tile
maybe flipped) and adding Gaussian noise; particle coordinates are carried over exactly and
written beside the images (particles.txt, Topaz TSV). Then, on --threads torch threads:

  1. peak memory of `topazpu pick` (preprocess + score + NMS in one process) on one 5760x4092
     micrograph with a model trained at scale 4 (the usual downsampling) and at scale 1 (no
     downsampling: the whole 23.6-Mpx micrograph is scored, in 1024-px tiles), and of the two-step
     route `topazpu preprocess -s 4` then `topazpu extract`. Target: < 2 GB.
     Memory is the peak resident set of the engine subprocess (ru_maxrss from wait4), plus the
     peak of its anonymous (heap) part sampled from /proc/PID/status.
  2. micrographs per minute for `topazpu pick` on all generated micrographs (wall clock, start-up
     included), and the share of time in each stage measured in-process on the same files:
     read, downsample, normalise (pixel sample + data-set mixture fit + apply), score, NMS.
  3. training memory versus the number of micrographs N: --train-counts sets of 620x600
     micrographs (crops of the real ones plus noise), `topazpu train` for a fixed number of
     updates, peak anonymous and file-backed memory. Training memory-maps float32 MRC files
     (images.open_image_lazy), so the heap must not grow with N; with --eager the same runs are
     repeated with every image read into memory, for comparison.

    .venv/bin/python benchmarks/bench_scale.py                   # everything (~15 min on 2 cores)
    .venv/bin/python benchmarks/bench_scale.py --quick           # smoke test (~3 min)
    .venv/bin/python benchmarks/bench_scale.py --work /tmp/scale --keep --skip-train
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from splits import data_root  # noqa: E402
from topazpu_core.coordinates import Coordinates, read_coordinates, write_coordinates  # noqa: E402
from topazpu_core.images import image_name, read_image, write_mrc  # noqa: E402
from topazpu_core.options import model_nms_radius_px  # noqa: E402

DATA = data_root()
SOURCE = "empiar10146-apoferritin"
RADIUS = 32  # apoferritin particle radius, raw px
SIZES = {"k3": (4092, 5760), "square": (4096, 4096)}  # (height, width)
GB = 1024 ** 3


# ----------------------------------------------------------------------------------------------
# data generation
# ----------------------------------------------------------------------------------------------

def load_sources(data):
    """The labelled real micrographs (float32 arrays) and their particles, by image name."""
    folder = os.path.join(data, SOURCE)
    coords = read_coordinates(os.path.join(folder, "particles.tsv")).by_image()
    sources = {}
    for path in sorted(glob.glob(os.path.join(folder, "micrographs", "*.mrc"))):
        name = image_name(path)
        if name in coords:  # the unlabelled micrograph would leave particles without labels
            sources[name] = (read_image(path), coords[name])
    if not sources:
        sys.exit("no labelled micrographs in %s" % folder)
    return sources


def tiled_micrograph(sources, shape, rng, noise=0.25):
    """A (H, W) float32 micrograph tiled from random source micrographs (each maybe flipped),
    plus Gaussian noise of `noise` x the source standard deviation; -> (image, x, y)."""
    H, W = shape
    names = sorted(sources)
    th, tw = sources[names[0]][0].shape
    out = np.empty((H, W), np.float32)
    xs, ys = [], []
    for top in range(0, H, th):
        for left in range(0, W, tw):
            image, c = sources[names[rng.integers(len(names))]]
            x, y = c.x.copy(), c.y.copy()
            if rng.integers(2):
                image, x = image[:, ::-1], (image.shape[1] - 1) - x
            if rng.integers(2):
                image, y = image[::-1], (image.shape[0] - 1) - y
            h, w = min(th, H - top), min(tw, W - left)
            out[top:top + h, left:left + w] = image[:h, :w]
            keep = (x < w) & (y < h)  # particles whose centre lies in the part of the tile used
            xs.append(x[keep] + left)
            ys.append(y[keep] + top)
    sigma = float(np.std(out[:th, :tw]))
    out += rng.standard_normal((H, W), dtype=np.float32) * np.float32(noise * sigma)
    return out, np.concatenate(xs), np.concatenate(ys)


def cropped_micrograph(sources, shape, rng, noise=0.25):
    """A (h, w) crop of a random source micrograph plus noise; -> (image, x, y)."""
    names = sorted(sources)
    image, c = sources[names[rng.integers(len(names))]]
    h, w = shape
    top, left = int(rng.integers(0, image.shape[0] - h + 1)), int(rng.integers(0, image.shape[1] - w + 1))
    crop = image[top:top + h, left:left + w].astype(np.float32)
    keep = (c.x >= left) & (c.x < left + w) & (c.y >= top) & (c.y < top + h)
    crop += rng.standard_normal((h, w), dtype=np.float32) * np.float32(noise * float(np.std(crop)))
    return crop, c.x[keep] - left, c.y[keep] - top


def check_exact(image, x, y, sources, n=25):
    """The generated particles sit where the source particles do: each generated 33x33 patch
    around a particle correlates > 0.9 with some source patch around a particle."""
    patches = []
    for src, c in sources.values():
        for xi, yi in zip(c.x[:20], c.y[:20]):
            xi, yi = int(round(xi)), int(round(yi))
            if 16 <= yi < src.shape[0] - 16 and 16 <= xi < src.shape[1] - 16:
                p = src[yi - 16:yi + 17, xi - 16:xi + 17]
                patches += [p, p[:, ::-1], p[::-1], p[::-1, ::-1]]
    bank = np.stack([(p - p.mean()) / p.std() for p in patches]).reshape(len(patches), -1)
    checked = 0
    for xi, yi in zip(x, y):
        xi, yi = int(round(xi)), int(round(yi))
        if not (16 <= yi < image.shape[0] - 16 and 16 <= xi < image.shape[1] - 16):
            continue
        p = image[yi - 16:yi + 17, xi - 16:xi + 17]
        r = bank @ ((p - p.mean()) / p.std()).reshape(-1) / p.size
        if r.max() > 0.9:
            checked += 1
        if checked >= n:
            return True
    return checked > 0


def generate(folder, sources, specs, seed, small=False):
    """Write micrographs for [(name, shape)] and particles.txt into `folder`; -> paths."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths, parts = [], []
    for name, shape in specs:
        make = cropped_micrograph if small else tiled_micrograph
        image, x, y = make(sources, shape, rng)
        path = os.path.join(folder, name + ".mrc")
        write_mrc(path, image)
        paths.append(path)
        parts.append(Coordinates.from_arrays(np.full(len(x), name, dtype=object), x, y))
    write_coordinates(Coordinates.concat(parts), os.path.join(folder, "particles.txt"))
    return paths


# ----------------------------------------------------------------------------------------------
# measuring a subprocess
# ----------------------------------------------------------------------------------------------

def _status_kb(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def measure(argv, python_code=None, log=None):
    """Run the engine (or `python -c CODE ARGV`), sampling its memory every 20 ms.

    -> dict wall_s, peak_rss_gb (ru_maxrss), peak_anon_gb, peak_file_gb (sampled), returncode.
    """
    cmd = [sys.executable] + (["-c", python_code] if python_code else ["-m", "topazpu_core"]) + [str(a) for a in argv]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    out = open(log, "w") if log else subprocess.DEVNULL
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    peaks = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            s = _status_kb(p.pid)
            for k in peaks:
                peaks[k] = max(peaks[k], s.get(k, 0))
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    t.join()
    if log:
        out.close()
    wall = time.perf_counter() - t0
    result = {"wall_s": wall, "peak_rss_gb": usage.ru_maxrss * 1024 / GB, "peak_anon_gb": peaks["RssAnon"] * 1024 / GB,
              "peak_file_gb": peaks["RssFile"] * 1024 / GB, "returncode": p.returncode}
    if p.returncode != 0:
        tail = open(log).read()[-2000:] if log else ""
        raise SystemExit("failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), tail))
    return result


def fmt_mem(r):
    return "peak RSS %.2f GB (heap %.2f GB, file-backed %.2f GB), %.1f s" % (
        r["peak_rss_gb"], r["peak_anon_gb"], r["peak_file_gb"], r["wall_s"])


# ----------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------

def train_models(work, data, threads):
    """A small resnet8 trained at scale 4 on the real apoferritin micrographs, and the same
    weights declared at scale 1 (for scoring a full-size micrograph without downsampling)."""
    import torch  # noqa: F401

    from topazpu_core.checkpoint import load_model, save_model

    model4 = os.path.join(work, "model_s4.pt")
    if not os.path.exists(model4):
        folder = os.path.join(data, SOURCE)
        pre = os.path.join(work, "real_pre4")
        measure(["preprocess", "-s", 4, "-o", pre, os.path.join(folder, "micrographs")],
                log=os.path.join(work, "real_pre4.log"))
        targets = os.path.join(work, "real_targets_s4.txt")
        write_coordinates(read_coordinates(os.path.join(folder, "particles.tsv")).scaled(0.25), targets)
        measure(["train", "--train-images", pre, "--train-targets", targets, "-n", 160, "--particle-radius", RADIUS / 4,
                 "--epochs", 2, "--epoch-size", 20, "--threads", threads, "--no-progress", "-o", model4],
                log=os.path.join(work, "train_s4.log"))
    model1 = os.path.join(work, "model_s1.pt")
    model, meta = load_model(model4)
    s = float(meta["scale"])
    save_model(model1, model, dict(meta, scale=1.0, particle_radius=meta["particle_radius"] * s,
                                   nms_radius=model_nms_radius_px(meta, "raw"), edge_margin=meta["edge_margin"] * s))
    return model4, model1


def memory_section(work, big, model4, model1, threads):
    k3 = [p for p in big if "k3" in os.path.basename(p)][0]
    print("\n== 1. peak memory on one 5760x4092 micrograph (%s, %.0f MB float32), %d threads; target < 2 GB"
          % (os.path.basename(k3), os.path.getsize(k3) / 1e6, threads))
    rows = {}
    rows["pick, model at scale 4"] = measure(
        ["pick", "--model", model4, "--threads", threads, "--no-progress", "-o", os.path.join(work, "mem_pick4.txt"),
         k3],
        log=os.path.join(work, "mem_pick4.log"))
    rows["preprocess -s 4"] = measure(
        ["preprocess", "-s", 4, "-o", os.path.join(work, "mem_pre4"), k3], log=os.path.join(work, "mem_pre4.log"))
    pre = os.path.join(work, "mem_pre4", image_name(k3) + ".mrc")
    rows["extract (scale 4, 1440x1023)"] = measure(
        ["extract", "--model", model4, "--threads", threads, "--no-progress", "-o", os.path.join(work, "mem_ext4.txt"),
         pre],
        log=os.path.join(work, "mem_ext4.log"))
    if model1:
        rows["pick, model at scale 1 (5760x4092 scored)"] = measure(
            ["pick", "--model", model1, "--threads", threads, "--no-progress", "-o",
             os.path.join(work, "mem_pick1.txt"), k3],
            log=os.path.join(work, "mem_pick1.log"))
    for k, r in rows.items():
        print("  %-44s %s%s" % (k, fmt_mem(r), "" if r["peak_rss_gb"] < 2 else "   ** over 2 GB **"))
    return rows


def throughput_section(work, big, model4, threads):
    import torch

    from topazpu_core.checkpoint import load_model
    from topazpu_core.downsample import downsample
    from topazpu_core.models import score_map
    from topazpu_core.nms import non_maximum_suppression
    from topazpu_core.normalize import DEFAULT_SAMPLE, apply_params, fit_params, sample_pixels
    from topazpu_core.picking import PickOptions

    n = len(big)
    print("\n== 2. throughput of preprocess + pick on %d micrographs (%s), %d threads"
          % (n, ", ".join(sorted({"%dx%d" % read_shape(p)[::-1] for p in big})), threads))
    runs = {}
    for orientations in (PickOptions.orientations, 1):
        r = measure(["pick", "--model", model4, "--threads", threads, "--no-progress", "--orientations", orientations,
                     "-o", os.path.join(work, "tp_picks%d.txt" % orientations)] + big,
                    log=os.path.join(work, "tp_pick%d.log" % orientations))
        runs[orientations] = r
        print("  topazpu pick --orientations %d (one process, start-up included): %.1f s = %.2f micrographs per "
              "minute; %s" % (orientations, r["wall_s"], 60 * n / r["wall_s"], fmt_mem(r)), flush=True)

    torch.set_num_threads(threads)
    model, meta = load_model(model4)
    scale = float(meta["scale"])
    radius = model_nms_radius_px(meta, "preprocessed")  # as `pick` suppresses with this model
    times = {k: 0.0 for k in ("read", "downsample", "normalise", "score", "NMS")}
    images, samples = [], []
    rng = np.random.default_rng(0)
    for p in big:
        t = time.perf_counter()
        image = read_image(p)
        times["read"] += time.perf_counter() - t
        t = time.perf_counter()
        small = downsample(image, scale, workers=threads)
        times["downsample"] += time.perf_counter() - t
        t = time.perf_counter()
        samples.append(sample_pixels(small, DEFAULT_SAMPLE, rng))
        times["normalise"] += time.perf_counter() - t
        images.append(small)
    t = time.perf_counter()
    params = fit_params(images, method="gmm", samples=samples)
    for k, (image, prm) in enumerate(zip(images, params)):
        images[k] = apply_params(image, prm)
    times["normalise"] += time.perf_counter() - t
    n_picks = 0
    for image in images:
        t = time.perf_counter()
        scores = score_map(model, image, orientations=PickOptions.orientations)
        times["score"] += time.perf_counter() - t
        t = time.perf_counter()
        ys, _, _ = non_maximum_suppression(scores, radius, threshold=float(meta.get("threshold", 0.0)),
                                           edge_margin=int(np.ceil(float(meta.get("edge_margin", 0)))))
        times["NMS"] += time.perf_counter() - t
        n_picks += len(ys)
    total = sum(times.values())
    print("  stages in-process (scale %g, %d orientations, %d picks): %.1f s = %.2f micrographs per minute, "
          "%.2f s per micrograph" % (scale, PickOptions.orientations, n_picks, total, 60 * n / total, total / n))
    for k, v in times.items():
        print("    %-11s %6.2f s per micrograph  %5.1f %%" % (k, v / n, 100 * v / total))
    print("  (the command's extra time over the stages: process start-up, the data-set fit's first pass that "
          "reads every micrograph once more, writing picks)")
    return {"pick": runs[PickOptions.orientations], "pick_by_orientations": runs,
            "stages_s_per_mic": {k: v / n for k, v in times.items()}, "n": n}


def read_shape(path):
    from topazpu_core.images import image_shape
    return image_shape(path)


EAGER = ("import sys, topazpu_core.images as i; i.open_image_lazy = i.read_image; "
         "from topazpu_core.cli import main; sys.argv[0] = 'topazpu'; main(sys.argv[1:])")


def training_section(work, sources, counts, threads, eager, seed):
    n_max = max(counts)
    folder = os.path.join(work, "train_%d" % n_max)
    if not os.path.exists(os.path.join(folder, "particles.txt")):
        t = time.perf_counter()
        generate(folder, sources, [("mic%05d" % i, (600, 620)) for i in range(n_max)], seed + 1, small=True)
        print("\n(generated %d micrographs of 620x600 in %.0f s, %.1f GB)"
              % (n_max, time.perf_counter() - t, n_max * 620 * 600 * 4 / GB))
    all_targets = read_coordinates(os.path.join(folder, "particles.txt"))
    print("\n== 3. training memory versus the number of micrographs (620x600 float32, %.1f MB each; "
          "1 epoch of 20 updates, resnet8, no validation, %d threads)" % (620 * 600 * 4 / 1e6, threads))
    rows = []
    for mode in (["memory-mapped"] + (["read into memory"] if eager else [])):
        for n in counts:
            lst = os.path.join(work, "train_list_%d.txt" % n)
            with open(lst, "w") as f:
                f.write("\n".join(os.path.join(folder, "mic%05d.mrc" % i) for i in range(n)) + "\n")
            targets = os.path.join(work, "train_targets_%d.txt" % n)
            names = {"mic%05d" % i for i in range(n)}
            write_coordinates(all_targets.subset(np.array([m in names for m in all_targets.image_name], bool)), targets)
            argv = ["train", "--train-images", lst, "--train-targets", targets, "-n", 80, "--particle-radius", RADIUS,
                    "--epochs", 1, "--epoch-size", 20, "--val-fraction", 0, "--threads", threads, "--no-progress",
                    "-o", os.path.join(work, "train_model_%d.pt" % n)]
            r = measure(argv, python_code=EAGER if mode != "memory-mapped" else None,
                        log=os.path.join(work, "train_%d_%s.log" % (n, mode[:4])))
            r.update(n=n, mode=mode, data_gb=n * 620 * 600 * 4 / GB)
            rows.append(r)
            print("  %-17s N = %5d (%.2f GB of images): %s" % (mode, n, r["data_gb"], fmt_mem(r)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA, help="the shared data folder (default: %s)" % DATA)
    parser.add_argument("--work", help="work folder (default: a temporary one, removed unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--n-big", type=int, default=4, help="micrographs of each full size (default: 4)")
    parser.add_argument("--train-counts", default="50,500,2000",
                        help="numbers of training micrographs, comma-separated (default: 50,500,2000)")
    parser.add_argument("--eager", action="store_true",
                        help="also train with every image read into memory (the old behaviour), for comparison")
    parser.add_argument("--skip-train", action="store_true", help="skip section 3")
    parser.add_argument("--skip-scale1", action="store_true", help="skip the full-resolution pick of section 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 micrograph per size, 20/100 training")
    args = parser.parse_args()
    if args.quick:
        args.n_big, args.train_counts = 1, "20,100"
    counts = [int(c) for c in args.train_counts.split(",") if c]

    work = args.work or tempfile.mkdtemp(prefix="topazpu-scale-")
    os.makedirs(work, exist_ok=True)
    print("work folder %s; %d CPU(s), load average %.2f; torch threads %d"
          % (work, os.cpu_count(), os.getloadavg()[0], args.threads))
    try:
        sources = load_sources(args.data)
        big_dir = os.path.join(work, "big")
        specs = [("%s_%02d" % (kind, i), shape) for kind, shape in SIZES.items() for i in range(args.n_big)]
        if not os.path.exists(os.path.join(big_dir, "particles.txt")):
            t = time.perf_counter()
            big = generate(big_dir, sources, specs, args.seed)
            print("generated %d full-size micrographs in %.0f s: %s (particles.txt beside, %d particles)"
                  % (len(big), time.perf_counter() - t, ", ".join("%s %dx%d" % (n, s[1], s[0]) for n, s in specs),
                     len(read_coordinates(os.path.join(big_dir, "particles.txt")))))
        big = [os.path.join(big_dir, n + ".mrc") for n, _ in specs]
        coords = read_coordinates(os.path.join(big_dir, "particles.txt")).by_image()
        name = image_name(big[0])
        ok = check_exact(read_image(big[0]), coords[name].x, coords[name].y, sources)
        print("coordinates carried over exactly (particle patches match source particles): %s" % ok)

        model4, model1 = train_models(work, args.data, args.threads)
        results = {}
        results["memory"] = memory_section(work, big, model4, None if args.skip_scale1 else model1, args.threads)
        results["throughput"] = throughput_section(work, big, model4, args.threads)
        if not args.skip_train:
            results["training"] = training_section(work, sources, counts, args.threads, args.eager, args.seed)
        with open(os.path.join(work, "bench_scale.json"), "w") as f:
            json.dump(results, f, indent=1)
        print("\nresults: %s" % os.path.join(work, "bench_scale.json"))
    finally:
        if not args.work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
