"""Faults survived: killed training and picking, a corrupt micrograph in a set, odd paths, tampered models.

Every engine run here is a real `python -m topazpu_core` subprocess on the bundled data (2x
downsampled, 310x300 px) at tiny settings: a conv31 model, 1 thread. One uninterrupted
training run is shared by the module; the SIGKILL test repeats it with a kill in the middle
of the second epoch and a `--resume`, and requires the same final weights bit for bit.
Kill points are found from the engine's own progress bars on stderr, so they fall inside the
intended epoch or pick loop whatever the machine's speed.
"""
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from topazpu_core import datasets
from topazpu_core.checkpoint import checkpoint_dir, load_checkpoint, load_model, read_model_metadata
from topazpu_core.coordinates import read_coordinates, write_coordinates
from topazpu_core.errors import TopazPuError
from topazpu_core.images import image_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALE = 2
RADIUS = datasets.BUNDLED_PARTICLE_DIAMETER / 2  # px of the raw bundled micrographs
EPOCHS, EPOCH_SIZE = 3, 12
TRAIN = ["-n", "200", "--particle-radius", RADIUS / SCALE, "--arch", "conv31", "--threads", "1", "--seed", "7",
         "--epochs", EPOCHS, "--epoch-size", EPOCH_SIZE]


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONIOENCODING="utf-8")
    e["PYTHONPATH"] = ROOT + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def engine(*args, expect=0):
    """Run `python -m topazpu_core ARGS`; -> CompletedProcess (stdout, stderr as text)."""
    p = subprocess.run([sys.executable, "-m", "topazpu_core"] + [str(a) for a in args], capture_output=True,
                       text=True, encoding="utf-8", env=env(), cwd=ROOT, timeout=300)
    if expect is not None:
        assert p.returncode == expect, "exit %d\n%s\n%s" % (p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    return p


def kill_when(args, pattern, log, timeout=120):
    """Start the engine, SIGKILL it as soon as its stderr matches `pattern`; -> stderr text.

    The progress bars are forced on (TOPAZPU_PROGRESS=bar): into a file they would otherwise be
    a line per epoch or per minute, too coarse for a kill point."""
    with open(log, "w") as err:
        p = subprocess.Popen([sys.executable, "-m", "topazpu_core"] + [str(a) for a in args],
                             stdout=subprocess.DEVNULL, stderr=err, env=dict(env(), TOPAZPU_PROGRESS="bar"),
                             cwd=ROOT)
    try:
        end = time.time() + timeout
        while time.time() < end:
            with open(log, encoding="utf-8", errors="replace") as f:
                text = f.read()
            if re.search(pattern, text):
                p.send_signal(signal.SIGKILL)
                p.wait()
                return text
            if p.poll() is not None:
                pytest.fail("the run ended (exit %s) before reaching the kill point %r:\n%s"
                            % (p.returncode, pattern, text[-2000:]))
            time.sleep(0.02)
        pytest.fail("kill point %r not reached in %d s" % (pattern, timeout))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Preprocessed bundled micrographs, training targets and one uninterrupted training run."""
    d = tmp_path_factory.mktemp("faults")
    mics = datasets.bundled_micrographs()
    engine("preprocess", "-s", SCALE, "-o", d / "pre", *mics)
    coords = read_coordinates(datasets.bundled_particles())
    write_coordinates(coords.scaled(1 / SCALE), str(d / "targets.txt"))
    # with progress, into a pipe (not a terminal): test_progress_in_a_log_is_a_line_per_epoch reads its log
    p = engine("train", "--train-images", d / "pre", "--train-targets", d / "targets.txt", *TRAIN,
               "-o", d / "full" / "model.pt")
    return {"dir": d, "mics": mics, "coords": coords, "model": d / "full" / "model.pt", "train_log": p.stderr}


def state(path):
    return torch.load(str(path), map_location="cpu", weights_only=True)["state_dict"]


# ----------------------------------------------------------------------------------------------
# (i) training killed mid-epoch, then resumed
# ----------------------------------------------------------------------------------------------

def test_training_killed_mid_epoch_resumes_to_the_same_model(data, tmp_path):
    d = data["dir"]
    model = tmp_path / "model.pt"
    args = ["train", "--train-images", d / "pre", "--train-targets", d / "targets.txt", *TRAIN, "-o", model]
    # the progress bar of epoch 2 at step 3..11 of 12: after checkpoint 0, before checkpoint 1
    kill_when(args, r"epoch 2/%d:[^\r\n]*\b([3-9]|1[01])/%d" % (EPOCHS, EPOCH_SIZE), tmp_path / "killed.log")
    checkpoints = sorted(os.listdir(checkpoint_dir(str(model))))
    assert checkpoints == ["epoch000.pt"], checkpoints  # killed inside the second epoch
    assert not model.exists()  # the model is written only at the end

    p = engine(*args, "--resume", "--no-progress")
    assert "resuming after epoch 0" in p.stderr
    ours, reference = state(model), state(data["model"])
    assert ours.keys() == reference.keys()
    for k in reference:
        assert torch.equal(ours[k], reference[k]), k
    a, b = read_model_metadata(str(model)), read_model_metadata(str(data["model"]))
    assert a["epochs_trained"] == b["epochs_trained"] == EPOCHS
    assert a["val_ap"] == b["val_ap"] and a["threshold"] == b["threshold"]


def test_progress_in_a_log_is_a_line_per_epoch(data, tmp_path):
    """Progress written to a file or pipe (Scipion's run.stdout): no carriage-return redraws,
    one line per training epoch and one per picking run (the runs here take seconds)."""
    log = data["train_log"]
    assert "\r" not in log and "step/s" not in log, log[-2000:]
    epochs = re.findall(r"^\S+ INFO epoch (\d+): loss", log, flags=re.M)
    assert epochs == [str(e) for e in range(1, EPOCHS + 1)], log
    assert len(log.splitlines()) <= EPOCHS + 8 and len(log) < 3000, log
    p = engine("pick", "--model", data["model"], "--threads", "1", "-o", tmp_path / "p.txt", *data["mics"])
    picking = [line for line in p.stderr.splitlines() if " INFO picking: " in line]
    assert "\r" not in p.stderr and len(picking) == 1 and " INFO picking: 4/4 mic, " in picking[0], p.stderr


# ----------------------------------------------------------------------------------------------
# (ii) picking killed midway, then run again
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["pick", "extract"])
def test_picking_killed_midway_resumes_the_rest(data, tmp_path, command):
    """SIGKILL after 2 to 10 of 12 micrographs: no output file yet, the finished micrographs are
    kept in picks.star.parts/; the same command again picks only the rest (it says how many it
    resumed) and writes exactly what an uninterrupted run writes, each micrograph once."""
    mics = tmp_path / "mics"
    mics.mkdir()
    source = data["mics"] if command == "pick" else sorted(str(p) for p in (data["dir"] / "pre").glob("*.mrc"))
    for i in range(3):  # 12 micrographs: the four under three names each
        for m in source:
            shutil.copy(m, mics / ("copy%d_%s" % (i, os.path.basename(m))))
    out = tmp_path / "picks.star"
    args = [command, "--model", data["model"], "--threads", "1", "-o", out, mics]
    reference = tmp_path / "reference.star"
    engine(command, "--model", data["model"], "--threads", "1", "--no-progress", "-o", reference, mics)
    assert not (tmp_path / "reference.star.parts").exists()  # a finished run leaves no parts

    text = kill_when(args, r"picking: .*\b([2-9]|10)/12\b", tmp_path / "killed.log")
    done = int(re.findall(r"\b(\d+)/12\b", text)[-1])
    assert not out.exists()  # nothing under the output name: it is written atomically at the end
    parts = sorted(p.name for p in (tmp_path / "picks.star.parts").glob("mic-*.npz"))
    assert done <= len(parts) < 12

    p = engine(*args, "--no-progress")
    assert re.search(r"resuming: %d of 12 micrographs already picked" % len(parts), p.stderr), p.stderr[-2000:]
    assert out.read_text() == reference.read_text()
    assert not (tmp_path / "picks.star.parts").exists()
    picks = read_coordinates(str(out))
    assert sorted(picks.image_names()) == sorted(image_name(f) for f in os.listdir(mics))
    assert len(picks) == len(read_coordinates(str(reference)))  # none lost, none twice


def test_parts_of_a_different_run_are_discarded(data, tmp_path):
    """Parts left by a run with other options are not mixed into a new run's output."""
    out = tmp_path / "picks.txt"
    stale = tmp_path / "picks.txt.parts"
    stale.mkdir()
    (stale / "run.json").write_text(json.dumps({"command": "pick", "options": {"radius": 1}}))
    (stale / "mic-0000000000000000.npz").write_bytes(b"not ours")
    p = engine("pick", "--model", data["model"], "--threads", "1", "--no-progress", "-o", out, *data["mics"])
    assert "different run" in p.stderr and "resuming" not in p.stderr
    reference = tmp_path / "reference.txt"
    engine("pick", "--model", data["model"], "--threads", "1", "--no-progress", "-o", reference, *data["mics"])
    assert out.read_text() == reference.read_text() and not stale.exists()


# ----------------------------------------------------------------------------------------------
# (iii) a corrupt micrograph inside a set
# ----------------------------------------------------------------------------------------------

def test_corrupt_micrographs_are_reported_and_skipped(data, tmp_path):
    good = tmp_path / "good"
    mixed = tmp_path / "mixed"
    good.mkdir()
    mixed.mkdir()
    for m in data["mics"]:
        shutil.copy(m, good)
        shutil.copy(m, mixed)
    raw = open(data["mics"][0], "rb").read()
    (mixed / "truncated.mrc").write_bytes(raw[: len(raw) // 2])
    (mixed / "garbage.mrc").write_bytes(os.urandom(5000))
    p = engine("pick", "--model", data["model"], "--threads", "1", "--no-progress", "-o", tmp_path / "mixed.txt", mixed,
               expect=3)  # done, some skipped
    skipped = [line for line in p.stdout.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 2 and "2 of 6 micrographs unreadable, skipped" in p.stdout, p.stdout
    assert any(str(mixed / "truncated.mrc") in s and "truncated" in s for s in skipped), skipped
    assert any(str(mixed / "garbage.mrc") in s for s in skipped), skipped
    engine("pick", "--model", data["model"], "--threads", "1", "--no-progress", "-o", tmp_path / "good.txt", good)
    assert (tmp_path / "mixed.txt").read_text() == (tmp_path / "good.txt").read_text()
    assert sorted(read_coordinates(str(tmp_path / "mixed.txt")).image_names()) == \
        sorted(image_name(m) for m in data["mics"])


# ----------------------------------------------------------------------------------------------
# (iv) spaces and non-ASCII characters in every path
# ----------------------------------------------------------------------------------------------

ODD_NAMES = ["微 graph 1", "mic ü 2", "Mic (3) é", "mic 4 #α"]


def test_paths_with_spaces_and_non_ascii_names_work_end_to_end(data, tmp_path):
    base = tmp_path / "data ü 微"
    mics = base / "mics ü"
    mics.mkdir(parents=True)
    rename = {}
    for m, new in zip(data["mics"], ODD_NAMES):
        shutil.copy(m, mics / (new + ".mrc"))
        rename[image_name(m)] = new
    coords = data["coords"]
    coords = coords.subset(np.arange(len(coords)))
    coords.image_name = np.array([rename[n] for n in coords.image_name], dtype=object)
    targets = base / "targets ü.txt"
    write_coordinates(coords, str(targets))
    write_coordinates(coords.scaled(1 / SCALE), str(base / "targets bin2 ü.star"))

    pre = base / "pre ü"
    engine("preprocess", "-s", SCALE, "-o", pre, mics)
    assert sorted(os.listdir(pre)) == sorted([n + ".mrc" for n in ODD_NAMES] + ["preprocess.json", "preprocess.tsv",
                                                                                 "run.log"])
    model = base / "model ü" / "模型 1.pt"
    engine("train", "--train-images", pre, "--train-targets", base / "targets bin2 ü.star", "-n", 200,
           "--particle-radius", RADIUS / SCALE, "--arch", "conv31", "--threads", "1", "--epochs", 2, "--epoch-size", 5,
           "--no-progress", "-o", model)
    meta = load_model(str(model))[1]
    # the default: no validation, every micrograph and label trains
    assert meta["n_train_micrographs"] == 4 and meta["n_val_micrographs"] == 0, meta
    assert meta["validation"] == "none" and meta["averaged_epochs"] == [2, 2], meta

    picks = base / "out ü" / "picks 1.star"
    engine("pick", "--model", model, "--threads", "1", "--no-progress", "--threshold=-inf", "--max-per-micrograph", 150,
           "-o", picks, mics)
    star = read_coordinates(str(picks))
    assert sorted(star.image_names()) == sorted(ODD_NAMES)

    engine("convert", picks, "-o", base / "out ü" / "picks 1.cs", "--image-dir", mics)
    engine("convert", picks, "-o", base / "out ü" / "boxes ü", "--to", "box", "--boxsize", 40)
    engine("convert", base / "out ü" / "picks 1.cs", "-o", base / "out ü" / "back ü.txt")
    back = read_coordinates(str(base / "out ü" / "back ü.txt"))
    assert sorted(back.image_names()) == sorted(ODD_NAMES) and len(back) == len(star)
    assert sorted(os.listdir(base / "out ü" / "boxes ü")) == sorted(n + ".box" for n in ODD_NAMES)

    p = engine("evaluate", picks, targets, "--match-radius", RADIUS, "--plot", base / "out ü" / "pr ü.png")
    result = json.loads(p.stdout)
    assert result["n_images"] == 4 and result["n_targets"] == len(coords) and result["ap"] > 0.05, result
    assert (base / "out ü" / "pr ü.png").stat().st_size > 1000


# ----------------------------------------------------------------------------------------------
# (v) tampered or foreign model files
# ----------------------------------------------------------------------------------------------

class _Payload:
    """Pickling this runs `touch MARKER` on load, unless the loader refuses to run code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch '%s'" % self.marker,))


def refused(path):
    with pytest.raises(TopazPuError) as e:
        load_model(str(path))
    message = str(e.value)
    assert str(path) in message and "\n" not in message, message
    return message


def test_tampered_model_files_are_refused(data, tmp_path):
    raw = open(data["model"], "rb").read()

    flipped = tmp_path / "flipped.pt"  # bytes flipped in the middle (inside the weights)
    middle = bytearray(raw)
    for i in range(len(raw) // 2, len(raw) // 2 + 8):
        middle[i] ^= 0xFF
    flipped.write_bytes(bytes(middle))
    refused(flipped)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(raw[: len(raw) // 2])
    refused(truncated)

    header = tmp_path / "header.pt"  # the pickled structure itself damaged
    damaged = bytearray(raw)
    for i in range(64, 96):
        damaged[i] ^= 0x5A
    header.write_bytes(bytes(damaged))
    refused(header)

    module = tmp_path / "module.pt"  # a whole pickled nn.Module, as Topaz saves models
    torch.save(load_model(str(data["model"]))[0], str(module))
    refused(module)

    marker = tmp_path / "code-was-run"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "topazpu-model", "format_version": 1, "state_dict": {}, "metadata": "{}",
                "extra": _Payload(marker)}, str(evil))
    refused(evil)
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_Payload(marker), f, protocol=2)
    refused(tmp_path / "evil.pkl")
    assert not marker.exists()  # no code from the file ran

    p = engine("pick", "--model", flipped, "-o", tmp_path / "p.txt", data["mics"][0], expect=2)
    assert "flipped.pt" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "p.txt").exists()


def test_tampered_checkpoint_is_refused(data, tmp_path):
    last = sorted(os.listdir(checkpoint_dir(str(data["model"]))))[-1]
    raw = open(os.path.join(checkpoint_dir(str(data["model"])), last), "rb").read()
    bad = tmp_path / "epoch000.pt"
    bad.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(TopazPuError, match="epoch000.pt"):
        load_checkpoint(str(bad))
