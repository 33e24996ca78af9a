"""Training curves of a topazpu model: loss and validation AP per epoch."""
import csv
import os

from pyworkflow.viewer import DESKTOP_TKINTER, Viewer

from ..objects import TopazPuModel
from ..protocols import TopazPuProtTrain
from .common import PngView


def readTrainingHistory(modelPath):
    """Rows (dicts of floats) of MODEL.training.tsv written beside a model by `topazpu train`."""
    path = os.path.splitext(modelPath)[0] + '.training.tsv'
    if not os.path.exists(path):
        raise FileNotFoundError('%s: no training history beside the model' % path)
    rows = []
    with open(path) as f:
        for row in csv.DictReader(f, delimiter='\t'):
            rows.append({k: (float(v) if v not in ('', None) else None) for k, v in row.items()})
    return rows


def writeTrainingPlot(model, path):
    """PNG of the loss and validation AP per epoch of a TopazPuModel (no display needed)."""
    from topazpu_core.plots import plot_training_curve
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    plot_training_curve(readTrainingHistory(model.getPath()), path)
    return path


class TopazPuTrainViewer(Viewer):
    """Plot of the training loss and validation average precision per epoch."""
    _label = 'topazpu training curves'
    _targets = [TopazPuProtTrain, TopazPuModel]
    _environments = [DESKTOP_TKINTER]

    def _visualize(self, obj, **kwargs):
        model = obj.outputModel if isinstance(obj, TopazPuProtTrain) else obj
        if model is None:
            return [self.errorMessage('No model yet.', 'topazpu')]
        try:
            png = writeTrainingPlot(model, self._getTmpPath('topazpu_training_%s.png' % model.getObjId()))
        except FileNotFoundError as e:
            return [self.errorMessage(str(e), 'topazpu')]
        return [PngView(png, 'topazpu training curves')]
