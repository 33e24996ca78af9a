"""The junk criteria of benchmarks/bench_downstream.py on synthetic images.

A ring (apoferritin's projection: a hollow shell) is the reference. Class level: a noisy,
slightly shifted ring must pass; smoothed noise, an inverted ring and a small blob must fail; an
asymmetric pattern must be found again after an in-plane rotation. Particle level: single noisy
rings must correlate above single noise images, and a set mixed from both in a known proportion
must read that proportion back.
"""
import os
import sys
import unittest

import numpy as np
import scipy.ndimage as ndi

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))

from bench_downstream import (background_positions, baseline_threshold, class_correlations, disc_mask,  # noqa: E402
                              junk_summary, known_answer_check, particle_correlations, particle_share,
                              rotational_average, share_interval)
from topazpu_core.coordinates import Coordinates  # noqa: E402

BOX = 48
RADIUS = 16  # particle radius in px of the box
COMPARE = 1.25 * RADIUS  # the comparison disc the benchmark uses


def ring(shift=(0, 0)):
    """Projection of a hollow sphere of outer radius RADIUS and inner radius 0.65 RADIUS."""
    c = BOX // 2
    y, x = np.indices((BOX, BOX), dtype=float)
    r2 = (x - c - shift[1]) ** 2 + (y - c - shift[0]) ** 2
    outer = np.sqrt(np.clip(RADIUS ** 2 - r2, 0, None))
    inner = np.sqrt(np.clip((0.65 * RADIUS) ** 2 - r2, 0, None))
    return outer - inner


class ClassCorrelationTest(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(0)
        self.reference = ring()

    def noisy(self, image, sigma):
        return image + self.rng.normal(scale=sigma * image.std(), size=image.shape)

    def test_good_and_junk_classes(self):
        classes = np.stack([
            self.noisy(ring(shift=(1, -2)), 0.5),                                   # particle, off by 2 px
            ndi.gaussian_filter(self.rng.normal(size=(BOX, BOX)), 2.0),             # empty ice
            -ring(),                                                                # inverted contrast
            np.exp(-((np.indices((BOX, BOX)) - BOX // 2) ** 2).sum(0) / (2 * 3.0 ** 2)),  # small blob
            np.zeros((BOX, BOX)),                                                   # constant
        ])
        corr = class_correlations(classes, self.reference, COMPARE)
        self.assertGreater(corr[0], 0.8)
        self.assertLess(corr[1], 0.5)
        self.assertLess(corr[2], 0.0)
        self.assertLess(corr[3], 0.5)
        self.assertEqual(corr[4], 0.0)

    def test_rotation_search(self):
        pattern = np.zeros((BOX, BOX))
        pattern[BOX // 2 - 3: BOX // 2 + 3, BOX // 2 - 4: BOX // 2 + 14] = 1.0  # a bar to the right
        rotated = ndi.rotate(pattern, 40, reshape=False, order=1)
        with_search = class_correlations(rotated[None], pattern, COMPARE)[0]
        without = class_correlations(rotated[None], pattern, COMPARE, angle_step=360.0)[0]
        self.assertGreater(with_search, 0.95)
        self.assertLess(without, with_search - 0.1)

    def test_shapes_are_checked(self):
        with self.assertRaises(ValueError):
            class_correlations(np.zeros((2, BOX, BOX)), np.zeros((BOX, BOX + 1)), COMPARE)

    def test_disc_mask_is_centred_like_relion(self):
        m = disc_mask(6, 1)
        self.assertEqual(m.sum(), 5)
        self.assertTrue(m[3, 3] and m[2, 3] and m[4, 3] and m[3, 2] and m[3, 4])


class RotationalAverageTest(unittest.TestCase):
    def test_round_images_stay_and_others_become_round(self):
        r = ring()
        np.testing.assert_allclose(rotational_average(r), r, atol=0.15 * r.max())
        bar = np.zeros((BOX, BOX))
        bar[BOX // 2 - 2: BOX // 2 + 3, :] = 1.0
        avg = rotational_average(bar)
        c = BOX // 2
        np.testing.assert_allclose(avg, avg.T, atol=1e-12)  # the same in all directions from the centre
        for k in range(1, c):
            self.assertAlmostEqual(avg[c, c + k], avg[c - k, c], delta=1e-12)
            self.assertAlmostEqual(avg[c, c - k], avg[c + k, c], delta=1e-12)
        self.assertAlmostEqual(avg[BOX // 2, BOX // 2], 1.0)
        self.assertAlmostEqual(avg.mean(), bar.mean(), delta=0.1 * bar.mean())


class JunkSummaryTest(unittest.TestCase):
    def test_counts(self):
        s = junk_summary([100, 50, 0, 30], [0.9, 0.2, 0.1, 0.5], threshold=0.5)
        self.assertEqual(s["particles"], 180)
        self.assertEqual(s["good_particles"], 130)
        self.assertAlmostEqual(s["junk_share"], 50 / 180)
        self.assertEqual(s["good_classes"], [1, 4])
        self.assertEqual(s["junk_classes"], [2])  # the empty class 3 is neither

    def test_baseline_threshold_ignores_empty_classes(self):
        baseline = {"counts": np.array([10, 0, 5]), "correlation": np.array([0.8, 0.1, 0.62])}
        self.assertAlmostEqual(baseline_threshold(baseline), 0.62)


class ParticleLevelTest(unittest.TestCase):
    """Single particle images as noisy as the real ones (a per-image correlation of ~0.2)."""

    def setUp(self):
        self.rng = np.random.default_rng(1)
        self.reference = ring()

    def particles(self, n, shift=(0, 0)):
        image = ring(shift)
        return image + self.rng.normal(scale=4 * image.std(), size=(n, BOX, BOX))

    def background(self, n):
        return self.rng.normal(scale=4 * ring().std(), size=(n, BOX, BOX))

    def test_particles_correlate_above_background(self):
        p = particle_correlations(self.particles(300), self.reference, COMPARE, sigma=2.0)
        b = particle_correlations(self.background(300), self.reference, COMPARE, sigma=2.0)
        self.assertGreater(p.mean() - b.mean(), 4 * np.hypot(p.std(), b.std()) / np.sqrt(300))
        self.assertGreater(p.mean(), 0.1)

    def test_shift_search(self):
        shifted = ring((0, 2))[None]
        self.assertLess(particle_correlations(shifted, self.reference, COMPARE, max_shift=0)[0], 0.95)
        self.assertGreater(particle_correlations(shifted, self.reference, COMPARE, max_shift=2)[0], 0.999)

    def test_shapes_are_checked(self):
        with self.assertRaises(ValueError):
            particle_correlations(np.zeros((3, BOX, BOX)), np.zeros((BOX, BOX + 1)), COMPARE)

    def test_a_known_mixture_reads_back(self):
        def corr(images):
            return particle_correlations(images, self.reference, COMPARE, sigma=2.0)
        p, b = corr(self.particles(600)), corr(self.background(600))
        mixture = np.concatenate([corr(self.particles(420)), corr(self.background(180))])  # 30 % junk
        share = particle_share(mixture, p, b)
        self.assertAlmostEqual(share, 0.7, delta=0.06)
        lo, hi = share_interval(mixture, p, b, np.random.default_rng(0))
        self.assertLess(lo, share)
        self.assertGreater(hi, share)
        self.assertLess(lo, 0.7)
        self.assertGreater(hi, 0.7)
        self.assertAlmostEqual(particle_share(p, p, b), 1.0)
        self.assertAlmostEqual(particle_share(b, p, b), 0.0)
        true, read, sd = known_answer_check(p, b, 0.3, np.random.default_rng(0), repeats=50)
        self.assertAlmostEqual(true, 0.3, delta=0.01)
        self.assertAlmostEqual(read, 0.3, delta=max(0.03, 2 * sd))

    def test_share_needs_particles_above_background(self):
        with self.assertRaises(ValueError):
            particle_share([0.1], [0.1, 0.1], [0.2, 0.2])


class BackgroundPositionsTest(unittest.TestCase):
    def test_far_from_labels_inside_margins(self):
        labels = Coordinates.from_arrays(["a"] * 3 + ["b"], [100, 200, 300, 50], [100, 100, 300, 50])
        got = background_positions(labels, {"a": (400, 500), "b": (300, 300)}, distance=64, margin=48,
                                   per_micrograph={"a": 20, "b": 5}, rng=np.random.default_rng(0))
        groups = got.by_image()
        self.assertEqual((len(groups["a"]), len(groups["b"])), (20, 5))
        for name, (h, w) in (("a", (400, 500)), ("b", (300, 300))):
            xy = groups[name].xy
            self.assertTrue(np.all((xy[:, 0] >= 48) & (xy[:, 0] <= w - 48) & (xy[:, 1] >= 48) & (xy[:, 1] <= h - 48)))
            lab = labels.by_image()[name].xy
            self.assertGreaterEqual(np.hypot(*(xy[:, None, :] - lab[None]).transpose(2, 0, 1)).min(), 64)

    def test_no_room_is_an_error(self):
        labels = Coordinates.from_arrays(["a"], [100], [100])
        with self.assertRaises(SystemExit):
            background_positions(labels, {"a": (200, 200)}, distance=500, margin=10, per_micrograph={"a": 1},
                                 rng=np.random.default_rng(0))


if __name__ == "__main__":
    unittest.main()
