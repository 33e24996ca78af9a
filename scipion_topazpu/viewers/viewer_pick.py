"""Picks overlaid on micrographs (coloured by score) and the score histogram with the threshold.

Scores are network logits that rank picks (not probabilities): the histogram shows how many
picks per micrograph a threshold keeps and where the model's expected count (training -n) lies.
"""
import os

import numpy as np
from pyworkflow.viewer import DESKTOP_TKINTER, Viewer

from .. import convert
from ..estimates import diameterPxFromBoxSize
from ..protocols import TopazPuProtPick
from .common import PngView


def _radius(coordSet):
    """Circle radius (px): the particle radius implied by the box size."""
    return max(2.0, diameterPxFromBoxSize(coordSet.getBoxSize() or 32) / 2.0)


def writePickOverlays(coordSet, outDir, maxMicrographs=None, threshold=None, radius=None, micrographs=None):
    """One PNG per micrograph (`<image name>_picks.png` in outDir) with the picks circled.

    Circles are coloured by `_topazpuScore` when present; picks below `threshold` are drawn
    dashed. micrographs: the set to draw on (default: the coordinates' micrographs).
    Returns the PNG paths. Needs no display.
    """
    from topazpu_core.images import read_image
    from topazpu_core.plots import plot_overlay
    micSet = micrographs or coordSet.getMicrographs()
    micMap = convert.MicrographMap(micSet)
    coords, _ = convert.setToCoordinates(coordSet, micMap, scale=1.0)
    byImage = coords.by_image()
    os.makedirs(outDir, exist_ok=True)
    radius = radius or _radius(coordSet)
    paths = []
    for name, mic in micMap.byImageName.items():
        if maxMicrographs is not None and len(paths) >= maxMicrographs:
            break
        sub = byImage.get(name)
        if sub is None:
            from topazpu_core.coordinates import Coordinates
            sub = Coordinates.empty()
        path = os.path.join(outDir, '%s_picks.png' % name)
        plot_overlay(read_image(mic.getFileName()), sub, path, radius, threshold=threshold)
        paths.append(path)
    return paths


def writeScoreHistogram(coordSet, path, threshold=None, expectedPerMicrograph=None):
    """PNG histogram of the `_topazpuScore` values with the threshold marked and, given the
    expected particles per micrograph (the model's -n), the score above which that many are
    picked; picks per micrograph are shown, so a threshold reads as a count. Needs no display."""
    from topazpu_core.plots import plot_score_histogram
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    scores = convert.setScores(coordSet)
    mics = coordSet.getMicrographs()
    plot_score_histogram(scores[np.isfinite(scores)], path, threshold=threshold,
                         n_micrographs=mics.getSize() if mics is not None else None,
                         expected_per_micrograph=expectedPerMicrograph)
    return path


def expectedPerMicrograph(model):
    """The model's expected particles per micrograph (training -n), or None."""
    if model is None:
        return None
    return model.getMetadata().get('n_per_micrograph')


class TopazPuPickViewer(Viewer):
    """Picks over the first micrographs, and the histogram of pick scores."""
    _label = 'topazpu picks and scores'
    _targets = [TopazPuProtPick]
    _environments = [DESKTOP_TKINTER]
    MAX_MICROGRAPHS = 4

    def _visualize(self, obj, **kwargs):
        coords = getattr(obj, 'outputCoordinates', None)
        if coords is None:
            return [self.errorMessage('No coordinates yet.', 'topazpu')]
        outDir = self._getTmpPath('topazpu_picks_%s' % obj.getObjId())
        threshold = obj.getThresholdValue()
        views = [PngView(p, os.path.basename(p))
                 for p in writePickOverlays(coords, outDir, self.MAX_MICROGRAPHS, threshold)]
        hist = writeScoreHistogram(coords, os.path.join(outDir, 'scores.png'), threshold,
                                   expectedPerMicrograph(obj.getModel()))
        views.append(PngView(hist, 'topazpu pick scores'))
        return views
