"""Wizard: score threshold from the model's validation precision-recall curve."""
from pwem.wizards import EmWizard

from ..constants import AUTO_PICKS_PER_PARTICLE
from ..estimates import thresholdFromCurve
from ..protocols import TopazPuProtPick


def modelThreshold(model, criterion='f1', target=None):
    """(threshold, precision, recall) from a TopazPuModel's validation curve, or None without one."""
    curve = model.getMetadata().get('val_curve')
    if not curve or not len(curve.get('threshold', [])):
        return None
    return thresholdFromCurve(curve, criterion, target)


class TopazPuThresholdWizard(EmWizard):
    """Threshold at the maximum F1 of the model's validation curve; without one, the model's default
    threshold (the expected particles per micrograph)."""
    _targets = [(TopazPuProtPick, ['threshold'])]

    def show(self, form, *params):
        model = form.protocol.inputModel.get()
        if model is None:
            form.showWarning('Select a model first.')
            return
        chosen = modelThreshold(model)
        if chosen is not None:
            form.setVar('threshold', round(chosen[0], 3))
        elif model.getThreshold() is not None:
            form.setVar('threshold', round(model.getThreshold(), 3))
            form.showInfo('The model was trained without validation, so it has no precision-recall curve: '
                          'this is its default threshold, at which it picks %g x the expected particles per '
                          'micrograph.' % AUTO_PICKS_PER_PARTICLE)
        else:
            form.showWarning('The model has neither a validation curve nor a default threshold.')
