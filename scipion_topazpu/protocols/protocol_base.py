"""Small pieces shared by the topazpu protocols: GPU options, engine invocation, skipped micrographs."""
import os

import pyworkflow.protocol.params as params
import pyworkflow.utils as pwutils


def addGpuParams(form, helpExtra=''):
    """The hidden USE_GPU / GPU_LIST pair shown in the run header."""
    form.addHidden(params.USE_GPU, params.BooleanParam, default=False,
                   label='Use GPU?',
                   help='Run the network on a GPU (CUDA). No: run on the CPU. '
                        'The CPU is enough for the default models on small and medium '
                        'data sets; a GPU is about 10-50x faster. ' + helpExtra)
    form.addHidden(params.GPU_LIST, params.StringParam, default='0',
                   label='GPU IDs',
                   help='GPU ids to use, separated by spaces (e.g. "0" or "0 1"). Each engine '
                        'job sees the GPUs of its slot through CUDA_VISIBLE_DEVICES and runs on '
                        'the first of them; with several threads, Scipion gives each parallel '
                        'job its own slot.')


def usesGpu(protocol):
    return bool(protocol.getAttributeValue(params.USE_GPU, False))


def validateGpu(protocol):
    """Error messages when a GPU is requested but torch cannot use one."""
    if not usesGpu(protocol):
        return []
    gpus = (protocol.getAttributeValue(params.GPU_LIST, '') or '').split()
    if not gpus:
        return ['"Use GPU" is set but the GPU list is empty: give GPU ids (e.g. 0) or set "Use GPU" to No.']
    if any(not g.isdigit() for g in gpus):
        return ['GPU list "%s" must be GPU numbers separated by spaces (e.g. "0 1").'
                % protocol.getAttributeValue(params.GPU_LIST)]
    try:
        import torch
        available = torch.cuda.is_available()
        version = torch.__version__
    except ImportError as e:  # pragma: no cover - torch is a dependency
        return ['GPU requested but torch does not import: %s' % e]
    if not available:
        return ['GPU requested (GPU ids %s) but torch %s cannot use CUDA on this machine '
                '(torch.cuda.is_available() is False): set "Use GPU" to No to run on the CPU.'
                % (' '.join(gpus), version)]
    return []


def engineProgram(protocol):
    """(program, device arguments) for a runJob of the engine.

    On a GPU the program is prefixed with CUDA_VISIBLE_DEVICES=%(GPU)s, which Scipion's
    executor replaces with the GPUs of the job's slot (comma-separated), and the engine
    is told to use the first visible device; otherwise `--device -1` (CPU).
    """
    from scipion_topazpu import Plugin
    python = Plugin.getPython()
    if usesGpu(protocol):
        return 'CUDA_VISIBLE_DEVICES=%%(GPU)s %s' % python, '--device 0'
    return python, '--device -1'


def runEngine(protocol, command, args, threads=None, useDevice=True, cwd=None):
    """Run `python -m topazpu_core <command> <args>` as a Scipion job of `protocol`.

    `threads`: torch threads for the job (also OMP/MKL), None = engine default.
    """
    from scipion_topazpu import Plugin
    from scipion_topazpu.constants import ENGINE_MODULE
    program, device = engineProgram(protocol)
    if not useDevice:
        program, device = Plugin.getPython(), ''
    fullArgs = '-m %s %s %s %s' % (ENGINE_MODULE, command, args, device)
    if threads and command in ('train', 'extract', 'pick'):
        fullArgs += ' --threads %d' % threads
    protocol.runJob(program, fullArgs.strip(), env=Plugin.getEnviron(threads), cwd=cwd,
                    numberOfMpi=1)


def addParallelSection(form, parallelSteps):
    """Scipion's parallel section, as other plugins have it: every form shows the engine's
    threads per job under "<package> compute: Threads"; protocols that run their steps in
    parallel (STEPS_PARALLEL) also show "Scipion threads", the steps (engine jobs) run at once
    plus one main thread."""
    if parallelSteps:
        form.addParallelSection(threads=2, mpi=0, binThreads=2, binThreadsHelp=ENGINE_THREADS_HELP)
    else:
        form.addParallelSection(threads=2, mpi=0)
        form.getParam('numberOfThreads').help.set(ENGINE_THREADS_HELP)


ENGINE_THREADS_HELP = ('*Threads*:\nCPU threads of each topazpu engine job (torch, OpenMP and MKL '
                       'threads). With "Scipion threads" above 2, several jobs run at once: keep '
                       '(Scipion threads - 1) x threads within the cores of the machine.')


def jobThreads(protocol):
    """Torch threads for each engine job: the protocol's binary threads ("compute: Threads")."""
    return max(1, int(protocol.getBinThreads() or 1))


def quote(path):
    """Quote a path for the shell command line built by runJob."""
    return "'%s'" % str(path).replace("'", "'\\''")


# topazpu_core.errors.EXIT_SKIPPED, not imported: the plugin imports the engine only inside steps.
# pick, extract and preprocess exit with it when they skipped unreadable micrographs.
ENGINE_EXIT_SKIPPED = 3


def absPath(path):
    return os.path.normpath(os.path.abspath(path))


def runEngineBatch(protocol, command, args, paths, listFile, stdoutFile, outputFile, threads=None,
                   useDevice=True):
    """Run `topazpu <command> <args> @listFile` on the micrographs `paths`, its stdout (summary and
    "skipped: <path>: <reason>" lines) into stdoutFile, copied into the run log; its stderr stays
    in the run log (the job's log with a queue). -> [(path, reason)] of the skipped micrographs.

    The engine's exit status for "done, some micrographs skipped" is a success. When it refuses a
    batch because no micrograph can be read, each one is recorded as skipped in stdoutFile and
    outputFile is not written. Any other failure raises, as does a missing outputFile (a queue
    job's exit status is not reported back).
    """
    pwutils.cleanPath(stdoutFile, outputFile)
    failure = None
    try:
        runEngine(protocol, command, '%s @%s > %s' % (args, quote(os.path.abspath(listFile)), quote(stdoutFile)),
                  threads=threads, useDevice=useDevice)
    except Exception as e:
        if getattr(e, 'returncode', None) != ENGINE_EXIT_SKIPPED:
            failure = e
    _echo(protocol, stdoutFile)
    if failure is not None or not os.path.exists(outputFile):
        if not _allUnreadable(protocol, paths, stdoutFile):
            if failure is not None:
                raise failure
            raise Exception('topazpu %s wrote no %s: see the engine messages in the logs' % (command, outputFile))
    skipped = skippedInBatch(listFile, stdoutFile)
    for path, _ in skipped:
        protocol.info('Skipped unreadable micrograph %s' % path)
    return skipped


def _echo(protocol, stdoutFile):
    """Copy the engine's stdout of a batch into the run log."""
    if os.path.exists(stdoutFile):
        with open(stdoutFile, errors='replace') as f:
            for line in f:
                protocol.info(line.rstrip('\n'))


def _allUnreadable(protocol, paths, stdoutFile):
    """After a failed engine run: True, and the batch's stdout file names each micrograph as
    skipped, when no micrograph of the batch can be read (the engine refuses such a batch)."""
    from topazpu_core.errors import TopazPuError
    from topazpu_core.images import read_image
    reasons = []
    for path in paths:
        try:
            read_image(absPath(path))
            return False
        except TopazPuError as e:
            reasons.append(str(e))
    with open(stdoutFile + '.tmp', 'w') as f:
        for reason in reasons:
            f.write('skipped: %s\n' % reason)
    os.replace(stdoutFile + '.tmp', stdoutFile)
    return True


def skippedInBatch(listFile, stdoutFile):
    """[(path, reason)] from the "skipped: <path>: <reason>" lines of a batch's engine stdout.

    The path is matched against the micrographs of the batch's list file, so paths holding
    ": " are read correctly; an unknown path is taken up to the first ": ".
    """
    if not os.path.exists(stdoutFile):
        return []
    known = []
    if os.path.exists(listFile):
        with open(listFile) as f:
            known = sorted({absPath(line.strip()) for line in f if line.strip()}, key=len, reverse=True)
    out = []
    with open(stdoutFile, errors='replace') as f:
        for line in f:
            if not line.startswith('skipped: '):
                continue
            text = line[len('skipped: '):].rstrip('\n')
            path = next((p for p in known if text.startswith(p + ':')), None)
            if path is None:
                path = text.split(': ', 1)[0]
            reason = text[len(path) + 1:].strip() if text.startswith(path + ':') else text
            out.append((path, reason))
    return out


def skippedSummary(skipped, consequence):
    """The summary line for [(file name, reason)] skipped micrographs; None when there are none."""
    if not skipped:
        return None
    shown = ['%s (%s)' % (name, reason) for name, reason in skipped[:20]]
    if len(skipped) > 20:
        shown.append('and %d more' % (len(skipped) - 20))
    return 'Skipped %d unreadable micrograph%s, %s: %s.' % (len(skipped), '' if len(skipped) == 1 else 's',
                                                            consequence, '; '.join(shown))
