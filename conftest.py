"""Root pytest configuration: Scipion settings for headless plugin tests, set before any import.

pyworkflow reads its configuration once, at import, so these defaults must be in the
environment before `scipion_topazpu` (which imports pwem/pyworkflow) is collected.
scipion_topazpu/tests/__init__.py completes the setup (hosts.conf, user data folder).
"""
import os
import sys

os.environ.setdefault('SCIPION_DOMAIN', 'pwem')
os.environ.setdefault('SCIPION_PYTHON', sys.executable)
os.environ.setdefault('SCIPION_NOTIFY', 'False')
os.environ.setdefault('SCIPION_TEST_NOSYNC', 'True')
os.environ.setdefault('SCIPION_STEPS_CHECK_SEC', '1')
# One torch thread per process: protocol runs are subprocesses, and small tensors are
# slower on contended threads.
os.environ.setdefault('OMP_NUM_THREADS', '1')
