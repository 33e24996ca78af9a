"""The one coordinate table used everywhere: image name, x, y and an optional score per particle.

Convention: x is the column, y the row of the micrograph array (``array[y, x]``), origin at the
first pixel, in pixels, as floats. Rounding happens only where a consumer needs integers.
"""
import os
from dataclasses import dataclass

import numpy as np

# Extensions removed from micrograph names found inside coordinate files (STAR MicrographName,
# cryoSPARC paths, CSV name columns). Only these are removed: "May08_03.05.02.bin2" keeps its dots.
IMAGE_NAME_EXTENSIONS = (".mrc", ".mrcs", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".eer", ".st")

# Suffixes picking programs append to a micrograph name to name its coordinate file
# (RELION `<mic>_autopick.star`, `<mic>_manualpick.star`, EMAN2 `<mic>_info.json`).
PICK_FILE_SUFFIXES = ("_autopick", "_manualpick", "_manual_pick", "_topazpicks", "_picks", "_info")


def micrograph_name(path_or_name):
    """Image name of a micrograph reference: the base name, minus a known image extension.

    "MotionCorr/job002/May08_03.05.02.bin2.mrc" -> "May08_03.05.02.bin2"; "a/b.bin2" -> "b.bin2".
    """
    base = os.path.basename(str(path_or_name).replace("\\", "/").rstrip("/"))
    stem, ext = os.path.splitext(base)
    if ext.lower() in IMAGE_NAME_EXTENSIONS and stem:
        return stem
    return base


def strip_pick_suffix(stem):
    """Remove one known picking-file suffix ("mic_autopick" -> "mic")."""
    for suffix in PICK_FILE_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def name_from_coordinate_file(path, extension):
    """Image name implied by a per-micrograph coordinate file: its stem without picker suffixes."""
    base = os.path.basename(os.fspath(path))
    if base.lower().endswith(extension.lower()):
        base = base[: -len(extension)]
    return strip_pick_suffix(base)


def format_float(value, digits=6):
    """Short text for a coordinate: rounded to `digits` decimals, no exponent, trailing ".0" kept."""
    value = round(float(value), digits)
    if value == 0:
        value = 0.0  # no "-0.0"
    return repr(value)


def format_score(value):
    """Text for a score: 8 significant digits ("nan" for a missing score)."""
    return "%.8g" % float(value)


def format_number(value, digits=6):
    """Like format_float, but integral values are written as integers (for .box files)."""
    value = round(float(value), digits)
    if value == int(value):
        return str(int(value))
    return repr(value)


def _as_names(values):
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        arr[i] = v.decode() if isinstance(v, bytes) else str(v)
    return arr


@dataclass(eq=False)
class Coordinates:
    """Particle coordinates of any number of micrographs, one row per particle.

    image_name: object array of str; x, y: float64 pixels (x = column, y = row);
    score: float64, NaN where a particle has no score.
    """

    image_name: np.ndarray
    x: np.ndarray
    y: np.ndarray
    score: np.ndarray

    def __post_init__(self):
        if not (isinstance(self.image_name, np.ndarray) and self.image_name.dtype == object):
            self.image_name = _as_names(list(self.image_name))
        self.x = np.asarray(self.x, dtype=np.float64).reshape(-1)
        self.y = np.asarray(self.y, dtype=np.float64).reshape(-1)
        self.score = np.asarray(self.score, dtype=np.float64).reshape(-1)
        n = len(self.image_name)
        if not (len(self.x) == len(self.y) == len(self.score) == n):
            raise ValueError(
                "Coordinates columns differ in length: image_name %d, x %d, y %d, score %d"
                % (n, len(self.x), len(self.y), len(self.score))
            )

    @classmethod
    def empty(cls):
        return cls(np.empty(0, dtype=object), np.empty(0), np.empty(0), np.empty(0))

    @classmethod
    def from_arrays(cls, image_name, x, y, score=None):
        """Build from sequences; `image_name` may be one string for all rows; score None -> NaN."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if isinstance(image_name, (str, bytes)):
            names = _as_names([image_name] * len(x))
        else:
            names = _as_names(list(image_name))
        if score is None:
            score = np.full(len(x), np.nan)
        return cls(names, x, y, score)

    @classmethod
    def concat(cls, parts):
        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.image_name for p in parts]).astype(object),
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.y for p in parts]),
            np.concatenate([p.score for p in parts]),
        )

    def __len__(self):
        return len(self.x)

    def __repr__(self):
        return "Coordinates(%d particles, %d images%s)" % (
            len(self), len(self.image_names()), ", scored" if self.has_scores else "")

    def subset(self, mask_or_index):
        """Rows selected by a boolean mask or an index array (a copy)."""
        sel = np.asarray(mask_or_index)
        if sel.dtype != bool:
            sel = sel.astype(np.intp)
        return Coordinates(self.image_name[sel].copy(), self.x[sel].copy(), self.y[sel].copy(),
                           self.score[sel].copy())

    def scaled(self, factor):
        """Coordinates multiplied by `factor` (e.g. 1/4 after downsampling by 4)."""
        return Coordinates(self.image_name.copy(), self.x * factor, self.y * factor, self.score.copy())

    def image_names(self):
        """Sorted unique image names."""
        return sorted(set(self.image_name.tolist()))

    def by_image(self):
        """dict image name -> Coordinates of that image (sorted names, row order kept)."""
        return {name: self.subset(idx) for name, idx in self.indices_by_image().items()}

    def indices_by_image(self):
        """dict image name -> row indices (ascending) of that image, names sorted."""
        if len(self) == 0:
            return {}
        names, inverse = np.unique(self.image_name.astype(str), return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(names) + 1))
        return {str(n): order[bounds[i]:bounds[i + 1]] for i, n in enumerate(names)}

    @property
    def has_scores(self):
        """True when any particle has a finite score."""
        return bool(np.isfinite(self.score).any())

    @property
    def xy(self):
        """(N, 2) float array of (x, y)."""
        return np.stack([self.x, self.y], axis=1)


