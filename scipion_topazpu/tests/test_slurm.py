"""A pick through a real SLURM queue on this machine gives exactly the coordinates of a local pick.

The test needs SLURM's commands (Debian: `apt-get install slurmctld slurmd slurm-client munge`).
When `sinfo` already answers (a configured cluster or a running single-node one), its default
partition is used. Otherwise, as root, the set-up starts a single-node cluster on localhost:
munged, slurmctld and slurmd, with a minimal /etc/slurm/slurm.conf written only when none
exists; the daemons it started are stopped (by PID) afterwards. Where SLURM is not installed or
cannot be started the test is skipped with the reason, in well under a second.

The Scipion project gets a hosts.conf whose queue system is SLURM (the one documented in the
README); the pick protocol runs once locally and once with "use queue" and QUEUE_FOR_JOBS = Y
(each engine job an sbatch job), on the 4 bundled micrographs plus a truncated one, in batches
of 2. Both runs must pick the same coordinates and scores and name the truncated micrograph as
skipped in their summaries.
"""
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest

import numpy as np
from pyworkflow.project import Manager
from pyworkflow.tests import BaseTest
from pwem.protocols import ProtImportMicrographs

from scipion_topazpu import convert
from scipion_topazpu.protocols import TopazPuProtImportModel, TopazPuProtPick
from scipion_topazpu.tests import common

SLURM_COMMANDS = ("sbatch", "squeue", "scancel", "sinfo")
SLURM_CONF = "/etc/slurm/slurm.conf"
PARTITION = os.environ.get("TOPAZPU_SLURM_PARTITION", "")  # default: the cluster's default partition

# The hosts.conf of the README's "Running on a SLURM cluster" section; %_(...)s are Scipion's.
HOSTS_CONF = """[localhost]
PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s
NAME = SLURM
MANDATORY = 0
SUBMIT_COMMAND = sbatch %_(JOB_SCRIPT)s
CHECK_COMMAND = squeue -h -j %_(JOB_ID)s
CANCEL_COMMAND = scancel %_(JOB_ID)s
SUBMIT_TEMPLATE = #!/bin/bash
    #SBATCH --job-name=%_(JOB_NAME)s
    #SBATCH --output=%_(JOB_LOGS)s.out
    #SBATCH --error=%_(JOB_LOGS)s.err
    #SBATCH --ntasks=1
    #SBATCH --cpus-per-task=%_(JOB_THREADS)d
    #SBATCH --mem=%_(JOB_MEMORY)sM
    #SBATCH --time=%_(JOB_TIME)s:00:00
    %_(PARTITION_LINE)s
    %_(JOB_COMMAND)s
QUEUES = {"%(queue)s": [["JOB_MEMORY", "2000", "Memory (MB)", "Memory per job, MB"], ["JOB_TIME", "1", "Time (hours)", "Run time limit, hours"]]}
QUEUES_DEFAULT = {"JOB_GPUS": "0"}
"""


def _run(cmd, timeout=10):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(cmd, 1, "", str(e))


def _nodes_up():
    """True when sinfo lists a node ready for jobs."""
    p = _run(["sinfo", "-h", "-o", "%T"], timeout=5)
    states = p.stdout.split() if p.returncode == 0 else []
    return any(s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in states)


def _pid_of(pidfile):
    try:
        with open(pidfile) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class LocalSlurm:
    """Use the running SLURM, or start a single-node one on localhost (root only)."""

    def __init__(self):
        self.started = []  # (name, pid) of daemons started here
        self.wrote_conf = False

    def start(self):
        missing = [c for c in SLURM_COMMANDS if not shutil.which(c)]
        if missing:
            raise unittest.SkipTest("SLURM is not installed (%s not on PATH); on Debian/Ubuntu: apt-get install "
                                    "slurmctld slurmd slurm-client munge" % ", ".join(missing))
        if _nodes_up():
            return
        if os.geteuid() != 0:
            raise unittest.SkipTest("SLURM is installed but no node answers sinfo, and starting the daemons "
                                    "needs root")
        for daemon in ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd"):
            if not os.path.exists(daemon):
                raise unittest.SkipTest("SLURM is not running and %s is missing (apt-get install slurmctld "
                                        "slurmd munge)" % daemon)
        host = socket.gethostname().split(".")[0]
        if not os.path.exists(SLURM_CONF):
            cpus = os.cpu_count() or 1
            with open("/proc/meminfo") as f:
                mem_mb = int(f.readline().split()[1]) // 1024
            os.makedirs(os.path.dirname(SLURM_CONF), exist_ok=True)
            with open(SLURM_CONF, "w") as f:
                f.write("ClusterName=topazpu-test\nSlurmctldHost=%s(127.0.0.1)\nProctrackType=proctrack/linuxproc\n"
                        "TaskPlugin=task/none\nSelectType=select/cons_tres\nAccountingStorageType=accounting_storage/none\n"
                        "ReturnToService=2\nSlurmctldPidFile=/run/slurmctld.pid\nSlurmdPidFile=/run/slurmd.pid\n"
                        "NodeName=%s NodeAddr=127.0.0.1 CPUs=%d RealMemory=%d State=UNKNOWN\n"
                        "PartitionName=debug Nodes=%s Default=YES MaxTime=INFINITE State=UP\n"
                        % (host, host, cpus, max(1000, mem_mb - 1024), host))
            self.wrote_conf = True
        os.makedirs("/run/munge", exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        if not _run(["pgrep", "-x", "munged"]).stdout.strip():
            p = _run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"])
            if p.returncode:
                raise unittest.SkipTest("cannot start munged: %s" % (p.stderr.strip() or p.stdout.strip()))
            time.sleep(0.5)
            self.started.append(("munged", _pid_of("/run/munge/munged.pid")))
        for name, pidfile in (("slurmctld", "/run/slurmctld.pid"), ("slurmd", "/run/slurmd.pid")):
            if _run(["pgrep", "-x", name]).stdout.strip():
                continue
            p = _run(["/usr/sbin/" + name])
            if p.returncode:
                self.stop()
                raise unittest.SkipTest("cannot start %s: %s" % (name, (p.stderr or p.stdout).strip()[-500:]))
            for _ in range(50):
                if _pid_of(pidfile):
                    break
                time.sleep(0.1)
            self.started.append((name, _pid_of(pidfile)))
        for _ in range(60):
            if _nodes_up():
                return
            time.sleep(0.5)
        state = _run(["sinfo", "-N", "-l"]).stdout
        self.stop()
        raise unittest.SkipTest("SLURM daemons started but no node became ready in 30 s:\n%s" % state)

    def stop(self):
        import signal
        for name, pid in reversed(self.started):
            if pid:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
        self.started = []


class TestPickOnSlurm(BaseTest):

    skipReason = None

    @classmethod
    def setUpClass(cls):
        # Where SLURM cannot start, each test is skipped from setUp rather than the class from here:
        # Scipion's runner counts a class skipped in setUpClass as "0 tests" and exits 1.
        cls.slurm = LocalSlurm()
        try:
            cls.slurm.start()
        except unittest.SkipTest as e:
            cls.skipReason = str(e)
            logging.getLogger(__name__).warning('SKIPPED %s: %s', cls.__name__, cls.skipReason)
            return
        try:
            cls._setUpProject()
        except Exception:
            cls.slurm.stop()
            raise

    def setUp(self):
        if self.skipReason:
            self.skipTest(self.skipReason)

    @classmethod
    def tearDownClass(cls):
        cls.slurm.stop()

    @classmethod
    def _setUpProject(cls):
        import tempfile
        work = tempfile.mkdtemp(prefix='topazpu-slurm-')
        partition = PARTITION
        hosts = os.path.join(work, 'hosts.conf')
        with open(hosts, 'w') as f:
            f.write(HOSTS_CONF.replace('%(queue)s', partition or 'default').replace(
                '%_(PARTITION_LINE)s', '#SBATCH --partition=%s' % partition if partition else '#'))
        cls.proj = Manager().createProject('TestPickOnSlurm_%d' % os.getpid(), hostsConf=hosts)
        cls.outputPath = cls.proj.path
        os.chdir(cls.outputPath)

        micDir = os.path.join(work, 'mics')
        mics = common.bundledWithTruncated(micDir)
        model = cls._trainModel(work, mics)

        cls.protMics = cls.newProtocol(ProtImportMicrographs, filesPath=micDir, filesPattern='*.mrc',
                                       samplingRate=common.SAMPLING_RATE, voltage=300, sphericalAberration=2.7,
                                       amplitudeContrast=0.1)
        common.launch(cls, cls.protMics)
        cls.protModel = cls.newProtocol(TopazPuProtImportModel, modelFile=model,
                                        pixelSize=common.SAMPLING_RATE * common.SCALE)
        common.launch(cls, cls.protModel)

        def pick(label, queue):
            prot = cls.newProtocol(TopazPuProtPick, objLabel=label, inputMicrographs=cls.protMics.outputMicrographs,
                                   inputModel=cls.protModel.outputModel, streamingBatchSize=2, numberOfThreads=2)
            if queue:
                prot._useQueue.set(True)
                prot.setQueueParams([partition or 'default', {'JOB_MEMORY': '2000', 'JOB_TIME': '1',
                                                              'QUEUE_FOR_JOBS': 'Y'}])
            common.launch(cls, prot)
            return prot

        cls.local = pick('local', False)
        cls.queued = pick('slurm', True)

    @staticmethod
    def _trainModel(work, mics):
        """A tiny model trained by the engine directly (seconds), imported into the project."""
        from topazpu_core import datasets
        from topazpu_core.coordinates import read_coordinates, write_coordinates

        def engine(*args):
            subprocess.run([sys.executable, '-m', 'topazpu_core'] + [str(a) for a in args], check=True,
                           capture_output=True)

        pre = os.path.join(work, 'pre')
        engine('preprocess', '-s', common.SCALE, '-o', pre, *mics)
        targets = os.path.join(work, 'targets.txt')
        write_coordinates(read_coordinates(datasets.bundled_particles()).scaled(1 / common.SCALE), targets)
        model = os.path.join(work, 'model.pt')
        engine('train', '--train-images', pre, '--train-targets', targets, '-n', 200, '--particle-radius',
               datasets.BUNDLED_PARTICLE_DIAMETER / 2 / common.SCALE, '--arch', 'conv31', '--epochs', 2,
               '--epoch-size', 5, '--threads', 1, '--no-progress', '-o', model)
        return model

    def _table(self, prot):
        table, missing = convert.setToCoordinates(prot.outputCoordinates,
                                                  convert.MicrographMap(self.protMics.outputMicrographs))
        self.assertEqual(missing, [])
        return table.by_image()

    def test_queue_picks_equal_local_picks(self):
        local, queued = self._table(self.local), self._table(self.queued)
        self.assertEqual(sorted(local), sorted(queued))
        self.assertEqual(len(local), 4)  # the truncated micrograph has no picks
        for name in local:
            a, b = local[name], queued[name]
            ka, kb = np.lexsort((a.y, a.x)), np.lexsort((b.y, b.x))
            np.testing.assert_array_equal(a.xy[ka], b.xy[kb])
            np.testing.assert_allclose(a.score[ka], b.score[kb], rtol=0, atol=1e-5)

    def test_jobs_went_through_slurm(self):
        logs = os.path.dirname(self.queued.getStdoutLog())
        jobs = [f for f in os.listdir(logs) if f.endswith('.job')]
        self.assertGreaterEqual(len(jobs), 2, os.listdir(logs))  # one sbatch script per batch
        with open(os.path.join(logs, jobs[0])) as f:
            self.assertIn('#SBATCH', f.read())
        outs = [f for f in os.listdir(logs) if f.endswith('.out')]  # written by slurmd (#SBATCH --output)
        self.assertEqual(len(outs), len(jobs), os.listdir(logs))
        with open(self.queued.getStdoutLog()) as f:
            self.assertIn('sbatch', f.read())

    def test_summaries_name_the_truncated_micrograph(self):
        for prot in (self.local, self.queued):
            summary = '\n'.join(prot.summary())
            self.assertIn('Skipped 1 unreadable micrograph', summary)
            self.assertIn('zz_truncated.mrc', summary)
