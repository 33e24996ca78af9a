"""Micrograph I/O: MRC modes and byte orders, TIFF/PNG/JPEG orientation, bad input, lists."""
import os

import mrcfile
import numpy as np
import pytest
from PIL import Image

from topazpu_core import images
from topazpu_core.datasets import bundled_micrographs
from topazpu_core.errors import TopazPuError
from topazpu_core.images import (image_name, image_shape, list_images, read_image,
                                 read_pixel_size, write_mrc)

from shared_fixtures import SHARED_DATA

UCSF = os.path.join(SHARED_DATA, "ucsf1142-single", "Ucsf_stack_1142_DW.mrc")
_RAW_DTYPES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}


def write_raw_mrc(path, data, mode, order="<", stamp=None, nz=1, dmin=0.0, dmax=0.0,
                  pixel_size=1.0):
    """A minimal MRC writer independent of mrcfile (for byte orders and odd headers)."""
    data = np.asarray(data)
    ny, nx = data.shape[-2:]
    header = bytearray(1024)
    header[0:16] = np.array([nx, ny, nz, mode], dtype=order + "i4").tobytes()
    header[28:40] = np.array([nx, ny, nz], dtype=order + "i4").tobytes()
    header[40:52] = np.array([nx * pixel_size, ny * pixel_size, nz * pixel_size],
                             dtype=order + "f4").tobytes()
    header[64:76] = np.array([1, 2, 3], dtype=order + "i4").tobytes()
    header[76:84] = np.array([dmin, dmax], dtype=order + "f4").tobytes()
    header[208:212] = b"MAP "
    if stamp is None:
        stamp = [0x44, 0x44, 0, 0] if order == "<" else [0x11, 0x11, 0, 0]
    header[212:216] = bytes(stamp)
    with open(path, "wb") as f:
        f.write(bytes(header))
        f.write(data.astype(order + _RAW_DTYPES[mode]).tobytes())


def marked(shape=(6, 9), dtype=np.float32, value=100):
    """A small ramp image with a distinct marker at x=3, y=1."""
    a = (np.arange(shape[0] * shape[1]) % 7).reshape(shape).astype(dtype)
    a[1, 3] = value
    return a


# ---------------------------------------------------------------------------------- names


def test_image_name_drops_only_the_last_extension():
    assert image_name("a/b/May08_03.05.02.bin2.mrc") == "May08_03.05.02.bin2"
    assert image_name("x.tiff") == "x"


# ---------------------------------------------------------------------------------- MRC


@pytest.mark.parametrize("dtype,mode", [(np.int8, 0), (np.int16, 1), (np.float32, 2),
                                        (np.uint16, 6), (np.float16, 12)])
def test_mrc_modes_round_trip(tmp_path, dtype, mode):
    data = marked(dtype=dtype, value=100)
    data[0, 0] = -5 if np.dtype(dtype).kind != "u" else 7
    path = str(tmp_path / "m.mrc")
    with mrcfile.new(path) as m:
        m.set_data(data)
    assert mrcfile.open(path).header.mode == mode
    out = read_image(path)
    assert out.dtype == np.float32 and out.shape == data.shape
    np.testing.assert_array_equal(out, data.astype(np.float32))
    assert out[1, 3] == 100  # x = column 3, y = row 1


@pytest.mark.parametrize("mode", [1, 2, 6, 12])
@pytest.mark.parametrize("stamp", ["standard", "zero"])
def test_mrc_big_endian(tmp_path, mode, stamp):
    data = marked(dtype=np.float32, value=100)
    path = str(tmp_path / "be.mrc")
    write_raw_mrc(path, data, mode, order=">", stamp=None if stamp == "standard" else [0] * 4)
    np.testing.assert_array_equal(read_image(path), data)


def test_mrc_float16_little_endian_raw(tmp_path):
    data = marked(dtype=np.float32, value=0.5) + 0.25
    path = str(tmp_path / "h.mrc")
    write_raw_mrc(path, data, 12)
    np.testing.assert_array_equal(read_image(path), data.astype(np.float16).astype(np.float32))


def test_mrc_mode0_unsigned_when_header_says_so(tmp_path):
    data = marked(dtype=np.uint8, value=200)
    path = str(tmp_path / "u8.mrc")
    write_raw_mrc(path, data.view(np.int8), 0, dmin=0, dmax=200)
    assert read_image(path)[1, 3] == 200
    write_raw_mrc(path, data.view(np.int8), 0, dmin=-128, dmax=127)
    assert read_image(path)[1, 3] == 200 - 256  # signed per the MRC2014 standard


def test_mrc_single_section_volume_is_2d(tmp_path):
    path = str(tmp_path / "v.mrc")
    with mrcfile.new(path) as m:
        m.set_data(marked()[None])
    out = read_image(path)
    assert out.shape == (6, 9) and out[1, 3] == 100
    assert image_shape(path) == (6, 9)


def test_mrc_stack_is_refused(tmp_path):
    path = str(tmp_path / "stack.mrc")
    with mrcfile.new(path) as m:
        m.set_data(np.stack([marked(), marked() + 1]))
    with pytest.raises(TopazPuError, match="stack.mrc.*sections"):
        read_image(path)


def test_mrc_falls_back_to_raw_reader(tmp_path, monkeypatch):
    path = str(tmp_path / "f.mrc")
    write_raw_mrc(path, marked(), 2, order=">")

    def broken(*args, **kwargs):
        raise ValueError("simulated mrcfile failure")
    monkeypatch.setattr(mrcfile, "open", broken)
    np.testing.assert_array_equal(read_image(path), marked())


def test_mrc_with_extended_header_and_trailing_bytes(tmp_path):
    path = str(tmp_path / "x.mrc")
    with mrcfile.new(path) as m:
        m.set_data(marked())
        m.set_extended_header(np.zeros(64, dtype=np.uint8))
    with open(path, "ab") as f:
        f.write(b"\0" * 37)
    np.testing.assert_array_equal(read_image(path), marked())


def test_truncated_mrc_is_an_error(tmp_path):
    path = str(tmp_path / "t.mrc")
    write_raw_mrc(path, marked(), 2)
    with open(path, "r+b") as f:
        f.truncate(1024 + 20)
    with pytest.raises(TopazPuError, match="t.mrc.*truncated"):
        read_image(path)


@pytest.mark.skipif(not os.path.exists(UCSF), reason="shared data only on dev machines")
def test_ucsf_file_failing_validation_reads():
    assert not mrcfile.validate(UCSF, print_file=open(os.devnull, "w"))
    a = read_image(UCSF)
    assert a.shape == (927, 959) and a.dtype == np.float32
    assert np.isfinite(a).all() and a.std() > 1
    assert abs(a.mean() - 6802.1) < 1
    assert image_shape(UCSF) == (927, 959)


def test_bundled_micrograph_reads():
    path = bundled_micrographs()[0]
    a = read_image(path)
    assert a.shape == (600, 620) == image_shape(path)
    np.testing.assert_array_equal(a, mrcfile.open(path).data)
    assert read_pixel_size(path) == 2.0


# ---------------------------------------------------------------------------------- others


def test_tiff_orientation(tmp_path):
    import tifffile
    for dtype in (np.float32, np.uint16):
        path = str(tmp_path / ("t_%s.tif" % np.dtype(dtype).name))
        tifffile.imwrite(path, marked(dtype=dtype))
        out = read_image(path)
        np.testing.assert_array_equal(out, marked())
        assert out[1, 3] == 100 and image_shape(path) == (6, 9)


def test_png_8_and_16_bit(tmp_path):
    p8, p16 = str(tmp_path / "a.png"), str(tmp_path / "b.png")
    Image.fromarray(marked(dtype=np.uint8, value=200)).save(p8)
    Image.fromarray(marked(dtype=np.uint16, value=60000)).save(p16)
    a8, a16 = read_image(p8), read_image(p16)
    assert a8.shape == a16.shape == (6, 9) == image_shape(p8)
    np.testing.assert_array_equal(a8, marked(value=200))
    np.testing.assert_array_equal(a16, marked(value=60000))  # not quantised to 8 bits


def test_rgb_png_becomes_grey(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1, 3] = (200, 100, 50)
    rgb[0, 0] = (10, 10, 10)
    path = str(tmp_path / "c.png")
    Image.fromarray(rgb).save(path)
    out = read_image(path)
    assert out.shape == (4, 5)
    assert out[1, 3] == pytest.approx(0.299 * 200 + 0.587 * 100 + 0.114 * 50, abs=1e-3)
    assert out[0, 0] == pytest.approx(10, abs=1e-3)


def test_jpeg_orientation(tmp_path):
    a = np.full((32, 48), 20, np.uint8)
    a[6:11, 30:35] = 230  # bright square centred at x=32, y=8
    path = str(tmp_path / "j.jpg")
    Image.fromarray(a).save(path, quality=95)
    out = read_image(path)
    assert out.shape == (32, 48) == image_shape(path)
    w = np.clip(out - 100, 0, None)
    ys, xs = np.mgrid[:32, :48]
    assert abs((w * xs).sum() / w.sum() - 32) < 0.5
    assert abs((w * ys).sum() / w.sum() - 8) < 0.5


# ---------------------------------------------------------------------------------- bad input


def test_missing_file_names_it(tmp_path):
    path = str(tmp_path / "nothere.mrc")
    with pytest.raises(TopazPuError, match="nothere.mrc"):
        read_image(path)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_mrc(tmp_path, bad):
    data = marked()
    data[2, 2] = bad
    path = str(tmp_path / "nan.mrc")
    with mrcfile.new(path) as m:
        m.set_data(data)
    with pytest.raises(TopazPuError, match="nan.mrc.*1 pixels are NaN or infinite"):
        read_image(path)


def test_constant_image(tmp_path):
    path = str(tmp_path / "flat.mrc")
    with mrcfile.new(path) as m:
        m.set_data(np.full((5, 5), 3, np.float32))
    with pytest.raises(TopazPuError, match="flat.mrc.*constant"):
        read_image(path)


@pytest.mark.parametrize("ext", [".mrc", ".png", ".jpg", ".tif"])
def test_garbage_bytes(tmp_path, ext):
    path = str(tmp_path / ("junk" + ext))
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        f.write(b"this is not an image" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(TopazPuError, match="junk"):
        read_image(path)


def test_empty_and_unknown(tmp_path):
    empty = tmp_path / "empty.mrc"
    empty.write_bytes(b"")
    with pytest.raises(TopazPuError, match="empty.mrc"):
        read_image(str(empty))
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(TopazPuError, match="notes.txt.*extension"):
        read_image(str(other))


# ---------------------------------------------------------------------------------- writing


def test_write_mrc_round_trip_and_atomic(tmp_path):
    path = str(tmp_path / "sub" / "o.mrc")
    data = marked().astype(np.float64)
    write_mrc(path, data, pixel_size=3.5)
    with mrcfile.open(path) as m:
        assert m.data.dtype == np.float32 and m.header.mode == 2
        assert float(m.voxel_size.x) == pytest.approx(3.5)
    assert read_pixel_size(path) == pytest.approx(3.5)
    np.testing.assert_array_equal(read_image(path), data.astype(np.float32))
    write_mrc(path, data + 1)  # overwrite, no pixel size
    assert read_pixel_size(path) is None
    assert read_image(path)[1, 3] == 101
    assert os.listdir(os.path.dirname(path)) == ["o.mrc"]  # no temporary left behind


def test_pixel_size_of_non_mrc_is_none(tmp_path):
    path = str(tmp_path / "a.png")
    Image.fromarray(marked(dtype=np.uint8)).save(path)
    assert read_pixel_size(path) is None


# ---------------------------------------------------------------------------------- lists


def test_list_images(tmp_path):
    folder = tmp_path / "mics"
    folder.mkdir()
    for n in ("b.mrc", "a.png", "c.tiff"):
        (folder / n).write_bytes(b"x")
    (folder / "readme.txt").write_text("x")
    expected = [str(folder / n) for n in ("a.png", "b.mrc", "c.tiff")]
    assert list_images(str(folder)) == expected
    both = sorted([str(folder / "b.mrc"), str(folder / "a.png")])
    assert list_images([str(folder / "*.mrc"), str(folder / "a.png"), str(folder / "b.mrc")]) \
        == both  # de-duplicated and sorted
    listing = tmp_path / "list.txt"
    listing.write_text("# micrographs\nmics/b.mrc\n\nmics/a.png\n")
    assert list_images(str(listing)) == both
    table = tmp_path / "table.txt"
    table.write_text("image_name\tpath\nb\tmics/b.mrc\n")
    assert list_images(str(table)) == [str(folder / "b.mrc")]
    with pytest.raises(TopazPuError, match="missing.mrc"):
        list_images([str(folder / "missing.mrc")])
    with pytest.raises(TopazPuError, match="nomatch"):
        list_images(str(folder / "nomatch*.mrc"))
    bad_list = tmp_path / "bad.txt"
    bad_list.write_text("mics/zzz.mrc\n")
    with pytest.raises(TopazPuError, match="zzz.mrc.*bad.txt"):
        list_images(str(bad_list))


def test_image_extensions_constant():
    assert images.IMAGE_EXTENSIONS == (".mrc", ".mrcs", ".tif", ".tiff", ".png", ".jpg",
                                       ".jpeg")
