"""Model files: safe loading, metadata round trip, clear errors for foreign files."""
import json
import os

import pytest
import torch

from topazpu_core.checkpoint import (latest_checkpoint, load_checkpoint, load_model, read_model_metadata,
                                     save_checkpoint, save_model)
from topazpu_core.errors import TopazPuError
from topazpu_core.models import Classifier


def test_model_round_trip(tmp_path):
    m = Classifier("conv31", units=8)
    path = str(tmp_path / "m.pt")
    save_model(path, m, {"architecture": "conv31", "units": 8, "particle_radius": 8.0, "threshold": -1.5})
    loaded, meta = load_model(path)
    assert meta["threshold"] == -1.5 and meta["format_version"] == 1
    for k, v in m.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    assert json.load(open(str(tmp_path / "m.json")))["particle_radius"] == 8.0
    # the file is plain data: weights_only loading works without our classes
    assert isinstance(torch.load(path, weights_only=True)["metadata"], str)
    assert read_model_metadata(path)["architecture"] == "conv31"


def test_bad_model_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(TopazPuError, match="junk.pt"):
        load_model(str(junk))
    with pytest.raises(TopazPuError, match="not found"):
        load_model(str(tmp_path / "missing.pt"))
    # a pickled module (Topaz style) is refused without executing it
    evil = tmp_path / "evil.pt"
    torch.save(torch.nn.Linear(2, 2), str(evil))
    with pytest.raises(TopazPuError):
        load_model(str(evil))
    # weights of another architecture
    path = str(tmp_path / "m.pt")
    save_model(path, Classifier("conv31", units=8), {"architecture": "resnet8", "units": 8})
    with pytest.raises(TopazPuError, match="do not fit"):
        load_model(path)


INTERNAL = ("pop from empty list", "Unsupported operand", "miniz", "Weights only", "EOFError", "central directory",
            "WeightsUnpickler")


def test_foreign_and_damaged_files_get_a_plain_message(tmp_path):
    """torch.load's errors ("pop from empty list", pickle opcodes, miniz) never reach the user."""
    good = str(tmp_path / "good.pt")
    save_model(good, Classifier("conv31", units=8), {"architecture": "conv31", "units": 8})
    raw = open(good, "rb").read()
    header = bytearray(raw)
    for i in range(64, 96):  # inside the first archive member's data: its CRC no longer matches
        header[i] ^= 0x5A
    module = str(tmp_path / "module.pt")
    torch.save(torch.nn.Linear(2, 2), module)
    cases = {  # file name: (content, phrase the message must hold)
        "empty.pt": (b"", "the file is empty"),
        "dot.pt": (b".", "not a PyTorch archive"),             # torch: "pop from empty list"
        "text.pt": (b"a\nb\n", "not a PyTorch archive"),     # torch: "pop from empty list"
        "model.json": (b'{"architecture": "conv31"}', "not a PyTorch archive"),
        "image.png": (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a PyTorch archive"),
        "half.pt": (raw[: len(raw) // 2], "truncated archive"),
        "header.pt": (bytes(header), "fails its checksums"),
        "module.pt": (open(module, "rb").read(), "holds no topazpu model"),
    }
    for name, (content, phrase) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(TopazPuError) as e:
            load_model(str(path))
        message = str(e.value)
        assert message.startswith(str(path) + ": ") and phrase in message and "\n" not in message, message
        assert not any(s in message for s in INTERNAL), message
        if name != "module.pt":
            with pytest.raises(TopazPuError, match="unreadable checkpoint") as e:
                load_checkpoint(str(path))
            assert not any(s in str(e.value) for s in INTERNAL), str(e.value)


def test_latest_checkpoint_numeric_order(tmp_path):
    path = str(tmp_path / "m.pt")
    for e in (2, 1000, 999):
        save_checkpoint(path, e, {"x": torch.zeros(1)})
    names = sorted(os.listdir(os.path.dirname(latest_checkpoint(path))))
    assert names[-1] == "epoch999.pt"  # a text sort would pick epoch 999: the order must be numeric
    assert os.path.basename(latest_checkpoint(path)) == "epoch1000.pt"


def test_epoch_checkpoint_loads_as_that_epochs_model(tmp_path):
    m = Classifier("conv31", units=8)
    path = str(tmp_path / "m.pt")
    meta = {"architecture": "conv31", "units": 8, "particle_radius": 8.0, "threshold": -2.5, "epoch": 4}
    ck = save_checkpoint(path, 3, {"model": m.state_dict(), "optimizer": {}}, meta)
    loaded, got = load_model(ck)
    assert got["epoch"] == 4 and got["threshold"] == -2.5 and got["format_version"] == 1
    for k, v in m.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    # a checkpoint without metadata (older topazpu) is refused by name, with what to do instead
    old = save_checkpoint(path, 5, {"model": m.state_dict()})
    with pytest.raises(TopazPuError, match="epoch005.pt: this checkpoint holds no model metadata"):
        load_model(old)
