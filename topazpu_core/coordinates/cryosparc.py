"""cryoSPARC `.cs` files: a numpy structured array saved with `np.save`.

Fields used: `location/micrograph_path` (image name = its base name minus a known image
extension; cryoSPARC's numeric upload prefix, if any, is kept here and handled by
`match_image_names`), `location/micrograph_shape` = (height, width) in pixels,
`location/center_x_frac`, `location/center_y_frac` in [0, 1), optional `pick_stats/ncc_score`
as the score. As in cryoSPARC and cryosparc-tools: x = center_x_frac * width,
y = center_y_frac * height, in the array coordinates of the micrograph (row = y, no flip).

Files are loaded with `allow_pickle=False` only (a .cs holding Python objects is refused).
`image_shapes` (image name -> (height, width)) replaces a missing or zero micrograph_shape on
reading, and is required for writing. Writing uses cryoSPARC's dtypes (float32 fractions,
uint32 shapes, bytes paths `<image_name>.mrc`) and deterministic uids derived from the names.
"""
import hashlib

import numpy as np

from topazpu_core.atomic import atomic_write
from topazpu_core.coordinates._files import require_file
from topazpu_core.coordinates.star import star_micrograph_name
from topazpu_core.coordinates.table import Coordinates, micrograph_name
from topazpu_core.errors import TopazPuError

X, Y = "location/center_x_frac", "location/center_y_frac"
PATH, SHAPE, SCORE = "location/micrograph_path", "location/micrograph_shape", "pick_stats/ncc_score"


def _load(path):
    require_file(path)
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise TopazPuError("%s: not a cryoSPARC .cs file (no numpy array header; cryoSPARC's "
                           "compressed dataset format is not read: export plain .cs)" % path)
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise TopazPuError("%s: the .cs array holds Python objects, which are not loaded "
                               "(allow_pickle=False); re-save it with plain string fields" % path) from None
        raise TopazPuError("%s: not a cryoSPARC .cs file (numpy structured array): %s" % (path, e)) from None
    except MemoryError:
        raise TopazPuError("%s: damaged .cs file (its header announces more data than fits in memory)" % path) from None
    except Exception as e:  # a damaged numpy header makes np.load raise many types (TokenError, SyntaxError...)
        raise TopazPuError("%s: not a cryoSPARC .cs file (numpy structured array): %s"
                           % (path, str(e).splitlines()[0][:160] if str(e) else type(e).__name__)) from None
    if data.dtype.names is None or data.ndim != 1:
        raise TopazPuError("%s: not a cryoSPARC .cs file (expected a 1-D structured array)" % path)
    return data


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_cs(path, image_shapes=None):
    data = _load(path)
    missing = [f for f in (X, Y, PATH) if f not in data.dtype.names]
    if missing:
        raise TopazPuError("%s: .cs file lacks field %s (has: %s)"
                           % (path, ", ".join(missing), ", ".join(data.dtype.names[:10])))
    _check_field(data, path, PATH, "SU", ())
    for field in (X, Y, SCORE):
        _check_field(data, path, field, "fiub", ())
    _check_field(data, path, SHAPE, "iu", (2,))
    names = np.array([micrograph_name(_text(p)) for p in data[PATH]], dtype=object)
    n = len(data)
    if SHAPE in data.dtype.names:
        shapes = np.asarray(data[SHAPE], dtype=np.float64).reshape(n, 2)
    else:
        shapes = np.zeros((n, 2))
    unknown = ~(shapes > 0).all(axis=1)
    if unknown.any():
        image_shapes = image_shapes or {}
        lacking = sorted({nm for nm in names[unknown] if nm not in image_shapes})
        if lacking:
            raise TopazPuError("%s: no micrograph_shape for %d micrograph(s) (%s); give the images "
                               "(--image-dir) so their shapes are known" % (path, len(lacking), ", ".join(lacking[:5])))
        for i in np.flatnonzero(unknown):
            shapes[i] = image_shapes[names[i]]
    fx = np.asarray(data[X], dtype=np.float64)
    fy = np.asarray(data[Y], dtype=np.float64)
    bad = ~(np.isfinite(fx) & np.isfinite(fy))
    if bad.any():
        raise TopazPuError("%s: row %d: non-finite center fraction" % (path, int(np.flatnonzero(bad)[0])))
    score = np.asarray(data[SCORE], dtype=np.float64) if SCORE in data.dtype.names else None
    x, y = fx * shapes[:, 1], fy * shapes[:, 0]
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        raise TopazPuError("%s: row %d: coordinate overflows (center fraction x micrograph shape)"
                           % (path, int(np.flatnonzero(bad)[0])))
    return Coordinates.from_arrays(names, x, y, score)


def _check_field(data, path, field, kinds, shape):
    """A present field must have a dtype of one of `kinds` (numpy kind letters) and this shape."""
    if field not in data.dtype.names:
        return
    dt = data.dtype.fields[field][0]
    base, sub = (dt.base, dt.shape) if dt.subdtype else (dt, ())
    if base.kind not in kinds or tuple(sub) != shape:
        raise TopazPuError("%s: .cs field %s has type %s%s, expected %s" % (
            path, field, base.str, "x".join(map(str, sub)) and " of shape %s" % (sub,) or "",
            {"SU": "a string", "fiub": "a number", "iu": "two integers (height, width)"}[kinds]))


def _uid(*parts):
    digest = hashlib.blake2b("\x00".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # below 2**63, as cryoSPARC's uids


def write_cs(coords, path, box_size=None, image_shapes=None):
    names = coords.image_names()
    image_shapes = image_shapes or {}
    lacking = [nm for nm in names if nm not in image_shapes]
    if lacking:
        raise TopazPuError("%s: writing .cs needs each micrograph's shape; unknown for %d (%s); "
                           "give the images (--image-dir)" % (path, len(lacking), ", ".join(lacking[:5])))
    paths = [star_micrograph_name(nm).encode() for nm in coords.image_name]
    width = max([len(p) for p in paths] + [1])
    fields = [("uid", "<u8"), ("location/micrograph_uid", "<u8"), ("location/exp_group_id", "<u4"),
              (PATH, "S%d" % width), (SHAPE, "<u4", (2,)), (X, "<f4"), (Y, "<f4")]
    if coords.has_scores:
        fields.append((SCORE, "<f4"))
    data = np.zeros(len(coords), dtype=fields)
    shapes = np.array([image_shapes[nm] for nm in coords.image_name], dtype=np.float64).reshape(-1, 2)
    data["uid"] = [_uid(nm, i, x, y) for i, (nm, x, y) in enumerate(zip(coords.image_name, coords.x, coords.y))]
    data["location/micrograph_uid"] = [_uid(nm) for nm in coords.image_name]
    data[PATH] = paths
    data[SHAPE] = shapes.astype(np.uint32)
    data[X] = coords.x / shapes[:, 1]
    data[Y] = coords.y / shapes[:, 0]
    if coords.has_scores:
        data[SCORE] = coords.score
    with atomic_write(path, "wb") as f:
        np.save(f, data, allow_pickle=False)
    return [path]
