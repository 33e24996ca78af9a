"""The workflow template: placeholders, loading, and a headless scheduled run in a fresh project."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import pyworkflow.protocol as pwprot
from pyworkflow.project import Manager
from pyworkflow.tests import BaseTest

from scipion_topazpu import workflow
from scipion_topazpu.tests import common

ALIASES = {'micsDir', 'micsPattern', 'samplingRate', 'voltage', 'coordsFile', 'boxSize', 'scale',
           'particleDiameter', 'numParticles', 'epochs', 'epochSize', 'threads'}


def values(tmpdir, **overrides):
    mics, _ = common.bundled()
    v = dict(micsDir=os.path.dirname(mics[0]), micsPattern='*.mrc', samplingRate=common.SAMPLING_RATE,
             voltage=300, coordsFile=common.writeTrainingCoordinates(str(tmpdir)), boxSize=50,
             scale=common.SCALE, particleDiameter=common.PARTICLE_DIAMETER_A, numParticles=200, epochs=1,
             epochSize=4, threads=1)
    v.update(overrides)
    return v


class TestTopazPuTemplateFile(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='topazpu-template-')
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_template_placeholders(self):
        from pyworkflow.template import LocalTemplate
        t = LocalTemplate('scipion_topazpu', workflow.templatePath())
        self.assertIn('positive-unlabeled', t.description)
        t.replaceEnvVariables()
        t.parseContent()
        self.assertEqual({p.getAlias() for p in t.getParams().values()}, ALIASES)

    def test_fill_template(self):
        path = workflow.fillTemplate(values(self.tmp), os.path.join(self.tmp, 'wf.json'))
        with open(path) as f:
            text = f.read()
        protocols = json.loads(text)
        self.assertEqual([p['object.className'] for p in protocols], [
            'ProtImportMicrographs', 'TopazPuProtImportCoordinates', 'TopazPuProtNormalize', 'TopazPuProtTrain',
            'TopazPuProtPick'])
        byClass = {p['object.className']: p for p in protocols}
        ids = {p['object.className']: p['object.id'] for p in protocols}
        self.assertEqual(byClass['TopazPuProtTrain']['inputMicrographs'],
                         '%s.outputMicrographs' % ids['TopazPuProtNormalize'])
        self.assertEqual(byClass['TopazPuProtPick']['inputModel'], '%s.outputModel' % ids['TopazPuProtTrain'])
        self.assertEqual(byClass['TopazPuProtPick']['inputMicrographs'],
                         '%s.outputMicrographs' % ids['ProtImportMicrographs'])
        self.assertAlmostEqual(float(byClass['TopazPuProtTrain']['particleDiameter']), common.PARTICLE_DIAMETER_A)
        self.assertNotIn('~', text)

    def test_fill_template_rejects_bad_values(self):
        out = os.path.join(self.tmp, 'wf.json')
        with self.assertRaisesRegex(ValueError, 'no placeholder'):
            workflow.fillTemplate(dict(values(self.tmp), bogus=1), out)
        with self.assertRaisesRegex(ValueError, 'epochs'):
            workflow.fillTemplate(values(self.tmp, epochs='ten'), out)
        v = values(self.tmp)
        del v['coordsFile']
        with self.assertRaisesRegex(ValueError, 'coordsFile'):
            workflow.fillTemplate(v, out)


class TestTopazPuTemplateRun(BaseTest):

    def test_template_runs_headless_scheduled(self):
        """Method 1: load the template into a new project and schedule every protocol."""
        tmp = tempfile.mkdtemp(prefix='topazpu-template-')
        self.addCleanup(shutil.rmtree, tmp, True)
        project = Manager().createProject('TestTopazPuTemplate')
        cwd = os.getcwd()
        try:
            protocols = workflow.loadWorkflow(project, workflow.fillTemplate(values(tmp), os.path.join(tmp, 'wf.json')))
            workflow.runWorkflow(project, protocols, schedule=True, timeout=600, poll=2)
        finally:
            os.chdir(cwd)
        pick = protocols[-1]
        coords = pick.outputCoordinates
        self.assertGreater(coords.getSize(), 0)
        self.assertTrue(coords.isStreamClosed())
        self.assertEqual(coords.getBoxSize(), 50)
        self.assertEqual(protocols[3].outputModel.getEpochsTrained(), 1)

        # pyworkflow's liveness check can mark a protocol that just finished failed ("Process N not
        # found running on the machine"): reading its run database again puts it right...
        train = protocols[3]
        train.setFailed('Process 999999 not found running on the machine. It probably has died')
        workflow.updateFromRunDb(project, train, settle=0)
        self.assertTrue(train.isFinished(), train.getStatus())
        # ... while a protocol whose process died without a word (its run database still says
        # running) stays failed.
        run = pwprot.getProtocolFromDb(project.path, train.getDbPath(), train.getObjId())
        run.setRunning()
        gone = subprocess.Popen(['true'])
        gone.wait()
        run.setPid(gone.pid)
        run._store()
        run.getProject().closeMapper()
        run.closeMappers()
        workflow.updateFromRunDb(project, train, settle=0)
        self.assertTrue(train.isFailed(), train.getStatus())
        self.assertIn('not found running', train.getErrorMessage())
