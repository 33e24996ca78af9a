"""Headless configuration: what the demo and the tests see of pyworkflow's output."""
import os
import pty
import subprocess
import sys
import unittest

import scipion_topazpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(scipion_topazpu.__file__)))
# pyworkflow's coloured message as the demo prints it (runJob's "** Running command: ...").
SCRIPT = ("from scipion_topazpu.headless import configure; configure(); "
          "from pyworkflow.utils import greenStr; print(repr(greenStr('Running command')))")


def configuredOutput(stdout=subprocess.PIPE, **env):
    environ = {k: v for k, v in os.environ.items() if k != 'NO_COLOR'}
    environ.update(env, PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    p = subprocess.run([sys.executable, '-c', SCRIPT], stdout=stdout, stderr=subprocess.PIPE, env=environ,
                       cwd=ROOT, timeout=120)
    if p.returncode:
        raise AssertionError(p.stderr.decode(errors='replace')[-3000:])
    return p.stdout.decode() if p.stdout is not None else None


class TestTopazPuHeadlessColours(unittest.TestCase):

    def test_no_ansi_codes_into_a_pipe(self):
        self.assertEqual(configuredOutput().strip(), "'Running command'")
        # as under the `scipion` launcher, which exports pyworkflow's default NO_COLOR=''
        self.assertEqual(configuredOutput(NO_COLOR='').strip(), "'Running command'")

    def test_colours_kept_on_a_terminal_and_no_color_respected(self):
        master, slave = pty.openpty()
        try:
            configuredOutput(stdout=slave)
            os.close(slave)
            slave = None
            text = b''
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the terminal closed: all read
                    break
                if not chunk:
                    break
                text += chunk
        finally:
            os.close(master)
            if slave is not None:
                os.close(slave)
        self.assertIn('\\x1b[32m', text.decode(errors='replace'))  # repr() of the ANSI green code
        # A user's explicit NO_COLOR wins either way.
        self.assertEqual(configuredOutput(NO_COLOR='1').strip(), "'Running command'")
