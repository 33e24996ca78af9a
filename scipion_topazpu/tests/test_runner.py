"""Scipion's test runner finds every plugin test that pytest finds.

Scipion users and maintainers run a plugin's tests with `scipion test` (pyworkflow's
`pw_run_tests`), which sees only unittest test cases: a plain pytest function, a pytest fixture
or a module that fails to import is invisible to it. The runner is asked to list the package's
tests (its show mode: it imports the modules but runs nothing) and the list is compared with
pytest's collection of the same folder.
"""
import importlib.util
import os
import subprocess
import sys
import unittest

import scipion_topazpu

PACKAGE = 'scipion_topazpu.tests'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(scipion_topazpu.__file__)))
TESTS_DIR = os.path.join(ROOT, *PACKAGE.split('.'))


def _env():
    env = dict(os.environ, SCIPION_DOMAIN='pwem')
    env['PYTHONPATH'] = os.pathsep.join([ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    return env


def _run(args):
    p = subprocess.run([sys.executable] + args, cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout + p.stderr


def runnerTestIds():
    """module.Class.test ids that `pw_run_tests --show --mode all` lists for this package."""
    rc, out = _run(['-m', 'pyworkflow.apps.pw_run_tests', '--show', '--mode', 'all', '--grep', PACKAGE])
    ids = set()
    for line in out.splitlines():
        words = line.split()
        if words and words[-1].startswith(PACKAGE + '.') and words[-1].count('.') == PACKAGE.count('.') + 3:
            ids.add(words[-1])
    return ids, out


def pytestTestIds():
    """The same ids from `pytest --collect-only` (parametrized cases counted once)."""
    rc, out = _run(['-m', 'pytest', '--collect-only', '-q', '-p', 'no:cacheprovider', TESTS_DIR])
    ids = set()
    for line in out.splitlines():
        if '::' in line and line.split('::')[0].endswith('.py'):
            parts = line.strip().split('::')
            module = os.path.relpath(os.path.join(ROOT, parts[0]) if not os.path.isabs(parts[0]) else parts[0],
                                     ROOT)[:-3].replace(os.sep, '.')
            ids.add('.'.join([module] + [p.split('[')[0] for p in parts[1:]]))
    return rc, ids, out


class TestScipionRunnerCollectsEveryTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.fromRunner, cls.runnerOut = runnerTestIds()

    def test_runner_lists_every_test_pytest_collects(self):
        if importlib.util.find_spec('pytest') is None:
            self.skipTest('pytest is not installed (pip install "scipion-em-topazpu[test]")')
        rc, fromPytest, pytestOut = pytestTestIds()
        self.assertEqual(rc, 0, pytestOut[-3000:])
        fromRunner, runnerOut = self.fromRunner, self.runnerOut
        self.assertGreater(len(fromPytest), 0, pytestOut[-3000:])
        missing = sorted(fromPytest - fromRunner)
        self.assertEqual(missing, [], "Scipion's runner lists %d tests, pytest collects %d; invisible to the "
                                      "runner:\n%s\n--- runner output:\n%s"
                         % (len(fromRunner), len(fromPytest), '\n'.join(missing), runnerOut[-3000:]))
        self.assertGreaterEqual(len(fromRunner), len(fromPytest))
        # Every module of the folder is in both lists (none failed to import).
        modules = {f[:-3] for f in os.listdir(TESTS_DIR) if f.startswith('test') and f.endswith('.py')}
        self.assertEqual({i.split('.')[2] for i in fromRunner}, modules)

    def test_package_name_loads_every_module(self):
        """`pw_run_tests scipion_topazpu.tests` loads the package by name: its load_tests must find every test."""
        suite = unittest.defaultTestLoader.loadTestsFromName(PACKAGE)
        ids = set()
        pending = [suite]
        while pending:
            item = pending.pop()
            if isinstance(item, unittest.TestSuite):
                pending.extend(item)
            else:
                ids.add(item.id())
        failed = [i for i in ids if not i.startswith(PACKAGE + '.')]
        self.assertEqual(failed, [], 'modules that failed to load')
        self.assertEqual(ids, self.fromRunner)
