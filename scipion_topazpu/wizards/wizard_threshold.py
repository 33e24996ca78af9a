"""Wizard: score threshold from the model's validation precision-recall curve."""
from pwem.wizards import EmWizard

from ..estimates import thresholdFromCurve
from ..protocols import TopazPuProtPick


def modelThreshold(model, criterion='f1', target=None):
    """(threshold, precision, recall) from a TopazPuModel's validation curve, or None without one."""
    curve = model.getMetadata().get('val_curve')
    if not curve or not len(curve.get('threshold', [])):
        return None
    return thresholdFromCurve(curve, criterion, target)


class TopazPuThresholdWizard(EmWizard):
    """Threshold at the maximum F1 of the model's validation curve."""
    _targets = [(TopazPuProtPick, ['threshold'])]

    def show(self, form, *params):
        model = form.protocol.inputModel.get()
        if model is None:
            form.showWarning('Select a model first.')
            return
        chosen = modelThreshold(model)
        if chosen is None:
            form.showWarning('The model has no validation curve (it was trained without validation).')
            return
        form.setVar('threshold', round(chosen[0], 3))
