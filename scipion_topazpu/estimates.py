"""Pure functions behind the wizards and protocol defaults (no Scipion objects, no display).

Units are in the names: a particle size the user gives is a diameter in Angstrom (`diameterA`);
a size in pixels (`diameterPx`, `radiusPx`, `boxSize`) is in px of the micrographs whose
sampling rate (A/px) converts it. A model's own lengths (px of its training images) change
frame only in topazpu_core.options.model_length_px.
"""
import math

import numpy as np

from .constants import BOX_FACTOR


def particleRadiusPx(diameterA, samplingRate):
    """Particle radius in pixels for a diameter in Angstrom at `samplingRate` A/px."""
    if diameterA <= 0 or samplingRate <= 0:
        raise ValueError('diameter (%s A) and sampling rate (%s A/px) must be positive'
                         % (diameterA, samplingRate))
    return 0.5 * diameterA / samplingRate


def boxSizeFromDiameterPx(diameterPx, factor=BOX_FACTOR):
    """Box size in px: `factor` x the diameter in px, rounded up to an even number (at least 8)."""
    box = int(math.ceil(factor * diameterPx - 1e-9))
    box += box % 2
    return max(8, box)


def boxSizeFromDiameter(diameterA, samplingRate, factor=BOX_FACTOR):
    """Box size in px of micrographs at `samplingRate` A/px for a diameter in Angstrom."""
    return boxSizeFromDiameterPx(2.0 * particleRadiusPx(diameterA, samplingRate), factor)


def diameterPxFromBoxSize(boxSize, factor=BOX_FACTOR):
    """Particle diameter in px implied by a box size in px (inverse of boxSizeFromDiameterPx)."""
    return boxSize / factor


def diameterFromBoxSize(boxSize, samplingRate, factor=BOX_FACTOR):
    """Particle diameter in Angstrom implied by a box size in px (inverse of boxSizeFromDiameter)."""
    return diameterPxFromBoxSize(boxSize, factor) * samplingRate


# Fraction of the particles of a labelled micrograph assumed labelled when estimating the
# number of particles per micrograph from the labels.
DEFAULT_LABEL_COMPLETENESS = 0.8


def meanLabelsPerMicrograph(counts):
    """Mean label count over the micrographs with at least one label."""
    counts = np.asarray([c for c in counts if c > 0], dtype=float)
    if counts.size == 0:
        raise ValueError('no labelled micrograph')
    return float(counts.mean())


def expectedParticlesPerMicrograph(counts, completeness=DEFAULT_LABEL_COMPLETENESS):
    """Expected particles per micrograph from the label counts of the labelled micrographs.

    The mean label count over labelled micrographs divided by the fraction of particles
    assumed labelled (`completeness`, 0-1], rounded up: the PU objective needs more
    particles than labels (with complete labels, use the PN objective instead).
    """
    if not 0 < completeness <= 1:
        raise ValueError('completeness must be in (0, 1], got %r' % completeness)
    return max(1, int(math.ceil(meanLabelsPerMicrograph(counts) / completeness - 1e-9)))


def thresholdFromCurve(curve, criterion='f1', target=None):
    """A score threshold chosen on a validation precision-recall curve.

    curve: dict with arrays 'threshold', 'precision', 'recall' (any order); a model's
        'val_curve' holds the precision estimated from sparse labels (topazpu_core.metrics).
    criterion: 'f1' (maximum F1, highest threshold among equal maxima: metrics.best_f1_index), 'recall' (the highest threshold reaching recall >= target)
    or 'precision' (the lowest threshold keeping precision >= target).
    Returns (threshold, precision, recall) at the chosen point.
    """
    t = np.asarray(curve['threshold'], dtype=float)
    p = np.asarray(curve['precision'], dtype=float)
    r = np.asarray(curve['recall'], dtype=float)
    if t.size == 0:
        raise ValueError('empty precision-recall curve')
    order = np.argsort(-t)                     # descending threshold: recall grows
    t, p, r = t[order], p[order], r[order]
    if criterion == 'f1':
        from topazpu_core.metrics import best_f1_index  # the one best-F1 rule (evaluate, training)
        i = best_f1_index(t, p, r)
    elif criterion == 'recall':
        if target is None:
            raise ValueError('criterion "recall" needs a target')
        hits = np.nonzero(r >= target)[0]
        if hits.size == 0:
            raise ValueError('the curve never reaches recall %.3g (maximum %.3g)' % (target, r.max()))
        i = int(hits[0])
    elif criterion == 'precision':
        if target is None:
            raise ValueError('criterion "precision" needs a target')
        hits = np.nonzero(p >= target)[0]
        if hits.size == 0:
            raise ValueError('the curve never reaches precision %.3g (maximum %.3g)' % (target, p.max()))
        i = int(hits[-1])
    else:
        raise ValueError('unknown criterion %r (f1, recall or precision)' % criterion)
    return float(t[i]), float(p[i]), float(r[i])
