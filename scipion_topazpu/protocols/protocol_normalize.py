"""TopazPuProtNormalize: downsample and normalise micrographs for training and inspection."""
import enum
import json
import os
from collections import OrderedDict

import pyworkflow.protocol.params as params
import pyworkflow.object as pwobj
import pyworkflow.utils as pwutils
from pyworkflow import BETA
from pyworkflow.protocol.constants import STATUS_NEW, STEPS_PARALLEL
from pwem.objects import SetOfMicrographs
from pwem.protocols import ProtPreprocessMicrographs

from .. import convert
from topazpu_core.options import PREPROCESS_JSON

from ..constants import NORMALIZATIONS, NORM_GMM, NORM_ATTR, SET_SCALE_ATTR, SET_METHOD_ATTR
from . import protocol_base as base


class TopazPuNormalizeOutputs(enum.Enum):
    outputMicrographs = SetOfMicrographs


class TopazPuProtNormalize(ProtPreprocessMicrographs):
    """Downsample micrographs by Fourier cropping and normalise their intensities.

    This is the preprocessing the topazpu network expects: micrographs reduced to
    roughly 4-8 A/px (particles about 10-40 px across) and normalised so that the
    background has zero mean and unit variance. The default normalisation fits one
    two-component Gaussian mixture to the data set with a scale per micrograph (the
    model of Bepler et al. 2019), which is robust to ice thickness and carbon.

    Works in streaming: micrographs added to an open input set are processed as they
    arrive, in jobs of "Micrographs per job", and the output set grows with them; it is
    closed when the input is closed and everything is done. With "gmm", the data-set
    mixture is fitted once, on the first job's micrographs; every later micrograph is
    normalised with that mixture (only its own scale is fitted), so all outputs share one
    normalisation. The summary states which micrographs the fit used.

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
                      help='Micrographs to downsample and normalise (MRC, TIFF, PNG or JPEG files); '
                           'an open (streaming) set is followed as it grows.')
        form.addParam('scale', params.FloatParam, default=4.0,
                      validators=[params.GE(1.0)],
                      label='Downsampling factor',
                      help='Fourier-crop the micrographs by this factor (>= 1; 1 = no downsampling). '
                           'The output pixel size is the input pixel size (A/px) times this factor. '
                           'Aim at 4-8 A/px, i.e. a particle diameter of about 10-40 output px.')
        form.addParam('method', params.EnumParam, choices=NORMALIZATIONS, default=NORM_GMM,
                      label='Normalisation',
                      help='gmm: one two-component Gaussian mixture for the data set, fitted on the '
                           'micrographs of the first job, with a scale per micrograph (Bepler et al. '
                           '2019; recommended).\n'
                           'gmm-per-image: a mixture fitted to each micrograph alone.\n'
                           'affine: subtract the mean and divide by the standard deviation '
                           '(fastest; sensitive to carbon and contamination).')
        form.addParam('seed', params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED,
                      label='Random seed',
                      help='Seed of the pixel subsampling used to fit the mixture (integer); '
                           'the same seed gives the same output.')
        form.addParam('batchSize', params.IntParam, default=50, validators=[params.GE(0)],
                      expertLevel=params.LEVEL_ADVANCED,
                      label='Micrographs per job (0 = all available)',
                      help='Micrographs processed by one engine job; jobs run in parallel over the '
                           'Scipion threads. In streaming a job starts when this many micrographs '
                           'have arrived (or the input is closed); 0 takes all that have arrived. '
                           'With "gmm" the first job fits the data-set mixture, so it should hold '
                           'enough micrographs for a stable fit (10-50 is plenty).')
        base.addParallelSection(form, parallelSteps=True)

    # --------------------------- INSERT steps functions ---------------------
    def _createFilenameTemplates(self):
        self._updateFilenamesDict({
            'batchDir': self._getExtraPath('batch_%(batch)03d'),
            'batchRecord': self._getExtraPath('batch_%(batch)03d', PREPROCESS_JSON),
            'batchList': self._getTmpPath('batch_%(batch)03d.txt'),
            'batchStdout': self._getExtraPath('batch_%(batch)03d.stdout'),
            'batchDone': self._getExtraPath('batch_%(batch)03d.done'),
        })

    def _insertAllSteps(self):
        self._createFilenameTemplates()
        self.micDict = OrderedDict()    # micrograph id -> micrograph, every one put in a job
        self.pending = []               # arrived, waiting for a full job
        self.batches = OrderedDict()    # job number -> micrograph ids
        self.outputBatches = set()      # jobs whose micrographs are in the output set
        self.fitStepId = None
        self.streamClosed = False
        self._loadNewMicrographs()
        stepIds = self._insertNewBatches()
        # "Continue": jobs whose micrographs are all in the output already are not appended again
        out = getattr(self, TopazPuNormalizeOutputs.outputMicrographs.name, None)
        if out is not None:
            present = set(out.getIdSet())
            self.outputBatches = {b for b, ids in self.batches.items() if set(ids) <= present}
        self._insertFunctionStep(self.createOutputStep, prerequisites=stepIds, wait=True, needsGPU=False)

    def _loadNewMicrographs(self):
        """Add the micrographs that arrived since the last look to `pending`; note whether the
        input is closed. The set is reopened from its file, as streaming needs."""
        micSet = SetOfMicrographs(filename=self.inputMicrographs.get().getFileName())
        micSet.loadAllProperties()
        known = set(self.micDict) | {m.getObjId() for m in self.pending}
        self.pending += [m.clone() for m in micSet.iterItems(orderBy='id') if m.getObjId() not in known]
        self.streamClosed = micSet.isStreamClosed()
        micSet.close()

    def _insertNewBatches(self):
        """Insert a job for each full batch of pending micrographs (all of them when the input
        is closed); returns the new step ids. With "gmm" the first job fits the data-set
        mixture and every later job waits for it and uses it (--reference)."""
        size = self.batchSize.get() or len(self.pending)
        stepIds = []
        while self.pending and (len(self.pending) >= size or self.streamClosed):
            mics, self.pending = self.pending[:size], self.pending[size:]
            batch = len(self.batches)
            ids = [m.getObjId() for m in mics]
            self.batches[batch] = ids
            for mic in mics:
                self.micDict[mic.getObjId()] = mic
            reference = None
            prerequisites = []
            if self.getMethodName() == 'gmm' and batch > 0:
                reference = os.path.abspath(self._getFileName('batchRecord', batch=0))
                prerequisites = [self.fitStepId]
            stepId = self._insertFunctionStep(self.preprocessStep, batch, ids, self.scale.get(),
                                              self.getMethodName(), self.seed.get(), reference,
                                              prerequisites=prerequisites, needsGPU=False)
            if batch == 0:
                self.fitStepId = stepId
            stepIds.append(stepId)
        return stepIds

    # --------------------------- STREAMING functions ------------------------
    def _stepsCheck(self):
        self._checkNewInput()
        self._checkNewOutput()

    def _checkNewInput(self):
        if self.streamClosed:
            return
        self._loadNewMicrographs()
        stepIds = self._insertNewBatches()
        if stepIds:
            outputStep = self._getOutputStep()
            if outputStep is not None:
                outputStep.addPrerequisites(*stepIds)
            self.updateSteps()

    def _checkNewOutput(self):
        """Append the micrographs of finished jobs to the output set (open while more may come;
        closed when the input is closed and every job is in); then release createOutputStep."""
        self._createFilenameTemplates()
        done = [b for b in self.batches if b not in self.outputBatches
                and os.path.exists(self._getFileName('batchDone', batch=b))]
        finished = (self.streamClosed and not self.pending
                    and len(self.outputBatches) + len(done) == len(self.batches))
        outputSet = getattr(self, TopazPuNormalizeOutputs.outputMicrographs.name, None)
        if done or (finished and (outputSet is None or not outputSet.isStreamClosed())):
            self._updateOutput(outputSet, done, finished)
        if finished:
            outputStep = self._getOutputStep()
            if outputStep is not None and outputStep.isWaiting():
                outputStep.setStatus(STATUS_NEW)

    def _updateOutput(self, outputSet, done, finished):
        first = outputSet is None
        if first:
            outputSet = self._createOutputSet()
        else:
            outputSet.enableAppend()
        for batch in done:
            self._appendBatch(outputSet, batch)
            self.outputBatches.add(batch)
        state = outputSet.STREAM_CLOSED if finished else outputSet.STREAM_OPEN
        size = outputSet.getSize()
        self._updateOutputSet(TopazPuNormalizeOutputs.outputMicrographs.name, outputSet, state)
        self.info('Output: %d micrographs, %s.' % (size, 'closed' if finished else 'open (more may come)'))
        if first:
            self._defineTransformRelation(self.inputMicrographs, outputSet)

    def _getOutputStep(self):
        return next((s for s in self._steps if s.funcName == self.createOutputStep.__name__), None)

    # --------------------------- STEPS functions ----------------------------
    def preprocessStep(self, batch, micIds, scale, method, seed, reference=None):
        self._createFilenameTemplates()
        paths = [self.micDict[i].getFileName() for i in micIds]
        listFile = convert.writeListFile(paths, self._getFileName('batchList', batch=batch))
        batchDir = os.path.abspath(self._getFileName('batchDir', batch=batch))
        pwutils.cleanPath(batchDir, self._getFileName('batchDone', batch=batch))  # a rerun job starts clean
        args = '-s %s -o %s --method %s --seed %d' % (scale, base.quote(batchDir), method, seed)
        if reference:
            args += ' --reference %s' % base.quote(reference)
        base.runEngineBatch(self, 'preprocess', args, paths, listFile,
                            os.path.abspath(self._getFileName('batchStdout', batch=batch)),
                            os.path.join(batchDir, PREPROCESS_JSON), threads=base.jobThreads(self), useDevice=False)
        if reference:
            self.info('Job %d: %d micrographs normalised with the data-set mixture of %s.'
                      % (batch, len(micIds), reference))
        elif method == 'gmm':
            fit = self.getDatasetFit()
            if fit is not None:
                self.info(self._describeFit(*fit))
        with open(self._getFileName('batchDone', batch=batch), 'w') as f:  # marks the job finished
            f.write('done\n')

    def createOutputStep(self):
        """Runs once every job is in the (now closed) output set: check that every micrograph is
        in it except the unreadable ones (named in the summary)."""
        out = getattr(self, TopazPuNormalizeOutputs.outputMicrographs.name, None)
        skipped = {base.absPath(path) for path, _ in self._skipped()}
        expected = sum(1 for ids in self.batches.values() for i in ids
                       if base.absPath(self.micDict[i].getFileName()) not in skipped)
        if out is None or out.getSize() != expected:
            raise RuntimeError('topazpu normalize: %d of %d readable micrographs in the output'
                               % (0 if out is None else out.getSize(), expected))

    def _createOutputSet(self):
        inputSet = self.inputMicrographs.get()
        scale = self.scale.get()
        outputSet = self._createSetOfMicrographs()
        outputSet.copyInfo(inputSet)
        outputSet.setSamplingRate(inputSet.getSamplingRate() * scale)
        setattr(outputSet, SET_SCALE_ATTR, pwobj.Float(scale))
        setattr(outputSet, SET_METHOD_ATTR, pwobj.String(self.getMethodName()))
        return outputSet

    def _appendBatch(self, outputSet, batch):
        from topazpu_core.preprocessing import read_preprocess_record
        batchDir = self._getFileName('batchDir', batch=batch)
        records = (read_preprocess_record(batchDir) or {}).get('images', {})  # none when nothing was readable
        skipped = {base.absPath(path) for path, _ in base.skippedInBatch(
            self._getFileName('batchList', batch=batch), self._getFileName('batchStdout', batch=batch))}
        scale = self.scale.get()
        for micId in self.batches[batch]:
            mic = self.micDict[micId]
            name = convert.engineImageName(mic.getFileName())
            if name not in records and base.absPath(mic.getFileName()) in skipped:
                continue  # unreadable: named in the summary
            if name not in records:
                raise RuntimeError('topazpu preprocess wrote no output for micrograph %s (%s)'
                                   % (convert.micName(mic), mic.getFileName()))
            out = mic.clone()
            out.setMicName(convert.micName(mic))
            out.setFileName(os.path.join(batchDir, name + '.mrc'))
            out.setSamplingRate(mic.getSamplingRate() * scale)
            setattr(out, NORM_ATTR, pwobj.String(json.dumps(records[name], sort_keys=True)))
            outputSet.append(out)

    def getDatasetFit(self):
        """(micrograph names, mixture) of the data-set fit (the first job's), or None."""
        from topazpu_core.normalize import mixture_from_record
        from topazpu_core.preprocessing import read_preprocess_record
        self._createFilenameTemplates()
        record = read_preprocess_record(self._getFileName('batchDir', batch=0))
        if self.getMethodName() != 'gmm' or record is None:
            return None
        mixture = mixture_from_record(record)
        return (sorted(record.get('images', {})), mixture) if mixture else None

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
    def getMethodName(self):
        return NORMALIZATIONS[self.method.get()]

    def _validate(self):
        errors = []
        micSet = self.inputMicrographs.get()
        if micSet is None:
            return ['No input micrographs.']
        if micSet.getSize() == 0 and micSet.isStreamClosed():
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
        if self.hasAttribute('outputMicrographs'):
            out = self.outputMicrographs
            summary.append('Output: %d micrographs at %.3g A/px (downsampled x%g, %s normalisation)%s.'
                           % (out.getSize(), out.getSamplingRate(), self.scale.get(), self.getMethodName(),
                              '' if out.isStreamClosed() else ', streaming: more to come'))
        fit = self.getDatasetFit()
        if fit is not None:
            summary.append(self._describeFit(*fit))
        skipped = base.skippedSummary(self.getSkippedMicrographs(), 'not normalised, not in the output')
        if skipped:
            summary.append(skipped)
        return summary

    @staticmethod
    def _describeFit(names, mixture):
        shown = ', '.join(names[:5]) + (' ...' if len(names) > 5 else '')
        return ('Data-set normalisation fitted once, on the %d micrograph%s of the first job (%s): mixture '
                'weights %s, mu %s, sigma %s; every later micrograph is normalised with this mixture (only '
                'its own scale is fitted).'
                % (len(names), '' if len(names) == 1 else 's', shown,
                   ', '.join('%.3g' % v for v in mixture['weights']), ', '.join('%.3g' % v for v in mixture['mu']),
                   ', '.join('%.3g' % v for v in mixture['sigma'])))

    def _methods(self):
        if not (self.isFinished() and self.hasAttribute('outputMicrographs')):
            return []
        out = self.outputMicrographs
        return ['%d micrographs were downsampled by a factor of %g by Fourier cropping (to %.3g A/px) and '
                'normalised with %s normalisation in topazpu (seed %d), following Bepler et al. (2019).'
                % (out.getSize(), self.scale.get(), out.getSamplingRate(), self.getMethodName(), self.seed.get())]

    def _citations(self):
        return ['Bepler2019']
