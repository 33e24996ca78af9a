"""Wizard: expected particles per micrograph from the training coordinates."""
from pwem.wizards import EmWizard

from .. import convert
from ..estimates import expectedParticlesPerMicrograph
from ..protocols import TopazPuProtTrain


class TopazPuParticlesPerMicrographWizard(EmWizard):
    """Mean number of labels per labelled micrograph (assumes complete labels)."""
    _targets = [(TopazPuProtTrain, ['numParticles'])]

    def show(self, form, *params):
        coords = form.protocol.inputCoordinates.get()
        if coords is None or coords.getSize() == 0:
            form.showWarning('Select non-empty training coordinates first.')
            return
        counts = convert.countsPerMicrograph(coords)
        form.setVar('numParticles', expectedParticlesPerMicrograph(list(counts.values())))
