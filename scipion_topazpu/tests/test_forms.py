"""The forms say what the protocols do (headless: the form definitions, no display).

- A zero that means "automatic" says so in the label, where the user looks first.
- The training's downsampling factor and normalisation show only where they apply: for
  micrographs that are not from "topazpu - normalize" (those keep their own).
- Threads read as in other plugins: "<package> compute: Threads" is the engine's threads per
  job on every form; protocols that run jobs in parallel also have "Scipion threads".
- Protocol titles use the plugin's short display name, "topazpu - train".
"""
import os
import tempfile
import unittest

import pyworkflow.object as pwobj
from pwem import Domain
from pwem.objects import Micrograph, SetOfMicrographs

from scipion_topazpu.constants import SET_METHOD_ATTR, SET_SCALE_ATTR
from scipion_topazpu.protocols import (TopazPuProtImportCoordinates, TopazPuProtImportModel,
                                       TopazPuProtNormalize, TopazPuProtPick, TopazPuProtTrain)
from scipion_topazpu.tests import common

PROTOCOLS = [TopazPuProtImportCoordinates, TopazPuProtImportModel, TopazPuProtNormalize, TopazPuProtPick,
             TopazPuProtTrain]


def _label(prot, name):
    return prot.getParam(name).label.get()


class TestForms(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        Domain.getProtocols()   # as Scipion does before any form: sets each protocol's plugin
        cls.tmp = tempfile.mkdtemp(prefix='topazpu-forms-')

    def _micSet(self, name, normalized):
        """A one-micrograph set of a bundled micrograph; `normalized`: as "normalize" writes it."""
        mics, _ = common.bundled()
        micSet = SetOfMicrographs(filename=os.path.join(self.tmp, name + '.sqlite'))
        micSet.setSamplingRate(common.SAMPLING_RATE)
        mic = Micrograph(location=mics[0])
        mic.setSamplingRate(common.SAMPLING_RATE)
        micSet.append(mic)
        if normalized:
            setattr(micSet, SET_SCALE_ATTR, pwobj.Float(2.0))
            setattr(micSet, SET_METHOD_ATTR, pwobj.String('gmm'))
        micSet.write()
        return micSet

    def test_zero_means_auto_in_the_label(self):
        train, pick, model = TopazPuProtTrain(), TopazPuProtPick(), TopazPuProtImportModel()
        for prot, name, words in [(train, 'particleDiameter', '0 = auto'), (train, 'numParticles', '0 = auto'),
                                  (train, 'epochSize', '0 = auto'), (pick, 'boxSize', '0 = auto'),
                                  (pick, 'particleDiameter', '0 = from the model'),
                                  (pick, 'maxPerMicrograph', '0 = no limit'),
                                  (pick, 'edgeMargin', '0 = from the model'),
                                  (model, 'pixelSize', '0 = unknown')]:
            with self.subTest(protocol=prot.getClassName(), param=name):
                self.assertEqual(prot.getParam(name).default.get(), '0')
                self.assertIn(words, _label(prot, name))

    def test_preprocessing_params_only_for_raw_training_micrographs(self):
        prot = TopazPuProtTrain()
        params = ['scale', 'normalization']
        # no input yet: shown (they may apply)
        for name in params:
            self.assertTrue(prot.evalParamCondition(name), name)
        prot.inputMicrographs.set(self._micSet('raw', normalized=False))
        self.assertFalse(prot.isPreprocessed())
        for name in params:
            self.assertTrue(prot.evalParamCondition(name), name)
        prot.inputMicrographs.set(self._micSet('normalized', normalized=True))
        self.assertTrue(prot.isPreprocessed())
        for name in params:
            self.assertFalse(prot.evalParamCondition(name), name)
        # the form re-evaluates the condition when the input changes
        self.assertIn('scale', prot.getParam('inputMicrographs')._dependants)
        # what is hidden is also what is ignored: the normalized set's factor is used
        self.assertEqual(prot.getScale(), 2.0)
        self.assertEqual(prot.getNormalizationName(), 'gmm')

    def test_threads_as_in_other_plugins(self):
        for cls in PROTOCOLS:
            prot = cls()
            with self.subTest(protocol=cls.__name__):
                if prot.modeParallel() and prot.hasAttribute('numberOfThreads'):
                    # "Scipion threads" run jobs at once; "compute: Threads" is each job's
                    self.assertEqual(_label(prot, 'numberOfThreads'), 'Scipion threads')
                    self.assertEqual(_label(prot, 'binThreads'), 'Threads')
                    prot.binThreads.set(3)
                    self.assertEqual(prot.getBinThreads(), 3)
                elif prot.hasAttribute('numberOfThreads') and prot.allowThreads:
                    self.assertEqual(_label(prot, 'numberOfThreads'), 'Threads')
                    self.assertFalse(prot.hasAttribute('binThreads'))
        from scipion_topazpu.protocols.protocol_base import jobThreads
        pick, train = TopazPuProtPick(), TopazPuProtTrain()
        pick.numberOfThreads.set(3)
        pick.binThreads.set(4)
        train.numberOfThreads.set(5)
        self.assertEqual((jobThreads(pick), jobThreads(train)), (4, 5))

    def test_protocol_titles_use_the_short_plugin_name(self):
        self.assertEqual(TopazPuProtTrain.getClassLabel(), 'topazpu - train')
        self.assertEqual(TopazPuProtPick.getClassLabel(), 'topazpu - pick')
        import scipion_topazpu
        self.assertIs(TopazPuProtTrain.getClassPackage(), scipion_topazpu)   # the package keeps its name


if __name__ == '__main__':
    unittest.main()
