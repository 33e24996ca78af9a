"""Fourier downsampling: shapes, the i -> i * f coordinate convention, mean, reference values."""
import math

import numpy as np
import pytest

from topazpu_core.datasets import bundled_micrographs
from topazpu_core.downsample import downsample, output_shape
from topazpu_core.errors import TopazPuError
from topazpu_core.images import read_image


def gaussian_blob(shape, cy, cx, sigma):
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2.0 * sigma ** 2)).astype(np.float32)


def centroid(a):
    ys, xs = np.mgrid[: a.shape[0], : a.shape[1]]
    a = a.astype(np.float64)
    return (a * ys).sum() / a.sum(), (a * xs).sum() / a.sum()


def reference_downsample(x, f):
    """Brute-force definition: band-limit each axis to |k| <= N / (2 f) (half weight on the
    boundary), evaluate the Fourier series at t = i * f. Complex DFT in float64."""
    x = np.asarray(x, dtype=np.float64)
    for axis in (0, 1):
        N = x.shape[axis]
        n = int(math.floor(N / f + 1e-9))
        X = np.fft.fft(x, axis=axis)
        k = np.fft.fftfreq(N) * N
        half = N / (2.0 * f)
        w = np.where(np.abs(k) < half - 1e-9, 1.0, 0.0)
        w[np.abs(np.abs(k) - half) < 1e-9] = 0.5
        t = np.arange(n) * f
        E = np.exp(2j * np.pi * np.outer(t, k) / N) * w[None, :] / N  # (n, N)
        x = np.real(np.moveaxis(np.tensordot(E, np.moveaxis(X, axis, 0), axes=(1, 0)), 0, axis))
    return x


@pytest.mark.parametrize("factor,expected", [(2, (300, 310)), (3, (200, 206)),
                                             (1.5, (400, 413)), (2.7, (222, 229)),
                                             (4, (150, 155))])
def test_shapes(factor, expected):
    a = np.zeros((600, 620), np.float32)
    a[0, 0] = 1
    assert output_shape(a.shape, factor) == expected
    out = downsample(a, factor)
    assert out.shape == expected and out.dtype == np.float32


@pytest.mark.parametrize("factor", [2, 3, 1.5, 2.7])
@pytest.mark.parametrize("shape", [(121, 130), (120, 128)], ids=["odd", "even"])
def test_centred_blob_stays_centred(factor, shape):
    # sizes not divisible by the factor would betray an N / n grid spacing (Topaz's crop)
    for cy, cx in [((shape[0] - 1) / 2, (shape[1] - 1) / 2), (70.4, 41.3)]:
        out = downsample(gaussian_blob(shape, cy, cx, 5.0), factor)
        oy, ox = centroid(out)
        assert abs(oy - cy / factor) < 0.05 and abs(ox - cx / factor) < 0.05, (oy, ox)


def test_coordinates_scale_by_division():
    a = gaussian_blob((200, 233), 100.0, 150.0, 4.0)
    out = downsample(a, 2.5)
    y, x = np.unravel_index(np.argmax(out), out.shape)
    assert (y, x) == (40, 60)
    assert out[40, 60] == pytest.approx(out.max())
    # the peak pixel samples the blob at exactly its centre: the value is ~1 (band-limited)
    assert out[40, 60] == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("shape,factor", [((24, 30), 2), ((24, 30), 3), ((25, 31), 2),
                                          ((24, 30), 1.5), ((23, 29), 2.7), ((32, 32), 4)])
def test_matches_brute_force_definition(shape, factor):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(downsample(x, factor), reference_downsample(x, factor),
                               atol=2e-5)


def test_mean_preserved_on_real_micrograph():
    a = read_image(bundled_micrographs()[0]) + 10.0
    assert abs(downsample(a, 2).mean() - a.mean()) < 1e-4  # exact grid: mean is the DC term
    for f in (3, 1.5, 2.7):
        assert abs(downsample(a, f).mean() - a.mean()) < 0.01 * a.std()


@pytest.mark.parametrize("factor", [2, 3, 1.5, 2.7])
def test_constant_stays_constant(factor):
    out = downsample(np.full((37, 50), 3.25, np.float32), factor)
    np.testing.assert_allclose(out, 3.25, atol=1e-5)


def test_low_frequency_passes_high_frequency_removed():
    ys, xs = np.mgrid[:64, :64]
    low = np.cos(2 * np.pi * 3 * xs / 64).astype(np.float32)
    high = np.cos(2 * np.pi * 20 * xs / 64).astype(np.float32)  # above the new Nyquist (16)
    out = downsample(low + high, 2)
    np.testing.assert_allclose(out, np.cos(2 * np.pi * 3 * (2 * xs[:32, :32]) / 64), atol=1e-5)


def test_factor_one_is_a_copy():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    out = downsample(a, 1)
    assert out.dtype == np.float32 and out is not a
    np.testing.assert_array_equal(out, a)
    out[0, 0] = 99
    assert a[0, 0] == 0


def test_batch_matches_single():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 40, 45)).astype(np.float32)
    both = downsample(x, 1.7)
    for k in range(2):
        np.testing.assert_allclose(both[k], downsample(x[k], 1.7), atol=1e-6)


@pytest.mark.parametrize("factor", [0.5, 0, -2, float("nan"), float("inf"), "two"])
def test_bad_factor(factor):
    with pytest.raises(TopazPuError, match="factor"):
        downsample(np.ones((8, 8)), factor)


def test_too_small():
    with pytest.raises(TopazPuError, match="too small"):
        downsample(np.ones((3, 8)), 4)
