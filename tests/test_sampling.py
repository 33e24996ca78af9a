"""Label disks, pi, splits and the tile sampler."""
import numpy as np
import pytest
from scipy import ndimage

from topazpu_core import sampling
from topazpu_core.errors import TopazPuError


def test_disk_pixels_golden():
    assert sampling.disk_pixels(3) == 29
    assert sampling.disk_pixels(2) == 13
    assert sampling.disk_pixels(0) == 1
    assert sampling.disk_pixels(1) == 5


def test_pi_golden():
    # 300 particles of 29 px on a 1024 x 1024 micrograph... hand-computed
    assert sampling.pi_from_particles(300, 3, 1024 * 1024) == pytest.approx(300 * 29 / 1048576, rel=1e-12)
    # Topaz 0.2.5's example: pi = 0.0392 for n = 300, r = 3 at 470 x 473 px
    assert sampling.pi_from_particles(300, 3, 470 * 473) == pytest.approx(0.0392, abs=5e-4)
    with pytest.raises(TopazPuError):
        sampling.pi_from_particles(1e6, 3, 1000)


def test_unlabelled_fraction():
    assert sampling.unlabelled_positive_fraction(0.05, 0.01) == pytest.approx(0.04 / 0.99)
    # background pixels hold no positive: the unlabelled positives are spread over fewer pixels
    assert sampling.unlabelled_positive_fraction(0.05, 0.01, 0.09) == pytest.approx(0.04 / 0.90)
    with pytest.raises(TopazPuError, match="raise -n"):
        sampling.unlabelled_positive_fraction(0.01, 0.02)


def test_label_map_disk_and_edges():
    lab = sampling.label_map((20, 30), np.array([10.0, 0.0]), np.array([5.0, 0.0]), 3)
    assert lab[5, 10] and lab[5, 13] and not lab[5, 14] and lab[8, 10] and not lab[8, 11]
    assert lab.sum() == 29 + 11  # the corner particle keeps its quarter disk (11 px inside)


def test_split_micrographs_kfold_partitions():
    names = ["m%d" % i for i in range(10)]
    counts = list(range(10))
    vals = []
    for f in range(5):
        tr, va = sampling.split_micrographs(names, counts, k_fold=5, fold=f, seed=3)
        assert not set(tr) & set(va) and set(tr) | set(va) == set(names)
        vals += va
    assert sorted(vals) == sorted(names)
    a = sampling.split_micrographs(names, counts, val_fraction=0.3, seed=1)
    b = sampling.split_micrographs(names, counts, val_fraction=0.3, seed=1)
    assert a == b and len(a[1]) == 3


def test_tile_sampler_labels_follow_augmentation():
    """A tile's output-grid labels must sit where the particle is after rotation and flip."""
    rng = np.random.default_rng(0)
    H, W = 100, 120
    img = np.zeros((H, W), np.float32)
    cx, cy = np.array([60.0]), np.array([40.0])
    img[36:45, 56:65] = 1.0  # a bright square particle at (60, 40)
    # label radius 3 >= stride / sqrt(2): the particle always covers an output position
    s = sampling.TileSampler([img], 3, [np.stack([cx, cy], 1)], tile_size=48, grid=(4, 7))
    for _ in range(20):
        xs, ys = s.sample(2, rng)
        t = xs[0]
        assert ys[0].any()  # first half of the tiles hold a labelled particle
        oy, ox = np.nonzero(ys[0])
        for j, i in zip(oy, ox):
            assert t[7 + 4 * j, 7 + 4 * i] == 1.0  # label centres land on particle pixels


def test_tiles_rotated_by_any_angle_keep_their_labels_on_the_particles():
    """cut_rotated: at 0 degrees the plain tile; at 90 the plain tile turned a quarter (same centre);
    at any angle each label is the label of the image point it came from, and a sample's labels
    sit on the particles."""
    H, W = 110, 120
    x, y = np.array([30.0, 70.0, 95.0]), np.array([40.0, 60.0, 20.0])
    truth = sampling.label_map((H, W), x, y, 3)
    img = truth.astype(np.float32)  # the image is its own label map: 1 on the disks
    s = sampling.TileSampler([img], 3, [np.stack([x, y], 1)], tile_size=40, grid=(4, 7), any_angle=True)
    for y0, x0 in [(20, 10), (-5, 90), (80, 60)]:
        img0, lab0 = s.cut(0, y0, x0)
        img_r, lab_r = s.cut_rotated(0, y0, x0, 0.0)
        np.testing.assert_array_equal(lab_r, lab0)
        np.testing.assert_allclose(img_r, img0, atol=1e-6)
        img_q, lab_q = s.cut_rotated(0, y0, x0, 90.0)
        turned = [k for k in (1, 3) if np.array_equal(lab_q, np.rot90(lab0, k))]
        assert turned and np.allclose(img_q, np.rot90(img0, turned[0]), atol=1e-6)
        for degrees in (17.0, 133.0, 301.5):
            img_a, lab_a = s.cut_rotated(0, y0, x0, degrees)
            positive = lab_a == sampling.POSITIVE
            # nearest-neighbour labels and spline-interpolated pixels of one map agree but at the disks' rims
            assert positive.sum() == 0 or np.mean(img_a[positive] > 0.5) > 0.8
            assert np.mean(np.abs(positive.astype(np.float32) - img_a) > 0.5) < 0.03
    # a sample's labels sit on the particles. The first tile of each is placed around a label, which
    # can turn out of the output grid (about 1 in 10 at this small tile, as with 90-degree turns)
    rng = np.random.default_rng(2)
    on_particles = []
    for _ in range(50):
        xs, ys = s.sample(2, rng)
        oy, ox = np.nonzero(ys[0] == sampling.POSITIVE)
        if len(oy):
            on_particles.append(np.mean(xs[0][7 + 4 * oy, 7 + 4 * ox] > 0.5))
    assert len(on_particles) >= 40 and np.mean(on_particles) > 0.9


def test_turned_tiles_are_the_spline_and_nearest_labels_of_the_whole_micrograph():
    """A turned (and maybe mirrored) tile is what one `ndimage.affine_transform` of the whole micrograph
    gives (cubic spline, edges repeated), though its spline is computed once per micrograph, and its
    labels are the label map's turned by nearest neighbour: inside the image and across its edges."""
    rng = np.random.default_rng(4)
    H, W, t = 150, 170, 50
    img = rng.normal(size=(H, W)).astype(np.float32)
    x, y = rng.uniform(0, W, 40), rng.uniform(0, H, 40)
    truth = sampling.label_map((H, W), x, y, 3).astype(np.int8)
    s = sampling.TileSampler([img], 3, [np.stack([x, y], 1)], tile_size=t, grid=(4, 7), any_angle=True)
    h = np.full(2, (t - 1) / 2.0)
    for y0, x0, degrees, mirror in [(40, 50, 17.0, False), (40, 50, 17.0, True), (-30, 140, 250.0, False),
                                    (120, -20, 45.0, True), (10, 60, 90.0, False)]:
        c, sn = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
        turn = np.array([[c, sn], [-sn, c]]) * (np.array([1.0, -1.0]) if mirror else 1.0)
        origin = np.array([y0, x0]) + h - turn @ h
        img_t, lab_t = s.cut_rotated(0, y0, x0, degrees, mirror)
        expected = ndimage.affine_transform(img.astype(np.float64), turn, origin, (t, t), order=3, mode="nearest")
        np.testing.assert_allclose(img_t, expected, atol=1e-5)
        np.testing.assert_array_equal(lab_t, ndimage.affine_transform(truth, turn, origin, (t, t), order=0,
                                                                      mode="nearest"))


def test_tiles_rotated_by_any_angle_keep_the_noise_of_the_micrograph():
    """A tile turned by any angle keeps most of a noise image's variance (a cubic spline: about
    0.78 of it; linear interpolation would keep 0.45 and smooth the tiles), and its mean."""
    img = np.random.default_rng(3).normal(size=(160, 170)).astype(np.float32)
    centres = [np.array([[80.0, 80.0]])]
    s = sampling.TileSampler([img], 3, centres, tile_size=60, grid=(4, 7), any_angle=True)
    plain = s.cut(0, 50, 55)[0]
    for degrees in (10.0, 45.0, 77.0, 212.0):
        turned = s.cut_rotated(0, 50, 55, degrees)[0]
        assert 0.72 < turned.var() / plain.var() < 0.85
        assert abs(turned.mean() - plain.mean()) < 0.05


def test_intensity_jitter_is_an_affine_change_of_each_tile_within_its_bounds():
    """With jitter a, every tile is the unjittered tile times exp(u) plus v, |u|, |v| <= a, drawn
    per tile; the tiles' places and labels are those drawn without jitter."""
    img = np.random.default_rng(5).normal(size=(90, 110)).astype(np.float32)
    centres = [np.array([[50.0, 40.0], [20.0, 70.0]])]
    plain = sampling.TileSampler([img], 3, centres, tile_size=40, grid=(4, 7))
    jittered = sampling.TileSampler([img], 3, centres, tile_size=40, grid=(4, 7), intensity_jitter=0.2)
    xs0, ys0 = plain.sample(8, np.random.default_rng(1))
    xs1, ys1 = jittered.sample(8, np.random.default_rng(1))
    assert np.array_equal(ys0, ys1)
    gains, shifts = [], []
    for x0, x1 in zip(xs0, xs1):
        (gain, shift), *_ = np.linalg.lstsq(np.stack([x0.ravel(), np.ones(x0.size)], 1), x1.ravel(), rcond=None)
        np.testing.assert_allclose(gain * x0 + shift, x1, atol=1e-5)
        gains.append(gain)
        shifts.append(shift)
    assert np.all(np.abs(np.log(gains)) <= 0.2 + 1e-6) and np.all(np.abs(shifts) <= 0.2 + 1e-6)
    assert np.std(np.log(gains)) > 0.02 and np.std(shifts) > 0.02  # a draw per tile, not one per batch
    with pytest.raises(TopazPuError, match="intensity jitter"):
        sampling.TileSampler([img], 3, centres, tile_size=40, grid=(4, 7), intensity_jitter=1.5)


def test_background_ring_labels_match_the_maps_inside_and_at_the_edges():
    """A tile's labels are POSITIVE on label_map, BACKGROUND on background_map (the ring out to
    the background radius, outside every label disk), UNLABELLED elsewhere, also where the tile
    hangs over the image edge; a label disk wins over a neighbour's ring."""
    H, W = 60, 70
    x = np.array([20.0, 27.0, 2.0, 50.0])  # the first two 7 px apart: each inside the other's ring
    y = np.array([30.0, 30.0, 3.0, 45.0])
    lab = sampling.label_map((H, W), x, y, 3)
    ring = sampling.background_map((H, W), x, y, 3, 10)
    assert not (lab & ring).any()
    assert ring[30, 16] and ring[36, 20] and not ring[30, 27] and lab[30, 27]  # the neighbour's centre stays positive
    assert ring.sum() > 4 * lab.sum()
    expected = lab.astype(np.int8) - ring.astype(np.int8)
    img = np.zeros((H, W), np.float32)
    s = sampling.TileSampler([img], 3, [np.stack([x, y], 1)], tile_size=24, grid=(4, 7), background_radius=10)
    for y0, x0 in [(10, 5), (30, 40), (-6, -4), (45, 55)]:
        _, got = s.cut(0, y0, x0)
        rows = np.clip(np.arange(y0, y0 + 24), 0, H - 1)
        cols = np.clip(np.arange(x0, x0 + 24), 0, W - 1)
        np.testing.assert_array_equal(got, expected[np.ix_(rows, cols)])
    assert {int(v) for v in np.unique(expected)} == {sampling.BACKGROUND, sampling.UNLABELLED, sampling.POSITIVE}
    plain = sampling.TileSampler([img], 3, [np.stack([x, y], 1)], tile_size=24, grid=(4, 7))
    np.testing.assert_array_equal(plain.cut(0, 10, 5)[1], lab[10:34, 5:29].astype(np.int8))
    assert not sampling.background_map((H, W), x, y, 3, 3).any()  # no ring inside the label disk
