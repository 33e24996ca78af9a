"""Run the plugin's workflow template headless, without scipion-app or a display.

Fill the template's placeholders, create a project, load the protocols and either schedule
them all (Scipion's scheduler starts each when its inputs are ready: method 1 of running a
template headless) or launch them one after another from here.
"""
import logging
import os
import shutil
import time

logger = logging.getLogger(__name__)

TEMPLATE_NAME = 'topazpu_pick.json.template'


def templatePath():
    return os.path.join(os.path.dirname(__file__), 'templates', TEMPLATE_NAME)


def fillTemplate(values, outPath, path=None):
    """Write the template (default: the plugin's) with `values` (alias -> value) to JSON `outPath`.

    Raises ValueError for an unknown alias, a value of the wrong type, or a path placeholder
    left without a valid value.
    """
    from pyworkflow.template import LocalTemplate
    template = LocalTemplate('scipion_topazpu', path or templatePath())
    template.replaceEnvVariables()
    template.parseContent()
    for alias, value in values.items():
        try:
            n = template.setParamValue(alias, str(value))
        except Exception as e:  # pyworkflow raises a bare Exception for a bad value
            raise ValueError('template value %s=%r: %s' % (alias, value, e)) from None
        if not n:
            raise ValueError('the template has no placeholder %r' % alias)
    bad = ['%s (%s): %s' % (p.getTitle(), p.getAlias(), p.validate())
           for p in template.getParams().values() if p.validate()]
    if bad:
        raise ValueError('template values missing or invalid: %s' % '; '.join(bad))
    tmp = template.createTemplateFile()   # pyworkflow writes a temporary file: move it
    os.makedirs(os.path.dirname(os.path.abspath(outPath)), exist_ok=True)
    shutil.move(tmp, outPath)
    return outPath


def loadWorkflow(project, jsonPath):
    """Load the protocols of a workflow JSON into `project`; returns them in file order."""
    os.chdir(project.getPath())   # loadProtocols and scheduling expect the project folder
    newDict = project.loadProtocols(jsonPath)
    return [newDict[k] for k in sorted(newDict, key=int)]


def runWorkflow(project, protocols, schedule=True, timeout=3600, poll=3, log=None):
    """Run loaded protocols to completion; returns them updated.

    schedule=True: schedule every protocol (each waits for its inputs: what `scipion template`
    does). False: launch them in order, each after the previous one finished.
    Raises RuntimeError naming the failed protocol and the tail of its log.
    """
    log = log or logger.info
    start = time.time()
    if not schedule:
        for prot in protocols:
            log('running %s ...' % prot.getObjLabel())
            t0 = time.time()
            project.launchProtocol(prot, wait=False)
            seen = {}
            while True:
                time.sleep(poll)
                updateFromRunDb(project, prot)
                seen = _followLog(prot, seen, log)
                _checkFailed(prot)
                if not prot.isActive():
                    break
                if time.time() - start > timeout:
                    raise RuntimeError('workflow not finished after %d s: %s still %s'
                                       % (timeout, prot.getObjLabel(), prot.getStatus()))
            if not prot.isFinished():
                raise RuntimeError('%s did not finish (status %s)' % (prot.getObjLabel(), prot.getStatus()))
            log('  %s finished in %.0f s' % (prot.getObjLabel(), time.time() - t0))
        return protocols
    for prot in protocols:
        project.scheduleProtocol(prot)
    pending = list(protocols)
    while pending:
        if time.time() - start > timeout:
            raise RuntimeError('workflow not finished after %d s: %s still %s' % (
                timeout, pending[0].getObjLabel(), pending[0].getStatus()))
        time.sleep(poll)
        for prot in list(pending):
            updateFromRunDb(project, prot)
            _checkFailed(prot)
            if prot.isFinished():
                log('  %s finished (%.0f s since start)' % (prot.getObjLabel(), time.time() - start))
                pending.remove(prot)
    return protocols


# Engine log lines worth showing while a protocol runs.
_PROGRESS = (' epoch ', 'particles on', 'wrote ', 'training micrographs')


def _followLog(prot, seen, log):
    """Print the engine's progress lines added to the run logs; seen: dict log path -> lines read."""
    for path in (prot.getStdoutLog(), prot.getStderrLog()):
        if not (path and os.path.exists(path)):
            continue
        with open(path, errors='replace') as f:
            lines = f.readlines()
        for line in lines[seen.get(path, 0):]:
            if any(p in line for p in _PROGRESS) and 'Running command' not in line:
                log('    ' + line.strip())
        seen[path] = len(lines)
    return seen


# pyworkflow's message when Project.checkPid finds no process behind an active protocol.
_PID_GONE = 'not found running on the machine'


def updateFromRunDb(project, prot, settle=1.0):
    """Update `prot` from its run database, where the protocol's own process writes its status.

    pyworkflow's liveness check races a protocol's exit: Project._updateProtocol reads the run
    database (still RUNNING), the protocol writes FINISHED and exits, then Project.checkPid finds
    no process and marks the protocol failed ("Process N not found running on the machine"),
    although its log ends in PROTOCOL FINISHED. On that failure the run database is read again
    after `settle` seconds, whatever the time stamps say: a protocol that finished is finished;
    one whose process died without a word is still active there and fails the same check again.
    """
    project._updateProtocol(prot)
    if prot.isFailed() and _PID_GONE in (prot.getErrorMessage() or ''):
        time.sleep(settle)
        prot.lastUpdateTimeStamp.set(None)   # forces the re-read (isProtocolUpToDate)
        project._updateProtocol(prot)


def _checkFailed(prot):
    if prot.isFailed() or prot.isAborted():
        raise RuntimeError('%s %s: %s\n%s' % (prot.getObjLabel(), prot.getStatus(), prot.getErrorMessage(),
                                              logTail(prot)))


def logTail(prot, lines=25):
    out = []
    for path in (prot.getStdoutLog(), prot.getStderrLog()):
        if path and os.path.exists(path):
            with open(path, errors='replace') as f:
                out.append(''.join(f.readlines()[-lines:]))
    return '\n'.join(out)
