"""Pure functions behind the wizards: particle size, particles per micrograph, threshold."""
import math
import unittest

import numpy as np

from scipion_topazpu.estimates import (boxSizeFromDiameter, diameterFromBoxSize, expectedParticlesPerMicrograph,
                                       meanLabelsPerMicrograph, particleRadiusPx, thresholdFromCurve)


CURVE = {  # descending threshold: recall grows, precision falls
    'threshold': [3.0, 2.0, 1.0, 0.0, -1.0, -2.0],
    'precision': [1.0, 0.9, 0.8, 0.6, 0.4, 0.3],
    'recall': [0.1, 0.4, 0.6, 0.8, 0.9, 0.95],
}


class TestParticleSize(unittest.TestCase):

    def test_particle_radius_px(self):
        self.assertAlmostEqual(particleRadiusPx(120.0, 1.5), 40.0)
        self.assertAlmostEqual(particleRadiusPx(115.5, 7.0), 8.25)
        with self.assertRaises(ValueError):
            particleRadiusPx(0, 1.0)
        with self.assertRaises(ValueError):
            particleRadiusPx(100, -1.0)

    def test_box_size_from_diameter(self):
        for diameter, sampling, box in [
                (115.5, 3.5, 50),     # 33 px -> 49.5 -> 50
                (120.0, 1.0, 180),    # 120 px -> 180 (already even)
                (100.0, 1.0, 150),
                (101.0, 1.0, 152),    # 151.5 -> 152
                (10.0, 5.0, 8)]:      # tiny: at least 8
            with self.subTest(diameter=diameter, sampling=sampling):
                self.assertEqual(boxSizeFromDiameter(diameter, sampling), box)
                self.assertEqual(boxSizeFromDiameter(diameter, sampling) % 2, 0)

    def test_diameter_box_round_trip(self):
        for box in (50, 64, 180):
            self.assertEqual(boxSizeFromDiameter(diameterFromBoxSize(box, 2.0), 2.0), box)

    def test_expected_particles_per_micrograph(self):
        self.assertAlmostEqual(meanLabelsPerMicrograph([10, 20, 0, 30]), 20)   # unlabelled ignored
        self.assertEqual(expectedParticlesPerMicrograph([10, 20, 0, 30]), 25)   # 20 / 0.8
        self.assertEqual(expectedParticlesPerMicrograph([10, 20, 30], completeness=1.0), 20)
        self.assertEqual(expectedParticlesPerMicrograph([10, 20, 30], completeness=0.5), 40)
        self.assertEqual(expectedParticlesPerMicrograph([1]), 2)                # ceil(1.25)
        with self.assertRaises(ValueError):
            expectedParticlesPerMicrograph([0, 0])
        with self.assertRaises(ValueError):
            expectedParticlesPerMicrograph([5], completeness=0)


class TestThreshold(unittest.TestCase):

    def test_threshold_max_f1(self):
        t, p, r = thresholdFromCurve(CURVE)
        f1 = [2 * a * b / (a + b) for a, b in zip(CURVE['precision'], CURVE['recall'])]
        best = int(np.argmax(f1))
        self.assertEqual((t, p, r), (CURVE['threshold'][best], CURVE['precision'][best], CURVE['recall'][best]))
        self.assertEqual(t, 1.0)

    def test_threshold_order_does_not_matter(self):
        shuffled = {k: list(reversed(v)) for k, v in CURVE.items()}
        self.assertEqual(thresholdFromCurve(shuffled), thresholdFromCurve(CURVE))

    def test_threshold_target_recall_and_precision(self):
        # highest threshold with recall >= 0.85; lowest with precision >= 0.75
        self.assertEqual(thresholdFromCurve(CURVE, 'recall', 0.85)[0], -1.0)
        self.assertEqual(thresholdFromCurve(CURVE, 'recall', 0.1)[0], 3.0)
        self.assertEqual(thresholdFromCurve(CURVE, 'precision', 0.75)[0], 1.0)
        with self.assertRaisesRegex(ValueError, 'never reaches recall'):
            thresholdFromCurve(CURVE, 'recall', 0.99)
        with self.assertRaises(ValueError):
            thresholdFromCurve(CURVE, 'recall')
        with self.assertRaises(ValueError):
            thresholdFromCurve(CURVE, 'bogus')
        with self.assertRaises(ValueError):
            thresholdFromCurve({'threshold': [], 'precision': [], 'recall': []})

    def test_threshold_zero_precision_recall_points(self):
        curve = {'threshold': [1.0, 0.0], 'precision': [0.0, 0.5], 'recall': [0.0, 0.5]}
        t, p, r = thresholdFromCurve(curve)
        self.assertEqual(t, 0.0)
        self.assertTrue(math.isclose(p, 0.5))
