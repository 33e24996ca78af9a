"""TopazPuProtNormalize: downsample and normalise micrographs for training and inspection."""
import enum
import json
import os

import pyworkflow.protocol.params as params
import pyworkflow.object as pwobj
from pyworkflow import BETA
from pyworkflow.protocol.constants import STEPS_PARALLEL
from pwem.objects import SetOfMicrographs
from pwem.protocols import ProtPreprocessMicrographs

from .. import convert
from ..constants import NORMALIZATIONS, NORM_GMM, NORM_ATTR, SET_SCALE_ATTR, SET_METHOD_ATTR
from . import protocol_base as base


class TopazPuNormalizeOutputs(enum.Enum):
    outputMicrographs = SetOfMicrographs


class TopazPuProtNormalize(ProtPreprocessMicrographs):
    """Downsample micrographs by Fourier cropping and normalise their intensities.

    This is the preprocessing the topazpu network expects: micrographs reduced to
    roughly 4-8 A/px (particles about 10-40 px across) and normalised so that the
    background has zero mean and unit variance. The default normalisation fits one
    two-component Gaussian mixture to the whole data set with a scale per micrograph
    (the model of Bepler et al. 2019), which is robust to ice thickness and carbon.

    The output micrographs keep the names and ids of the input ones, with the
    sampling rate multiplied by the downsampling factor; the fitted per-micrograph
    parameters are stored on each micrograph and in preprocess.json files in the
    run's extra folder. Train on these micrographs; pick on the original ones (the
    picker applies the same preprocessing itself). A micrograph the engine cannot read
    (corrupt or truncated file) is skipped, named in the summary and left out of the
    output; the others are normalised as if it had not been given.
    """
    _label = 'normalize'
    _devStatus = BETA
    _possibleOutputs = TopazPuNormalizeOutputs
    stepsExecutionMode = STEPS_PARALLEL

    # -------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputMicrographs', params.PointerParam, pointerClass='SetOfMicrographs',
                      important=True, label='Input micrographs',
                      help='Micrographs to downsample and normalise (MRC, TIFF, PNG or JPEG files).')
        form.addParam('scale', params.FloatParam, default=4.0,
                      validators=[params.GE(1.0)],
                      label='Downsampling factor',
                      help='Fourier-crop the micrographs by this factor (>= 1; 1 = no downsampling). '
                           'The output pixel size is the input pixel size (A/px) times this factor. '
                           'Aim at 4-8 A/px, i.e. a particle diameter of about 10-40 output px.')
        form.addParam('method', params.EnumParam, choices=NORMALIZATIONS, default=NORM_GMM,
                      label='Normalisation',
                      help='gmm: one two-component Gaussian mixture fitted over all micrographs of '
                           'a batch, with a scale per micrograph (Bepler et al. 2019; recommended).\n'
                           'gmm-per-image: a mixture fitted to each micrograph alone.\n'
                           'affine: subtract the mean and divide by the standard deviation '
                           '(fastest; sensitive to carbon and contamination).')
        form.addParam('seed', params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED,
                      label='Random seed',
                      help='Seed of the pixel subsampling used to fit the mixture (integer); '
                           'the same seed gives the same output.')
        form.addParam('batchSize', params.IntParam, default=50, validators=[params.GE(0)],
                      expertLevel=params.LEVEL_ADVANCED,
                      label='Micrographs per job',
                      help='Micrographs processed by one engine job (0 = all in one job). Jobs run in '
                           'parallel over the threads of this run. With "gmm", the dataset mixture is '
                           'fitted over the micrographs of each job, so larger batches give one '
                           'consistent normalisation; 50 is plenty for a stable fit.')
        form.addParallelSection(threads=2, mpi=0)

    # --------------------------- INSERT steps functions ---------------------
    def _createFilenameTemplates(self):
        self._updateFilenamesDict({
            'batchDir': self._getExtraPath('batch_%(batch)03d'),
            'batchList': self._getTmpPath('batch_%(batch)03d.txt'),
            'batchStdout': self._getExtraPath('batch_%(batch)03d.stdout'),
        })

    def _insertAllSteps(self):
        self._createFilenameTemplates()
        micIds = sorted(self.inputMicrographs.get().getIdSet())
        size = self.batchSize.get() or len(micIds)
        stepIds = []
        for b, start in enumerate(range(0, len(micIds), size)):
            stepIds.append(self._insertFunctionStep(self.preprocessStep, b, micIds[start:start + size],
                                                    self.scale.get(), self.getMethodName(),
                                                    self.seed.get(), prerequisites=[]))
        self._insertFunctionStep(self.createOutputStep, prerequisites=stepIds)

    # --------------------------- STEPS functions ----------------------------
    def preprocessStep(self, batch, micIds, scale, method, seed):
        self._createFilenameTemplates()
        micSet = self.inputMicrographs.get()
        wanted = set(micIds)
        paths = [mic.getFileName() for mic in micSet.iterItems() if mic.getObjId() in wanted]
        listFile = convert.writeListFile(paths, self._getFileName('batchList', batch=batch))
        batchDir = os.path.abspath(self._getFileName('batchDir', batch=batch))
        args = '-s %s -o %s --method %s --seed %d' % (scale, base.quote(batchDir), method, seed)
        base.runEngineBatch(self, 'preprocess', args, paths, listFile,
                            os.path.abspath(self._getFileName('batchStdout', batch=batch)),
                            os.path.join(batchDir, PREPROCESS_JSON), threads=self.getBinThreads(), useDevice=False)

    def createOutputStep(self):
        self._createFilenameTemplates()
        inputSet = self.inputMicrographs.get()
        scale = self.scale.get()
        records = self._readRecords()
        skipped = {base.absPath(path) for path, _ in self._skipped()}
        outputSet = self._createSetOfMicrographs()
        outputSet.copyInfo(inputSet)
        outputSet.setSamplingRate(inputSet.getSamplingRate() * scale)
        setattr(outputSet, SET_SCALE_ATTR, pwobj.Float(scale))
        setattr(outputSet, SET_METHOD_ATTR, pwobj.String(self.getMethodName()))
        for mic in inputSet.iterItems():
            name = convert.engineImageName(mic.getFileName())
            if name not in records and base.absPath(mic.getFileName()) in skipped:
                continue  # unreadable: named in the summary
            if name not in records:
                raise RuntimeError('topazpu preprocess wrote no output for micrograph %s (%s)'
                                   % (convert.micName(mic), mic.getFileName()))
            batchDir, info = records[name]
            out = mic.clone()
            out.setMicName(convert.micName(mic))
            out.setFileName(os.path.join(batchDir, name + '.mrc'))
            out.setSamplingRate(mic.getSamplingRate() * scale)
            setattr(out, NORM_ATTR, pwobj.String(json.dumps(info, sort_keys=True)))
            outputSet.append(out)
        self._defineOutputs(**{TopazPuNormalizeOutputs.outputMicrographs.name: outputSet})
        self._defineTransformRelation(self.inputMicrographs, outputSet)

    def _readRecords(self):
        """image name -> (batch dir, per-micrograph record) over all batch folders."""
        from topazpu_core.preprocessing import read_preprocess_record
        records = {}
        extra = self._getExtraPath()
        for entry in sorted(os.listdir(extra)):
            data = read_preprocess_record(os.path.join(extra, entry)) if entry.startswith('batch_') else None
            if data is not None:
                for name, info in data.get('images', {}).items():
                    records[name] = (os.path.join(extra, entry), info)
        return records

    def _skipped(self):
        """[(path, reason)] of the micrographs the engine could not read, over all batches."""
        import glob
        self._createFilenameTemplates()
        out = []
        for stdoutFile in sorted(glob.glob(self._getExtraPath('batch_*.stdout'))):
            batch = int(os.path.basename(stdoutFile)[len('batch_'):-len('.stdout')])
            out += base.skippedInBatch(self._getFileName('batchList', batch=batch), stdoutFile)
        return out

    def getSkippedMicrographs(self):
        """[(micrograph file name, reason)] of the micrographs the engine could not read."""
        return [(os.path.basename(path), reason) for path, reason in self._skipped()]

    # --------------------------- INFO functions -----------------------------
    def getBinThreads(self):
        """Torch threads of each engine job. pyworkflow's default reads a `binThreads` form
        parameter (the run log header prints it); here the run's threads are shared out."""
        return base.jobThreads(self, True)

    def getMethodName(self):
        return NORMALIZATIONS[self.method.get()]

    def _validate(self):
        errors = []
        micSet = self.inputMicrographs.get()
        if micSet is None:
            return ['No input micrographs.']
        if micSet.getSize() == 0:
            errors.append('The input set of micrographs is empty.')
        else:
            dups = convert.duplicateImageNames(micSet)
            if dups:
                errors.append('The engine names micrographs by file name, and these names occur more than '
                              'once in the input set: %s. Rename or link the files so that names are unique.'
                              % ', '.join(dups[:5]))
        return errors

    def _warnings(self):
        micSet = self.inputMicrographs.get()
        if micSet is not None and micSet.getSize() and convert.preprocessInfo(micSet):
            return ['The input micrographs were already normalised by topazpu; they will be '
                    'downsampled and normalised again.']
        return []

    def _summary(self):
        summary = []
        micSet = self.inputMicrographs.get()
        if micSet is not None:
            summary.append('Input: %d micrographs at %.3g A/px.' % (micSet.getSize(), micSet.getSamplingRate()))
        if self.isFinished() and self.hasAttribute('outputMicrographs'):
            out = self.outputMicrographs
            summary.append('Output: %d micrographs at %.3g A/px (downsampled x%g, %s normalisation).'
                           % (out.getSize(), out.getSamplingRate(), self.scale.get(), self.getMethodName()))
        skipped = base.skippedSummary(self.getSkippedMicrographs(), 'not normalised, not in the output')
        if skipped:
            summary.append(skipped)
        return summary

    def _methods(self):
        if not (self.isFinished() and self.hasAttribute('outputMicrographs')):
            return []
        out = self.outputMicrographs
        return ['%d micrographs were downsampled by a factor of %g by Fourier cropping (to %.3g A/px) and '
                'normalised with %s normalisation in topazpu (seed %d), following Bepler et al. (2019).'
                % (out.getSize(), self.scale.get(), out.getSamplingRate(), self.getMethodName(), self.seed.get())]

    def _citations(self):
        return ['Bepler2019']
