"""Preprocessing micrograph files: read, Fourier-downsample, normalise, write a folder.

`preprocess_images` streams (array, params) for a list of files (the "gmm" method fits the
data-set mixture first, `fit_dataset`); `preprocess_to_directory` writes what `topazpu
preprocess` writes: OUTDIR/<image_name>.mrc, preprocess.json and preprocess.tsv; and
`read_preprocess_record` is the one reader of a preprocess.json. The mixture itself and the
normalisation of in-memory arrays are in topazpu_core.normalize.
"""
import dataclasses
import json
import logging
import math
import os

import numpy as np

from topazpu_core import __version__
from topazpu_core.atomic import atomic_path, atomic_write
from topazpu_core.downsample import downsample
from topazpu_core.errors import TopazPuError, require_some_readable
from topazpu_core.images import image_name, read_image, read_pixel_size, write_mrc
from topazpu_core.normalize import (DEFAULT_BINS, DEFAULT_SAMPLE, gmm_params, apply_params, check_method,
                                    fit_dataset_gmm, fit_params, fit_scale, mixture_from_record, sample_pixels)
from topazpu_core.options import PREPROCESS_JSON
from topazpu_core.progress import progress_bar

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("mrc", "tiff")
MIN_SAMPLE = 1000
_FORMAT_EXTENSIONS = {"mrc": ".mrc", "tiff": ".tiff"}


def _load(path, scale, workers):
    image = read_image(path)
    if scale != 1:
        image = downsample(image, scale, workers=workers)
    return image


def _describe(path, scale, image):
    pixel = read_pixel_size(path)
    return {
        "image_name": image_name(path),
        "source": os.path.abspath(path),
        "shape": [int(image.shape[0]), int(image.shape[1])],
        "pixel_size": pixel * scale if pixel is not None else None,
    }


@dataclasses.dataclass
class DatasetFit:
    """The data-set mixture of a set of micrograph files (the first pass of "gmm" preprocessing).

    paths: the readable files in order; fit["alpha"][k] is the scale of paths[k]. skipped:
    (path, reason) of the unreadable ones. cache: downsampled images kept from the first pass
    (path -> array; not saved). `to_json`/`from_json` let an interrupted run reuse the fit.
    """
    paths: list
    fit: dict
    skipped: list
    cache: dict = dataclasses.field(default_factory=dict, repr=False)

    def to_json(self):
        fit = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.fit.items()}
        return {"paths": list(self.paths), "fit": fit, "skipped": [list(s) for s in self.skipped]}

    @classmethod
    def from_json(cls, d):
        fit = {k: (np.asarray(v, dtype=np.float64) if isinstance(v, list) else v) for k, v in d["fit"].items()}
        return cls(list(d["paths"]), fit, [tuple(s) for s in d["skipped"]])


def _loader(scale, workers, skipped):
    """-> load(path): the downsampled image, or None (logged, appended to `skipped`) if unreadable.
    With skipped=None an unreadable file raises TopazPuError."""
    def load(path):
        if skipped is None:
            return _load(path, scale, workers)
        try:
            return _load(path, scale, workers)
        except TopazPuError as e:
            logger.warning("skipping %s", e)
            skipped.append((path, str(e)))
            return None
    return load


def _check_scale(scale):
    scale = float(scale)
    if not math.isfinite(scale) or scale < 1:
        raise TopazPuError("downsampling scale must be >= 1, got %g" % scale)
    return scale


def fit_dataset(paths, scale, seed=0, sample=DEFAULT_SAMPLE, bins=DEFAULT_BINS, progress=True,
                cache_bytes=2 ** 29, workers=-1, skip_unreadable=True):
    """First pass of "gmm" preprocessing: read, downsample and sample every file, fit the data-set
    mixture -> DatasetFit (None if no file is readable). Up to `cache_bytes` of downsampled
    images are kept for the second pass. The sample is drawn from np.random.default_rng(seed),
    image by image in the given order."""
    scale = _check_scale(scale)
    skipped = [] if skip_unreadable else None
    load = _loader(scale, workers, skipped)
    rng = np.random.default_rng(seed)
    readable, cache, samples, used = [], {}, [], 0
    for path in progress_bar([os.fspath(p) for p in paths], desc="sample", unit="image", enabled=progress):
        image = load(path)
        if image is None:
            continue
        readable.append(path)
        samples.append(sample_pixels(image, sample, rng))
        if used + image.nbytes <= cache_bytes:
            cache[path] = image
            used += image.nbytes
    if not readable:
        return None
    fit = fit_dataset_gmm(samples, fit_scale=True, bins=bins)
    logger.info("data-set mixture: weights %s, mu %s, sigma %s, %d iterations",
                np.round(fit["weights"], 4).tolist(), np.round(fit["mu"], 4).tolist(),
                np.round(fit["sigma"], 4).tolist(), fit["n_iter"])
    return DatasetFit(readable, fit, skipped or [], cache)


def preprocess_images(paths, scale, method="gmm", seed=0, sample=DEFAULT_SAMPLE,
                      bins=DEFAULT_BINS, progress=True, cache_bytes=2 ** 29, workers=-1, skipped=None,
                      dataset_fit=None, reference=None):
    """Read, Fourier-downsample by `scale` and normalise micrographs; yield (array, params).

    Arrays are float32 of shape (floor(H / scale), floor(W / scale)). params is the
    normalisation dict of normalize_arrays plus image_name, source (absolute path), shape
    [h, w] and pixel_size (input pixel size x scale, or None).

    "gmm" needs every image's sample before it can normalise any image: a first pass
    (`fit_dataset`) reads, downsamples and samples all images, then the fit, then the second
    pass yields. The other methods stream in one pass. `dataset_fit` (a DatasetFit of a larger
    or equal set of files, e.g. saved by an interrupted run) replaces the first pass: only the
    given `paths` are yielded, each normalised exactly as in the run that made the fit.
    `reference` (a mixture: weights, mu, sigma, e.g. mixture_from_record of an earlier run's
    preprocess.json) also replaces the first pass, for any files: "gmm" then streams in one pass,
    fitting only each micrograph's scale under that fixed mixture (fit_scale).

    skipped: None (an unreadable micrograph raises TopazPuError), or a list that receives
    (path, reason) for every micrograph that cannot be read; those are logged and left out, and
    the rest are processed as if they had been given alone. Each file is read once per pass.
    """
    check_method(method)
    scale = _check_scale(scale)
    paths = [os.fspath(p) for p in paths]
    load = _loader(scale, workers, skipped)
    if method != "gmm" or reference is not None:
        rng = np.random.default_rng(seed)
        for path in progress_bar(paths, desc="preprocess", unit="image", enabled=progress):
            image = load(path)
            if image is None:
                continue
            if method == "gmm":
                alpha, n_iter, converged = fit_scale(sample_pixels(image, sample, rng), reference, bins=bins)
                params = gmm_params(method, dict(reference, alpha=[alpha], n_iter=n_iter, converged=converged), 0)
            else:
                samples = None if method == "affine" else [sample_pixels(image, sample, rng)]
                params = fit_params([image], method=method, bins=bins, samples=samples)[0]
            params.update(_describe(path, scale, image))
            yield apply_params(image, params), params
        return
    if dataset_fit is None:
        dataset_fit = fit_dataset(paths, scale, seed=seed, sample=sample, bins=bins, progress=progress,
                                  cache_bytes=cache_bytes, workers=workers, skip_unreadable=skipped is not None)
        if dataset_fit is None:
            return
    index = {p: k for k, p in enumerate(dataset_fit.paths)}
    if skipped is not None:
        skipped += [s for s in dataset_fit.skipped if s not in skipped and s[0] in set(paths)]
    unknown = [p for p in paths if p not in index and p not in {s[0] for s in dataset_fit.skipped}]
    if unknown:
        raise TopazPuError("%s: not among the %d files of the data-set fit" % (unknown[0], len(index)))
    for path in progress_bar([p for p in paths if p in index], desc="normalise", unit="image", enabled=progress):
        image = dataset_fit.cache.pop(path, None)
        if image is None:
            image = _load(path, scale, workers)
        params = gmm_params(method, dataset_fit.fit, index[path])
        params.update(_describe(path, scale, image))
        yield apply_params(image, params), params


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


def _read_reference(path, method):
    """The data-set mixture of an earlier run (its folder or its preprocess.json); a clear error when unusable."""
    if method != "gmm":
        raise TopazPuError("--reference %s: a data-set mixture applies to --method gmm only, not %s"
                           % (path, method))
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if not os.path.isdir(path) and os.path.basename(path) != PREPROCESS_JSON:
        raise TopazPuError("%s: a reference is a preprocess output folder or its %s" % (path, PREPROCESS_JSON))
    record = read_preprocess_record(folder)
    mixture = mixture_from_record(record) if record else None
    if mixture is None:
        raise TopazPuError("%s: holds no gmm data-set mixture (a preprocess.json written by "
                           "`topazpu preprocess --method gmm` is needed)" % path)
    return mixture


def preprocess_to_directory(paths, output, scale=1.0, method="gmm", seed=0,
                            sample=DEFAULT_SAMPLE, fmt="mrc", progress=True, skipped=None, reference=None):
    """Preprocess micrographs into `output`; return the metadata dict written as JSON.

    skipped: None (an unreadable micrograph is an error), or a list that receives (path, reason)
    of each unreadable micrograph, left out (an error if none can be read).
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
                                           sample=sample, progress=progress, skipped=skipped,
                                           reference=mixture):
        name = params.pop("image_name")
        _write_image(os.path.join(output, name + ext), array, params["pixel_size"], fmt)
        images[name] = params
        rows.append(_flat_row(name, params))
    if skipped is not None:
        require_some_readable(paths, images, skipped)
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
    with atomic_write(os.path.join(output, PREPROCESS_JSON)) as f:
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


def read_preprocess_record(folder):
    """The preprocess.json of `folder` as a dict (scale, method, seed, sample, format, version,
    images: {image_name: parameters}), or None when the folder has none."""
    path = os.path.join(folder, PREPROCESS_JSON)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise TopazPuError("%s: not a readable preprocess.json (%s)" % (path, e))
    if not isinstance(record, dict):
        raise TopazPuError("%s: not a preprocess.json written by `topazpu preprocess` (no JSON object)" % path)
    return record
