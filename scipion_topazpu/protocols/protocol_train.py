"""TopazPuProtTrain: train a positive-unlabeled picking network on labelled micrographs."""
import enum
import os

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pwem.protocols import ProtParticles

from .. import convert
from ..constants import (AUTO_PICKS_PER_PARTICLE, BOX_FACTOR, ARCHITECTURES, ARCH_RESNET8, EPOCHS_AUTO,
                         EPOCHS_FEW_LABELS, EPOCHS_MOST_LABELLED, LABEL_RADIUS_AUTO, LABEL_RADIUS_FEW_LABELS,
                         LABEL_RADIUS_MOST_LABELLED, NMS_RADIUS_FACTOR, NORMALIZATIONS, NORM_GMM, OBJECTIVES,
                         OBJECTIVE_GE_BINOMIAL, PRIOR_PARTICLES, PRIOR_PI, START_MODEL_AUTO, START_MODELS,
                         VAL_FRACTION, VAL_LABELS, VAL_NONE, VAL_SET)
from ..objects import TopazPuModel
from ..estimates import (DEFAULT_LABEL_COMPLETENESS, diameterFromBoxSize, expectedParticlesPerMicrograph,
                         meanLabelsPerMicrograph, particleRadiusPx)
from . import protocol_base as base

# Form condition of the preprocessing parameters. Naming inputMicrographs makes the form
# re-evaluate it when the input changes; needsPreprocessing is a method, which pyworkflow
# calls when it evaluates the condition.
RAW_INPUT_CONDITION = 'inputMicrographs is None or needsPreprocessing'


class TopazPuTrainOutputs(enum.Enum):
    outputModel = TopazPuModel


class TopazPuProtTrain(ProtParticles):
    """Train a topazpu picking network from a few labelled micrographs.

    Positive-unlabeled learning: the labelled particles are positives and every other
    pixel is unlabelled (not negative), so the labels need not be complete; tell the
    training how many particles a micrograph holds (or the positive fraction pi). The
    default GE-binomial objective and resnet8 network follow Bepler et al. (2019).

    Inputs are micrographs and coordinates on them. Micrographs from "topazpu -
    normalize" are used as they are; other micrographs are downsampled and normalised
    here first. Only micrographs with at least one coordinate are used. Optionally the
    training runs twice (self-training): a first model learns from the labels, its best picks
    on the training micrographs join the labels, and the final model learns from both. In
    each round every label trains, on tiles rotated, mirrored and (while the labels cover less
    than half the expected particles) jittered in contrast and brightness, and the model is the
    mean of the weights of the later epochs (all but the first with 50 labels, from the 5th of
    20 with 200, the second half from 500 labels on).
    A part of the labels (or of the micrographs, or a separate set) can instead be held out
    to validate (average precision of the picks against the held-out labels, estimated when
    they are sparse): each epoch for the training curve, and the final model, still the mean
    weights of the later epochs, for its estimate and threshold. The suggested score threshold
    is the one at which the model picks 1.1 x the expected particles per micrograph.

    "Continue" resumes from the last finished epoch (e.g. after a failure, or with more
    epochs): finished epochs are kept.
    """
    _label = 'train'
    _devStatus = BETA
    _possibleOutputs = TopazPuTrainOutputs

    # -------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputMicrographs', params.PointerParam, pointerClass='SetOfMicrographs',
                      important=True, label='Training micrographs',
                      help='Micrographs with labelled particles: ideally the output of "topazpu - '
                           'normalize"; other micrographs are downsampled and normalised here with the '
                           'factor below. Micrographs without coordinates are not used.')
        form.addParam('inputCoordinates', params.PointerParam, pointerClass='SetOfCoordinates',
                      important=True, label='Training coordinates',
                      help='Particle centres on the training micrographs (or on the micrographs they '
                           'were derived from: coordinates are matched by micrograph name and rescaled by '
                           'the ratio of pixel sizes). They need not mark every particle.')
        # Shown only for micrographs this protocol preprocesses itself: those from "topazpu -
        # normalize" keep their own factor and normalisation (see needsPreprocessing).
        form.addParam('scale', params.FloatParam, default=4.0, validators=[params.GE(1.0)],
                      condition=RAW_INPUT_CONDITION,
                      label='Downsampling factor',
                      help='Used only when the training micrographs are not from "topazpu - normalize" '
                           '(those keep their own factor). The micrographs are Fourier-cropped by this '
                           'factor (>= 1); aim at 4-8 A/px.')
        form.addParam('normalization', params.EnumParam, choices=NORMALIZATIONS, default=NORM_GMM,
                      condition=RAW_INPUT_CONDITION,
                      expertLevel=params.LEVEL_ADVANCED, label='Normalisation',
                      help='Used only when the training micrographs are not from "topazpu - normalize": '
                           'see that protocol.')

        form.addSection(label='Validation')
        form.addParam('validationMode', params.EnumParam, default=VAL_NONE,
                      choices=['a fraction of the training micrographs', 'a separate set', 'none',
                               'a fraction of the labels'],
                      display=params.EnumParam.DISPLAY_LIST,
                      label='Validate on',
                      help='none (default): every label trains; the model is the mean of the weights of the '
                           'later epochs (the second half from 500 labels on, more of them with fewer labels). '
                           'With a few hundred '
                           'labels clicked here and there, held-out labels estimate the average precision too '
                           'noisily to choose an epoch, and the training loses them (apoferritin, 200 labels: '
                           'AP 0.686 with every label, 0.635 with a fifth held out and the best epoch).\n'
                           'Validation estimates the average precision of each epoch and of the final model '
                           '(still the mean weights; estimated when the '
                           'validation labels are sparse: they are assumed a random sample of the particles, '
                           'and the expected particles per micrograph right):\n'
                           'fraction of the labels: hold out a random fraction of the labels; their '
                           'micrographs stay in training with the other labels.\n'
                           'fraction of the micrographs: hold out a random fraction of the labelled micrographs.\n'
                           'separate set: micrographs (and coordinates) given below, e.g. a few labelled in full.\n'
                           'In every case the suggested threshold is the score above which the model picks %g x '
                           'the expected particles per micrograph (every pick counted, those at the labels too).'
                           % AUTO_PICKS_PER_PARTICLE)
        form.addParam('valLabels', params.FloatParam, default=0.2, condition='validationMode == %d' % VAL_LABELS,
                      validators=[params.Range(0.01, 0.9)],
                      label='Validation fraction of the labels',
                      help='Fraction (0-1) of the labels held out for validation (seeded).')
        form.addParam('valFraction', params.FloatParam, default=0.25, condition='validationMode == %d' % VAL_FRACTION,
                      validators=[params.Range(0.01, 0.9)],
                      label='Validation fraction',
                      help='Fraction (0-1) of the labelled micrographs held out for validation '
                           '(at least one micrograph).')
        form.addParam('validationMicrographs', params.PointerParam, pointerClass='SetOfMicrographs',
                      allowsNull=True, condition='validationMode == %d' % VAL_SET,
                      label='Validation micrographs',
                      help='Micrographs to validate on, prepared like the training micrographs (both from '
                           '"topazpu - normalize", or both not).')
        form.addParam('validationCoordinates', params.PointerParam, pointerClass='SetOfCoordinates',
                      allowsNull=True, condition='validationMode == %d' % VAL_SET,
                      label='Validation coordinates',
                      help='Particle centres on the validation micrographs. Empty: taken from the training '
                           'coordinates (those on validation micrographs are then not trained on).')

        form.addSection(label='Training')
        form.addParam('priorMode', params.EnumParam, default=PRIOR_PARTICLES,
                      choices=['particles per micrograph', 'positive fraction (pi)'],
                      display=params.EnumParam.DISPLAY_HLIST,
                      label='Expected particles given as',
                      help='How many particles the micrographs hold: as a number per micrograph, or as '
                           'the fraction pi of pixels (within the label radius of a particle centre).')
        form.addParam('numParticles', params.IntParam, default=0, validators=[params.GE(0)],
                      condition='priorMode == %d' % PRIOR_PARTICLES,
                      label='Particles per micrograph (0 = auto)',
                      help='Expected number of particles per micrograph, including those not labelled; '
                           'it must exceed the mean number of labels per labelled micrograph. 0: that mean '
                           'divided by %g (i.e. assuming %d%% of the particles are labelled); the wizard '
                           'computes this value.' % (DEFAULT_LABEL_COMPLETENESS, 100 * DEFAULT_LABEL_COMPLETENESS))
        form.addParam('pi', params.FloatParam, default=0.02, condition='priorMode == %d' % PRIOR_PI,
                      validators=[params.Range(1e-6, 0.5)],
                      label='Positive fraction (pi)',
                      help='Fraction (0-0.5) of the pixels of a micrograph within the label radius of a '
                           'particle centre.')
        form.addParam('method', params.EnumParam, choices=OBJECTIVES, default=OBJECTIVE_GE_BINOMIAL,
                      label='Objective',
                      help='GE-binomial (default): positive-unlabeled with a binomial constraint on the '
                           'number of positives among unlabelled samples (Bepler et al. 2019).\n'
                           'GE-KL: the same constraint as a KL divergence on the mean.\n'
                           'NNPU: non-negative PU risk (Kiryo et al. 2017).\n'
                           'PN: unlabelled treated as negatives (only for complete labels).')
        form.addParam('architecture', params.EnumParam, choices=ARCHITECTURES, default=ARCH_RESNET8,
                      label='Architecture',
                      help='Network: resnet8 (default; receptive field 71 px), resnet16 (91 px, slower), '
                           'conv31/conv63/conv127 (plain convolutions, receptive field in the name, px '
                           'of the downsampled micrographs). The receptive field should cover the particle.')
        form.addParam('units', params.IntParam, default=32, validators=[params.Positive],
                      expertLevel=params.LEVEL_ADVANCED, label='Units',
                      help='Filters in the first layer (doubled at each stride); 32 or 64.')
        form.addParam('startModel', params.EnumParam, choices=START_MODELS, default=START_MODEL_AUTO,
                      label='Starting model',
                      help='auto (default): while the labels cover less than half the expected particles, the '
                           'feature layers start from the model bundled with topazpu (a resnet8 with 32 units '
                           'trained on apoferritin, beta-galactosidase and ribosome micrographs); otherwise, or '
                           'for another architecture, from random weights. Measured on each of those proteins '
                           'from a model of the other two, it raised the mean average precision with 50 labels '
                           'by 0.013 (apoferritin) and 0.018 (beta-galactosidase). none: random weights.')
        form.addParam('labelRadius', params.IntParam, default=LABEL_RADIUS_AUTO, validators=[params.GE(0)],
                      label='Label radius (px, 0 = auto)',
                      help='Pixels within this distance of a labelled centre, in px of the downsampled '
                           'micrographs, are positives (2 gives 13 px per particle, 3 gives 29). It is not the '
                           'particle radius. 0 = auto: %d while the labels cover less than half the expected '
                           'particles, as when a few hundred are picked by hand (a sharper target, which raised '
                           'the beta-galactosidase AP with 50-200 labels), else %d.'
                           % (LABEL_RADIUS_FEW_LABELS, LABEL_RADIUS_MOST_LABELLED))
        form.addParam('particleDiameter', params.FloatParam, default=0, validators=[params.GE(0)],
                      label='Particle diameter (A, 0 = auto)',
                      help='Diameter of the particle in Angstrom. It gives the particle radius r in px of '
                           'the downsampled micrographs: picks are at least %g r apart (non-maximum '
                           'suppression) and validation matches picks to labels within r; it is recorded in '
                           'the model for the picker. 0: the box size of the training coordinates / %.1f.'
                           % (NMS_RADIUS_FACTOR, BOX_FACTOR))
        form.addParam('epochs', params.IntParam, default=EPOCHS_AUTO, validators=[params.GE(0)],
                      label='Epochs (0 = auto)',
                      help='Training epochs in all (with self-training, half in each round). 0 = auto: %d while '
                           'the labels cover less than half the expected particles, as when a few hundred are '
                           'picked by hand, else %d (with every particle labelled, more epochs raised the '
                           'average precision). "Continue" with a larger value trains more epochs from the last '
                           'checkpoint.' % (EPOCHS_FEW_LABELS, EPOCHS_MOST_LABELLED))
        form.addParam('pseudoLabels', params.FloatParam, default=0, validators=[params.Range(0, 0.95)],
                      expertLevel=params.LEVEL_ADVANCED, label='Self-training share (0 = off)',
                      help='Self-training: a first model is trained on the labels; its best picks on each '
                           'training micrograph, this share of the expected particles that are not labelled, '
                           'are added to the labels and the final model is trained again from the start on '
                           'both, each round with half the epochs. With 0.8 and 50 labels the AP rose by 0.04 '
                           'on apoferritin but fell by 0.04 on beta-galactosidase: compare both models on '
                           'your data. 0: one round on the labels only.')
        form.addParam('epochSize', params.IntParam, default=0, validators=[params.GE(0)],
                      expertLevel=params.LEVEL_ADVANCED, label='Updates per epoch (0 = auto)',
                      help='Minibatch updates per epoch (0: the engine default).')
        form.addParam('autoencoder', params.FloatParam, default=0,
                      expertLevel=params.LEVEL_ADVANCED, label='Autoencoder weight',
                      help='Weight of the autoencoder term (>= 0; 0 = off; negative = automatic, '
                           '10 / number of labels as in Bepler et al. 2019). On apoferritin with 50 labels '
                           'it did not help (AP 0.57 against 0.59 without).')
        form.addParam('seed', params.IntParam, default=0, label='Random seed',
                      help='Seed for initialisation, sampling and the validation split (integer).')
        form.addParam('extraParams', params.StringParam, default='', expertLevel=params.LEVEL_ADVANCED,
                      label='Additional engine arguments',
                      help='Appended to the `topazpu train` command line, e.g. "--units 64".')
        base.addGpuParams(form)
        base.addParallelSection(form, parallelSteps=False)

    # --------------------------- INSERT steps functions ---------------------
    def _createFilenameTemplates(self):
        self._updateFilenamesDict({
            'model': self._getExtraPath('model.pt'),
            'modelJson': self._getExtraPath('model.json'),
            'trainingTsv': self._getExtraPath('model.training.tsv'),
            'trainingPng': self._getExtraPath('model.training.png'),
            'checkpoints': self._getExtraPath('model.checkpoints'),
            'firstRoundCheckpoints': self._getExtraPath('model.round1.checkpoints'),
            'preprocessed': self._getExtraPath('preprocessed'),
            'preprocessList': self._getExtraPath('preprocess_input.txt'),
            'trainImages': self._getExtraPath('train_images.txt'),
            'trainTargets': self._getExtraPath('train_targets.txt'),
            'valImages': self._getExtraPath('validation_images.txt'),
            'valTargets': self._getExtraPath('validation_targets.txt'),
        })

    def _insertAllSteps(self):
        self._createFilenameTemplates()
        trainArgs = self._getTrainArgs()
        self._insertFunctionStep(self.convertInputStep, self._inputSignature(), needsGPU=False)
        self._insertFunctionStep(self.trainStep, trainArgs, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, trainArgs, needsGPU=False)

    # --------------------------- STEPS functions ----------------------------
    def convertInputStep(self, *_signature):
        """Write the engine's inputs: image lists and coordinate tables in the training frame."""
        self._createFilenameTemplates()
        trainMap, trainCoords, valMap, valCoords = self._collectInputs()
        preprocessed = self.isPreprocessed()
        if not preprocessed:
            # Preprocess the labelled micrographs (and validation ones) once, here.
            mics = [trainMap.byImageName[n] for n in trainCoords.image_names()]
            if valMap is not None:
                mics += [valMap.byImageName[n] for n in valCoords.image_names()]
            listFile = convert.writeListFile([m.getFileName() for m in mics], self._getFileName('preprocessList'))
            args = '-s %s -o %s --method %s --seed %d @%s' % (
                self.scale.get(), base.quote(os.path.abspath(self._getFileName('preprocessed'))),
                self.getNormalizationName(), self.seed.get(), base.quote(os.path.abspath(listFile)))
            base.runEngine(self, 'preprocess', args, threads=base.jobThreads(self), useDevice=False)
        self._writeEngineInputs(trainMap, trainCoords, self._getFileName('trainImages'),
                                self._getFileName('trainTargets'), preprocessed)
        if valMap is not None:
            self._writeEngineInputs(valMap, valCoords, self._getFileName('valImages'),
                                    self._getFileName('valTargets'), preprocessed)

    def _writeEngineInputs(self, micMap, coords, imagesFile, targetsFile, preprocessed):
        from topazpu_core.coordinates import write_coordinates
        names = coords.image_names()
        if preprocessed:
            paths = [micMap.byImageName[n].getFileName() for n in names]
        else:
            paths = [os.path.join(self._getFileName('preprocessed'), n + '.mrc') for n in names]
            coords = coords.scaled(1.0 / self.scale.get())
        convert.writeListFile(paths, imagesFile)
        write_coordinates(coords, targetsFile, fmt='coord')
        self.info('%s: %d micrographs, %d coordinates.' % (os.path.basename(imagesFile), len(names), len(coords)))

    def trainStep(self, trainArgs):
        self._createFilenameTemplates()
        args = trainArgs
        if self._hasCheckpoints():
            self.info('Checkpoints found in %s: resuming the training.' % self._getExtraPath())
            args += ' --resume'
        base.runEngine(self, 'train', args, threads=base.jobThreads(self))

    def createOutputStep(self, *_signature):
        self._createFilenameTemplates()
        model = TopazPuModel(path=self._getFileName('model'))
        model.setFromMetadata(model.getMetadata())
        model.setPixelSize(self.getTrainingPixelSize())
        self._defineOutputs(**{TopazPuTrainOutputs.outputModel.name: model})
        self._defineSourceRelation(self.inputMicrographs, model)
        self._defineSourceRelation(self.inputCoordinates, model)
        if self.validationMode.get() == VAL_SET and self.validationMicrographs.get() is not None:
            self._defineSourceRelation(self.validationMicrographs, model)

    # --------------------------- UTILS functions ----------------------------
    def isPreprocessed(self):
        """True when the training micrographs were written by `topazpu preprocess` (normalize)."""
        micSet = self.inputMicrographs.get()
        return micSet is not None and convert.preprocessInfo(micSet) is not None

    def needsPreprocessing(self):
        """True unless the training micrographs are known to come from "topazpu - normalize"
        (also while no input is chosen yet, or it is not produced yet): the form shows the
        downsampling factor and normalisation only then."""
        return not self.isPreprocessed()

    def getScale(self):
        """Downsampling factor between the raw micrographs and the network's input."""
        info = convert.preprocessInfo(self.inputMicrographs.get())
        return info[0] if info else self.scale.get()

    def getNormalizationName(self):
        info = convert.preprocessInfo(self.inputMicrographs.get())
        if info and info[1]:
            return info[1]
        return NORMALIZATIONS[self.normalization.get()]

    def getTrainingPixelSize(self):
        """A/px of the images the network is trained on."""
        sr = self.inputMicrographs.get().getSamplingRate()
        return sr if self.isPreprocessed() else sr * self.scale.get()

    def getParticleDiameterA(self):
        """Particle diameter (A): the parameter, else implied by the coordinates' box size."""
        if self.particleDiameter.get():
            return self.particleDiameter.get()
        coords = self.inputCoordinates.get()
        mics = coords.getMicrographs() if coords is not None else None
        if coords is None or not coords.getBoxSize() or mics is None:
            return None
        return diameterFromBoxSize(coords.getBoxSize(), mics.getSamplingRate())

    def getParticleRadiusPx(self):
        """Particle radius in px of the training images (None when unknown)."""
        diameter = self.getParticleDiameterA()
        return particleRadiusPx(diameter, self.getTrainingPixelSize()) if diameter else None

    def _inputSignature(self):
        """Changes when the inputs change, so "continue" redoes the conversion only then."""
        parts = [self.inputMicrographs.get().getFileName(), self.inputCoordinates.get().getFileName(),
                 self.inputCoordinates.get().getSize(), self.scale.get(), self.getNormalizationName(),
                 self.validationMode.get()]
        if self.validationMode.get() == VAL_SET:
            for ptr in (self.validationMicrographs, self.validationCoordinates):
                obj = ptr.get()
                parts.append(obj.getFileName() if obj is not None else None)
        return ' '.join(str(p) for p in parts)

    def _hasCheckpoints(self):
        """Whether a training (its first self-training round included) has written a checkpoint."""
        return any(os.path.isdir(folder) and any(f.endswith('.pt') for f in os.listdir(folder))
                   for folder in (self._getFileName('checkpoints'), self._getFileName('firstRoundCheckpoints')))

    def _collectInputs(self):
        """Micrograph maps and engine coordinate tables (frame: the input micrographs)."""
        from topazpu_core.coordinates import Coordinates
        trainMap = convert.MicrographMap(self.inputMicrographs.get())
        coords, _ = convert.setToCoordinates(self.inputCoordinates.get(), trainMap)
        valMap = valCoords = None
        if self.validationMode.get() == VAL_SET:
            valMap = convert.MicrographMap(self.validationMicrographs.get())
            valSource = self.validationCoordinates.get() or self.inputCoordinates.get()
            valCoords, _ = convert.setToCoordinates(valSource, valMap)
            # Never train on validation micrographs.
            valNames = {convert.micName(m) for m in valMap.byImageName.values()}
            keep = [convert.micName(trainMap.byImageName[n]) not in valNames for n in coords.image_name]
            coords = coords.subset(keep) if len(coords) else coords
        if len(coords) == 0:
            coords = Coordinates.empty()
        return trainMap, coords, valMap, valCoords

    def _getTrainArgs(self):
        q = base.quote
        args = ['--train-images %s' % q(os.path.abspath(self._getFileName('trainImages'))),
                '--train-targets %s' % q(os.path.abspath(self._getFileName('trainTargets')))]
        mode = self.validationMode.get()
        if mode == VAL_SET:
            args += ['--test-images %s' % q(os.path.abspath(self._getFileName('valImages'))),
                     '--test-targets %s' % q(os.path.abspath(self._getFileName('valTargets')))]
        elif mode == VAL_FRACTION:
            args.append('--val-fraction %g' % self.valFraction.get())
        elif mode == VAL_LABELS:
            args.append('--val-labels %g' % self.valLabels.get())
        else:
            args.append('--val-fraction 0 --val-labels 0')
        if self.priorMode.get() == PRIOR_PI:
            args.append('--pi %g' % self.pi.get())
        else:
            args.append('-n %d' % self.getNumParticles())
        args += ['--objective %s' % OBJECTIVES[self.method.get()],
                 '--arch %s' % ARCHITECTURES[self.architecture.get()],
                 '--units %d' % self.units.get(),
                 '--start-model %s' % START_MODELS[self.startModel.get()],
                 '--label-radius %s' % (self.labelRadius.get() or 'auto'),
                 '--epochs %s' % (self.epochs.get() or 'auto'),
                 '--pseudo-labels %g' % self.pseudoLabels.get(),
                 '--seed %d' % self.seed.get(),
                 '--scale %g' % self.getScale(),
                 '--particle-radius %r' % float(self.getParticleRadiusPx()),
                 '--no-progress']
        if self.epochSize.get():
            args.append('--epoch-size %d' % self.epochSize.get())
        weight = self.autoencoder.get()
        if weight:
            args.append('--autoencoder %s' % ('auto' if weight < 0 else '%g' % weight))
        if self.extraParams.get():
            args.append(self.extraParams.get().strip())
        args.append('-o %s' % q(os.path.abspath(self._getFileName('model'))))
        return ' '.join(args)

    def getNumParticles(self):
        """Particles per micrograph: the parameter, or the mean label count when 0."""
        if self.numParticles.get():
            return self.numParticles.get()
        counts = convert.countsPerMicrograph(self.inputCoordinates.get())
        return expectedParticlesPerMicrograph(list(counts.values()))

    # --------------------------- INFO functions -----------------------------
    def _validate(self):
        errors = []
        micSet, coordSet = self.inputMicrographs.get(), self.inputCoordinates.get()
        if micSet is None or coordSet is None:
            return ['Give the training micrographs and coordinates.']
        if micSet.getSize() == 0:
            return ['The training micrographs are empty.']
        if coordSet.getSize() == 0:
            return ['The training coordinate set is empty: label some particles first '
                    '(e.g. with "topazpu - import coordinates" or a manual picker).']
        dups = convert.duplicateImageNames(micSet)
        if dups:
            errors.append('The engine names micrographs by file name, and these names occur more than '
                          'once in the training micrographs: %s.' % ', '.join(dups[:5]))
        maps = [convert.MicrographMap(micSet)]
        valSet = self.validationMicrographs.get() if self.validationMode.get() == VAL_SET else None
        if self.validationMode.get() == VAL_SET:
            if valSet is None or valSet.getSize() == 0:
                errors.append('Validation on a separate set: give the validation micrographs.')
            else:
                maps.append(convert.MicrographMap(valSet))
                if (convert.preprocessInfo(valSet) is None) != (not self.isPreprocessed()):
                    errors.append('The training and validation micrographs must be prepared alike: both '
                                  'from "topazpu - normalize", or both not.')
                valCoords = self.validationCoordinates.get()
                if valCoords is not None and valCoords.getSize() == 0:
                    errors.append('The validation coordinate set is empty.')
        coordNames = convert.coordinatesMicNames(coordSet)
        missing = [n for n in coordNames if not any(m.knows(n) for m in maps)]
        if missing:
            errors.append('%d of the %d micrographs of the training coordinates are not in the training '
                          'micrographs%s: %s%s. Give the micrographs the coordinates were picked on (or '
                          'micrographs derived from them, which keep their names).'
                          % (len(missing), len(coordNames), ' or the validation micrographs' if valSet else '',
                             ', '.join(missing[:5]), ' ...' if len(missing) > 5 else ''))
        elif self.validationMode.get() == VAL_FRACTION and len(coordNames) < 2:
            errors.append('Holding out a validation fraction needs at least 2 labelled micrographs '
                          '(found %d): label more, or set "Validate on" to none.' % len(coordNames))
        if (self.priorMode.get() == PRIOR_PARTICLES and self.numParticles.get()
                and OBJECTIVES[self.method.get()] != 'PN'):
            mean = meanLabelsPerMicrograph(convert.countsPerMicrograph(coordSet).values())
            if self.numParticles.get() <= mean:
                errors.append('Particles per micrograph (%d) must exceed the mean number of labels per '
                              'labelled micrograph (%.1f): unlabelled particles are what the PU objective '
                              'looks for. Raise it, or use the PN objective if every particle is labelled.'
                              % (self.numParticles.get(), mean))
        if self.getParticleRadiusPx() is None:
            errors.append('Give the particle diameter (A): the training coordinates have no box size to '
                          'derive it from.')
        errors += base.validateGpu(self)
        return errors

    def _warnings(self):
        """The bundled starting model ("Starting model": auto) was trained on particles 13-17 px
        across: a particle much larger or smaller after downsampling is warned about (the engine's
        start_model_size_mismatch; it warns in the run's log too)."""
        from topazpu_core.checkpoint import read_model_metadata
        from topazpu_core.training import BUNDLED_START_ARCHITECTURE, BUNDLED_START_MODEL, start_model_size_mismatch

        network = (ARCHITECTURES[self.architecture.get()], self.units.get())
        radius = self.getParticleRadiusPx() if self.inputMicrographs.get() is not None else None
        if self.startModel.get() != START_MODEL_AUTO or network != BUNDLED_START_ARCHITECTURE or not radius:
            return []
        mismatch = start_model_size_mismatch(BUNDLED_START_MODEL,
                                             read_model_metadata(BUNDLED_START_MODEL).get('particle_radius'), radius)
        if not mismatch:
            return []
        return ['While the labels cover less than half the expected particles, training starts from the model '
                'bundled with topazpu (Starting model: auto), but %s. Downsample by about %.2f x the current '
                'factor, or set Starting model to none.' % mismatch]

    def _summary(self):
        summary = []
        if self.inputCoordinates.get() is not None:
            summary.append('Training labels: %d coordinates.' % self.inputCoordinates.get().getSize())
        if self.isFinished() and self.hasAttribute('outputModel'):
            summary.append('Model: %s.' % self.outputModel.describe())
            summary.append('Model file: %s' % self.outputModel.getPath())
        return summary

    def _methods(self):
        if not (self.isFinished() and self.hasAttribute('outputModel')):
            return []
        model = self.outputModel
        text = ('A %s network was trained with the %s positive-unlabeled objective in topazpu '
                '(after Bepler et al. 2019) on %d labelled particles, on micrographs downsampled by %g '
                '(%.3g A/px), for %s epochs (seed %d).'
                % (model.getArchitecture(), model.getMethod(), self.inputCoordinates.get().getSize(),
                   model.getScale(), model.getPixelSize() or 0, model.getEpochsTrained(), self.seed.get()))
        if model.getValAp() is not None:
            text += ' Validation average precision: %.3f.' % model.getValAp()
        return [text]

    def _citations(self):
        return ['Bepler2019']
