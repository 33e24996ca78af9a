"""Wizards for particle sizes: box size and particle diameter."""
from pwem.wizards import EmWizard

from ..estimates import boxSizeFromDiameterPx, diameterFromBoxSize
from ..protocols import TopazPuProtPick, TopazPuProtTrain


class TopazPuPickBoxSizeWizard(EmWizard):
    """Box size of the picks from the particle diameter (or the model's) and the pixel size."""
    _targets = [(TopazPuProtPick, ['boxSize'])]

    def show(self, form, *params):
        prot = form.protocol
        if prot.getInputMicrographs() is None:
            form.showWarning('Select the input micrographs first.')
            return
        diameterPx = prot.getParticleDiameterPx()
        if not diameterPx:
            form.showWarning('Give the particle diameter (A), or a model that records it.')
            return
        form.setVar('boxSize', boxSizeFromDiameterPx(diameterPx))


class TopazPuTrainDiameterWizard(EmWizard):
    """Particle diameter (A) from the box size of the training coordinates."""
    _targets = [(TopazPuProtTrain, ['particleDiameter'])]

    def show(self, form, *params):
        coords = form.protocol.inputCoordinates.get()
        if coords is None or not coords.getBoxSize():
            form.showWarning('Select training coordinates with a box size first.')
            return
        mics = coords.getMicrographs()
        form.setVar('particleDiameter', round(diameterFromBoxSize(coords.getBoxSize(), mics.getSamplingRate()), 1))


class TopazPuPickDiameterWizard(EmWizard):
    """Particle diameter (A) recorded in the model."""
    _targets = [(TopazPuProtPick, ['particleDiameter'])]

    def show(self, form, *params):
        model = form.protocol.inputModel.get()
        diameter = model.getParticleDiameterA() if model is not None else None
        if not diameter:
            form.showWarning('The model does not record a particle diameter together with a pixel size.')
            return
        form.setVar('particleDiameter', round(diameter, 1))
