"""Pure functions behind the wizards: particle size, particles per micrograph, threshold."""
import math

import numpy as np
import pytest

from scipion_topazpu.estimates import (boxSizeFromDiameter, diameterFromBoxSize, expectedParticlesPerMicrograph,
                                       meanLabelsPerMicrograph, particleRadiusPx, thresholdFromCurve)


def test_particle_radius_px():
    assert particleRadiusPx(120.0, 1.5) == pytest.approx(40.0)
    assert particleRadiusPx(115.5, 7.0) == pytest.approx(8.25)
    with pytest.raises(ValueError):
        particleRadiusPx(0, 1.0)
    with pytest.raises(ValueError):
        particleRadiusPx(100, -1.0)


@pytest.mark.parametrize('diameter, sampling, box', [
    (115.5, 3.5, 50),     # 33 px -> 49.5 -> 50
    (120.0, 1.0, 180),    # 120 px -> 180 (already even)
    (100.0, 1.0, 150),
    (101.0, 1.0, 152),    # 151.5 -> 152
    (10.0, 5.0, 8),       # tiny: at least 8
])
def test_box_size_from_diameter(diameter, sampling, box):
    assert boxSizeFromDiameter(diameter, sampling) == box
    assert boxSizeFromDiameter(diameter, sampling) % 2 == 0


def test_diameter_box_round_trip():
    for box in (50, 64, 180):
        assert boxSizeFromDiameter(diameterFromBoxSize(box, 2.0), 2.0) == box


def test_expected_particles_per_micrograph():
    assert meanLabelsPerMicrograph([10, 20, 0, 30]) == pytest.approx(20)   # unlabelled ignored
    assert expectedParticlesPerMicrograph([10, 20, 0, 30]) == 25            # 20 / 0.8
    assert expectedParticlesPerMicrograph([10, 20, 30], completeness=1.0) == 20
    assert expectedParticlesPerMicrograph([10, 20, 30], completeness=0.5) == 40
    assert expectedParticlesPerMicrograph([1]) == 2                         # ceil(1.25)
    with pytest.raises(ValueError):
        expectedParticlesPerMicrograph([0, 0])
    with pytest.raises(ValueError):
        expectedParticlesPerMicrograph([5], completeness=0)


CURVE = {  # descending threshold: recall grows, precision falls
    'threshold': [3.0, 2.0, 1.0, 0.0, -1.0, -2.0],
    'precision': [1.0, 0.9, 0.8, 0.6, 0.4, 0.3],
    'recall': [0.1, 0.4, 0.6, 0.8, 0.9, 0.95],
}


def test_threshold_max_f1():
    t, p, r = thresholdFromCurve(CURVE)
    f1 = [2 * a * b / (a + b) for a, b in zip(CURVE['precision'], CURVE['recall'])]
    best = int(np.argmax(f1))
    assert (t, p, r) == (CURVE['threshold'][best], CURVE['precision'][best], CURVE['recall'][best])
    assert t == 1.0


def test_threshold_order_does_not_matter():
    shuffled = {k: list(reversed(v)) for k, v in CURVE.items()}
    assert thresholdFromCurve(shuffled) == thresholdFromCurve(CURVE)


def test_threshold_target_recall_and_precision():
    assert thresholdFromCurve(CURVE, 'recall', 0.85)[0] == -1.0    # highest threshold with recall >= 0.85
    assert thresholdFromCurve(CURVE, 'recall', 0.1)[0] == 3.0
    assert thresholdFromCurve(CURVE, 'precision', 0.75)[0] == 1.0  # lowest threshold with precision >= 0.75
    with pytest.raises(ValueError, match='never reaches recall'):
        thresholdFromCurve(CURVE, 'recall', 0.99)
    with pytest.raises(ValueError):
        thresholdFromCurve(CURVE, 'recall')
    with pytest.raises(ValueError):
        thresholdFromCurve(CURVE, 'bogus')
    with pytest.raises(ValueError):
        thresholdFromCurve({'threshold': [], 'precision': [], 'recall': []})


def test_threshold_zero_precision_recall_points():
    curve = {'threshold': [1.0, 0.0], 'precision': [0.0, 0.5], 'recall': [0.0, 0.5]}
    t, p, r = thresholdFromCurve(curve)
    assert t == 0.0 and math.isclose(p, 0.5)
