"""Non-maximum suppression against a naive O(n^2) greedy reference."""
import numpy as np
import pytest
import scipy.ndimage as ndi

from topazpu_core.errors import TopazPuError
from topazpu_core.nms import non_maximum_suppression


def naive_nms(score, radius, threshold=-np.inf):
    """Greedy NMS in plain Python: visit pixels by (score desc, row-major index), keep a pixel
    unless a kept one lies within distance <= radius."""
    height, width = score.shape
    pixels = []
    for y in range(height):
        for x in range(width):
            s = score[y, x]
            if np.isnan(s) or s < threshold:
                continue
            pixels.append((-float(s), y * width + x, y, x))
    pixels.sort()
    kept = []
    for neg, _, y, x in pixels:
        if all((y - ky) ** 2 + (x - kx) ** 2 > radius * radius for ky, kx, _ in kept):
            kept.append((y, x, -neg))
    return kept


def smooth_map(seed, shape=(34, 41), sigma=1.5, quantise=None):
    rng = np.random.default_rng(seed)
    m = ndi.gaussian_filter(rng.standard_normal(shape), sigma).astype(np.float32)
    if quantise:
        m = np.round(m * quantise) / quantise  # plateaus and exact ties
    return m


def as_list(result):
    ys, xs, scores = result
    return [(int(y), int(x), float(s)) for y, x, s in zip(ys, xs, scores)]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("radius", [0, 1, 1.5, 3, 4.2, 7])
def test_exact_equals_naive_reference(seed, radius):
    score = smooth_map(seed, quantise=4 if seed == 2 else None)
    assert as_list(non_maximum_suppression(score, radius)) == naive_nms(score, radius)


@pytest.mark.parametrize("seed", [3, 4])
def test_exact_on_white_noise_and_integers(seed):
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((30, 30))
    assert as_list(non_maximum_suppression(noise, 2.5)) == naive_nms(noise, 2.5)
    ints = rng.integers(0, 3, (25, 33))  # many ties; integer maps are accepted
    assert as_list(non_maximum_suppression(ints, 2)) == naive_nms(ints.astype(float), 2)


def test_exact_keeps_a_flank_pixel_that_is_no_local_maximum():
    # a single bright peak on a slope: greedy NMS keeps the pixel just outside the radius
    score = np.array([[9.0, 8.0, 7.0, 6.0, 5.0]])
    ys, xs, _ = non_maximum_suppression(score, 2)
    assert xs.tolist() == [0, 3]


def test_picks_are_sorted_and_respect_radius():
    score = smooth_map(5, shape=(80, 90), sigma=2)
    ys, xs, scores = non_maximum_suppression(score, 5)
    assert np.all(np.diff(scores) <= 0)
    d2 = (ys[:, None] - ys[None, :]) ** 2 + (xs[:, None] - xs[None, :]) ** 2
    np.fill_diagonal(d2, 10**9)
    assert d2.min() > 25
    assert ys.dtype == np.int64 and scores.dtype == np.float64


def test_distance_exactly_radius_is_suppressed():
    score = np.zeros((1, 8))
    score[0, 0], score[0, 3], score[0, 7] = 3.0, 2.0, 1.0
    ys, xs, _ = non_maximum_suppression(score, 3, threshold=0.5)
    assert xs.tolist() == [0, 7]  # x=3 is at distance exactly 3 from x=0


def test_threshold_filters_only():
    score = smooth_map(6, shape=(50, 50), sigma=2)
    full = as_list(non_maximum_suppression(score, 4))
    for threshold in (-0.1, 0.0, 0.2):
        got = as_list(non_maximum_suppression(score, 4, threshold=threshold))
        assert got == [p for p in full if p[2] >= threshold]
        assert got == naive_nms(score, 4, threshold=threshold)


def test_max_picks_keeps_the_best():
    score = smooth_map(7, shape=(50, 50), sigma=2)
    full = as_list(non_maximum_suppression(score, 3))
    for cap in (0, 1, 5, len(full), len(full) + 10):
        assert as_list(non_maximum_suppression(score, 3, max_picks=cap)) == full[:cap]


def test_edge_margin():
    score = smooth_map(8, shape=(40, 44), sigma=1.5)
    margin = 5
    ys, xs, _ = non_maximum_suppression(score, 3, edge_margin=margin)
    assert ys.min() >= margin and xs.min() >= margin
    assert ys.max() <= 40 - 1 - margin and xs.max() <= 44 - 1 - margin
    # border pixels neither picked nor suppressing: same as NMS on the inner region alone
    inner = np.full(score.shape, np.nan, dtype=np.float32)
    inner[margin:-margin, margin:-margin] = score[margin:-margin, margin:-margin]
    assert as_list((ys, xs, _)) == naive_nms(inner, 3)
    # a bright pixel on the border is dropped
    score2 = score.copy()
    score2[0, 0] = 100.0
    assert (0, 0) not in zip(*non_maximum_suppression(score2, 3, edge_margin=1)[:2])
    assert non_maximum_suppression(score, 3, edge_margin=30)[0].size == 0


def test_nan_pixels_are_never_picked():
    score = smooth_map(9)
    score[10:15, 10:15] = np.nan
    ys, xs, _ = non_maximum_suppression(score, 2)
    assert not np.isnan(score[ys, xs]).any()
    assert as_list((ys, xs, _)) == naive_nms(score, 2)


def test_bad_arguments():
    with pytest.raises(TopazPuError):
        non_maximum_suppression(np.zeros((3, 3, 3)), 2)
    with pytest.raises(TopazPuError):
        non_maximum_suppression(np.zeros((3, 3)), -1)
    ys, xs, s = non_maximum_suppression(np.zeros((3, 3)), 1, threshold=1.0)
    assert ys.size == xs.size == s.size == 0


def test_large_map_matches_naive_on_a_crop_sized_problem():
    # big enough to cross many adaptive chunks, small enough for the naive reference
    score = smooth_map(10, shape=(70, 75), sigma=2.5)
    assert as_list(non_maximum_suppression(score, 4)) == naive_nms(score, 4)


def test_ramps_and_plateaus_long_dependency_chains():
    yy, xx = np.mgrid[0:40, 0:45].astype(np.float64)
    for score in (xx + 45 * yy, xx + yy, -np.hypot(yy - 20, xx - 20), np.zeros((40, 45))):
        for radius in (1, 2.5, 4):
            assert as_list(non_maximum_suppression(score, radius)) == naive_nms(score, radius)


def test_full_size_maps_are_fast():
    import time

    yy, xx = np.mgrid[0:620, 0:600].astype(np.float32)
    rng = np.random.default_rng(0)
    smooth = ndi.gaussian_filter(rng.standard_normal((620, 600)).astype(np.float32), 4)
    for score in (smooth, xx + 600 * yy, np.zeros((620, 600), np.float32)):
        start = time.perf_counter()
        ys, xs, _ = non_maximum_suppression(score, 8)
        assert time.perf_counter() - start < 3.0  # typically 15-100 ms; generous for loaded CI
        d2 = (ys[:200, None] - ys[None, :200]) ** 2 + (xs[:200, None] - xs[None, :200]) ** 2
        np.fill_diagonal(d2, 10**6)
        assert d2.min() > 64
