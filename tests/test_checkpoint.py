"""Model files: safe loading, metadata round trip, clear errors for foreign files."""
import json
import os

import pytest
import torch

from topazpu_core.checkpoint import latest_checkpoint, load_model, read_model_metadata, save_checkpoint, save_model
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


def test_latest_checkpoint_numeric_order(tmp_path):
    path = str(tmp_path / "m.pt")
    for e in (2, 10, 9):
        save_checkpoint(path, e, {"x": torch.zeros(1)})
    assert os.path.basename(latest_checkpoint(path)) == "epoch010.pt"


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
