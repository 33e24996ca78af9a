"""Shared test data and helpers: the bundled apoferritin micrographs with a held-back micrograph."""
import os
import shutil
import tempfile

import numpy as np

# Real pixel size of the bundled 2x-binned apoferritin micrographs is about 3.5 A/px (the
# header says 2.0, a placeholder); the particle is ~33 px = ~115 A across.
SAMPLING_RATE = 3.5
PARTICLE_DIAMETER_A = 33 * SAMPLING_RATE
SCALE = 2.0
# Small training for tests: 2 x 100 updates picks apoferritin far above chance (held-back AP
# 0.32, random picks 0.12). 2 x 12 updates gave 0.14 against 0.09 for random picks, one change of
# the default threshold away from failing the chance test.
TRAIN_PARAMS = dict(epochs=2, epochSize=100, numParticles=200, seed=0)


def bundled():
    from topazpu_core import datasets
    return datasets.bundled_micrographs(), datasets.bundled_particles()


def heldBackName():
    """Engine name of the micrograph kept out of training (the last bundled one)."""
    from topazpu_core.images import image_name
    return image_name(bundled()[0][-1])


def readBundledTargets():
    from topazpu_core.coordinates import read_coordinates
    return read_coordinates(bundled()[1])


def writeTrainingCoordinates(folder=None):
    """Topaz TSV with the labels of every bundled micrograph but the held-back one."""
    from topazpu_core.coordinates import write_coordinates
    coords = readBundledTargets()
    keep = np.array([n != heldBackName() for n in coords.image_name])
    folder = folder or tempfile.mkdtemp(prefix='topazpu-coords-')
    path = os.path.join(folder, 'training_particles.txt')
    write_coordinates(coords.subset(keep), path, fmt='coord')
    return path


def heldBackTargets():
    coords = readBundledTargets()
    return coords.subset(np.array([n == heldBackName() for n in coords.image_name]))


def logTails(prot, lines=40):
    """The last lines of a protocol's stdout and stderr logs, for failure messages."""
    out = []
    for path in (prot.getStdoutLog(), prot.getStderrLog()):
        if path and os.path.exists(path):
            with open(path, errors='replace') as f:
                out.append('--- %s\n%s' % (path, ''.join(f.readlines()[-lines:])))
    return '\n'.join(out)


def launch(testClass, prot, **kwargs):
    """BaseTest.launchProtocol, with the run's log tails in the exception when it fails."""
    try:
        return testClass.launchProtocol(prot, **kwargs)
    except Exception as e:
        testClass.proj._updateProtocol(prot)
        raise AssertionError('%s\n%s' % (e, logTails(prot))) from None


def importBundledMicrographs(testClass):
    """Run pwem's import of the bundled micrographs in the test's project; returns the protocol."""
    from pwem.protocols import ProtImportMicrographs
    mics, _ = bundled()
    prot = testClass.newProtocol(ProtImportMicrographs, filesPath=os.path.dirname(mics[0]), filesPattern='*.mrc',
                                 samplingRate=SAMPLING_RATE, voltage=300)
    launch(testClass, prot)
    return prot


def growingMicrographs(test, micrographs, count, interval):
    """Start pwem's stream generator: `count` micrographs from `micrographs`, one every `interval`
    s, in an open set; returns the running protocol once its output set exists."""
    from pwem.protocols import ProtCreateStreamData
    from pwem.protocols.protocol_create_stream_data import SET_OF_MICROGRAPHS
    stream = test.newProtocol(ProtCreateStreamData, setof=SET_OF_MICROGRAPHS, nDim=count,
                              creationInterval=interval, inputMics=micrographs)
    test.proj.launchProtocol(stream, wait=False)
    test._waitOutput(stream, 'outputMicrographs', sleepTime=1)
    return stream


def followStream(pointer, stream):
    """Point an input at the stream protocol's output (so the run re-reads the growing set)."""
    pointer.set(stream)
    pointer.setExtended('outputMicrographs')


def bundledWithTruncated(folder):
    """Copy the bundled micrographs into `folder` (created) plus zz_truncated.mrc, the first of
    them cut in half: a corrupt micrograph among good ones. -> the bundled micrograph paths."""
    mics, _ = bundled()
    os.makedirs(folder, exist_ok=True)
    for m in mics:
        shutil.copy(m, folder)
    with open(mics[0], 'rb') as f:
        raw = f.read()
    with open(os.path.join(folder, 'zz_truncated.mrc'), 'wb') as f:
        f.write(raw[:len(raw) // 2])
    return mics
