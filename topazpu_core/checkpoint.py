"""Model files and training checkpoints: state_dicts plus JSON metadata, never pickled code.

A model file (`MODEL.pt`) is a dict {"format": "topazpu-model", "format_version": 1,
"state_dict": {...tensors...}, "metadata": "<json>", "sha256": "<hex>"} saved with torch.save and
loaded with torch.load(weights_only=True), so loading never executes code. The SHA-256 of the
weights and metadata is checked on loading, so a damaged or edited file is refused (the zip
container torch writes does not check its contents). `MODEL.json` beside it holds the
same metadata for people and for Scipion. Checkpoints (one per epoch) add the optimiser state
and the training history so `--resume` continues exactly, and that epoch's model metadata, so
`load_model` (hence `pick` and `extract`) reads a checkpoint as the model of its epoch.
"""
import glob
import hashlib
import json
import os
import re
import zipfile

import torch

from topazpu_core import __version__
from topazpu_core.atomic import atomic_path, atomic_write
from topazpu_core.errors import TopazPuError

MODEL_FORMAT = "topazpu-model"
MODEL_FORMAT_VERSION = 1


def content_digest(state_dict, metadata_json):
    """SHA-256 (hex) of a model's tensors (names, dtypes, shapes, bytes) and its metadata string."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(("%s|%s|%s|" % (name, t.dtype, tuple(t.shape))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(metadata_json.encode())
    return h.hexdigest()


def save_model(path, model, metadata):
    metadata = dict(metadata, version=__version__, format_version=MODEL_FORMAT_VERSION)
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    metadata_json = json.dumps(metadata)
    payload = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "state_dict": state_dict,
               "metadata": metadata_json, "sha256": content_digest(state_dict, metadata_json)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    with atomic_write(os.path.splitext(path)[0] + ".json") as f:
        json.dump(metadata, f, indent=1, sort_keys=True)


def archive_problem(path):
    """Why `path` is not a complete zip archive as torch.save writes, or None if it is one.

    torch.load's own errors for such files are internal ("pop from empty list", "Unsupported
    operand 123", "failed finding central directory"), so files are checked first."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "the file is empty"
    if head != b"PK\x03\x04":
        return "not a PyTorch archive (text, JSON, an image, a Topaz .sav?)"
    if not zipfile.is_zipfile(path):
        return "truncated archive (an interrupted copy or download?)"
    return None


def _archive_intact(path):
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def _load_payload(path):
    if not os.path.isfile(path):
        raise TopazPuError("%s: model file not found" % path)
    problem = archive_problem(path)
    if problem:
        raise TopazPuError("%s: not a topazpu model file: %s; a model is the .pt file written by "
                           "`topazpu train`" % (path, problem))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch's messages here are internal (pickle opcodes, miniz, allow-lists)
        if _archive_intact(path):
            raise TopazPuError("%s: not a topazpu model file: a PyTorch archive that holds no topazpu model "
                               "(e.g. a whole pickled network, as Topaz saves; topazpu never loads pickled code)"
                               % path) from None
        raise TopazPuError("%s: damaged topazpu model file: its archive fails its checksums (modified, or "
                           "only partly copied?)" % path) from None
    if isinstance(payload, dict) and payload.get("format") == MODEL_FORMAT + "-checkpoint":
        return _checkpoint_as_model(path, payload)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise TopazPuError("%s: not a topazpu model file (no '%s' marker; Topaz .sav files are not supported)"
                           % (path, MODEL_FORMAT))
    if payload.get("format_version") != MODEL_FORMAT_VERSION:
        raise TopazPuError("%s: model format version %s, this topazpu reads version %d"
                           % (path, payload.get("format_version"), MODEL_FORMAT_VERSION))
    tensors = payload.get("state_dict")
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()) \
            or not isinstance(payload.get("metadata"), str):
        raise TopazPuError("%s: damaged topazpu model file (weights or metadata missing)" % path)
    if "sha256" in payload and payload["sha256"] != content_digest(tensors, payload["metadata"]):
        raise TopazPuError("%s: damaged or modified model file (its checksum does not match its contents)" % path)
    try:
        payload["metadata"] = json.loads(payload["metadata"])
    except (KeyError, TypeError, ValueError):
        raise TopazPuError("%s: model metadata missing or not valid JSON" % path)
    return payload


def _checkpoint_as_model(path, state):
    """An epoch checkpoint as a model payload {"state_dict", "metadata"} (that epoch's weights)."""
    try:
        meta = json.loads(state["metadata"])
    except (KeyError, TypeError, ValueError):
        raise TopazPuError("%s: this checkpoint holds no model metadata (an older topazpu wrote it); pick with "
                           "the model file, or retrain to get per-epoch models" % path)
    if not isinstance(state.get("model"), dict):
        raise TopazPuError("%s: damaged checkpoint (no model weights)" % path)
    return {"state_dict": state["model"], "metadata": meta}


def read_model_metadata(path):
    """Metadata dict of a model file (architecture, pi, radii, scale, validation AP, threshold...)."""
    return _load_payload(path)["metadata"]


def load_model(path, device=None):
    """-> (Classifier in eval mode on `device`, metadata). Clear error when the file does not fit."""
    from topazpu_core.models import Classifier, ARCHITECTURES

    payload = _load_payload(path)
    meta = payload["metadata"]
    arch = meta.get("architecture")
    if arch not in ARCHITECTURES:
        raise TopazPuError("%s: unknown architecture %r in the model metadata" % (path, arch))
    model = Classifier(arch, units=int(meta.get("units", 32)))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise TopazPuError("%s: weights do not fit architecture %s with %s units (%s)"
                           % (path, arch, meta.get("units"), str(e).splitlines()[0][:160]))
    model.eval()
    if device is not None:
        model.to(device)
    return model, meta


def checkpoint_dir(model_path):
    return os.path.splitext(model_path)[0] + ".checkpoints"


def checkpoint_path(model_path, epoch):
    """The checkpoint file of 0-based `epoch` beside `model_path` (epoch000.pt = epoch 1)."""
    return os.path.join(checkpoint_dir(model_path), "epoch%03d.pt" % epoch)


def save_checkpoint(model_path, epoch, state, metadata=None):
    """state: dict of state_dicts, lists and numbers (no arbitrary objects); metadata: the model
    metadata of this epoch (what load_model needs to use the checkpoint as a model)."""
    path = checkpoint_path(model_path, epoch)
    extra = {}
    if metadata is not None:
        extra["metadata"] = json.dumps(dict(metadata, version=__version__, format_version=MODEL_FORMAT_VERSION))
    with atomic_path(path) as tmp:
        torch.save(dict(state, epoch=epoch, format=MODEL_FORMAT + "-checkpoint", **extra), tmp)
    return path


def latest_checkpoint(model_path):
    """Path of the highest-numbered epoch checkpoint (numeric sort), or None."""
    paths = glob.glob(os.path.join(checkpoint_dir(model_path), "epoch*.pt"))
    numbered = [(int(m.group(1)), p) for p in paths
                for m in [re.search(r"epoch(\d+)\.pt$", p)] if m]
    return max(numbered)[1] if numbered else None


def load_checkpoint(path, map_location="cpu"):
    problem = archive_problem(path)
    if not problem:
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception:
            problem = "damaged archive"
    if problem:
        raise TopazPuError("%s: unreadable checkpoint: %s; delete it to restart from the previous epoch"
                           % (path, problem))
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT + "-checkpoint":
        raise TopazPuError("%s: not a topazpu checkpoint" % path)
    return state


def torch_device(index):
    """-1 -> the CPU; N >= 0 -> GPU N, with a clear error where torch has no CUDA or no such GPU."""
    if index is None or int(index) < 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise TopazPuError("GPU %d requested (-d %d) but this PyTorch has no usable CUDA device; use -d -1 for the "
                           "CPU, or install a CUDA build of PyTorch (README: GPU install)" % (index, index))
    if int(index) >= torch.cuda.device_count():
        raise TopazPuError("GPU %d requested but only %d visible (CUDA_VISIBLE_DEVICES=%s)" % (
            index, torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES", "unset")))
    return torch.device("cuda", int(index))
