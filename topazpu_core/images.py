"""Micrograph input and output: MRC, TIFF, PNG and JPEG in, float32 MRC out.

Every reader returns a 2-D float32 array indexed ``array[y, x]``: x is the column, y the row,
and the origin is the first pixel stored in the file. No format is flipped.

MRC files are opened with ``mrcfile`` in permissive mode, so headers that fail
``mrcfile.validate`` (missing version stamp, stale statistics, odd labels) are accepted. When
``mrcfile`` cannot produce the data, the data block is read directly from the header's
dimensions, mode, symmetry-block size and byte order. Supported modes: 0 (int8; read as
uint8 when the header range says so), 1 (int16), 2 (float32), 6 (uint16), 12 (float16), either
endianness. A file with nz == 1 is a 2-D image; nz > 1 is refused.
"""
import glob
import logging
import os
import warnings

import numpy as np

from topazpu_core.atomic import atomic_path
from topazpu_core.errors import TopazPuError, require_file

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".mrc", ".mrcs", ".tif", ".tiff", ".png", ".jpg", ".jpeg")
MRC_EXTENSIONS = (".mrc", ".mrcs")
TIFF_EXTENSIONS = (".tif", ".tiff")
PIL_EXTENSIONS = (".png", ".jpg", ".jpeg")

# MRC mode -> little-endian dtype string (the modes a micrograph can use).
_MRC_MODES = {0: "i1", 1: "<i2", 2: "<f4", 6: "<u2", 12: "<f2"}
_MRC_HEADER_BYTES = 1024
_NATIVE = "<" if np.little_endian else ">"
# Luma weights (ITU-R BT.601) for colour images.
_RGB_TO_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def image_name(path):
    """File name without its last extension.

    "a/May08_03.05.02.bin2.mrc" -> "May08_03.05.02.bin2"
    """
    return os.path.splitext(os.path.basename(os.fspath(path)))[0]


def _extension(path):
    return os.path.splitext(os.fspath(path))[1].lower()


# ----------------------------------------------------------------------------------------------
# MRC
# ----------------------------------------------------------------------------------------------

def _parse_mrc_header(path):
    """Read the fields we need from a raw MRC header; return a dict.

    The byte order comes from the machine stamp when it is a known one, otherwise from
    whichever order gives plausible dimensions and a known mode.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(_MRC_HEADER_BYTES)
    except OSError as e:
        raise TopazPuError("%s: cannot read (%s)" % (path, e.strerror or e))
    if len(raw) < _MRC_HEADER_BYTES:
        raise TopazPuError("%s: not an MRC file (only %d bytes, the header alone is 1024)"
                           % (path, len(raw)))
    stamp = raw[212]
    orders = {0x44: ["<"], 0x41: ["<"], 0x11: [">"]}.get(stamp, ["<", ">"])
    for order in orders + [o for o in ("<", ">") if o not in orders]:
        ints = np.frombuffer(raw, dtype=order + "i4", count=24)
        nx, ny, nz, mode = (int(v) for v in ints[:4])
        if mode in _MRC_MODES and nx > 0 and ny > 0 and nz > 0 and nx * ny < 2 ** 34:
            cella = np.frombuffer(raw, dtype=order + "f4", count=3, offset=40)
            mx = int(ints[7])
            nsymbt = int(ints[23])
            dmin, dmax = (float(v) for v in np.frombuffer(raw, dtype=order + "f4", count=2,
                                                           offset=76))
            pixel = float(cella[0]) / mx if mx > 0 else 0.0
            return {"nx": nx, "ny": ny, "nz": nz, "mode": mode, "order": order,
                    "nsymbt": max(nsymbt, 0), "pixel_size": pixel, "dmin": dmin, "dmax": dmax}
    ints = np.frombuffer(raw, dtype="<i4", count=4)
    raise TopazPuError("%s: not a readable MRC micrograph (header nx=%d ny=%d nz=%d mode=%d; "
                       "supported modes 0, 1, 2, 6, 12)" % (path, *[int(v) for v in ints]))


def _check_mrc_size(path, header):
    """Raise for a file shorter than its header announces (before any reader allocates for it)."""
    dtype = np.dtype(_MRC_MODES[header["mode"]])
    needed = _MRC_HEADER_BYTES + header["nsymbt"] + header["nx"] * header["ny"] * header["nz"] * dtype.itemsize
    size = os.path.getsize(path)
    if needed > size:
        raise TopazPuError("%s: truncated MRC file (%d bytes, the header announces %d)" % (path, size, needed))


def _read_mrc_raw(path, header):
    """Read the data block of an MRC file by its header, bypassing mrcfile."""
    dtype = np.dtype(_MRC_MODES[header["mode"]]).newbyteorder(header["order"])
    count = header["nx"] * header["ny"] * header["nz"]
    offset = _MRC_HEADER_BYTES + header["nsymbt"]
    _check_mrc_size(path, header)
    data = np.fromfile(path, dtype=dtype, count=count, offset=offset)
    return data.reshape(header["nz"], header["ny"], header["nx"])


def _mrc_mode0_unsigned(header, data):
    """Mode 0 is signed by the MRC2014 standard; older writers stored unsigned bytes.

    Treat it as unsigned when the header range says so (dmin >= 0 and dmax > 127).
    """
    return header["mode"] == 0 and data.dtype.itemsize == 1 and header["dmin"] >= 0 \
        and header["dmax"] > 127


def _read_mrc(path):
    header = _parse_mrc_header(path)
    if header["nz"] > 1:
        raise TopazPuError("%s: MRC holds %d sections (nz=%d); a micrograph must be 2-D"
                           % (path, header["nz"], header["nz"]))
    _check_mrc_size(path, header)  # else mrcfile may try to allocate what the header announces
    data = None
    try:
        import mrcfile
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with mrcfile.open(path, mode="r", permissive=True) as mrc:
                if mrc.data is not None:
                    data = np.asarray(mrc.data)
        for w in caught:
            logger.debug("%s: mrcfile: %s", path, w.message)
    except Exception as e:  # any mrcfile failure: fall back to the raw reader below
        logger.debug("%s: mrcfile could not open it (%s); reading the data block directly",
                     path, e)
        data = None
    expected = (header["ny"], header["nx"])
    if data is not None and data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data is not None and data.dtype.itemsize > 1:
        # mrcfile guesses the byte order when the machine stamp is unknown; trust ours, which
        # also checks that the dimensions and mode are plausible
        order = data.dtype.byteorder
        order = {"=": _NATIVE, "|": header["order"]}.get(order, order)
        if order != header["order"]:
            data = None
    if data is None or data.shape != expected:
        data = _read_mrc_raw(path, header)[0]
    if _mrc_mode0_unsigned(header, data):
        data = data.view(np.uint8)
    return data


# ----------------------------------------------------------------------------------------------
# TIFF, PNG, JPEG
# ----------------------------------------------------------------------------------------------

def _to_grey(path, data):
    """2-D grey array from a 2-D, single-plane or RGB(A) array."""
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        return data[..., :3].astype(np.float32) @ _RGB_TO_GREY
    if data.ndim != 2:
        raise TopazPuError("%s: image has shape %s; a micrograph must be 2-D (grey or RGB)"
                           % (path, "x".join(str(s) for s in data.shape)))
    return data


def _read_tiff(path):
    import tifffile
    try:
        data = tifffile.imread(path)
    except Exception as e:  # tifffile raises many types for corrupt files
        raise TopazPuError("%s: cannot read TIFF (%s)" % (path, e))
    return _to_grey(path, data)


def _read_pil(path):
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("1", "P", "PA"):
                img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info
                                  else "L")
            if img.mode in ("LA", "La"):
                img = img.convert("L")
            data = np.array(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise TopazPuError("%s: cannot read image (%s)" % (path, e))
    return _to_grey(path, data)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------

def read_image(path):
    """Read a micrograph as a 2-D float32 array ``a[y, x]`` (rows = y, columns = x).

    Raises TopazPuError naming the file when it is missing, unreadable, not 2-D, contains
    NaN or infinite values, or is constant.
    """
    path = os.fspath(path)
    require_file(path, "an image")
    ext = _extension(path)
    if ext in MRC_EXTENSIONS:
        data = _read_mrc(path)
    elif ext in TIFF_EXTENSIONS:
        data = _read_tiff(path)
    elif ext in PIL_EXTENSIONS:
        data = _read_pil(path)
    else:
        raise TopazPuError("%s: unknown image extension %r (known: %s)"
                           % (path, ext, ", ".join(IMAGE_EXTENSIONS)))
    if data.dtype.kind not in "iuf":
        raise TopazPuError("%s: unsupported pixel type %s" % (path, data.dtype))
    is_float = data.dtype.kind == "f"
    image = np.array(data, dtype=np.float32, order="C", copy=True)
    if image.size == 0:
        raise TopazPuError("%s: empty image" % path)
    if is_float:
        finite = np.isfinite(image)
        if not finite.all():
            raise TopazPuError("%s: %d pixels are NaN or infinite"
                               % (path, int(finite.size - np.count_nonzero(finite))))
    lo, hi = image.min(), image.max()
    if is_float and not (np.isfinite(lo) and np.isfinite(hi)):
        raise TopazPuError("%s: pixel values overflow float32" % path)
    if lo == hi:
        raise TopazPuError("%s: constant image (every pixel is %g)" % (path, lo))
    return image


_LAZY_CHECK_VALUES = 1 << 22  # float32 values per block when checking a memory-mapped image


def open_image_lazy(path):
    """A micrograph as a 2-D float32 array that is not read into memory when possible.

    A float32 MRC in the machine's byte order (mode 2, one section: what `topazpu preprocess`
    writes) is memory-mapped copy-on-write: the file is never written, pixels are paged in
    when used and the system can drop them again, so thousands of micrographs can be opened
    at once. The data are checked like `read_image` (finite, not constant) by streaming
    through the file in blocks, and equal what `read_image` returns. Any other file is read
    with `read_image`.
    """
    path = os.fspath(path)
    require_file(path, "an image")
    if _extension(path) not in MRC_EXTENSIONS:
        return read_image(path)
    header = _parse_mrc_header(path)
    if header["mode"] != 2 or header["nz"] != 1 or header["order"] != _NATIVE:
        return read_image(path)
    ny, nx = header["ny"], header["nx"]
    offset = _MRC_HEADER_BYTES + header["nsymbt"]
    size = os.path.getsize(path)
    if offset + 4 * nx * ny > size:
        raise TopazPuError("%s: truncated MRC file (%d bytes, the header announces %d)"
                           % (path, size, offset + 4 * nx * ny))
    lo, hi, bad = np.inf, -np.inf, 0
    with open(path, "rb") as f:
        f.seek(offset)
        left = nx * ny
        while left:
            block = np.fromfile(f, dtype=np.float32, count=min(left, _LAZY_CHECK_VALUES))
            if block.size == 0:
                raise TopazPuError("%s: truncated MRC file" % path)
            left -= block.size
            finite = np.isfinite(block)
            if not finite.all():
                bad += int(finite.size - np.count_nonzero(finite))
                continue
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if bad:
        raise TopazPuError("%s: %d pixels are NaN or infinite" % (path, bad))
    if lo == hi:
        raise TopazPuError("%s: constant image (every pixel is %g)" % (path, lo))
    return np.memmap(path, dtype=np.float32, mode="c", offset=offset, shape=(ny, nx))


def read_pixel_size(path):
    """Pixel size in Angstrom per pixel from an MRC header (x axis); None when 0 or not MRC."""
    path = os.fspath(path)
    if _extension(path) not in MRC_EXTENSIONS:
        return None
    require_file(path, "an image")
    size = _parse_mrc_header(path)["pixel_size"]
    if not np.isfinite(size) or size <= 0:
        return None
    return float(size)


def image_shape(path):
    """(height, width) of an image without reading its pixels (header only)."""
    path = os.fspath(path)
    require_file(path, "an image")
    ext = _extension(path)
    if ext in MRC_EXTENSIONS:
        header = _parse_mrc_header(path)
        if header["nz"] > 1:
            raise TopazPuError("%s: MRC holds %d sections (nz=%d); a micrograph must be 2-D"
                               % (path, header["nz"], header["nz"]))
        return header["ny"], header["nx"]
    if ext in TIFF_EXTENSIONS:
        import tifffile
        try:
            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
        except Exception as e:
            raise TopazPuError("%s: cannot read TIFF (%s)" % (path, e))
        shape = [s for s in shape if s != 1]
        if len(shape) == 3 and shape[-1] in (3, 4):
            shape = shape[:2]
        if len(shape) != 2:
            raise TopazPuError("%s: image is not 2-D" % path)
        return int(shape[0]), int(shape[1])
    if ext in PIL_EXTENSIONS:
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(path) as img:
                width, height = img.size
        except (UnidentifiedImageError, OSError) as e:
            raise TopazPuError("%s: cannot read image (%s)" % (path, e))
        return int(height), int(width)
    raise TopazPuError("%s: unknown image extension %r (known: %s)"
                       % (path, ext, ", ".join(IMAGE_EXTENSIONS)))


def write_mrc(path, array, pixel_size=None):
    """Write a 2-D array as a float32 MRC (mode 2), atomically; pixel_size in Angstrom/px."""
    import mrcfile
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError("write_mrc expects a 2-D array, got shape %s" % (array.shape,))
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(array)
            if pixel_size is not None and pixel_size > 0:
                mrc.voxel_size = float(pixel_size)


def _read_list_file(path):
    """Paths listed in a text file, one per line, relative to the list file's folder.

    Blank lines and lines starting with '#' are skipped. A Topaz-style table whose header
    has a column named "path" (tab or space separated) is read by that column.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        with open(path) as f:
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise TopazPuError("%s: cannot read the image list (%s)" % (path, e))
    lines = [line for line in lines if line and not line.startswith("#")]
    column = None
    if lines:
        fields = lines[0].split("\t") if "\t" in lines[0] else lines[0].split()
        if "path" in fields and len(fields) > 1:
            column = fields.index("path")
            lines = lines[1:]
    entries = []
    for line in lines:
        if column is not None:
            fields = line.split("\t") if "\t" in line else line.split()
            if len(fields) <= column:
                raise TopazPuError("%s: line %r has no 'path' column" % (path, line))
            line = fields[column]
        entries.append(line if os.path.isabs(line) else os.path.join(folder, line))
    if not entries:
        raise TopazPuError("%s: the image list is empty" % path)
    return entries


def _expand(spec, from_list=None):
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        found = [os.path.join(spec, n) for n in os.listdir(spec)
                 if _extension(n) in IMAGE_EXTENSIONS
                 and os.path.isfile(os.path.join(spec, n))]
        if not found:
            raise TopazPuError("%s: directory holds no images (%s)"
                               % (spec, ", ".join(IMAGE_EXTENSIONS)))
        return found
    if os.path.isfile(spec):
        if _extension(spec) in IMAGE_EXTENSIONS:
            return [spec]
        if from_list is None:
            return [p for entry in _read_list_file(spec) for p in _expand(entry, spec)]
        raise TopazPuError("%s (listed in %s): not an image (known extensions: %s)"
                           % (spec, from_list, ", ".join(IMAGE_EXTENSIONS)))
    if glob.has_magic(spec):
        found = [p for p in glob.glob(spec) if os.path.isfile(p)]
        if not found:
            raise TopazPuError("%s: pattern matches no file" % spec)
        return found
    where = " (listed in %s)" % from_list if from_list else ""
    raise TopazPuError("%s%s: no such file or directory" % (spec, where))


def list_images(spec):
    """Sorted, de-duplicated micrograph paths from a directory, a list file, or paths/globs.

    `spec` is a path or a sequence of them. A directory gives all its files with an
    IMAGE_EXTENSIONS extension (not recursive); a text file lists paths one per line,
    relative to the list file; a glob pattern gives the files it matches.
    """
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not specs:
        raise TopazPuError("no micrographs given")
    paths = set()
    for s in specs:
        paths.update(os.path.normpath(p) for p in _expand(s))
    return sorted(paths)
