"""Headless, self-configuring Scipion test setup for the topazpu plugin.

Importing this package (pytest, unittest and Scipion's runner do, before the test modules)
makes Scipion work without SCIPION_HOME, a display, a Scipion server or a network: a temporary
hosts.conf (unless SCIPION_HOSTS names an existing one), the pwem domain and the running Python
for protocol subprocesses.

`load_tests` makes the package itself a test name: `python -m pyworkflow.apps.pw_run_tests
scipion_topazpu.tests` (and `python -m unittest scipion_topazpu.tests`) run every module here.

Test projects always go to a temporary user-data folder, removed at exit: `scipion test` exports
SCIPION_USER_DATA (default ~/ScipionUserData) to its tests, and a plugin's tests must not leave
projects there. TOPAZPU_TEST_USER_DATA=/folder puts them in that folder instead and keeps them;
TOPAZPU_KEEP_TEST_PROJECTS=1 keeps the temporary folder (its path is logged).
"""
import atexit
import logging
import os
import shutil
import tempfile

from scipion_topazpu.headless import configure

SCIPION_ROOT = tempfile.mkdtemp(prefix='topazpu-scipion-')
USER_DATA = os.environ.get('TOPAZPU_TEST_USER_DATA') or os.path.join(SCIPION_ROOT, 'ScipionUserData')
configure(root=SCIPION_ROOT, userData=USER_DATA)

if os.environ.get('TOPAZPU_KEEP_TEST_PROJECTS') == '1':
    logging.getLogger(__name__).warning('Test projects kept in %s', USER_DATA)
else:
    atexit.register(shutil.rmtree, SCIPION_ROOT, True)


def load_tests(loader, standardTests, pattern):
    """unittest's hook: loading this package by name loads every test module in it."""
    here = os.path.dirname(os.path.abspath(__file__))
    standardTests.addTests(loader.discover(start_dir=here, pattern=pattern or 'test*.py',
                                           top_level_dir=os.path.dirname(os.path.dirname(here))))
    return standardTests
