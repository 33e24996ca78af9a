"""Downsample (Fourier, any factor >= 1) and normalise micrographs; write float32 MRC.

Default normalisation is the data-set model of Bepler et al. (2019): one two-component Gaussian
mixture for all micrographs with a per-micrograph scale alpha_k, fitted by EM on a seeded
pixel sample; each micrograph is divided by its scale and standardised to the dominant
component. --method gmm-per-image fits one mixture per micrograph; --affine standardises
each micrograph by its own mean and standard deviation.

Output pixel (i, j) sits at input coordinate (i * SCALE, j * SCALE), so coordinates convert
by dividing by SCALE. Writes OUTDIR/<image_name>.mrc (pixel size x SCALE when the input has
one), OUTDIR/preprocess.json and OUTDIR/preprocess.tsv (fitted parameters per micrograph)
and OUTDIR/run.log. Every file is written atomically. An unreadable micrograph is skipped,
named on a "skipped: <path>: <reason>" line and in run.log, and the others are written (the
gmm fit is made without it); the exit status is then 3.

examples:
  topazpu preprocess -s 2 -o processed/ raw/*.mrc
  topazpu preprocess -s 2.5 --method gmm-per-image -o processed/ raw/
  topazpu preprocess -s 4 --affine -o processed/ micrographs.txt
"""
import logging
import os
import sys

from topazpu_core import __version__
from topazpu_core.errors import TopazPuError, report_skipped
from topazpu_core.images import list_images
from topazpu_core.normalize import DEFAULT_SAMPLE
from topazpu_core.options import NORMALIZATIONS
from topazpu_core.preprocessing import MIN_SAMPLE, OUTPUT_FORMATS, preprocess_to_directory

logger = logging.getLogger(__name__)


def add_args(parser):
    parser.add_argument(
        "micrographs", nargs="+", metavar="MIC",
        help="micrographs (.mrc, .mrcs, .tif, .tiff, .png, .jpg, .jpeg): files, directories, "
             "glob patterns, or text files listing one path per line relative to the list "
             "file; @FILE reads arguments from FILE (default: none, required)")
    parser.add_argument(
        "-s", "--scale", type=float, default=1.0,
        help="downsampling factor in input pixels per output pixel, >= 1, fractional allowed "
             "(default: 1, no downsampling)")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUTDIR",
        help="output directory, created when missing (default: none, required)")
    norm = parser.add_argument_group("normalisation")
    norm.add_argument(
        "--method", choices=NORMALIZATIONS, default="gmm",
        help="gmm: one data-set mixture with per-micrograph scale; gmm-per-image: one "
             "mixture per micrograph; affine: (x - mean) / std (default: gmm)")
    norm.add_argument(
        "--affine", dest="method", action="store_const", const="affine",
        help="same as --method affine (default: off)")
    norm.add_argument(
        "--seed", type=int, default=0,
        help="seed of the random pixel sample for the mixture fit (default: 0)")
    norm.add_argument(
        "--reference", metavar="JSON",
        help="gmm: normalise with the data-set mixture of an earlier run (its preprocess.json) "
             "instead of fitting one to these micrographs; only each micrograph's scale is "
             "fitted, so micrographs arriving later are normalised like the first ones "
             "(default: none, fit the mixture here)")
    norm.add_argument(
        "--sample", type=int, default=DEFAULT_SAMPLE, metavar="N",
        help="pixels sampled per micrograph for the mixture fit, 0 = all, else >= 1000 "
             "(unlike Topaz's fraction 1/N; default: %d pixels)" % DEFAULT_SAMPLE)
    parser.add_argument(
        "--format", choices=OUTPUT_FORMATS, default="mrc",
        help="output image format, float32 either way (default: mrc)")


def main(args):
    if not args.scale >= 1:
        raise TopazPuError("-s/--scale must be >= 1, got %g" % args.scale)
    if args.sample < 0 or 0 < args.sample < MIN_SAMPLE:
        raise TopazPuError("--sample is a number of pixels per micrograph: 0 (all) or at least "
                           "%d, got %d (Topaz's --sample N meant 1/N of the pixels)"
                           % (MIN_SAMPLE, args.sample))
    paths = list_images(args.micrographs)
    os.makedirs(args.output, exist_ok=True)
    root = logging.getLogger("topazpu_core")
    handler = logging.FileHandler(os.path.join(args.output, "run.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    try:
        logger.info("topazpu %s: %s", __version__, " ".join(sys.argv))
        logger.info("arguments: %s", {k: v for k, v in vars(args).items()
                                      if not k.startswith("_")})
        logger.info("preprocessing %d micrographs: scale %g, method %s, seed %d",
                    len(paths), args.scale, args.method, args.seed)
        if args.reference:
            logger.info("data-set mixture from %s: only each micrograph's scale is fitted", args.reference)
        skipped = []
        meta = preprocess_to_directory(paths, args.output, scale=args.scale,
                                       method=args.method, seed=args.seed, sample=args.sample,
                                       fmt=args.format, skipped=skipped, reference=args.reference)
        logger.info("wrote %d micrographs, preprocess.json and preprocess.tsv to %s%s",
                    len(meta["images"]), args.output,
                    "; skipped %d unreadable" % len(skipped) if skipped else "")
    except TopazPuError as e:  # into run.log too; the command line prints it on stderr
        handler.handle(logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "error: %s", (e,), None))
        raise
    finally:
        root.removeHandler(handler)
        handler.close()
    return report_skipped(skipped, len(paths))
