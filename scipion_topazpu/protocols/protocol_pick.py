"""TopazPuProtPick: pick particles with a trained topazpu model, in batches and in streaming."""
import os

import numpy as np
import pyworkflow.protocol.params as params
import pyworkflow.utils as pwutils
from pyworkflow import BETA
from pyworkflow.protocol.constants import STEPS_PARALLEL
from pwem.protocols import ProtParticlePickingAuto
from pwem.protocols.protocol_particles_picking import ProtParticlePickingOutput

from .. import convert
from ..constants import (AUTO_PICKS_PER_PARTICLE, THRESHOLD_MODEL, THRESHOLD_EXPLICIT, BOX_FACTOR, ORIENTATIONS,
                         NMS_RADIUS_FACTOR, nms_radius_for)
from ..estimates import boxSizeFromDiameterPx, particleRadiusPx
from . import protocol_base as base

ORIENTATION_CHOICES = ['1', '4 rotations', '8 rotations and flips']


class TopazPuProtPick(ProtParticlePickingAuto):
    """Pick particles with a trained topazpu model.

    Give the original micrographs (not the normalised ones): each batch of micrographs
    is downsampled and normalised the way the model was trained, scored by the
    network, and its score maps reduced to particle centres by non-maximum
    suppression. Coordinates are in pixels of the input micrographs; the network's
    score (a logit that ranks picks; not a probability: the automatic threshold picks
    1.1 x the expected particles per micrograph) is stored on each coordinate as
    `_topazpuScore`, so later protocols can filter on it.

    Works in streaming: micrographs added to an open input set are picked as they
    arrive, and the output coordinates grow with them. Batches of micrographs run in
    parallel over the threads and GPUs of the run. A micrograph the engine cannot read
    (corrupt or truncated file) is skipped, named in the summary, and gets no coordinates;
    the others are picked.
    """
    _label = 'pick'
    _devStatus = BETA
    _possibleOutputs = ProtParticlePickingOutput
    stepsExecutionMode = STEPS_PARALLEL

    # -------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        ProtParticlePickingAuto._defineParams(self, form)
        form.getParam('inputMicrographs').help.set(
            'The micrographs to pick: the original ones, at the pixel size the model expects '
            '(the model downsamples them itself), not the output of "topazpu - normalize".')
        form.addParam('inputModel', params.PointerParam, pointerClass='TopazPuModel', important=True,
                      label='Model',
                      help='A model from "topazpu - train" or "topazpu - import model".')
        form.addParam('thresholdMode', params.EnumParam, default=THRESHOLD_MODEL,
                      choices=["the model's suggested threshold", 'an explicit threshold'],
                      display=params.EnumParam.DISPLAY_LIST,
                      label='Score threshold',
                      help="Keep picks scoring above a threshold: the model's own (the score above which it "
                           "picks %g x the expected particles per micrograph on its training micrographs, or on "
                           "its validation micrographs when it had them), or a value given here. The score "
                           "histogram of the picks shows how many each threshold keeps." % AUTO_PICKS_PER_PARTICLE)
        form.addParam('threshold', params.FloatParam, default=-3.0,
                      condition='thresholdMode == %d' % THRESHOLD_EXPLICIT,
                      label='Threshold (logit)',
                      help='Minimum score (a logit, log(p/(1-p)): 0 is p=0.5, -3 is p~0.05, -6 is '
                           'p~0.0025). Lower keeps more picks; you can still filter on the score later. '
                           'The wizard proposes one from the model\'s validation curve.')
        form.addParam('particleDiameter', params.FloatParam, default=0, validators=[params.GE(0)],
                      label='Particle diameter (A, 0 = from the model)',
                      help='Particle diameter in Angstrom: two picks are at least %g radii apart '
                           '(non-maximum suppression), and the box size follows from it. 0: the diameter '
                           'recorded in the model.' % NMS_RADIUS_FACTOR)
        form.addParam('boxSize', params.IntParam, default=0, validators=[params.GE(0)],
                      label='Box size (px, 0 = auto)',
                      help='Box size of the output coordinates in px of the input micrographs. '
                           '0: %.1f x the particle diameter, rounded up to an even number.' % BOX_FACTOR)
        form.addParam('maxPerMicrograph', params.IntParam, default=0, validators=[params.GE(0)],
                      expertLevel=params.LEVEL_ADVANCED, label='Max picks per micrograph (0 = no limit)',
                      help='Keep at most this many (best-scoring) picks per micrograph; 0: no limit.')
        form.addParam('edgeMargin', params.IntParam, default=0, validators=[params.GE(0)],
                      expertLevel=params.LEVEL_ADVANCED, label='Edge margin (px, 0 = from the model)',
                      help='Drop picks closer than this to the micrograph border, in px of the input '
                           'micrographs; 0: the model\'s margin (half the particle radius: annotators '
                           'skip particles cut by the border).')
        form.addParam('orientations', params.EnumParam, default=1, choices=ORIENTATION_CHOICES,
                      expertLevel=params.LEVEL_ADVANCED, label='Orientations averaged',
                      help='Score every micrograph in several orientations and average the logits: '
                           '4 rotations is what the training validated (0.01-0.03 higher average '
                           'precision than 1 on apoferritin and beta-galactosidase); 1 scores 4x faster, '
                           '8 adds the mirror images.')
        form.addParam('extraParams', params.StringParam, default='', expertLevel=params.LEVEL_ADVANCED,
                      label='Additional engine arguments',
                      help='Appended to the `topazpu pick` command line.')
        base.addGpuParams(form)
        self._defineStreamingParams(form)
        form.getParam('streamingBatchSize').setDefault(8)
        base.addParallelSection(form, parallelSteps=True)

    # --------------------------- STEPS functions ----------------------------
    def _createFilenameTemplates(self):
        self._updateFilenamesDict({
            'batchList': self._getExtraPath('batches', 'batch_%(first)06d_%(last)06d.txt'),
            'batchPicks': self._getExtraPath('batches', 'picks_%(first)06d_%(last)06d.txt'),
            'batchStdout': self._getExtraPath('batches', 'batch_%(first)06d_%(last)06d.stdout'),
            'micCoords': self._getExtraPath('coords', 'mic_%(micId)06d.txt'),
        })

    def _pickMicrograph(self, mic, *args):
        self._pickMicrographList([mic], *args)

    def _pickMicrographList(self, micList, *args):
        if not micList:
            return
        self._createFilenameTemplates()
        ids = [mic.getObjId() for mic in micList]
        first, last = min(ids), max(ids)
        listFile = convert.writeListFile([m.getFileName() for m in micList],
                                         self._getFileName('batchList', first=first, last=last))
        picksFile = os.path.abspath(self._getFileName('batchPicks', first=first, last=last))
        stdoutFile = os.path.abspath(self._getFileName('batchStdout', first=first, last=last))
        skipped = base.runEngineBatch(self, 'pick', '%s -o %s' % (self._getEngineArgs(), base.quote(picksFile)),
                                      [m.getFileName() for m in micList], listFile, stdoutFile, picksFile,
                                      threads=base.jobThreads(self))
        if not os.path.exists(picksFile):
            return  # every micrograph of the batch is unreadable: all reported, none picked
        skipped = {path for path, _ in skipped}
        self._splitPicks(picksFile, [mic for mic in micList if base.absPath(mic.getFileName()) not in skipped])

    def _splitPicks(self, picksFile, micList):
        """One `x y score` file per micrograph (empty when nothing was picked)."""
        from topazpu_core.coordinates import read_coordinates
        coords = read_coordinates(picksFile, fmt='coord')
        byImage = coords.by_image()
        for mic in micList:
            name = convert.engineImageName(mic.getFileName())
            sub = byImage.get(name)
            rows = np.zeros((0, 3)) if sub is None else np.column_stack([sub.x, sub.y, sub.score])
            path = self._getFileName('micCoords', micId=mic.getObjId())
            pwutils.makeFilePath(path)
            np.savetxt(path + '.tmp', rows, fmt='%.2f %.2f %.6g')
            os.replace(path + '.tmp', path)

    def getCoordsDir(self):
        return self._getExtraPath('coords')

    def getSkippedMicrographs(self):
        """[(micrograph file name, reason)] of the micrographs the engine could not read."""
        import glob
        out = []
        for stdoutFile in sorted(glob.glob(self._getExtraPath('batches', 'batch_*.stdout'))):
            listFile = stdoutFile[:-len('.stdout')] + '.txt'
            out += [(os.path.basename(path), reason) for path, reason in base.skippedInBatch(listFile, stdoutFile)]
        return out

    def readCoordsFromMics(self, outputDir, micDoneList, outputCoords):
        from topazpu_core.coordinates import Coordinates
        self._createFilenameTemplates()
        if not outputCoords.getBoxSize():
            outputCoords.setBoxSize(self.getBoxSize())
        for mic in micDoneList:
            path = self._getFileName('micCoords', micId=mic.getObjId())
            if not os.path.exists(path):
                continue
            rows = np.loadtxt(path, ndmin=2)
            if rows.size == 0:
                continue
            name = convert.engineImageName(mic.getFileName())
            coords = Coordinates.from_arrays(np.array([name] * len(rows), dtype=object),
                                             rows[:, 0], rows[:, 1], rows[:, 2])
            convert.coordinatesToSet(coords, _SingleMicMap(name, mic), outputCoords, withScores=True)

    def _updateOutputCoordSet(self, micList, streamMode):
        firstTime = getattr(self, 'outputCoordinates', None) is None
        done = ProtParticlePickingAuto._updateOutputCoordSet(self, micList, streamMode)
        if firstTime and getattr(self, 'outputCoordinates', None) is not None:
            # The graph shows micrographs -> coordinates and model -> coordinates.
            self._defineSourceRelation(self.inputModel, self.outputCoordinates)
        return done

    # --------------------------- UTILS functions ----------------------------
    def getModel(self):
        return self.inputModel.get()

    def getThresholdValue(self):
        """The score threshold used (None: the engine's automatic choice)."""
        if self.thresholdMode.get() == THRESHOLD_EXPLICIT:
            return self.threshold.get()
        model = self.getModel()
        return model.getThreshold() if model is not None else None

    def getParticleDiameterPx(self):
        """Particle diameter in px of the input micrographs, or None if unknown: the form's
        diameter (A) at their sampling rate, else the model's particle radius in the raw frame."""
        if self.particleDiameter.get():
            return 2.0 * particleRadiusPx(self.particleDiameter.get(), self.getInputMicrographs().getSamplingRate())
        model = self.getModel()
        radiusPx = model.getParticleRadiusPx('raw') if model is not None else None
        return 2.0 * radiusPx if radiusPx else None

    def getBoxSize(self):
        if self.boxSize.get():
            return self.boxSize.get()
        diameter = self.getParticleDiameterPx()
        if diameter:
            return boxSizeFromDiameterPx(diameter)
        return 64

    def _getEngineArgs(self):
        args = ['--model %s' % base.quote(os.path.abspath(self.getModel().getPath()))]
        if self.particleDiameter.get():
            args.append('--nms-radius %g' % nms_radius_for(self.getParticleDiameterPx() / 2.0))
        threshold = self.getThresholdValue()
        args.append('-t %s' % ('auto' if threshold is None else '%g' % threshold))
        if self.maxPerMicrograph.get():
            args.append('--max-per-micrograph %d' % self.maxPerMicrograph.get())
        if self.edgeMargin.get():
            args.append('--edge-margin %d' % self.edgeMargin.get())
        args.append('--orientations %d' % ORIENTATIONS[self.orientations.get()])
        args.append('--format coord')
        if self.extraParams.get():
            args.append(self.extraParams.get().strip())
        return ' '.join(args)

    # --------------------------- INFO functions -----------------------------
    def _validate(self):
        errors = []
        mics, model = self.getInputMicrographs(), self.getModel()
        if mics is None:
            return ['No input micrographs.']
        if model is None:
            return ['No model: train one with "topazpu - train" or import one.']
        if not os.path.exists(model.getPath() or ''):
            errors.append('The model file %s does not exist.' % model.getPath())
        info = convert.preprocessInfo(mics) if mics.getSize() else None
        if info is not None:
            errors.append('These micrographs were already downsampled and normalised by topazpu (x%g): '
                          'pick on the original micrographs; the picker preprocesses them as the model '
                          'expects.' % info[0])
        expected = model.getRawPixelSize()
        if info is None and expected and mics.getSamplingRate():
            if not convert.samePixelSize(mics.getSamplingRate(), expected):
                errors.append('The model expects micrographs at %.3g A/px (it was trained at %.3g A/px after '
                              'downsampling by %g), but these are at %.3g A/px, so they would be seen at %.3g '
                              'A/px. Pick micrographs with the training pixel size, or train a model for them.'
                              % (expected, model.getPixelSize(), model.getScale(), mics.getSamplingRate(),
                                 mics.getSamplingRate() * model.getScale()))
        if mics.getSize():
            dups = convert.duplicateImageNames(mics)
            if dups:
                errors.append('The engine names micrographs by file name, and these names occur more '
                              'than once in the input set: %s.' % ', '.join(dups[:5]))
        errors += base.validateGpu(self)
        return errors

    def _warnings(self):
        model = self.getModel()
        if (model is not None and self.thresholdMode.get() == THRESHOLD_MODEL
                and model.getThreshold() is None):
            return ['The model has no suggested threshold (it was trained without validation): the '
                    'engine chooses one.']
        return []

    def _summary(self):
        summary = []
        model = self.getModel()
        if model is not None:
            summary.append('Model: %s' % model.describe())
        threshold = self.getThresholdValue()
        summary.append('Threshold: %s' % ('automatic' if threshold is None else '%.3g' % threshold))
        if self.hasAttribute('outputCoordinates'):
            out = self.outputCoordinates
            summary.append('Picked %d particles on %d micrographs, box size %d px.'
                           % (out.getSize(), len(convert.coordinatesMicNames(out)), out.getBoxSize()))
        skipped = base.skippedSummary(self.getSkippedMicrographs(), 'not picked')
        if skipped:
            summary.append(skipped)
        return summary

    def _methods(self):
        if not self.hasAttribute('outputCoordinates'):
            return []
        threshold = self.getThresholdValue()
        return ['Particles were picked with topazpu (after Bepler et al. 2019) using a %s model, with a '
                'score threshold of %s: %d particles, box size %d px.'
                % (self.getModel().getArchitecture(),
                   'automatic' if threshold is None else '%.3g' % threshold,
                   self.outputCoordinates.getSize(), self.outputCoordinates.getBoxSize())]

    def _citations(self):
        return ['Bepler2019']


class _SingleMicMap:
    """The minimal MicrographMap interface for one micrograph."""

    def __init__(self, name, mic):
        self.byImageName = {name: mic}
