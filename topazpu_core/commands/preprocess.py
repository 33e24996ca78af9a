"""Downsample (Fourier, any factor >= 1) and normalise micrographs; write float32 MRC.

Default normalisation is the data-set model of Bepler et al. (2019): one two-component Gaussian
mixture for all micrographs with a per-micrograph scale alpha_k, fitted by EM on a seeded
pixel sample; each micrograph is divided by its scale and standardised to the dominant
component. --method gmm-per-image fits one mixture per micrograph; --affine standardises
each micrograph by its own mean and standard deviation.

Output pixel (i, j) sits at input coordinate (i * SCALE, j * SCALE), so coordinates convert
by dividing by SCALE. Writes OUTDIR/<image_name>.mrc (pixel size x SCALE when the input has
one), OUTDIR/preprocess.json and OUTDIR/preprocess.tsv (fitted parameters per micrograph)
and OUTDIR/run.log. Every file is written atomically.

examples:
  topazpu preprocess -s 2 -o processed/ raw/*.mrc
  topazpu preprocess -s 2.5 --method gmm-per-image -o processed/ raw/
  topazpu preprocess -s 4 --affine -o processed/ micrographs.txt
"""
import json
import logging
import os
import sys

from topazpu_core import __version__
from topazpu_core.atomic import atomic_path, atomic_write
from topazpu_core.errors import TopazPuError
from topazpu_core.images import image_name, list_images, write_mrc
from topazpu_core.normalize import DEFAULT_SAMPLE, METHODS, mixture_from_record, preprocess_images

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("mrc", "tiff")
MIN_SAMPLE = 1000
_FORMAT_EXTENSIONS = {"mrc": ".mrc", "tiff": ".tiff"}


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
        "--method", choices=METHODS, default="gmm",
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


def _flat_row(name, params):
    """One TSV row: image, geometry, then the fitted numbers with list entries numbered."""
    row = {
        "image_name": name,
        "source": params["source"],
        "height": params["shape"][0],
        "width": params["shape"][1],
        "pixel_size": "" if params["pixel_size"] is None else params["pixel_size"],
        "x_center": params["x_center"],
        "x_scale": params["x_scale"],
    }
    for key in ("alpha", "mean", "std"):
        if key in params:
            row[key] = params[key]
    if "weights" in params:
        for c in range(len(params["weights"])):
            row["weight_%d" % c] = params["weights"][c]
            row["mu_%d" % c] = params["mu"][c]
            row["sigma_%d" % c] = params["sigma"][c]
    return row


def _read_reference(path, method):
    """The data-set mixture of the preprocess.json at `path`; a clear error when unusable."""
    if method != "gmm":
        raise TopazPuError("--reference %s: a data-set mixture applies to --method gmm only, not %s"
                           % (path, method))
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise TopazPuError("%s: cannot read the reference preprocess.json (%s)" % (path, e)) from None
    mixture = mixture_from_record(meta) if isinstance(meta, dict) else None
    if mixture is None:
        raise TopazPuError("%s: holds no gmm data-set mixture (a preprocess.json written by "
                           "`topazpu preprocess --method gmm` is needed)" % path)
    return mixture


def _format_value(v):
    if isinstance(v, float):
        return "%.9g" % v
    return str(v)


def _write_image(path, array, pixel_size, fmt):
    if fmt == "mrc":
        write_mrc(path, array, pixel_size=pixel_size)
    else:
        import tifffile
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, array)


def preprocess_to_directory(paths, output, scale=1.0, method="gmm", seed=0,
                            sample=DEFAULT_SAMPLE, fmt="mrc", progress=True, reference=None):
    """Preprocess micrographs into `output`; return the metadata dict written as JSON.

    reference: path of an earlier run's preprocess.json whose "gmm" data-set mixture is used
    (preprocess_images' `reference`)."""
    mixture = _read_reference(reference, method) if reference else None
    if fmt not in OUTPUT_FORMATS:
        raise TopazPuError("unknown output format %r (choose from %s)"
                           % (fmt, ", ".join(OUTPUT_FORMATS)))
    names = {}
    for p in paths:
        names.setdefault(image_name(p), []).append(p)
    clashes = {n: ps for n, ps in names.items() if len(ps) > 1}
    if clashes:
        n, ps = sorted(clashes.items())[0]
        raise TopazPuError("%s: %d micrographs share the image name %r (%s); output names must "
                           "be unique" % (ps[0], len(ps), n, ", ".join(ps[1:3])))
    os.makedirs(output, exist_ok=True)
    ext = _FORMAT_EXTENSIONS[fmt]
    for p in paths:
        target = os.path.join(output, image_name(p) + ext)
        if os.path.exists(target) and os.path.samefile(target, p):
            raise TopazPuError("%s: the output would overwrite this input; choose another "
                               "output directory" % p)
    images = {}
    rows = []
    for array, params in preprocess_images(paths, scale, method=method, seed=seed,
                                           sample=sample, progress=progress, reference=mixture):
        name = params.pop("image_name")
        _write_image(os.path.join(output, name + ext), array, params["pixel_size"], fmt)
        images[name] = params
        rows.append(_flat_row(name, params))
    meta = {
        "scale": scale,
        "method": method,
        "seed": seed,
        "sample": sample,
        "format": fmt,
        "reference": os.path.abspath(reference) if reference else None,
        "version": __version__,
        "images": images,
    }
    with atomic_write(os.path.join(output, "preprocess.json")) as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    columns = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    with atomic_write(os.path.join(output, "preprocess.tsv")) as f:
        f.write("\t".join(columns) + "\n")
        for row in rows:
            f.write("\t".join(_format_value(row.get(c, "")) for c in columns) + "\n")
    return meta


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
        meta = preprocess_to_directory(paths, args.output, scale=args.scale,
                                       method=args.method, seed=args.seed,
                                       sample=args.sample, fmt=args.format, reference=args.reference)
        logger.info("wrote %d micrographs, preprocess.json and preprocess.tsv to %s",
                    len(meta["images"]), args.output)
    finally:
        root.removeHandler(handler)
        handler.close()
    return None
