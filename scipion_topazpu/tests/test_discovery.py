"""The plugin is found by Scipion: an import error anywhere would make it vanish silently."""
import configparser
import json
import os
import unittest

import pyworkflow as pw
from pwem import Domain

import scipion_topazpu
from scipion_topazpu.constants import TOPAZPU_PYTHON

PROTOCOLS = ['TopazPuProtImportCoordinates', 'TopazPuProtImportModel', 'TopazPuProtNormalize',
             'TopazPuProtPick', 'TopazPuProtTrain']
WIZARDS = ['TopazPuParticlesPerMicrographWizard', 'TopazPuPickBoxSizeWizard', 'TopazPuPickDiameterWizard',
           'TopazPuThresholdWizard', 'TopazPuTrainDiameterWizard']
VIEWERS = ['TopazPuPickViewer', 'TopazPuTrainViewer']


class TestTopazPuDiscovery(unittest.TestCase):

    def test_plugin_registered(self):
        plugins = Domain.getPlugins()
        self.assertIn('scipion_topazpu', plugins)
        module = plugins['scipion_topazpu']
        self.assertIs(module, scipion_topazpu)
        self.assertIsInstance(module._pluginInstance, scipion_topazpu.Plugin)
        self.assertIn('Bepler2019', module._bibtex)

    def test_protocols_discovered_with_our_package(self):
        protocols = Domain.getProtocols()
        for name in PROTOCOLS:
            self.assertIn(name, protocols)
            self.assertIs(protocols[name]._package, scipion_topazpu, name)

    def test_objects_wizards_viewers_discovered(self):
        self.assertIn('TopazPuModel', Domain.getObjects())
        wizards = Domain.getWizards()
        for name in WIZARDS:
            self.assertIn(name, wizards)
        viewers = Domain.getViewers()
        for name in VIEWERS:
            self.assertIn(name, viewers)

    def test_protocol_forms_build_and_document_every_parameter(self):
        for name in PROTOCOLS:
            with self.subTest(protocol=name):
                prot = Domain.getProtocols()[name]()
                self.assertTrue(prot.__doc__ and prot._label and prot._possibleOutputs, name)
                for section in prot._definition.iterSections():
                    for paramName, param in section.iterParams():
                        if section.getLabel() in ('Parallelization', 'Streaming', 'Run') or \
                                paramName in ('runName', 'runMode', 'hostName', 'streamingWarning'):
                            continue   # pyworkflow's own parameters
                        self.assertTrue(param.help.get(), '%s.%s has no help' % (name, paramName))

    def test_plugin_variables_unique_and_python(self):
        self.assertIn(TOPAZPU_PYTHON, scipion_topazpu.Plugin.getVars())

        class Recorder(scipion_topazpu.Plugin):  # the names our plugin defines, not all plugins' (shared dict)
            names = []

            @classmethod
            def _defineVar(cls, name, *args, **kwargs):
                cls.names.append(name)

        Recorder._defineVariables()
        self.assertIn(TOPAZPU_PYTHON, Recorder.names)
        self.assertTrue(all(v.startswith('TOPAZPU_') for v in Recorder.names), Recorder.names)
        self.assertLessEqual(set(Recorder.names), set(scipion_topazpu.Plugin.getVars()))
        self.assertTrue(os.path.exists(scipion_topazpu.Plugin.getPython()))
        self.assertEqual(scipion_topazpu.Plugin.validateInstallation(), [])

    def test_protocols_conf_lists_existing_protocols(self):
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
        self.assertEqual(sorted(found), sorted(PROTOCOLS))

    def test_template_found_by_plugin(self):
        plugin = Domain.getPlugins()['scipion_topazpu']._pluginInstance
        names = [t.name for t in plugin.getTemplates()]
        self.assertEqual(names, ['topazpu_pick'])

    def test_viewers_found_for_targets(self):
        from pyworkflow.viewer import DESKTOP_TKINTER
        from scipion_topazpu.objects import TopazPuModel
        from scipion_topazpu.protocols import TopazPuProtPick, TopazPuProtTrain
        domain = pw.Config.getDomain()
        for target, viewer in ((TopazPuProtTrain, 'TopazPuTrainViewer'), (TopazPuModel, 'TopazPuTrainViewer'),
                               (TopazPuProtPick, 'TopazPuPickViewer')):
            names = [v.__name__ for v in domain.findViewers(target.__name__, DESKTOP_TKINTER)]
            self.assertIn(viewer, names, target)

    def test_engine_command_line_cpu_and_gpu_slots(self):
        """CPU: --device -1. GPU: Scipion fills CUDA_VISIBLE_DEVICES with the slot's GPUs; the engine uses the first."""
        import pyworkflow.protocol.params as params
        from pyworkflow.utils.process import buildRunCommand
        from scipion_topazpu.protocols import TopazPuProtPick
        from scipion_topazpu.protocols.protocol_base import engineProgram
        prot = TopazPuProtPick()
        program, device = engineProgram(prot)
        self.assertEqual(device, '--device -1')
        self.assertNotIn('%(GPU)s', program)
        getattr(prot, params.USE_GPU).set(True)
        program, device = engineProgram(prot)
        self.assertEqual(device, '--device 0')
        command = buildRunCommand(program, '-m topazpu_core pick -o x.txt a.mrc ' + device, 1, gpuList=[2, 3])
        self.assertTrue(command.strip().startswith('CUDA_VISIBLE_DEVICES=2,3 '), command)
        self.assertTrue(command.strip().endswith('--device 0'), command)
