"""The workflow template: placeholders, loading, and a headless scheduled run in a fresh project."""
import json
import os

import pytest
from pyworkflow.project import Manager

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


def test_template_placeholders():
    from pyworkflow.template import LocalTemplate
    t = LocalTemplate('scipion_topazpu', workflow.templatePath())
    assert 'positive-unlabeled' in t.description
    t.replaceEnvVariables()
    t.parseContent()
    assert {p.getAlias() for p in t.getParams().values()} == ALIASES


def test_fill_template(tmp_path):
    path = workflow.fillTemplate(values(tmp_path), str(tmp_path / 'wf.json'))
    with open(path) as f:
        protocols = json.load(f)
    assert [p['object.className'] for p in protocols] == [
        'ProtImportMicrographs', 'TopazPuProtImportCoordinates', 'TopazPuProtNormalize', 'TopazPuProtTrain',
        'TopazPuProtPick']
    byClass = {p['object.className']: p for p in protocols}
    ids = {p['object.className']: p['object.id'] for p in protocols}
    assert byClass['TopazPuProtTrain']['inputMicrographs'] == '%s.outputMicrographs' % ids['TopazPuProtNormalize']
    assert byClass['TopazPuProtPick']['inputModel'] == '%s.outputModel' % ids['TopazPuProtTrain']
    assert byClass['TopazPuProtPick']['inputMicrographs'] == '%s.outputMicrographs' % ids['ProtImportMicrographs']
    assert float(byClass['TopazPuProtTrain']['particleDiameter']) == pytest.approx(common.PARTICLE_DIAMETER_A)
    assert '~' not in open(path).read()


def test_fill_template_rejects_bad_values(tmp_path):
    with pytest.raises(ValueError, match='no placeholder'):
        workflow.fillTemplate(dict(values(tmp_path), bogus=1), str(tmp_path / 'wf.json'))
    with pytest.raises(ValueError, match='epochs'):
        workflow.fillTemplate(values(tmp_path, epochs='ten'), str(tmp_path / 'wf.json'))
    v = values(tmp_path)
    del v['coordsFile']
    with pytest.raises(ValueError, match='coordsFile'):
        workflow.fillTemplate(v, str(tmp_path / 'wf.json'))


def test_template_runs_headless_scheduled(tmp_path):
    """Method 1: load the template into a new project and schedule every protocol."""
    project = Manager().createProject('TestTopazPuTemplate')
    cwd = os.getcwd()
    try:
        protocols = workflow.loadWorkflow(project, workflow.fillTemplate(values(tmp_path), str(tmp_path / 'wf.json')))
        workflow.runWorkflow(project, protocols, schedule=True, timeout=600, poll=2)
    finally:
        os.chdir(cwd)
    pick = protocols[-1]
    coords = pick.outputCoordinates
    assert coords.getSize() > 0 and coords.isStreamClosed()
    assert coords.getBoxSize() == 50
    assert protocols[3].outputModel.getEpochsTrained() == 1
