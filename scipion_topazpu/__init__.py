"""Scipion plugin for topazpu: positive-unlabeled CNN particle picking.

The engine (`topazpu_core`) is a Python package installed in the same environment as
Scipion: there is nothing to install or download. Protocols run it as
`python -m topazpu_core <command>` through `runJob`, so Scipion's threads, GPU slots and
queues apply to it.
"""
import os
import sys

import pwem
import pyworkflow.utils as pwutils

from .constants import DISPLAY_NAME, TOPAZPU_PYTHON, TOPAZPU_THREADS

__version__ = '0.1.0'
_logo = None
_references = ['Bepler2019']


class Plugin(pwem.Plugin):
    _url = 'https://github.com/topazpu/topazpu'
    _supportedVersions = [__version__]

    @classmethod
    def _defineVariables(cls):
        cls._defineVar(TOPAZPU_PYTHON, '',
                       description='Python interpreter that runs the topazpu engine '
                                   '(empty: the interpreter running Scipion)')
        cls._defineVar(TOPAZPU_THREADS, '',
                       description='Torch threads per engine job when a protocol does not '
                                   'set them (empty: the protocol decides)')

    def getName(self):
        """The name Scipion shows for the plugin: protocol titles read "topazpu - train" and the
        protocol tree has a "topazpu" folder. The package and its entry point stay
        scipion_topazpu (pyworkflow otherwise shows the module name)."""
        return DISPLAY_NAME

    @classmethod
    def getPython(cls):
        """The interpreter for `-m topazpu_core`: TOPAZPU_PYTHON, else the running one."""
        return cls.getVar(TOPAZPU_PYTHON) or sys.executable

    @classmethod
    def getEnviron(cls, threads=None):
        """Environment for engine jobs: the current one, with thread counts pinned."""
        env = pwutils.Environ(os.environ)
        threads = threads or cls.getVar(TOPAZPU_THREADS)
        if threads:
            for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
                env[var] = str(threads)
        # Unbuffered output, so the run log shows the engine's progress as it happens.
        env['PYTHONUNBUFFERED'] = '1'
        return env

    @classmethod
    def validateInstallation(cls):
        try:
            import topazpu_core  # noqa: F401
        except ImportError as e:
            return ['The topazpu engine (package topazpu_core) does not import: %s' % e]
        return []

    @classmethod
    def defineBinaries(cls, env):
        """Nothing to install: the engine is a pip dependency of this plugin."""
        pass
