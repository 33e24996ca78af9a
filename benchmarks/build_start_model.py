"""Build the starting model that `topazpu train --start-model auto` bundles.

    .venv/bin/python benchmarks/build_start_model.py [--work DIR] [--threads 2]

Trains resnet8 (32 units) on every labelled micrograph of the three data sets of ../shared/data
(apoferritin EMPIAR-10146, 12 labelled micrographs, 1,953 labels; beta-galactosidase EMPIAR-10017,
10 micrographs, 6,202 labels; ribosome EMPIAR-10028, 5 micrographs, 413 labels), each preprocessed
at the scale bench_quality.py uses for it (particles 13-17 px across), with the recipe of the
leave-one-protein-out models that measured it (`bench_quality.start_model_without`: the CLI's
defaults, seed 0), and writes it to topazpu_core/data/start_model/ (model.pt, model.json)
atomically. About 7 minutes with one thread; the trained model is cached in --work.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_quality import ROOT, start_model_without  # noqa: E402
from splits import data_root  # noqa: E402
from topazpu_core.checkpoint import load_model, save_model  # noqa: E402

TARGET = os.path.join(ROOT, "topazpu_core", "data", "start_model")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "topazpu_build_start_model"),
                   help="work folder (default: %(default)s)")
    p.add_argument("--data", help="shared data folder (default: $TOPAZPU_DATA or ../shared/data)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    opts = p.parse_args()
    opts.data = data_root(opts.data)
    opts.arch = opts.epochs = opts.epoch_size = None
    trained = start_model_without(None, opts)
    model, meta = load_model(trained)
    meta = {k: v for k, v in meta.items() if k not in ("version", "format_version")}
    meta.update(built_by="benchmarks/build_start_model.py",
                trained_on="every labelled micrograph of ../shared/data: apoferritin (EMPIAR-10146, 13 micrographs, "
                           "1,953 labels), beta-galactosidase (EMPIAR-10017, 10, 6,202), ribosome (EMPIAR-10028, 5, 413)")
    save_model(os.path.join(TARGET, "model.pt"), model, meta)  # atomic, with model.json beside it
    print("wrote %s (%d bytes) and model.json" % (os.path.join(TARGET, "model.pt"),
                                                 os.path.getsize(os.path.join(TARGET, "model.pt"))))

if __name__ == "__main__":
    main()
