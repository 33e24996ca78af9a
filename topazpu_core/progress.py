"""The one progress policy of the engine: every loop that shows progress uses `progress_bar()`.

On a terminal, a tqdm bar redrawn in place. Anywhere else (a log file, Scipion's run.stdout,
a pipe) a bar would write a carriage-return update per step that piles up in the file (an
8-epoch training log was 128 KB of them); there a loop writes a log line when it ends and at
most one every `LINE_INTERVAL` seconds while it runs.

TOPAZPU_PROGRESS overrides the choice: `bar` (tqdm even into a file), `lines`, `none`; unset
or `auto` picks by whether stderr is a terminal.
"""
import logging
import os
import sys
import time

logger = logging.getLogger(__name__)

LINE_INTERVAL = 60.0  # seconds between progress lines in a log
MODES = ("auto", "bar", "lines", "none")


def progress_mode(stream=None):
    """'bar', 'lines' or 'none' for progress written to `stream` (default stderr)."""
    mode = os.environ.get("TOPAZPU_PROGRESS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        logger.warning("TOPAZPU_PROGRESS=%s is not one of %s: using auto", mode, ", ".join(MODES))
        mode = "auto"
    if mode != "auto":
        return mode
    stream = stream or sys.stderr
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):  # no stream, or a closed one
        return "lines"


def progress_bar(iterable=None, *, total=None, desc="", unit="it", enabled=True, initial=0, leave=True,
             final_line=True):
    """A tqdm-like progress object (iterate it, or update(n); set_postfix(); close()).

    enabled=False (e.g. --no-progress): nothing is shown. In a log, `final_line=False` drops
    the line at the end (for loops whose caller logs its own summary, like a training epoch).
    """
    from tqdm import tqdm

    mode = progress_mode() if enabled else "none"
    if mode == "bar":
        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, leave=leave)
    if mode == "none":
        return tqdm(iterable, total=total, disable=True)
    return LogProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, final_line=final_line)


class LogProgress:
    """Progress as occasional log lines: `desc: n/total unit, s, rate[, postfix]`."""

    def __init__(self, iterable=None, total=None, desc="", unit="it", initial=0, final_line=True,
                 interval=None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.start_n = initial
        self.final_line = final_line
        self.interval = LINE_INTERVAL if interval is None else interval
        self.t0 = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line()

    def set_postfix(self, **values):
        self.postfix = ", ".join("%s=%s" % kv for kv in values.items())

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.final_line and self.n > self.start_n:
            self._line()

    def _line(self):
        seconds = time.monotonic() - self.t0
        done = "%d/%d" % (self.n, self.total) if self.total is not None else "%d" % self.n
        rate = (self.n - self.start_n) / seconds if seconds > 0 else 0.0
        logger.info("%s: %s %s, %.0f s, %.3g %s/s%s", self.desc, done, self.unit, seconds, rate, self.unit,
                    ", " + self.postfix if self.postfix else "")
