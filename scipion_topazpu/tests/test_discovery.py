"""The plugin is found by Scipion: an import error anywhere would make it vanish silently."""
import configparser
import json
import os

import pyworkflow as pw
from pwem import Domain

import scipion_topazpu
from scipion_topazpu.constants import TOPAZPU_PYTHON

PROTOCOLS = ['TopazPuProtImportCoordinates', 'TopazPuProtImportModel', 'TopazPuProtNormalize',
             'TopazPuProtPick', 'TopazPuProtTrain']
WIZARDS = ['TopazPuParticlesPerMicrographWizard', 'TopazPuPickBoxSizeWizard', 'TopazPuPickDiameterWizard',
           'TopazPuThresholdWizard', 'TopazPuTrainDiameterWizard']
VIEWERS = ['TopazPuPickViewer', 'TopazPuTrainViewer']


def test_plugin_registered():
    plugins = Domain.getPlugins()
    assert 'scipion_topazpu' in plugins
    module = plugins['scipion_topazpu']
    assert module is scipion_topazpu
    assert isinstance(module._pluginInstance, scipion_topazpu.Plugin)
    assert 'Bepler2019' in module._bibtex


def test_protocols_discovered_with_our_package():
    protocols = Domain.getProtocols()
    for name in PROTOCOLS:
        assert name in protocols, name
        assert protocols[name]._package is scipion_topazpu, name


def test_objects_wizards_viewers_discovered():
    assert 'TopazPuModel' in Domain.getObjects()
    wizards = Domain.getWizards()
    for name in WIZARDS:
        assert name in wizards, name
    viewers = Domain.getViewers()
    for name in VIEWERS:
        assert name in viewers, name


def test_protocol_forms_build_and_document_every_parameter():
    for name in PROTOCOLS:
        prot = Domain.getProtocols()[name]()
        assert prot.__doc__ and prot._label and prot._possibleOutputs, name
        for section in prot._definition.iterSections():
            for paramName, param in section.iterParams():
                if section.getLabel() in ('Parallelization', 'Streaming', 'Run') or \
                        paramName in ('runName', 'runMode', 'hostName', 'streamingWarning'):
                    continue   # pyworkflow's own parameters
                assert param.help.get(), '%s.%s has no help' % (name, paramName)


def test_plugin_variables_unique_and_python():
    assert TOPAZPU_PYTHON in scipion_topazpu.Plugin.getVars()

    class Recorder(scipion_topazpu.Plugin):  # the names our plugin defines, not all plugins' (shared dict)
        names = []

        @classmethod
        def _defineVar(cls, name, *args, **kwargs):
            cls.names.append(name)

    Recorder._defineVariables()
    assert TOPAZPU_PYTHON in Recorder.names
    assert all(v.startswith('TOPAZPU_') for v in Recorder.names), Recorder.names
    assert set(Recorder.names) <= set(scipion_topazpu.Plugin.getVars())
    assert os.path.exists(scipion_topazpu.Plugin.getPython())
    assert scipion_topazpu.Plugin.validateInstallation() == []


def test_protocols_conf_lists_existing_protocols():
    path = os.path.join(os.path.dirname(scipion_topazpu.__file__), 'protocols.conf')
    conf = configparser.ConfigParser()
    conf.optionxform = str
    conf.read(path)
    tree = json.loads(conf.get('PROTOCOLS', 'Protocols SPA'))
    found = []

    def walk(nodes):
        for node in nodes:
            if node.get('tag') == 'protocol':
                found.append(node['value'])
            walk(node.get('children', []))
    walk(tree)
    assert sorted(found) == sorted(PROTOCOLS)


def test_template_found_by_plugin():
    plugin = Domain.getPlugins()['scipion_topazpu']._pluginInstance
    names = [t.name for t in plugin.getTemplates()]
    assert names == ['topazpu_pick']


def test_viewers_found_for_targets():
    from pyworkflow.viewer import DESKTOP_TKINTER
    from scipion_topazpu.objects import TopazPuModel
    from scipion_topazpu.protocols import TopazPuProtPick, TopazPuProtTrain
    domain = pw.Config.getDomain()
    for target, viewer in ((TopazPuProtTrain, 'TopazPuTrainViewer'), (TopazPuModel, 'TopazPuTrainViewer'),
                           (TopazPuProtPick, 'TopazPuPickViewer')):
        names = [v.__name__ for v in domain.findViewers(target.__name__, DESKTOP_TKINTER)]
        assert viewer in names, (target, names)


def test_engine_command_line_cpu_and_gpu_slots():
    """CPU: --device -1. GPU: Scipion fills CUDA_VISIBLE_DEVICES with the slot's GPUs; the engine uses the first."""
    import pyworkflow.protocol.params as params
    from pyworkflow.utils.process import buildRunCommand
    from scipion_topazpu.protocols import TopazPuProtPick
    from scipion_topazpu.protocols.protocol_base import engineProgram
    prot = TopazPuProtPick()
    program, device = engineProgram(prot)
    assert device == '--device -1' and '%(GPU)s' not in program
    getattr(prot, params.USE_GPU).set(True)
    program, device = engineProgram(prot)
    assert device == '--device 0'
    command = buildRunCommand(program, '-m topazpu_core pick -o x.txt a.mrc ' + device, 1, gpuList=[2, 3])
    assert command.strip().startswith('CUDA_VISIBLE_DEVICES=2,3 ')
    assert command.strip().endswith('--device 0')
