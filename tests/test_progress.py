"""The engine's progress policy: a bar on a terminal, occasional log lines anywhere else."""
import io
import logging
import os
import sys
import time

import pytest

from topazpu_core.progress import LogProgress, progress_bar, progress_mode


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def lines(caplog, monkeypatch):
    # the command line's logging set up by in-process CLI tests sends "topazpu_core" to its own
    # handler on a stderr that may be closed by now: records go to caplog alone here
    engine = logging.getLogger("topazpu_core")
    monkeypatch.setattr(engine, "handlers", [])
    monkeypatch.setattr(engine, "propagate", True)
    caplog.set_level(logging.INFO, logger="topazpu_core.progress")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "topazpu_core.progress"]


def test_mode_follows_the_terminal_and_the_override(monkeypatch):
    monkeypatch.delenv("TOPAZPU_PROGRESS", raising=False)
    assert progress_mode(Tty()) == "bar"
    assert progress_mode(io.StringIO()) == "lines"
    with open(os.devnull, "w") as f:
        assert progress_mode(f) == "lines"
    for value, mode in (("bar", "bar"), ("LINES", "lines"), ("none", "none"), ("auto", "lines"), ("", "lines"),
                        ("bogus", "lines")):
        monkeypatch.setenv("TOPAZPU_PROGRESS", value)
        assert progress_mode(io.StringIO()) == mode, value


def test_in_a_log_a_long_loop_is_one_line(monkeypatch, lines):
    monkeypatch.delenv("TOPAZPU_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    total = 0
    for i in progress_bar(range(5000), desc="picking", unit="mic"):
        total += i
    assert total == sum(range(5000))
    assert sys.stderr.getvalue() == ""  # nothing drawn, no carriage returns
    assert len(lines()) == 1 and lines()[0].startswith("picking: 5000/5000 mic, "), lines()


def test_manual_updates_initial_postfix_and_no_final_line(monkeypatch, lines):
    monkeypatch.delenv("TOPAZPU_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = progress_bar(total=12, initial=4, desc="picking", unit="mic")
    for _ in range(8):
        bar.update(1)
    bar.set_postfix(loss="0.5")
    bar.close()
    bar.close()
    assert lines() == [lines()[0]] and lines()[0].startswith("picking: 12/12 mic") and "loss=0.5" in lines()[0]
    for _ in progress_bar(range(10), desc="epoch 1/2", unit="step", final_line=False):
        pass
    assert len(lines()) == 1  # the epoch's caller logs its own line
    nothing = progress_bar(total=3, desc="resumed", unit="mic", initial=3)
    nothing.close()
    assert len(lines()) == 1  # nothing done: no line


def test_lines_at_most_every_interval(lines):
    bar = LogProgress(total=6, desc="picking", unit="mic", interval=0.05)
    for _ in range(3):
        bar.update(1)
    time.sleep(0.06)
    bar.update(1)  # the interval has passed: a line
    bar.update(1)
    bar.update(1)
    bar.close()
    assert [m.split(",")[0] for m in lines()] == ["picking: 4/6 mic", "picking: 6/6 mic"], lines()


def test_bar_on_a_terminal_and_none_when_disabled(monkeypatch, lines):
    monkeypatch.delenv("TOPAZPU_PROGRESS", raising=False)
    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert list(progress_bar(range(3), desc="epoch 1/1", unit="step")) == [0, 1, 2]
    assert "\r" in tty.getvalue() and "3/3" in tty.getvalue()  # tqdm redraws in place
    quiet = Tty()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert list(progress_bar(range(3), desc="x", enabled=False)) == [0, 1, 2]  # --no-progress
    bar = progress_bar(total=3, desc="x", enabled=False)
    bar.update(3)
    bar.close()
    assert quiet.getvalue() == "" and lines() == []
