"""Viewers: training curves, pick overlays and score histograms (the PNG writers need no display)."""
from .viewer_pick import TopazPuPickViewer, writePickOverlays, writeScoreHistogram
from .viewer_train import TopazPuTrainViewer, readTrainingHistory, writeTrainingPlot

__all__ = ['TopazPuPickViewer', 'TopazPuTrainViewer', 'readTrainingHistory', 'writePickOverlays',
           'writeScoreHistogram', 'writeTrainingPlot']
