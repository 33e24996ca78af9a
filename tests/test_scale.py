"""Scale: training images are memory-mapped, tile labels are computed on the fly (no full-size maps).

The memory and throughput numbers at full micrograph size are measured by
benchmarks/bench_scale.py; these tests pin the mechanisms: open_image_lazy maps float32 MRC
files and equals read_image, load_micrographs does not read the pixels into memory, and the
tile sampler's on-the-fly labels equal those of full label maps.
"""
import os
import tracemalloc

import mrcfile
import numpy as np
import pytest

from topazpu_core import datasets, sampling
from topazpu_core.coordinates import read_coordinates, write_coordinates
from topazpu_core.errors import TopazPuError
from topazpu_core.images import image_name, open_image_lazy, read_image, write_mrc
from topazpu_core.training import load_micrographs


def test_open_image_lazy_maps_float32_mrc_and_equals_read_image(tmp_path):
    for path in datasets.bundled_micrographs():
        lazy = open_image_lazy(path)
        assert isinstance(lazy, np.memmap) and lazy.dtype == np.float32
        assert np.array_equal(lazy, read_image(path))
    path = str(tmp_path / "m.mrc")
    write_mrc(path, np.arange(12, dtype=np.float32).reshape(3, 4))
    before = open(path, "rb").read()
    lazy = open_image_lazy(path)
    lazy[0, 0] = 99  # copy-on-write: the file is never changed
    del lazy
    assert open(path, "rb").read() == before


def test_open_image_lazy_falls_back_to_read_image(tmp_path):
    path = str(tmp_path / "int16.mrc")  # not float32: read into memory
    with mrcfile.new(path) as m:
        m.set_data(np.arange(12, dtype=np.int16).reshape(3, 4))
    out = open_image_lazy(path)
    assert not isinstance(out, np.memmap) and out.dtype == np.float32 and np.array_equal(out, read_image(path))
    swapped = str(tmp_path / "big_endian.mrc")  # float32 in the other byte order: read into memory
    with mrcfile.new(swapped) as m:
        m.set_data(np.arange(12, dtype=">f4").reshape(3, 4))
    assert np.array_equal(open_image_lazy(swapped), read_image(swapped))


@pytest.mark.parametrize("problem", ["nan", "constant", "truncated"])
def test_open_image_lazy_refuses_what_read_image_refuses(tmp_path, problem):
    path = str(tmp_path / ("%s.mrc" % problem))
    data = np.arange(20, dtype=np.float32).reshape(4, 5)
    if problem == "nan":
        data[1, 1] = np.nan
    if problem == "constant":
        data[:] = 3
    with mrcfile.new(path) as m:
        m.set_data(data)
    if problem == "truncated":
        raw = open(path, "rb").read()
        open(path, "wb").write(raw[:-8])
    with pytest.raises(TopazPuError) as lazy:
        open_image_lazy(path)
    with pytest.raises(TopazPuError) as eager:
        read_image(path)
    assert str(lazy.value).split(":")[1].split()[0] == str(eager.value).split(":")[1].split()[0]


def test_load_micrographs_does_not_read_the_pixels(tmp_path):
    rng = np.random.default_rng(0)
    names = ["mic%02d" % i for i in range(20)]
    for n in names:  # 20 x 1.5 MB
        write_mrc(str(tmp_path / (n + ".mrc")), rng.standard_normal((600, 620), dtype=np.float32))
    coords = read_coordinates(datasets.bundled_particles())
    coords = coords.subset(np.arange(40))
    coords.image_name = np.array([names[i % 20] for i in range(40)], dtype=object)
    write_coordinates(coords, str(tmp_path / "targets.txt"))
    tracemalloc.start()
    try:
        micrographs, _ = load_micrographs(str(tmp_path), str(tmp_path / "targets.txt"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(micrographs) == 20 and all(isinstance(m.image, np.memmap) for m in micrographs)
    assert peak < 8 * 2 ** 20, peak  # the checks stream in 16 MB blocks; 30 MB of pixels are not held
    assert np.array_equal(micrographs[3].image, read_image(str(tmp_path / "mic03.mrc")))


def test_label_pixel_counts_equal_the_maps():
    rng = np.random.default_rng(1)
    for _ in range(30):
        H, W = rng.integers(3, 80, size=2)
        n = int(rng.integers(0, 40))
        x, y = rng.uniform(-4, W + 4, n), rng.uniform(-4, H + 4, n)
        r = float(rng.choice([0, 1, 2.5, 3, 7]))
        rb = float(rng.choice([0, r, r * 1.25, r + 4]))
        labelled, background = sampling.label_pixel_counts((H, W), x, y, r, rb)
        assert labelled == sampling.label_map((H, W), x, y, r).sum()
        assert background == sampling.background_map((H, W), x, y, r, rb).sum()
        assert sampling.label_pixel_counts((H, W), x, y, r) == (labelled, 0)


def test_tile_sampler_on_the_fly_labels_equal_label_maps():
    """Tiles cut anywhere (inside, across edges, beyond corners) carry exactly the labels of the
    full-size label_map cut the same way (edge rows/columns repeated)."""
    rng = np.random.default_rng(2)
    for trial in range(15):
        radius = float(rng.choice([1, 2, 3, 4.5]))
        images, centres, maps = [], [], []
        for _ in range(int(rng.integers(1, 4))):
            H, W = rng.integers(20, 140, size=2)
            n = int(rng.integers(1, 50))
            x, y = rng.uniform(-2, W + 1, n), rng.uniform(-2, H + 1, n)
            images.append(rng.standard_normal((H, W)).astype(np.float32))
            centres.append(np.stack([x, y], 1))
            maps.append(sampling.label_map((H, W), x, y, radius))
        tile, grid = int(rng.integers(24, 70)), (int(rng.choice([2, 4])), int(rng.integers(3, 10)))
        sampler = sampling.TileSampler(images, radius, centres, tile, grid)
        for _ in range(20):
            idx = int(rng.integers(len(images)))
            H, W = images[idx].shape
            y0, x0 = int(rng.integers(-tile, H)), int(rng.integers(-tile, W))
            yi = np.clip(np.arange(y0, y0 + tile), 0, H - 1)
            xi = np.clip(np.arange(x0, x0 + tile), 0, W - 1)
            img, lab = sampler.cut(idx, y0, x0)
            assert np.array_equal(img, images[idx][np.ix_(yi, xi)])
            assert np.array_equal(lab, maps[idx][np.ix_(yi, xi)])
