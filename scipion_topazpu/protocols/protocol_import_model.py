"""TopazPuProtImportModel: bring a topazpu model file into the project."""
import enum
import os
import shutil

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pwem.protocols import ProtImport

from ..objects import TopazPuModel


class TopazPuImportModelOutputs(enum.Enum):
    outputModel = TopazPuModel


class TopazPuProtImportModel(ProtImport):
    """Import a trained topazpu model (a .pt file written by `topazpu train`).

    The file is copied into the project together with its .json metadata, training
    curve and plot when they lie beside it. The model records how micrographs must be
    downsampled and normalised; give the pixel size it was trained at so the picker
    can check that new micrographs match.
    """
    _label = 'import model'
    _devStatus = BETA
    _possibleOutputs = TopazPuImportModelOutputs

    # -------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label='Import')
        form.addParam('modelFile', params.PathParam, important=True, label='Model file (.pt)',
                      help='A model written by `topazpu train` or "topazpu - train" (a .pt file; its '
                           'metadata is inside).')
        form.addParam('pixelSize', params.FloatParam, default=0, validators=[params.GE(0)],
                      label='Training pixel size (A/px, 0 = unknown)',
                      help='Pixel size of the (downsampled) images the model was trained on, in A/px. '
                           'The picker uses it to check that micrographs have the expected pixel size. '
                           '0: unknown (no check).')

    # --------------------------- INSERT steps functions ---------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.importStep, self.modelFile.get(), self.pixelSize.get())

    # --------------------------- STEPS functions ----------------------------
    def importStep(self, modelFile, pixelSize):
        source = os.path.abspath(os.path.expanduser(modelFile))
        target = self._getExtraPath(os.path.basename(source))
        shutil.copy(source, target)
        stem, targetStem = os.path.splitext(source)[0], os.path.splitext(target)[0]
        for suffix in ('.json', '.training.tsv', '.training.png'):
            if os.path.exists(stem + suffix):
                shutil.copy(stem + suffix, targetStem + suffix)
        model = TopazPuModel(path=target)
        model.setFromMetadata(model.getMetadata())
        model.setPixelSize(pixelSize or None)
        self._defineOutputs(**{TopazPuImportModelOutputs.outputModel.name: model})

    # --------------------------- INFO functions -----------------------------
    def _validate(self):
        from topazpu_core.errors import TopazPuError
        path = os.path.expanduser(self.modelFile.get() or '')
        if not path:
            return ['Give a model file.']
        if not os.path.isfile(path):
            return ['The model file %s does not exist.' % path]
        try:
            from topazpu_core.checkpoint import read_model_metadata
            read_model_metadata(path)
        except TopazPuError as e:   # the engine explains foreign, damaged and old files
            return [str(e)]
        return []

    def _summary(self):
        summary = ['Model file: %s' % self.modelFile.get()]
        if self.isFinished() and self.hasAttribute('outputModel'):
            summary.append('Model: %s.' % self.outputModel.describe())
        return summary

    def _methods(self):
        if not (self.isFinished() and self.hasAttribute('outputModel')):
            return []
        return ['A trained topazpu model (%s) was imported.' % self.outputModel.describe()]

    def _citations(self):
        return ['Bepler2019']
