"""Headless, self-configuring Scipion test setup for the topazpu plugin.

Importing this package (pytest and unittest do, before the test modules) makes Scipion work
without SCIPION_HOME, a display, a Scipion server or a network: a temporary hosts.conf, the
pwem domain, the running Python for protocol subprocesses and a temporary user-data folder
(the test projects go there), unless the environment already sets them. The temporary
folder is removed at exit unless TOPAZPU_KEEP_TEST_PROJECTS=1.
"""
import atexit
import os
import shutil

from scipion_topazpu.headless import configure

SCIPION_ROOT = configure()

if os.environ.get('TOPAZPU_KEEP_TEST_PROJECTS') != '1':
    atexit.register(shutil.rmtree, SCIPION_ROOT, True)
