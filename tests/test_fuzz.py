"""Fuzzing the readers of untrusted input: coordinate files (six formats) and MRC micrographs.

Every reader must either succeed or raise TopazPuError (a one-line message naming the file);
any other exception, or an example running for seconds, is a bug. Inputs are random bytes,
random text made of each format's own vocabulary, and valid files (written by our writers)
that are then mutated: bytes flipped, inserted or deleted, lines dropped or repeated,
numbers replaced by odd tokens, the file truncated. MRC files get corrupted header fields
and truncated data blocks.

Bounded: a fixed number of examples per test (derandomised, so CI is reproducible) and a
per-example alarm. For a longer, random campaign:
  TOPAZPU_FUZZ_EXAMPLES=5000 TOPAZPU_FUZZ_RANDOM=1 pytest tests/test_fuzz.py
"""
import contextlib
import os
import shutil
import signal
import struct
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topazpu_core.coordinates import FORMATS, Coordinates, read_coordinates, write_coordinates
from topazpu_core.errors import TopazPuError
from topazpu_core.images import image_shape, open_image_lazy, read_image, read_pixel_size, write_mrc

EXAMPLES = int(os.environ.get("TOPAZPU_FUZZ_EXAMPLES", "200"))
HANG_SECONDS = 10.0  # an example running this long is a hang

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=5000,  # ms per example (absurd MRC headers make mrcfile attempt huge reads: ~0.3 s)
    derandomize=not os.environ.get("TOPAZPU_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

EXTENSION = {"coord": ".txt", "star": ".star", "box": ".box", "json": "_info.json", "csv": ".csv", "cs": ".cs"}


class Hang(Exception):
    pass


@contextlib.contextmanager
def no_hang(seconds=HANG_SECONDS):
    """Fail an example that runs longer than `seconds` (SIGALRM; Python-level loops)."""
    def alarm(signum, frame):
        raise Hang("example ran longer than %g s" % seconds)

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="topazpu-fuzz-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def fresh(workdir, name):
    """An empty sub-folder of the module's work folder (examples reuse the same paths)."""
    d = os.path.join(workdir, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def only_clear_errors(call, *args, **kwargs):
    """Run a reader: its result, or None when it raised TopazPuError; anything else fails."""
    with no_hang():
        try:
            return call(*args, **kwargs)
        except TopazPuError as e:
            message = str(e)
            assert message and "\n" not in message.strip(), repr(message)
            return None


def check_coordinates(coords):
    if coords is None:
        return
    assert isinstance(coords, Coordinates)
    n = len(coords)
    assert len(coords.x) == len(coords.y) == len(coords.score) == len(coords.image_name) == n
    assert np.all(np.isfinite(coords.x)) and np.all(np.isfinite(coords.y))


# ----------------------------------------------------------------------------------------------
# strategies
# ----------------------------------------------------------------------------------------------

# Tokens each format is made of, so random text reaches deep into the parsers.
VOCABULARY = [
    "\n", "\t", " ", ",", "#", "\"", "'", "data_", "data_optics", "data_particles", "loop_", "_rlnCoordinateX",
    "_rlnCoordinateY", "_rlnMicrographName", "_rlnAutopickFigureOfMerit", "#1", "#2", "#3", "image_name",
    "x_coord", "y_coord", "score", "X-Coordinate", "Y-Coordinate", "Diameter", "micrograph", "{", "}", "[", "]",
    ":", "\"boxes\"", "\"manual\"", "null", "true", "1", "0", "-3", "12.5", "1e308", "-1e400", "nan", "inf",
    "-inf", "NaN", "1e-320", "9" * 40, "mic.mrc", "a/b/mic.mrc", "version 30001", "\x00", "\ufeff", "é", "\r\n",
]


@st.composite
def coordinate_tables(draw, scores=None):
    n_images = draw(st.integers(1, 3))
    names = draw(st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,12}", fullmatch=True)
                          .filter(lambda s: not s.endswith(".") and "_info" not in s),
                          min_size=n_images, max_size=n_images, unique_by=str.lower))
    n = draw(st.integers(0, 12))
    idx = draw(st.lists(st.integers(0, n_images - 1), min_size=n, max_size=n))
    coord = st.integers(0, 500000).map(lambda v: v / 100.0)  # px, two decimals as the writers keep
    xs = draw(st.lists(coord, min_size=n, max_size=n))
    ys = draw(st.lists(coord, min_size=n, max_size=n))
    with_scores = draw(st.booleans()) if scores is None else scores
    s = draw(st.lists(st.floats(-50, 50, allow_nan=False), min_size=n, max_size=n)) if with_scores else None
    return Coordinates.from_arrays(np.array([names[i] for i in idx], dtype=object), xs, ys, s), names


@st.composite
def mutations(draw, data):
    """Apply 1-4 random byte-level or line-level edits to `data` (bytes)."""
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup_line", "drop_line",
                                     "token", "swap_lines"]))
        if kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
        elif kind == "insert":
            i = draw(st.integers(0, len(data)))
            data = data[:i] + draw(st.binary(min_size=1, max_size=8)) + data[i:]
        elif kind == "delete" and data:
            i = draw(st.integers(0, len(data) - 1))
            data = data[:i] + data[i + draw(st.integers(1, 16)):]
        elif kind == "truncate":
            data = data[:draw(st.integers(0, len(data)))]
        elif kind in ("dup_line", "drop_line", "swap_lines", "token"):
            lines = data.split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            if kind == "dup_line":
                lines.insert(i, lines[i])
            elif kind == "drop_line":
                del lines[i]
            elif kind == "swap_lines":
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            else:  # replace one whitespace- or comma-separated field by an odd token
                fields = lines[i].replace(b",", b" ").split()
                if fields:
                    k = draw(st.integers(0, len(fields) - 1))
                    token = draw(st.sampled_from(VOCABULARY)).encode("utf-8")
                    lines[i] = lines[i].replace(fields[k], token, 1)
            data = b"\n".join(lines)
    return data


# ----------------------------------------------------------------------------------------------
# coordinate readers
# ----------------------------------------------------------------------------------------------

def write_bytes(folder, fmt, data, stem="mic_a"):
    path = os.path.join(folder, stem + EXTENSION[fmt])
    with open(path, "wb") as f:
        f.write(data)
    return path


@FUZZ
@given(fmt=st.sampled_from(FORMATS), data=st.binary(max_size=2048))
def test_coordinate_readers_on_random_bytes(workdir, fmt, data):
    path = write_bytes(fresh(workdir, "bytes"), fmt, data)
    check_coordinates(only_clear_errors(read_coordinates, path))
    check_coordinates(only_clear_errors(read_coordinates, path, fmt, image_shapes={"mic_a": (100, 120)}))


@FUZZ
@given(fmt=st.sampled_from(FORMATS),
       tokens=st.lists(st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=6)), max_size=80))
def test_coordinate_readers_on_random_text(workdir, fmt, tokens):
    path = write_bytes(fresh(workdir, "text"), fmt, "".join(tokens).encode("utf-8", "surrogatepass"))
    check_coordinates(only_clear_errors(read_coordinates, path))


def valid_file(folder, fmt, coords, names):
    """Write `coords` in `fmt` with our writer -> (path to read, file to mutate, image shapes)."""
    shapes = {n: (4096, 5760) for n in names}
    if fmt in ("box", "json"):
        out = os.path.join(folder, "out")
        files = write_coordinates(coords, out, fmt, box_size=64, image_shapes=shapes)
        if not files:  # no coordinates: an empty per-micrograph file
            files = [write_bytes(out, fmt, b"{}" if fmt == "json" else b"")]
        return out, sorted(files)[0], shapes
    path = os.path.join(folder, "picks" + EXTENSION[fmt])
    write_coordinates(coords, path, fmt, image_shapes=shapes)
    return path, path, shapes


@FUZZ
@given(fmt=st.sampled_from(FORMATS), table=coordinate_tables(), data=st.data())
def test_coordinate_readers_on_mutated_valid_files(workdir, fmt, table, data):
    coords, names = table
    folder = fresh(workdir, "mutated")
    path, target, shapes = valid_file(folder, fmt, coords, names)
    with open(target, "rb") as f:
        original = f.read()
    mutated = data.draw(mutations(original))
    with open(target, "wb") as f:
        f.write(mutated)
    check_coordinates(only_clear_errors(read_coordinates, path, fmt, image_shapes=shapes))
    check_coordinates(only_clear_errors(read_coordinates, target))


@settings(FUZZ, max_examples=max(20, EXAMPLES // 4))
@given(fmt=st.sampled_from(FORMATS), table=coordinate_tables())
def test_valid_files_read_back(workdir, fmt, table):
    """The harness itself: unmutated files written by our writers read back exactly."""
    coords, names = table
    path, _, shapes = valid_file(fresh(workdir, "valid"), fmt, coords, names)
    back = only_clear_errors(read_coordinates, path, fmt, image_shapes=shapes)
    assert back is not None and len(back) == len(coords)
    order = lambda c: np.lexsort((c.y, c.x, c.image_name.astype(str)))  # noqa: E731
    a, b = coords.subset(order(coords)), back.subset(order(back))
    assert list(a.image_name) == list(b.image_name)
    tol = 1e-3 if fmt == "cs" else 1e-6  # .cs stores float32 fractions of the micrograph size
    np.testing.assert_allclose(b.x, a.x, atol=tol * 5760)
    np.testing.assert_allclose(b.y, a.y, atol=tol * 4096)


CS_FIELDS = ["location/center_x_frac", "location/center_y_frac", "location/micrograph_path",
             "location/micrograph_shape", "pick_stats/ncc_score", "uid"]
CS_TYPES = ["<f4", "<f8", ">f4", "<i4", "<u8", "S8", "S1", "<U3", "?", ("<u4", (2,)), ("<u4", (3,)), ("<f4", (2,)),
            ("<i2", (1,))]


@FUZZ
@given(fields=st.lists(st.sampled_from(CS_FIELDS), min_size=1, max_size=6, unique=True),
       types=st.lists(st.sampled_from(CS_TYPES), min_size=6, max_size=6), n=st.integers(0, 5),
       seed=st.integers(0, 2 ** 32 - 1))
def test_cs_reader_on_odd_structured_arrays(workdir, fields, types, n, seed):
    """.cs files are numpy structured arrays: any field may have any dtype, values any bits."""
    dtype = np.dtype([(f, t) if isinstance(t, str) else (f,) + t for f, t in zip(fields, types)])
    raw = np.random.default_rng(seed).integers(0, 256, size=n * dtype.itemsize, dtype=np.uint8)
    array = np.frombuffer(raw.tobytes(), dtype=dtype)
    path = os.path.join(fresh(workdir, "cs"), "picks.cs")
    with open(path, "wb") as f:
        np.save(f, array)
    check_coordinates(only_clear_errors(read_coordinates, path, image_shapes={"a": (10, 10)}))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 20, 10 ** 20) | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["boxes", "x", "class", "manual", ""]), children, max_size=3),
    max_leaves=12)


@FUZZ
@given(boxes=JSON_VALUES, wrap=st.booleans())
def test_json_reader_on_odd_structures(workdir, boxes, wrap):
    import json

    path = os.path.join(fresh(workdir, "json"), "mic_info.json")
    with open(path, "w") as f:
        f.write(json.dumps({"boxes": boxes} if wrap else boxes))
    check_coordinates(only_clear_errors(read_coordinates, path))


# ----------------------------------------------------------------------------------------------
# MRC reader
# ----------------------------------------------------------------------------------------------

def read_all_ways(path):
    """read_image, open_image_lazy, image_shape and read_pixel_size: clear errors only, and the
    lazy reader must agree with read_image."""
    image = only_clear_errors(read_image, path)
    lazy = only_clear_errors(open_image_lazy, path)
    only_clear_errors(image_shape, path)
    only_clear_errors(read_pixel_size, path)
    if image is not None:
        assert image.ndim == 2 and image.dtype == np.float32 and np.isfinite(image).all()
        assert lazy is not None and np.array_equal(np.asarray(lazy), image)
    return image


@FUZZ
@given(data=st.binary(max_size=4096))
def test_mrc_reader_on_random_bytes(workdir, data):
    path = os.path.join(fresh(workdir, "mrc_bytes"), "random micrograph.mrc")
    with open(path, "wb") as f:
        f.write(data)
    read_all_ways(path)


@FUZZ
@given(data=st.binary(min_size=0, max_size=512), nx=st.integers(-2, 40), ny=st.integers(-2, 40),
       nz=st.integers(-1, 3), mode=st.sampled_from([0, 1, 2, 3, 4, 6, 12, 101, -1, 2 ** 31 - 1]),
       nsymbt=st.integers(-10, 600), stamp=st.sampled_from([b"DA\x00\x00", b"\x11\x11\x00\x00", b"\x00\x00\x00\x00",
                                                             b"DD\x00\x00"]))
def test_mrc_reader_on_random_headers(workdir, data, nx, ny, nz, mode, nsymbt, stamp):
    """A plausible header (random dimensions, mode, extended header size) over random data."""
    header = bytearray(1024)
    struct.pack_into("<4i", header, 0, nx, ny, nz, mode)
    struct.pack_into("<3i", header, 28, max(nx, 1), max(ny, 1), max(nz, 1))
    struct.pack_into("<3i", header, 64, 1, 2, 3)
    struct.pack_into("<i", header, 92, nsymbt)
    header[208:212] = b"MAP "
    header[212:216] = stamp
    path = os.path.join(fresh(workdir, "mrc_header"), "mic.mrc")
    with open(path, "wb") as f:
        f.write(bytes(header) + data)
    read_all_ways(path)


MRC_FIELDS = {  # name: (byte offset, struct format)
    "nx": (0, "i"), "ny": (4, "i"), "nz": (8, "i"), "mode": (12, "i"), "nxstart": (16, "i"),
    "mx": (28, "i"), "my": (32, "i"), "mz": (36, "i"), "cella_x": (40, "f"), "mapc": (64, "i"),
    "mapr": (68, "i"), "maps": (72, "i"), "dmin": (76, "f"), "dmax": (80, "f"), "dmean": (84, "f"),
    "ispg": (88, "i"), "nsymbt": (92, "i"), "exttyp": (104, "4s"), "nversion": (108, "i"),
    "map": (208, "4s"), "machst": (212, "4s"), "rms": (216, "f"), "nlabl": (220, "i"),
}
ODD_INTS = [0, -1, 1, 2, 3, 7, 255, 1024, 65535, 2 ** 16 + 1, 2 ** 31 - 1, -(2 ** 31)]
ODD_FLOATS = [0.0, -1.0, 1e30, -1e30, float("nan"), float("inf"), 1e-40, 3.5]


@st.composite
def valid_mrc_bytes(draw, folder):
    """A small valid MRC micrograph in one of the supported modes, as bytes."""
    import mrcfile

    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    dtype = draw(st.sampled_from([np.float32, np.int16, np.uint16, np.int8, np.uint8, np.float16]))
    values = np.arange(h * w).reshape(h, w) % 50 - 7
    data = (values if np.dtype(dtype).kind != "u" else values + 7).astype(dtype)
    path = os.path.join(folder, "valid.mrc")
    if dtype is np.float32 and draw(st.booleans()):
        write_mrc(path, data, pixel_size=1.5)
    else:
        with mrcfile.new(path, overwrite=True) as m:
            m.set_data(data)
    with open(path, "rb") as f:
        return f.read()


@FUZZ
@given(data=st.data(), edits=st.lists(st.sampled_from(sorted(MRC_FIELDS)), min_size=1, max_size=3),
       swap_order=st.booleans())
def test_mrc_reader_on_corrupted_header_fields(workdir, data, edits, swap_order):
    folder = fresh(workdir, "mrc_fields")
    raw = bytearray(data.draw(valid_mrc_bytes(folder)))
    for name in edits:
        offset, fmt = MRC_FIELDS[name]
        if fmt == "i":
            value = data.draw(st.one_of(st.sampled_from(ODD_INTS), st.integers(-(2 ** 31), 2 ** 31 - 1)))
        elif fmt == "f":
            value = data.draw(st.one_of(st.sampled_from(ODD_FLOATS), st.floats(width=32)))
        else:
            value = data.draw(st.binary(min_size=4, max_size=4))
        order = ">" if swap_order else "<"
        struct.pack_into(order + fmt, raw, offset, value)
    path = os.path.join(folder, "corrupt ü.mrc")
    with open(path, "wb") as f:
        f.write(bytes(raw))
    read_all_ways(path)


@FUZZ
@given(data=st.data(), where=st.sampled_from(["data", "header", "anywhere"]), extra=st.binary(max_size=64))
def test_mrc_reader_on_truncated_or_padded_files(workdir, data, where, extra):
    folder = fresh(workdir, "mrc_truncated")
    raw = data.draw(valid_mrc_bytes(folder))
    if where == "data":
        cut = data.draw(st.integers(1024, len(raw)))
    elif where == "header":
        cut = data.draw(st.integers(0, 1024))
    else:
        cut = data.draw(st.integers(0, len(raw)))
    raw = raw[:cut] + (extra if data.draw(st.booleans()) else b"")
    path = os.path.join(folder, "truncated.mrc")
    with open(path, "wb") as f:
        f.write(raw)
    read_all_ways(path)


@settings(FUZZ, max_examples=max(20, EXAMPLES // 4))
@given(data=st.data(), cut=st.integers(0, 10000), flips=st.lists(st.integers(0, 10 ** 6), max_size=4))
def test_mrc_reader_on_damaged_real_micrograph(workdir, data, cut, flips):
    """The first bytes of a bundled micrograph (real header), cut anywhere and bit-flipped."""
    from topazpu_core import datasets

    with open(datasets.bundled_micrographs()[0], "rb") as f:
        raw = bytearray(f.read(1024 + cut))
    for i in flips:
        raw[i % len(raw)] ^= 0xFF
    path = os.path.join(fresh(workdir, "mrc_real"), "real.mrc")
    with open(path, "wb") as f:
        f.write(bytes(raw))
    read_all_ways(path)
