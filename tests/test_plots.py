"""Every plot writes a non-empty PNG atomically (nothing left beside it) and refuses other names."""
import os

import numpy as np
import pytest

from topazpu_core.coordinates import Coordinates
from topazpu_core.errors import TopazPuError
from topazpu_core.metrics import precision_recall_curve
from topazpu_core.plots import (
    plot_histograms, plot_image_gallery, plot_overlay, plot_pr_curve, plot_score_histogram, plot_training_curve)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    assert os.path.getsize(path) > 2000
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    leftovers = [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp.png")]
    assert leftovers == []


def test_pr_curve(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=200)
    is_tp = rng.random(200) < 1 / (1 + np.exp(-2 * scores))
    curve = precision_recall_curve(scores, is_tp, 150)
    path = tmp_path / "sub" / "pr.png"  # parent folder created
    assert plot_pr_curve(curve, path, title="test") == str(path)
    assert_png(str(path))
    empty = precision_recall_curve([], [], 5)
    plot_pr_curve(empty, tmp_path / "empty.png")
    assert_png(str(tmp_path / "empty.png"))


def test_training_curve(tmp_path):
    rows = [{"epoch": e, "loss": 1.0 / (e + 1), "val_ap": 0.5 + 0.05 * e - 0.01 * e * e} for e in range(1, 9)]
    rows[0]["val_ap"] = float("nan")
    plot_training_curve(rows, tmp_path / "train.png")
    assert_png(str(tmp_path / "train.png"))
    # loss only (no validation) still works
    plot_training_curve([{"epoch": 1, "loss": 0.7}, {"epoch": 2, "loss": 0.5}], tmp_path / "loss.png")
    assert_png(str(tmp_path / "loss.png"))


def test_overlay_with_and_without_scores(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.normal(size=(120, 150)).astype(np.float32)
    xy = rng.uniform(0, 140, (30, 2))
    scored = Coordinates.from_arrays("mic", xy[:, 0], xy[:, 1], rng.normal(size=30))
    plot_overlay(image, scored, tmp_path / "overlay.png", radius=8, threshold=0.0)
    assert_png(str(tmp_path / "overlay.png"))
    unscored = Coordinates.from_arrays("mic", xy[:, 0], xy[:, 1])
    plot_overlay(image, unscored, tmp_path / "plain.png", radius=8)
    assert_png(str(tmp_path / "plain.png"))
    plot_overlay(image, Coordinates.empty(), tmp_path / "none.png", radius=8)
    assert_png(str(tmp_path / "none.png"))


def _colour_pixels(path, hex_colour, tol=0.08):
    """Pixels of the PNG within `tol` (per channel, 0-1) of a colour."""
    import matplotlib.image
    rgb = matplotlib.image.imread(path)[..., :3]
    target = np.array([int(hex_colour[i:i + 2], 16) / 255.0 for i in (1, 3, 5)])
    return int((np.abs(rgb - target) <= tol).all(axis=-1).sum())


def test_overlay_picks_and_labels_in_their_own_colours(tmp_path):
    """With hand labels, picks are amber circles and labels cyan crosses (a legend counts them);
    the low-pass filter smooths the micrograph as asked."""
    from topazpu_core.plots import LABEL_COLOUR, PICK_COLOUR
    rng = np.random.default_rng(3)
    image = rng.normal(size=(200, 220)).astype(np.float32)
    picks = Coordinates.from_arrays("mic", [40.0, 120.0], [50.0, 150.0], [1.0, 2.0])
    labels = Coordinates.from_arrays("mic", [40.0, 180.0, 60.0], [50.0, 40.0, 170.0])
    both = tmp_path / "both.png"
    plot_overlay(image, picks, both, radius=12, threshold=0.5, labels=labels, lowpass=3.0)
    assert_png(str(both))
    only_picks = tmp_path / "picks.png"
    plot_overlay(image, picks, only_picks, radius=12, threshold=0.5, labels=Coordinates.empty(), lowpass=3.0)
    n_pick, n_label = _colour_pixels(str(both), PICK_COLOUR), _colour_pixels(str(both), LABEL_COLOUR)
    assert n_pick > 100 and n_label > 30
    # the cyan comes from the three labels (and their legend entry): fewer without them
    assert _colour_pixels(str(only_picks), LABEL_COLOUR) < n_label
    with pytest.raises(TopazPuError, match="2-D"):
        plot_overlay(image[None], picks, tmp_path / "bad.png", radius=12, labels=labels)


def test_score_histogram(tmp_path):
    scores = np.random.default_rng(2).normal(size=500)
    plot_score_histogram(scores, tmp_path / "hist.png", threshold=0.5)
    assert_png(str(tmp_path / "hist.png"))
    plot_score_histogram(scores, tmp_path / "hist_n.png", threshold=0.5, n_micrographs=4, expected_per_micrograph=50)
    assert_png(str(tmp_path / "hist_n.png"))
    plot_score_histogram(scores, tmp_path / "hist_few.png", n_micrographs=4, expected_per_micrograph=500)
    assert_png(str(tmp_path / "hist_few.png"))
    plot_score_histogram([], tmp_path / "hist0.png")
    assert_png(str(tmp_path / "hist0.png"))


def test_image_gallery(tmp_path):
    rng = np.random.default_rng(3)
    rows = [("ours", [{"image": rng.normal(size=(24, 24)), "caption": "n=%d" % i, "color": "C2" if i % 2 else "C3"}
                      for i in range(5)]),
            ("reference", [{"image": np.zeros((24, 24))}])]  # a constant image is drawn too
    plot_image_gallery(rows, tmp_path / "gallery.png", title="classes")
    assert_png(str(tmp_path / "gallery.png"))
    with pytest.raises(TopazPuError, match="not 2-D"):
        plot_image_gallery([("x", [{"image": np.zeros(5)}])], tmp_path / "bad.png")
    with pytest.raises(TopazPuError, match="no images"):
        plot_image_gallery([("x", [])], tmp_path / "empty.png")
    assert sorted(os.listdir(tmp_path)) == ["gallery.png"]


def test_histograms(tmp_path):
    rng = np.random.default_rng(4)
    plot_histograms([("labels", rng.normal(0.15, 0.07, 600)), ("background", rng.normal(0.06, 0.07, 600)),
                     ("none", []), ("with nan", [0.1, np.nan, 0.2])], tmp_path / "h.png", xlabel="correlation",
                    title="sets")
    assert_png(str(tmp_path / "h.png"))
    with pytest.raises(TopazPuError, match="no values"):
        plot_histograms([("a", []), ("b", [np.nan])], tmp_path / "empty.png", xlabel="x")
    assert sorted(os.listdir(tmp_path)) == ["h.png"]


def test_non_png_name_is_refused(tmp_path):
    with pytest.raises(TopazPuError, match="png"):
        plot_score_histogram([1.0, 2.0], tmp_path / "hist.pdf")
    assert os.listdir(tmp_path) == []

