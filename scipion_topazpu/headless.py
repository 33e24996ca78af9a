"""Configure Scipion (pyworkflow) for headless use from Python: tests and the demo.

pyworkflow reads its settings once, at import, into `pw.Config`; by then it is too late to
only set environment variables. `configure()` patches `pw.Config` and exports the same
values to the environment, which the protocol subprocesses inherit.
"""
import os
import sys
import tempfile

HOSTS_CONF = """[localhost]
PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s
NAME = SCIPION_HOST
CANCEL_COMMAND = kill -9 %_(JOB_ID)s
CHECK_COMMAND = ps -o pid= -p %_(JOB_ID)s
"""


def _isTerminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def configure(root=None, userData=None, force=False):
    """Make pyworkflow usable headless; returns the folder holding hosts.conf.

    root: folder for hosts.conf (default: a new temporary folder).
    userData: SCIPION_USER_DATA (projects go to userData/projects); default root/ScipionUserData
        unless the environment sets it. force: override existing settings (the demo's --out).
    """
    for var, value in (('SCIPION_DOMAIN', 'pwem'), ('SCIPION_NOTIFY', 'False'),
                       ('SCIPION_TEST_NOSYNC', 'True')):
        os.environ.setdefault(var, value)
    # pyworkflow colours its messages with ANSI codes unless NO_COLOR is set (no-color.org):
    # not into a file or a pipe, where they would show as raw codes. Protocol runs inherit it.
    # The `scipion` launcher exports NO_COLOR='' (pyworkflow's default): that is unset.
    if not os.environ.get('NO_COLOR') and not _isTerminal(sys.stdout):
        os.environ['NO_COLOR'] = '1'
    import pyworkflow as pw
    pw.Config.NO_COLOR = os.environ.get('NO_COLOR', pw.Config.NO_COLOR)

    root = root or tempfile.mkdtemp(prefix='topazpu-scipion-')
    os.makedirs(root, exist_ok=True)
    hosts = os.path.join(root, 'hosts.conf')
    if not os.path.exists(hosts):
        with open(hosts, 'w') as f:
            f.write(HOSTS_CONF)

    if force or 'SCIPION_PYTHON' not in os.environ:
        os.environ['SCIPION_PYTHON'] = sys.executable
    pw.PYTHON = os.environ['SCIPION_PYTHON']
    if not pw.Config.SCIPION_DOMAIN:
        pw.Config.setDomain('pwem')
    if force or userData or 'SCIPION_USER_DATA' not in os.environ:
        userData = userData or os.path.join(root, 'ScipionUserData')
        os.environ['SCIPION_USER_DATA'] = pw.Config.SCIPION_USER_DATA = userData
        # Defaults derived from SCIPION_USER_DATA at import time: follow the new folder.
        for var, sub in (('SCIPION_LOGS', 'logs'), ('SCIPION_TESTS_OUTPUT', 'Tests')):
            os.environ[var] = os.path.join(userData, sub)
            setattr(pw.Config, var, os.environ[var])
        os.environ['SCIPION_LOG'] = pw.Config.SCIPION_LOG = os.path.join(userData, 'logs', 'scipion.log')
    if force or not os.path.exists(pw.Config.SCIPION_HOSTS or ''):
        os.environ['SCIPION_HOSTS'] = pw.Config.SCIPION_HOSTS = hosts
    # The Domain must know the plugins before any protocol class is used (else protocols get
    # pwem's package and the run name "pwem - ...").
    pw.Config.getDomain().getProtocols()
    return root
