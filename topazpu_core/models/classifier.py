"""Classifier = feature extractor + 1x1 convolution to one logit, and whole-micrograph scoring.

Scoring a micrograph is an explicit function (`score_map`), not a mode switch on the model:
the image is reflect-padded by half the receptive field so every pixel gets a full context,
the strided network gives logits on a grid of spacing `stride`, and those are upsampled
bilinearly to one logit per input pixel ("strided"). `dense=True` instead runs the network
on every one of the stride x stride shifts of the image and interleaves the outputs
("shift-and-stitch"), which is exact at stride**2 times the cost.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from topazpu_core.models.features import build_features
from topazpu_core.options import ORIENTATIONS


class Classifier(nn.Module):
    def __init__(self, architecture="resnet8", units=32, bn=True):
        super().__init__()
        self.architecture = architecture
        self.units = units
        self.features = build_features(architecture, units=units, bn=bn)
        self.head = nn.Conv2d(self.features.out_channels, 1, 1)

    @property
    def receptive_field(self):
        return self.features.receptive_field

    @property
    def stride(self):
        return self.features.stride

    def forward(self, x):
        """(B, 1, H, W) -> logits (B, h, w), unpadded: output j is centred on input stride*j + (rf-1)/2."""
        return self.head(self.features(x))[:, 0]


def output_centres(n_out, stride, receptive_field):
    """Input-pixel index of each output position along one axis."""
    return stride * np.arange(n_out) + (receptive_field - 1) // 2


def _score_strided(model, image_t):
    """image_t: (H, W) float tensor -> (H, W) logits by strided scoring + bilinear upsampling."""
    H, W = image_t.shape
    s, c = model.stride, (model.receptive_field - 1) // 2
    h_out = -(-(H - 1) // s) + 1
    w_out = -(-(W - 1) // s) + 1
    extra_h = (h_out - 1) * s - (H - 1)
    extra_w = (w_out - 1) * s - (W - 1)
    x = image_t[None, None]
    x = _reflect_pad(x, (c, c + extra_w, c, c + extra_h))
    logits = model(x)  # (1, h_out, w_out); output j centred on original pixel s*j
    up = F.interpolate(logits[:, None], size=((h_out - 1) * s + 1, (w_out - 1) * s + 1),
                       mode="bilinear", align_corners=True)
    return up[0, 0, :H, :W]


def _reflect_pad(x, pad):
    """Reflect padding that also works when the pad exceeds the image (repeats the reflection)."""
    left, right, top, bottom = pad
    while max(left, right) >= x.shape[-1] or max(top, bottom) >= x.shape[-2]:
        step = (min(left, x.shape[-1] - 1), min(right, x.shape[-1] - 1),
                min(top, x.shape[-2] - 1), min(bottom, x.shape[-2] - 1))
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = (left - step[0], right - step[1], top - step[2], bottom - step[3])
    return F.pad(x, (left, right, top, bottom), mode="reflect")


def _score_dense(model, image_t):
    """Exact per-pixel logits by shift-and-stitch (stride**2 forward passes)."""
    H, W = image_t.shape
    s, c = model.stride, (model.receptive_field - 1) // 2
    out = torch.empty(H, W, dtype=image_t.dtype, device=image_t.device)
    x = _reflect_pad(image_t[None, None], (c, c + s, c, c + s))
    for dy in range(s):
        for dx in range(s):
            logits = model(x[:, :, dy:, dx:])[0]
            hh = len(range(dy, H, s))
            ww = len(range(dx, W, s))
            out[dy::s, dx::s] = logits[:hh, :ww]
    return out


def _score_tiled(model, t, scorer, tile):
    """Score a (H, W) tensor in tiles cut on the stride grid, each with a receptive-field margin."""
    H, W = t.shape
    if H <= tile and W <= tile:
        return scorer(model, t)
    s = model.stride
    tile = max(s, tile - tile % s)
    margin = model.receptive_field + s
    margin += (-margin) % s
    out = torch.empty((H, W), dtype=t.dtype, device=t.device)
    for y0 in range(0, H, tile):
        for x0 in range(0, W, tile):
            ya, xa = max(0, y0 - margin), max(0, x0 - margin)
            yb, xb = min(H, y0 + tile + margin), min(W, x0 + tile + margin)
            part = scorer(model, t[ya:yb, xa:xb])
            out[y0:y0 + tile, x0:x0 + tile] = part[y0 - ya:y0 - ya + tile, x0 - xa:x0 - xa + tile]
    return out




@torch.no_grad()
def score_map(model, image, dense=False, tile=1024, orientations=1):
    """Logit for every pixel of a 2-D image (numpy array) -> float32 numpy array of the same shape.

    `orientations` (1, 4 or 8) averages the logits over that many rotations (and, at 8, flips)
    of the image, each mapped back (that many times the cost): the network was trained on all of
    them, and the average is smoother and better localised (it also samples other offsets of the
    stride grid). Large images are scored in tiles of `tile` px (plus the receptive-field
    margin), so memory stays bounded; results equal untiled scoring up to float rounding in the
    strided mode because tiles are cut on the stride grid and the margin covers the receptive field.
    """
    if orientations not in ORIENTATIONS:
        raise ValueError("orientations must be one of %s, not %r" % (ORIENTATIONS, orientations))
    was_training = model.training
    model.eval()
    try:
        scorer = _score_dense if dense else _score_strided
        device = next(model.parameters()).device
        t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device)
        if orientations == 1:
            return _score_tiled(model, t, scorer, tile).cpu().numpy()
        total = torch.zeros_like(t)
        for flip in ((False, True) if orientations == 8 else (False,)):
            x = torch.flip(t, (1,)) if flip else t
            for k in range(4):
                out = torch.rot90(_score_tiled(model, torch.rot90(x, k, (0, 1)), scorer, tile), -k, (0, 1))
                total += torch.flip(out, (1,)) if flip else out
        return (total / orientations).cpu().numpy()
    finally:
        model.train(was_training)
