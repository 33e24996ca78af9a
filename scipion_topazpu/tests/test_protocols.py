"""Real protocol runs in a real Scipion project on the bundled apoferritin micrographs.

import micrographs -> import coordinates (3 of 4 micrographs labelled) -> normalize -> train
(tiny: 2 short epochs) -> pick on all 4; the 4th micrograph is held back for an AP check.
One pipeline per module (setUpClass); the other tests reuse its outputs.
"""
import json
import os
from types import SimpleNamespace

import numpy as np
import pyworkflow.protocol.params as pwparams
from pyworkflow.protocol import MODE_RESUME
from pyworkflow.tests import BaseTest, setupTestProject
from pwem.objects import SetOfCoordinates, SetOfMicrographs
from pwem.protocols import ProtImportMicrographs

from scipion_topazpu import convert
from scipion_topazpu.constants import NORM_ATTR, VAL_LABELS
from scipion_topazpu.estimates import boxSizeFromDiameter
from scipion_topazpu.objects import TopazPuModel
from scipion_topazpu.protocols import (TopazPuProtImportCoordinates, TopazPuProtImportModel,
                                       TopazPuProtNormalize, TopazPuProtPick, TopazPuProtTrain)
from scipion_topazpu.tests import common

# AP of the picks on the held-back micrograph, matching radius = particle radius (16.5 px).
# The picks are those the protocol keeps at the model's default threshold, which picks the
# expected count (-n 200) per micrograph on the validation micrographs (then not counting the
# labels trained on): 92 picks for 158 targets after the tiny test training (2 x 12 updates), AP 0.128,
# as many random picks 0.067 (the random level depends on the count: 0.12 at 180 picks, 0.18 at
# 300); a wrong coordinate frame (e.g. scaled by 2) gives ~0.05. Both bounds can fail: the
# floor, and the margin over the random picks of the same count; test_pick_frame_matches_engine
# checks the frame exactly.
AP_FLOOR = 0.10
CHANCE_MARGIN = 0.05


class FakeForm:
    """What a wizard needs from the GUI form."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.values = {}
        self.warnings = []

    def setVar(self, name, value):
        self.values[name] = value

    def showWarning(self, msg):
        self.warnings.append(msg)

    showError = showInfo = showWarning


class TestTopazPuPipeline(BaseTest):

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        mics, _ = common.bundled()
        cls.coordsFile = common.writeTrainingCoordinates(cls.proj.getTmpPath())
        cls.protMics = cls.newProtocol(ProtImportMicrographs, filesPath=os.path.dirname(mics[0]),
                                       filesPattern='*.mrc', samplingRate=common.SAMPLING_RATE,
                                       voltage=300, sphericalAberration=2.7, amplitudeContrast=0.1)
        common.launch(cls, cls.protMics)
        cls.protCoords = cls.newProtocol(TopazPuProtImportCoordinates, filesPath=cls.coordsFile, boxSize=50,
                                         inputMicrographs=cls.protMics.outputMicrographs)
        common.launch(cls, cls.protCoords)
        # Two jobs of 2 micrographs: the first fits the data-set mixture, the second uses it.
        cls.protNorm = cls.newProtocol(TopazPuProtNormalize, scale=common.SCALE, numberOfThreads=3, binThreads=1,
                                       batchSize=2, inputMicrographs=cls.protMics.outputMicrographs)
        common.launch(cls, cls.protNorm)
        cls.protTrain = cls.newProtocol(TopazPuProtTrain, particleDiameter=common.PARTICLE_DIAMETER_A,
                                        inputMicrographs=cls.protNorm.outputMicrographs,
                                        inputCoordinates=cls.protCoords.outputCoordinates,
                                        numberOfThreads=2, validationMode=VAL_LABELS, **common.TRAIN_PARAMS)
        common.launch(cls, cls.protTrain)
        cls.protPick = cls.newProtocol(TopazPuProtPick, particleDiameter=common.PARTICLE_DIAMETER_A,
                                       inputMicrographs=cls.protMics.outputMicrographs,
                                       inputModel=cls.protTrain.outputModel,
                                       streamingBatchSize=2, numberOfThreads=2)
        common.launch(cls, cls.protPick)

    # ---- helpers -----------------------------------------------------------------------
    def _parentIds(self, obj):
        return {p.getObjId() for p in self.proj.getSourceParents(obj)}

    # ---- import coordinates --------------------------------------------------------------
    def test_import_coordinates(self):
        coords = self.protCoords.outputCoordinates
        expected = common.readBundledTargets()
        nExpected = int(sum(n != common.heldBackName() for n in expected.image_name))
        self.assertEqual(coords.getSize(), nExpected)
        self.assertEqual(coords.getBoxSize(), 50)
        self.assertEqual(len(convert.coordinatesMicNames(coords)), 3)
        self.assertIn(self.protMics.outputMicrographs.getObjId(), self._parentIds(coords))

    # ---- normalize -----------------------------------------------------------------------
    def test_normalize(self):
        out = self.protNorm.outputMicrographs
        self.assertEqual(out.getSize(), 4)
        self.assertAlmostEqual(out.getSamplingRate(), common.SAMPLING_RATE * common.SCALE)
        self.assertEqual(convert.preprocessInfo(out), (common.SCALE, 'gmm'))
        from topazpu_core.images import image_shape
        for mic in out:
            self.assertTrue(os.path.exists(mic.getFileName()), mic.getFileName())
            self.assertEqual(tuple(image_shape(mic.getFileName())), (300, 310))
            info = json.loads(getattr(mic, NORM_ATTR).get())
            self.assertIn('source', info)
        raw = {m.getMicName() for m in self.protMics.outputMicrographs}
        self.assertEqual({m.getMicName() for m in out}, raw)
        self.assertIn(self.protMics.outputMicrographs.getObjId(), self._parentIds(out))
        self.assertTrue(out.isStreamClosed())
        # One data-set mixture for all four, fitted on the first job's two micrographs.
        infos = [json.loads(getattr(mic, NORM_ATTR).get()) for mic in out]
        self.assertEqual(len({json.dumps([i['weights'], i['mu'], i['sigma']]) for i in infos}), 1)
        names, _ = self.protNorm.getDatasetFit()
        self.assertEqual(len(names), 2)
        self.assertIn('fitted once, on the 2 micrographs of the first job', ' '.join(self.protNorm.summary()))

    # ---- train ---------------------------------------------------------------------------
    def test_train(self):
        model = self.protTrain.outputModel
        self.assertIsInstance(model, TopazPuModel)
        self.assertTrue(os.path.exists(model.getPath()))
        self.assertEqual(model.getArchitecture(), 'resnet8')
        self.assertEqual(model.getMethod(), 'GE-binomial')
        self.assertAlmostEqual(model.getScale(), common.SCALE)
        self.assertAlmostEqual(model.getPixelSize(), common.SAMPLING_RATE * common.SCALE)
        self.assertAlmostEqual(model.getParticleRadius(), common.PARTICLE_DIAMETER_A / 2 / model.getPixelSize(),
                               places=2)
        self.assertEqual(model.getEpochsTrained(), common.TRAIN_PARAMS['epochs'])
        self.assertIsNotNone(model.getValAp())
        self.assertIsNotNone(model.getThreshold())
        meta = model.getMetadata()
        # a fifth of the labels held out (the form's default fraction), all 3 labelled micrographs train and validate
        self.assertEqual((meta['n_train_micrographs'], meta['n_val_micrographs']), (3, 3))
        self.assertEqual(meta['validation'], 'held-out labels (0.2)')
        parents = self._parentIds(model)
        self.assertIn(self.protNorm.outputMicrographs.getObjId(), parents)
        self.assertIn(self.protCoords.outputCoordinates.getObjId(), parents)

    # ---- pick ----------------------------------------------------------------------------
    def test_pick(self):
        coords = self.protPick.outputCoordinates
        self.assertTrue(coords.isStreamClosed())
        self.assertEqual(len(convert.coordinatesMicNames(coords)), 4)
        self.assertGreater(coords.getSize(), 4 * 40)
        # Non-maximum suppression at the particle radius, in px of the input micrographs.
        from scipy.spatial.distance import pdist
        table, _ = convert.setToCoordinates(coords, convert.MicrographMap(self.protMics.outputMicrographs))
        radius = common.PARTICLE_DIAMETER_A / common.SAMPLING_RATE / 2
        for name, sub in table.by_image().items():
            self.assertGreater(pdist(sub.xy).min(), radius - 1.5, name)
        self.assertEqual(coords.getBoxSize(), boxSizeFromDiameter(common.PARTICLE_DIAMETER_A, common.SAMPLING_RATE))
        scores = convert.setScores(coords)
        self.assertTrue(np.isfinite(scores).all())
        threshold = self.protTrain.outputModel.getThreshold()
        self.assertGreaterEqual(scores.min(), threshold - 1e-3)
        for coord in coords.iterItems():
            self.assertTrue(0 <= coord.getX() < 620 and 0 <= coord.getY() < 600)
        parents = self._parentIds(coords)
        self.assertIn(self.protMics.outputMicrographs.getObjId(), parents)
        self.assertIn(self.protTrain.outputModel.getObjId(), parents)

    def test_pick_frame_matches_engine(self):
        """The Scipion coordinates are the engine's picks on the raw micrographs, in their frame."""
        import glob
        from topazpu_core.checkpoint import load_model
        from topazpu_core.images import list_images
        from topazpu_core.metrics import match_picks
        from topazpu_core.picking import PickOptions, pick_raw_files
        batch = [f for f in glob.glob(self.protPick._getExtraPath('batches', 'batch_*.txt'))
                 if common.heldBackName() in open(f).read()][0]
        model, meta = load_model(self.protTrain.outputModel.getPath())
        from topazpu_core.options import nms_radius_for
        radius = nms_radius_for(common.PARTICLE_DIAMETER_A / common.SAMPLING_RATE / 2)
        options = PickOptions(radius=radius, threshold=self.protTrain.outputModel.getThreshold(),
                              edge_margin=float(meta.get("edge_margin", 0)) * float(meta.get("scale", 1)))
        direct, _, _ = pick_raw_files(model, meta, list_images(batch), options)
        direct = direct.by_image()[common.heldBackName()]
        micMap = convert.MicrographMap(self.protMics.outputMicrographs)
        table, _ = convert.setToCoordinates(self.protPick.outputCoordinates, micMap)
        ours = table.by_image()[common.heldBackName()]
        self.assertEqual(len(ours), len(direct))
        self.assertTrue(match_picks(ours.xy, direct.xy, 0.75).all())
        np.testing.assert_allclose(np.sort(ours.score), np.sort(direct.score), rtol=1e-5, atol=1e-5)

    def test_pick_ap_on_held_back_micrograph(self):
        from topazpu_core.coordinates import Coordinates
        from topazpu_core.metrics import evaluate
        micMap = convert.MicrographMap(self.protMics.outputMicrographs)
        picks, missing = convert.setToCoordinates(self.protPick.outputCoordinates, micMap)
        self.assertEqual(missing, [])
        held = common.heldBackName()
        radius = common.PARTICLE_DIAMETER_A / common.SAMPLING_RATE / 2
        result = evaluate(picks, common.heldBackTargets(), radius=radius, images=[held])
        # Chance level: as many uniformly random picks with random scores.
        rng = np.random.default_rng(0)
        n = result['n_picks']
        chance = np.mean([evaluate(Coordinates.from_arrays(np.array([held] * n, dtype=object), rng.uniform(0, 620, n),
                                                           rng.uniform(0, 600, n), rng.normal(size=n)),
                                   common.heldBackTargets(), radius=radius)['ap'] for _ in range(10)])
        print('held-back micrograph: AP %.3f (random picks: %.3f), %d picks, %d targets'
              % (result['ap'], chance, result['n_picks'], result['n_targets']))
        self.assertGreater(result['ap'], AP_FLOOR)
        self.assertGreater(result['ap'], chance + CHANCE_MARGIN, 'the picks are no better than random ones')

    def test_streaming_pick(self):
        """Micrographs arriving in an open set are picked as they come; the output closes at the end."""
        stream = common.growingMicrographs(self, self.protMics.outputMicrographs, count=3, interval=3)
        pick = self.newProtocol(TopazPuProtPick, particleDiameter=common.PARTICLE_DIAMETER_A,
                                inputModel=self.protTrain.outputModel, streamingBatchSize=1, numberOfThreads=1)
        common.followStream(pick.inputMicrographs, stream)
        common.launch(self, pick)
        self.proj._updateProtocol(stream)
        self.assertTrue(stream.isFinished())
        coords = pick.outputCoordinates
        self.assertTrue(coords.isStreamClosed())
        self.assertEqual(len(convert.coordinatesMicNames(coords)), 3)
        self.assertTrue(np.isfinite(convert.setScores(coords)).all())
        updates = open(pick.getStdoutLog()).read().count('Reading coordinates from mics')
        self.assertGreaterEqual(updates, 2, 'the output grew %d time(s)' % updates)

    # ---- a corrupt micrograph among good ones --------------------------------------------
    def test_unreadable_micrograph_skipped_by_normalize_and_pick(self):
        """Normalize and pick leave out a truncated MRC, name it in their summaries and logs, and
        give the good micrographs exactly what they get without it."""
        from topazpu_core.images import image_name, read_image
        from topazpu_core.preprocessing import preprocess_images
        folder = os.path.abspath(self.proj.getTmpPath('mixed'))
        mics = common.bundledWithTruncated(folder)
        protMics = self.newProtocol(ProtImportMicrographs, filesPath=folder, filesPattern='*.mrc',
                                    samplingRate=common.SAMPLING_RATE, voltage=300, objLabel='import with a corrupt one')
        common.launch(self, protMics)
        self.assertEqual(protMics.outputMicrographs.getSize(), 5)

        # One job for all five: the engine skips the bad one and exits with "some skipped".
        norm = self.newProtocol(TopazPuProtNormalize, scale=common.SCALE, batchSize=0, numberOfThreads=1,
                                inputMicrographs=protMics.outputMicrographs)
        common.launch(self, norm)
        out = norm.outputMicrographs
        self.assertEqual(sorted(m.getMicName() for m in out), sorted(os.path.basename(m) for m in mics))
        alone = {p['image_name']: a for a, p in preprocess_images(mics, common.SCALE, method='gmm', seed=0,
                                                                   progress=False)}
        for mic in out:
            np.testing.assert_array_equal(read_image(mic.getFileName()), alone[image_name(mic.getFileName())])
        summary = '\n'.join(norm.summary())
        self.assertIn('Skipped 1 unreadable micrograph', summary)
        self.assertIn('zz_truncated.mrc', summary)
        with open(norm.getStdoutLog(), errors='replace') as f:  # the engine's line, in the run log
            self.assertRegex(f.read(), r'\nskipped: /\S+/zz_truncated\.mrc: truncated MRC file')

        # Batches of 2 as the pipeline's pick: the last batch holds only the bad micrograph.
        pick = self.newProtocol(TopazPuProtPick, particleDiameter=common.PARTICLE_DIAMETER_A,
                                inputMicrographs=protMics.outputMicrographs, inputModel=self.protTrain.outputModel,
                                streamingBatchSize=2, numberOfThreads=2)
        common.launch(self, pick)
        micMap = convert.MicrographMap(protMics.outputMicrographs)
        got, _ = convert.setToCoordinates(pick.outputCoordinates, micMap)
        expected, _ = convert.setToCoordinates(self.protPick.outputCoordinates,
                                               convert.MicrographMap(self.protMics.outputMicrographs))
        self.assertEqual(sorted(got.image_names()), sorted(expected.image_names()))
        got, expected = got.by_image(), expected.by_image()
        for name in expected:
            a, b = got[name], expected[name]
            np.testing.assert_allclose(a.xy[np.lexsort(a.xy.T)], b.xy[np.lexsort(b.xy.T)])
        summary = '\n'.join(pick.summary())
        self.assertIn('Skipped 1 unreadable micrograph', summary)
        self.assertIn('zz_truncated.mrc', summary)

    # ---- continue training ---------------------------------------------------------------
    def test_train_raw_micrographs_and_continue(self):
        """Raw micrographs are preprocessed by the training itself; self-training; "continue" keeps
        finished epochs and a finished first round."""
        prot = self.newProtocol(TopazPuProtTrain, particleDiameter=common.PARTICLE_DIAMETER_A, scale=common.SCALE,
                                inputMicrographs=self.protMics.outputMicrographs,
                                inputCoordinates=self.protCoords.outputCoordinates,
                                **dict(common.TRAIN_PARAMS, epochs=2))
        prot._createFilenameTemplates()
        self.assertIn('--val-fraction 0 --val-labels 0', prot._getTrainArgs())  # the default: no validation
        self.assertIn('--pseudo-labels 0 ', prot._getTrainArgs())  # no self-training by default
        self.assertIn('--start-model auto ', prot._getTrainArgs())  # the bundled model while labels are few
        prot.pseudoLabels.set(0.8)
        self.assertIn('--pseudo-labels 0.8', prot._getTrainArgs())
        common.launch(self, prot)
        # self-training: a first model on the labels, then the model on the labels and its best
        # picks; the 2 epochs are shared, one in each round
        self.assertGreater(prot.outputModel.getMetadata()['n_pseudo_labels'], 0)
        self.assertEqual(prot.outputModel.getEpochsTrained(), 1)
        firstRound = os.path.getmtime(prot._getExtraPath('model.round1.pt'))
        self.assertAlmostEqual(prot.outputModel.getScale(), common.SCALE)
        self.assertIsNone(prot.outputModel.getValAp())
        self.assertEqual(prot.outputModel.getMetadata()['validation'], 'none')
        # the threshold wizard then gives the model's default threshold (no curve to take a best F1 from)
        from scipion_topazpu.wizards import TopazPuThresholdWizard
        model = prot.outputModel
        form = FakeForm(SimpleNamespace(inputModel=SimpleNamespace(get=lambda: model)))
        TopazPuThresholdWizard().show(form)
        self.assertAlmostEqual(form.values['threshold'], model.getThreshold(), places=3)
        self.assertIn('trained without validation', form.warnings[0])
        self.assertAlmostEqual(prot.outputModel.getPixelSize(), common.SAMPLING_RATE * common.SCALE)
        preprocessed = sorted(os.listdir(prot._getExtraPath('preprocessed')))
        self.assertEqual(len([f for f in preprocessed if f.endswith('.mrc')]), 3)   # the labelled micrographs
        self.assertIn('preprocess.json', preprocessed)
        first = os.path.getmtime(os.path.join(prot._getExtraPath('model.checkpoints'), 'epoch000.pt'))
        prot.epochs.set(4)  # the first round is kept; the second trains on to its share, 4 - 4 // 2 = 2 epochs
        prot.runMode.set(MODE_RESUME)
        common.launch(self, prot)
        prot = self.proj.getProtocol(prot.getObjId())
        self.assertEqual(prot.outputModel.getEpochsTrained(), 2)
        checkpoints = sorted(os.listdir(prot._getExtraPath('model.checkpoints')))
        self.assertEqual(checkpoints, ['epoch000.pt', 'epoch001.pt'])
        self.assertEqual(first, os.path.getmtime(os.path.join(prot._getExtraPath('model.checkpoints'),
                                                              'epoch000.pt')))
        self.assertIn('Checkpoints found', open(prot.getStdoutLog()).read())
        self.assertEqual(firstRound, os.path.getmtime(prot._getExtraPath('model.round1.pt')))  # kept, not retrained

    def test_train_validation_set_inputs(self):
        """A separate validation set: its micrographs leave the training, targets come from the labels."""
        from scipion_topazpu.constants import VAL_SET
        labelled = sorted({convert.engineImageName(n) for n in convert.coordinatesMicNames(self.protCoords.outputCoordinates)})
        prot = self.newProtocol(TopazPuProtTrain, particleDiameter=common.PARTICLE_DIAMETER_A,
                                inputMicrographs=self.protNorm.outputMicrographs,
                                inputCoordinates=self.protCoords.outputCoordinates, validationMode=VAL_SET,
                                **common.TRAIN_PARAMS)
        prot.validationMicrographs.set(self._micSubset(names=labelled[:1], source=self.protNorm.outputMicrographs))
        self.assertEqual(prot.validate(), [])
        prot._createFilenameTemplates()
        trainMap, trainCoords, valMap, valCoords = prot._collectInputs()
        self.assertEqual(trainCoords.image_names(), labelled[1:])
        self.assertEqual(valCoords.image_names(), labelled[:1])
        args = prot._getTrainArgs()
        self.assertIn('--test-images', args)
        self.assertNotIn('--val-fraction', args)
        self.assertIn('--particle-radius 8.25', args)
        self.assertIn('-n 200', args)

    def test_train_warns_of_particles_unlike_the_starting_model(self):
        """The bundled starting model learned particles 13-17 px across: the bundled set's (16.5 px after
        downsampling by 2) start quietly; three times as large is warned about, with the factor to
        downsample by; with "Starting model" none there is nothing to warn about."""
        from scipion_topazpu.constants import START_MODELS
        inputs = dict(inputMicrographs=self.protNorm.outputMicrographs,
                      inputCoordinates=self.protCoords.outputCoordinates)
        same = self.newProtocol(TopazPuProtTrain, particleDiameter=common.PARTICLE_DIAMETER_A, **inputs)
        self.assertEqual(same.warnings(), [])
        large = self.newProtocol(TopazPuProtTrain, particleDiameter=3 * common.PARTICLE_DIAMETER_A, **inputs)
        warnings = large.warnings()
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn('these are 24.8 px, 3.22 x as large', warnings[0])
        self.assertIn('Downsample by about 3.22 x', warnings[0])
        large.startModel.set(START_MODELS.index('none'))
        self.assertEqual(large.warnings(), [])

    def test_train_particles_must_exceed_labels(self):
        prot = self.newProtocol(TopazPuProtTrain, particleDiameter=common.PARTICLE_DIAMETER_A, numParticles=100,
                                inputMicrographs=self.protNorm.outputMicrographs,
                                inputCoordinates=self.protCoords.outputCoordinates)
        errors = prot.validate()
        self.assertTrue(any('must exceed the mean number of labels' in e for e in errors), errors)

    # ---- import model --------------------------------------------------------------------
    def test_import_model(self):
        prot = self.newProtocol(TopazPuProtImportModel, modelFile=os.path.abspath(self.protTrain.outputModel.getPath()),
                                pixelSize=common.SAMPLING_RATE * common.SCALE)
        common.launch(self, prot)
        model = prot.outputModel
        self.assertTrue(os.path.exists(model.getPath()))
        self.assertTrue(model.getPath().startswith(prot._getExtraPath()))
        self.assertEqual(model.getThreshold(), self.protTrain.outputModel.getThreshold())
        self.assertAlmostEqual(model.getRawPixelSize(), common.SAMPLING_RATE)
        self.assertTrue(os.path.exists(os.path.splitext(model.getPath())[0] + '.training.tsv'))
        bad = self.newProtocol(TopazPuProtImportModel, modelFile=os.path.abspath(self.coordsFile))
        self.assertTrue(any('not a topazpu model' in e for e in bad.validate()), bad.validate())

    # ---- validation ----------------------------------------------------------------------
    def _micSubset(self, names=None, samplingRate=None, source=None):
        source = source or self.protMics.outputMicrographs
        subset = SetOfMicrographs(filename=self.proj.getTmpPath('mics_%s.sqlite' % os.urandom(4).hex()))
        subset.copyInfo(source)
        if samplingRate:
            subset.setSamplingRate(samplingRate)
        for mic in source:
            if names is None or convert.engineImageName(mic.getFileName()) in names:
                subset.append(mic.clone())
        subset.write()
        return subset

    def test_validate_empty_coordinates(self):
        empty = SetOfCoordinates(filename=self.proj.getTmpPath('empty_coords.sqlite'))
        empty.setMicrographs(self.protNorm.outputMicrographs)
        empty.setBoxSize(50)
        empty.write()
        prot = self.newProtocol(TopazPuProtTrain, inputMicrographs=self.protNorm.outputMicrographs)
        prot.inputCoordinates.set(empty)
        errors = prot.validate()
        self.assertTrue(any('coordinate set is empty' in e for e in errors), errors)

    def test_validate_coordinates_on_unknown_micrographs(self):
        prot = self.newProtocol(TopazPuProtTrain, particleDiameter=100,
                                inputCoordinates=self.protCoords.outputCoordinates)
        prot.inputMicrographs.set(self._micSubset(names=[common.heldBackName()]))
        errors = prot.validate()
        self.assertTrue(any('3 of the 3 micrographs of the training coordinates are not in the training '
                            'micrographs' in e for e in errors), errors)

    def test_validate_model_pixel_size(self):
        prot = self.newProtocol(TopazPuProtPick, inputModel=self.protTrain.outputModel)
        prot.inputMicrographs.set(self._micSubset(samplingRate=5.0))
        errors = prot.validate()
        self.assertTrue(any('The model expects micrographs at 3.5 A/px' in e for e in errors), errors)
        prot.inputMicrographs.set(self.protNorm.outputMicrographs)
        errors = prot.validate()
        self.assertTrue(any('pick on the original micrographs' in e for e in errors), errors)

    def test_validate_gpu_without_cuda(self):
        import torch
        if torch.cuda.is_available():
            self.skipTest('this machine has CUDA')
        prot = self.newProtocol(TopazPuProtPick, inputMicrographs=self.protMics.outputMicrographs,
                                inputModel=self.protTrain.outputModel)
        getattr(prot, pwparams.USE_GPU).set(True)
        errors = prot.validate()
        self.assertTrue(any('torch.cuda.is_available() is False' in e for e in errors), errors)

    def test_launch_invalid_protocol_fails_with_message(self):
        """Scipion refuses to run a protocol whose form does not validate and shows why."""
        prot = self.newProtocol(TopazPuProtPick, inputModel=self.protTrain.outputModel)
        prot.inputMicrographs.set(self.protNorm.outputMicrographs)
        prot.setObjLabel('invalid pick')
        with self.assertRaises(Exception) as ctx:
            common.launch(self, prot)
        self.proj._updateProtocol(prot)
        logs = open(prot.getStdoutLog()).read() + open(prot.getStderrLog()).read()
        self.assertIn('pick on the original micrographs', logs + str(ctx.exception))

    # ---- summaries -----------------------------------------------------------------------
    def test_summary_methods_citations(self):
        for prot in (self.protCoords, self.protNorm, self.protTrain, self.protPick):
            self.assertTrue(prot.summary(), prot.getClassName())
            self.assertTrue(prot.methods(), prot.getClassName())
        for prot in (self.protNorm, self.protTrain, self.protPick):
            self.assertTrue(any('Bepler' in c for c in prot.citations()), prot.citations())

    # ---- run logs --------------------------------------------------------------------------
    def test_run_logs_header_threads_and_progress(self):
        """The header states each engine job's threads (pyworkflow's binThreads), the engine's
        progress is a line per epoch or pass (no tqdm redraws), and no raw colour codes."""
        # normalize: 3 threads = 2 parallel jobs of 1 thread; pick: 2 = 1 job of 2; train: serial, 2.
        for prot, threads in ((self.protNorm, 1), (self.protPick, 2), (self.protTrain, 2)):
            with open(prot.getStdoutLog(), errors='replace') as f:
                log = f.read()
            with open(prot.getStderrLog(), errors='replace') as f:
                log += f.read()
            with self.subTest(protocol=prot.getClassName()):
                self.assertNotIn('Cannot get information about MPI/threads', log)
                self.assertIn('binary Threads: %d' % threads, log)
                self.assertNotIn('\r', log)
                self.assertNotIn('step/s]', log)  # a tqdm bar
                self.assertNotIn('\x1b[', log)
        with open(self.protTrain.getStderrLog(), errors='replace') as f:
            log = f.read()  # the engine's log
        for epoch in range(1, common.TRAIN_PARAMS['epochs'] + 1):
            self.assertRegex(log, r'INFO epoch %d: loss' % epoch)
        self.assertLess(len(log), 20000)

    # ---- wizards on real outputs ---------------------------------------------------------
    def test_wizards(self):
        from scipion_topazpu.wizards import (TopazPuParticlesPerMicrographWizard, TopazPuPickBoxSizeWizard,
                                             TopazPuThresholdWizard, TopazPuTrainDiameterWizard,
                                             TopazPuPickDiameterWizard)
        form = FakeForm(self.protTrain)
        TopazPuParticlesPerMicrographWizard().show(form)
        counts = convert.countsPerMicrograph(self.protCoords.outputCoordinates)
        self.assertEqual(form.values['numParticles'], int(np.ceil(np.mean(list(counts.values())) / 0.8)))
        TopazPuTrainDiameterWizard().show(form)
        self.assertAlmostEqual(form.values['particleDiameter'], 50 * common.SAMPLING_RATE / 1.5, places=1)
        form = FakeForm(self.protPick)
        TopazPuPickBoxSizeWizard().show(form)
        self.assertEqual(form.values['boxSize'], 50)
        TopazPuPickDiameterWizard().show(form)
        self.assertAlmostEqual(form.values['particleDiameter'], common.PARTICLE_DIAMETER_A, places=0)
        TopazPuThresholdWizard().show(form)
        self.assertTrue(np.isfinite(form.values['threshold']))
        self.assertEqual(form.warnings, [])

    def test_wizard_found_by_domain(self):
        from pyworkflow.viewer import DESKTOP_TKINTER
        import pyworkflow as pw
        wizards = pw.Config.getDomain().findWizards(self.protPick, DESKTOP_TKINTER)
        self.assertIn('boxSize', wizards)
        self.assertIn('threshold', wizards)

    # ---- viewers (no display) ------------------------------------------------------------
    def test_viewers_write_pngs(self):
        from scipion_topazpu.viewers import writeTrainingPlot, writePickOverlays, writeScoreHistogram
        out = self.proj.getTmpPath('viewer_pngs')
        png = writeTrainingPlot(self.protTrain.outputModel, os.path.join(out, 'training.png'))
        self.assertGreater(os.path.getsize(png), 1000)
        pngs = writePickOverlays(self.protPick.outputCoordinates, out, maxMicrographs=2)
        self.assertEqual(len(pngs), 2)
        png = writeScoreHistogram(self.protPick.outputCoordinates, os.path.join(out, 'hist.png'),
                                  threshold=self.protTrain.outputModel.getThreshold(),
                                  expectedPerMicrograph=self.protTrain.outputModel.getMetadata()['n_per_micrograph'])
        self.assertGreater(os.path.getsize(png), 1000)

    def test_viewers_build_views(self):
        from scipion_topazpu.viewers import TopazPuPickViewer, TopazPuTrainViewer
        from scipion_topazpu.viewers.common import PngView
        tmp = self.proj.getTmpPath()
        for viewer, obj, n in ((TopazPuTrainViewer, self.protTrain, 1), (TopazPuTrainViewer, self.protTrain.outputModel, 1),
                               (TopazPuPickViewer, self.protPick, 5)):
            views = viewer(project=self.proj, tmpPath=tmp)._visualize(obj)
            self.assertEqual(len(views), n)
            for view in views:
                self.assertIsInstance(view, PngView)
                self.assertTrue(os.path.exists(view.path))


class TestTopazPuNormalizeStreaming(BaseTest):
    """normalize follows a growing set of micrographs: each job as its micrographs arrive, one
    data-set mixture (fitted on the first job) for all, the output open until the input closes."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.protMics = common.importBundledMicrographs(cls)

    def test_streaming_normalize(self):
        from topazpu_core.images import read_image
        stream = common.growingMicrographs(self, self.protMics.outputMicrographs, count=4, interval=4)
        norm = self.newProtocol(TopazPuProtNormalize, scale=common.SCALE, batchSize=1, numberOfThreads=2,
                                binThreads=1)
        common.followStream(norm.inputMicrographs, stream)
        common.launch(self, norm)
        self.proj._updateProtocol(stream)
        self.assertTrue(stream.isFinished())
        out = norm.outputMicrographs
        self.assertTrue(out.isStreamClosed())
        self.assertEqual(out.getSize(), 4)
        self.assertEqual({m.getMicName() for m in out}, {m.getMicName() for m in stream.outputMicrographs})
        # the output grew while the input was open, and was closed once at the end
        log = open(norm.getStdoutLog()).read()
        self.assertGreaterEqual(log.count('more may come'), 2, log[-3000:])
        self.assertEqual(log.count('micrographs, closed.'), 1)
        # one job per micrograph; the first fits the mixture, the later ones reuse it
        import glob
        self.assertEqual(len(glob.glob(norm._getExtraPath('batch_*', 'preprocess.json'))), 4)
        names, mixture = norm.getDatasetFit()
        self.assertEqual(len(names), 1)
        for mic in out:
            info = json.loads(getattr(mic, NORM_ATTR).get())
            np.testing.assert_allclose(info['mu'], mixture['mu'])
            np.testing.assert_allclose(info['sigma'], mixture['sigma'])
            image = read_image(mic.getFileName())
            self.assertLess(abs(float(np.median(image))), 0.1)
            self.assertLess(abs(float(image.std()) - 1), 0.1)
        self.assertEqual(log.count('normalised with the data-set mixture of'), 3)
        self.assertIn('fitted once, on the 1 micrograph of the first job', ' '.join(norm.summary()))
        # "continue" on the finished run redoes nothing and appends nothing twice
        record = norm._getExtraPath('batch_000', 'preprocess.json')
        stamp = os.path.getmtime(record)
        norm.runMode.set(MODE_RESUME)
        common.launch(self, norm)
        norm = self.proj.getProtocol(norm.getObjId())
        self.assertEqual(norm.outputMicrographs.getSize(), 4)
        self.assertTrue(norm.outputMicrographs.isStreamClosed())
        self.assertEqual(os.path.getmtime(record), stamp)
