"""Benchmark: preprocess (read + Fourier downsample x2 + normalise) per 1240x1200 micrograph.

Runs on the 13 EMPIAR-10146 micrographs of the shared data folder (../shared/data from the
repository root, or $TOPAZPU_DATA; or a folder given as the first argument) and prints seconds
per micrograph (median over runs), per stage, the total, and the speed-up over Topaz's 1.4 s
per micrograph (`topaz preprocess -s 2`, 2 cores). With Topaz at .venv-topaz/bin/topaz in the
repository (or $TOPAZ) it also times `topaz preprocess -s 2 -d -1` on the same files.

    python benchmarks/bench_preprocess.py [MICROGRAPH_DIR] [--runs 5] [--method gmm]
"""
import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from splits import TOPAZ, data_root  # noqa: E402
from topazpu_core.preprocessing import preprocess_images, preprocess_to_directory  # noqa: E402
from topazpu_core.downsample import downsample  # noqa: E402
from topazpu_core.images import read_image  # noqa: E402
from topazpu_core.normalize import DEFAULT_SAMPLE, apply_params, fit_params, sample_pixels  # noqa: E402

DEFAULT_DIR = os.path.join(data_root(), "empiar10146-apoferritin", "micrographs")
TOPAZ_SECONDS = 1.4  # measured: topaz preprocess -s 2, per 1240x1200 micrograph, 2 cores


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=DEFAULT_DIR,
                        help="micrograph folder (default: %s)" % DEFAULT_DIR)
    parser.add_argument("--runs", type=int, default=5, help="timed runs (default: 5)")
    parser.add_argument("--method", default="gmm", help="normalisation (default: gmm)")
    parser.add_argument("--scale", type=float, default=2.0, help="downsampling (default: 2)")
    parser.add_argument("--no-topaz", action="store_true", help="skip timing Topaz")
    parser.add_argument("--topaz-files", type=int, default=0,
                        help="time Topaz on the first N files only, 0 = all (default: 0)")
    args = parser.parse_args()

    paths = sorted(glob.glob(os.path.join(args.folder, "*.mrc")))
    if not paths:
        sys.exit("no .mrc files in %s" % args.folder)
    n = len(paths)
    shape = read_image(paths[0]).shape
    print("%d micrographs of %dx%d (w x h) from %s; scale %g, method %s, %d CPU(s), "
          "load average %.2f" % (n, shape[1], shape[0], args.folder, args.scale, args.method,
                                 os.cpu_count(), os.getloadavg()[0]))

    # warm-up (imports, FFT plans, page cache)
    list(preprocess_images(paths[:2], args.scale, method=args.method, progress=False))

    per_image, stages = [], {"read": [], "downsample": [], "sample+fit": [], "apply": []}
    for _ in range(args.runs):
        dt, _ = timed(lambda: list(preprocess_images(paths, args.scale, method=args.method,
                                                     progress=False)))
        per_image.append(dt / n)
        # the same work split by stage
        t_read, images = timed(lambda: [read_image(p) for p in paths])
        t_down, small = timed(lambda: [downsample(a, args.scale, workers=-1) for a in images])

        def fit():
            rng = np.random.default_rng(0)
            samples = [sample_pixels(a, DEFAULT_SAMPLE, rng) for a in small]
            return fit_params(small, method=args.method, samples=samples)
        t_fit, params = timed(fit)
        t_apply, _ = timed(lambda: [apply_params(a, p) for a, p in zip(small, params)])
        for k, t in zip(stages, (t_read, t_down, t_fit, t_apply)):
            stages[k].append(t / n)

    with tempfile.TemporaryDirectory() as out:
        t_cmd, _ = timed(lambda: preprocess_to_directory(paths, out, scale=args.scale,
                                                         method=args.method, progress=False))

    med = statistics.median(per_image)
    print("topazpu preprocess (read + downsample + normalise), median of %d runs:" % args.runs)
    print("  %.4f s per micrograph  (min %.4f, max %.4f)" % (med, min(per_image),
                                                           max(per_image)))
    for k, v in stages.items():
        print("    %-11s %.4f s per micrograph" % (k, statistics.median(v)))
    print("  total %.3f s for %d micrographs" % (med * n, n))
    print("  with MRC + JSON + TSV output: %.4f s per micrograph (%.3f s total)"
          % (t_cmd / n, t_cmd))
    print("  speed-up vs Topaz's measured %.1f s per micrograph: %.1fx"
          % (TOPAZ_SECONDS, TOPAZ_SECONDS / med))

    if not args.no_topaz and os.path.exists(TOPAZ):
        topaz_paths = paths[: args.topaz_files] if args.topaz_files > 0 else paths
        m = len(topaz_paths)
        # default environment, then one OpenMP thread (faster for Topaz's small torch
        # reductions on 2 cores; see the Topaz notes)
        for label, env in (("default threads", None),
                           ("OMP_NUM_THREADS=1", dict(os.environ, OMP_NUM_THREADS="1"))):
            out = tempfile.mkdtemp()
            try:
                cmd = [TOPAZ, "preprocess", "-s", str(int(args.scale)), "-d", "-1", "-o",
                       out] + topaz_paths
                dt, proc = timed(lambda: subprocess.run(cmd, capture_output=True, text=True,
                                                        env=env))
                if proc.returncode != 0:
                    print("topaz preprocess failed (%d): %s"
                          % (proc.returncode, proc.stderr.strip()[-500:]))
                    continue
                print("topaz preprocess -s %d -d -1, %s, %d micrographs (this machine, "
                      "process start included): %.3f s per micrograph (%.2f s total); "
                      "topazpu is %.1fx faster"
                      % (int(args.scale), label, m, dt / m, dt, (dt / m) / med))
            finally:
                shutil.rmtree(out, ignore_errors=True)
    elif not args.no_topaz:
        print("(%s not found: Topaz not timed here)" % TOPAZ)


if __name__ == "__main__":
    main()
