"""PNG figures: precision-recall curve, training curve, pick overlay, score histogram.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend
switch, so importing this module inside a GUI process such as Scipion changes nothing there,
and it works without a display). Every file is written atomically and must end in ".png".
"""
import logging
import os

import numpy as np
import scipy.ndimage as ndi
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PatchCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from topazpu_core.atomic import atomic_path
from topazpu_core.errors import TopazPuError

logger = logging.getLogger(__name__)

DPI = 100
SCORE_CMAP = "viridis"


def _new_figure(width, height):
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise TopazPuError("%s: plots are written as PNG; give a file name ending in .png" % path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    logger.debug("wrote %s", path)
    return path


def _curve_ap(curve):
    precision = np.asarray(curve["precision"], float)
    recall = np.asarray(curve["recall"], float)
    if recall.size == 0:
        return 0.0
    return float(np.sum(precision * np.diff(np.concatenate(([0.0], recall)))))


def plot_pr_curve(curve, path, title=None):
    """Precision against recall (a step per distinct threshold), best-F1 point marked, AP in the title.

    curve: dict with arrays "threshold", "precision", "recall", "f1" (descending threshold), as
    from metrics.precision_recall_curve. The AP shown is computed from the curve itself.
    """
    precision = np.asarray(curve["precision"], float)
    recall = np.asarray(curve["recall"], float)
    f1 = np.asarray(curve["f1"], float)
    threshold = np.asarray(curve["threshold"], float)
    ap = _curve_ap(curve)

    fig = _new_figure(5.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    # iso-F1 contours for reference
    rr = np.linspace(0.01, 1, 200)
    for level in (0.2, 0.4, 0.6, 0.8):
        pp = level * rr / (2 * rr - level)
        ok = (pp > 0) & (pp <= 1.05)
        ax.plot(rr[ok], pp[ok], color="0.85", lw=0.8, zorder=0)
        ax.annotate("F1=%.1f" % level, (0.99, level / (2 - level)), fontsize=7, color="0.6",
                    ha="right", va="bottom")
    if recall.size:
        ax.step(np.concatenate(([0.0], recall)), np.concatenate(([precision[0]], precision)),
                where="post", color="C0", lw=1.6, label="precision-recall")
        best = int(np.argmax(f1))
        ax.plot(recall[best], precision[best], "o", color="C3", ms=8,
                label="best F1 %.3f at threshold %.4g\n(precision %.3f, recall %.3f)"
                % (f1[best], threshold[best], precision[best], recall[best]))
        ax.legend(loc="lower left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no picks", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(("%s\n" % title if title else "") + "AP = %.4f" % ap)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _column(rows, key):
    out = []
    for row in rows:
        v = row.get(key)
        try:
            out.append(float(v) if v is not None and v != "" else np.nan)
        except (TypeError, ValueError):
            out.append(np.nan)
    return np.asarray(out, float)


def plot_training_curve(rows, path):
    """Loss (top) and validation AP (bottom) against epoch; the best-AP epoch is marked.

    rows: list of dicts with "epoch", "loss" and "val_ap" (missing, None or NaN where not
    measured); other keys are ignored.
    """
    rows = list(rows)
    epoch = _column(rows, "epoch")
    loss = _column(rows, "loss")
    val_ap = _column(rows, "val_ap")
    if not rows:
        raise TopazPuError("%s: no training history to plot" % os.fspath(path))
    has_ap = np.isfinite(val_ap).any()

    fig = _new_figure(6.0, 5.5 if has_ap else 3.2)
    ax_loss = fig.add_subplot(2 if has_ap else 1, 1, 1)
    ok = np.isfinite(loss) & np.isfinite(epoch)
    ax_loss.plot(epoch[ok], loss[ok], "o-", color="C0", ms=3)
    ax_loss.set_ylabel("training loss")
    ax_loss.grid(True, alpha=0.3)
    if has_ap:
        ax_ap = fig.add_subplot(2, 1, 2, sharex=ax_loss)
        ok = np.isfinite(val_ap) & np.isfinite(epoch)
        ax_ap.plot(epoch[ok], val_ap[ok], "o-", color="C2", ms=3)
        best = int(np.nanargmax(np.where(ok, val_ap, -np.inf)))
        for ax in (ax_loss, ax_ap):
            ax.axvline(epoch[best], color="C3", ls="--", lw=1)
        ax_ap.plot(epoch[best], val_ap[best], "*", color="C3", ms=12,
                   label="best epoch %g: AP %.4f" % (epoch[best], val_ap[best]))
        ax_ap.legend(loc="lower right", fontsize=8)
        ax_ap.set_ylabel("validation AP")
        ax_ap.set_xlabel("epoch")
        ax_ap.grid(True, alpha=0.3)
    else:
        ax_loss.set_xlabel("epoch")
    fig.tight_layout()
    return _save(fig, path)


PICK_COLOUR = "#ffb000"       # picks (amber)
LABEL_COLOUR = "#00e5ff"      # hand labels (cyan)


def plot_overlay(image, coords, path, radius, threshold=None, labels=None, lowpass=None, title=None):
    """Micrograph in grey with a circle of `radius` pixels (the particle's) per pick.

    The micrograph is low-pass filtered for visibility (Gaussian, sigma = `lowpass` px; default
    radius / 8, at least 1 px) and clipped at its 1st/99th percentiles. coords: Coordinates on
    this micrograph (x = column, y = row). Without `labels`, circles are coloured by score
    (colour bar). With `labels` (Coordinates of the hand-labelled particles on the same
    micrograph), picks are amber circles and labels cyan crosses, with a legend giving the
    threshold and both counts. Picks below `threshold` are drawn thin, dashed and pale.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise TopazPuError("%s: overlay needs a 2-D micrograph, got shape %s" % (os.fspath(path), image.shape))
    height, width = image.shape
    image = ndi.gaussian_filter(image, lowpass if lowpass else max(1.0, radius / 8.0))
    lo, hi = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
    if not hi > lo:
        hi = lo + 1.0

    scale = 8.0 / max(height, width)
    extra = 1.4 if labels is None else 0.4
    fig = _new_figure(max(3.0, width * scale + extra), max(3.0, height * scale + 0.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest", origin="upper")
    x = np.asarray(coords.x, float)
    y = np.asarray(coords.y, float)
    score = np.asarray(coords.score, float)
    scored = np.isfinite(score)
    above = np.ones(len(x), dtype=bool) if threshold is None else (~scored | (score >= threshold))
    n_shown = int(above.sum())
    if len(x):
        if (~above).any():
            dim = PatchCollection([Circle((a, b), radius) for a, b in zip(x[~above], y[~above])],
                                  facecolor="none", edgecolor=(1.0, 0.55, 0.55, 0.8), linewidth=0.7,
                                  linestyle="--")
            ax.add_collection(dim)
        keep = above
        if labels is None and scored[keep].any():
            s = score[keep & scored]
            norm = Normalize(vmin=float(s.min()), vmax=float(s.max()) if s.max() > s.min() else float(s.min()) + 1)
            mappable = ScalarMappable(norm=norm, cmap=SCORE_CMAP)
            colours = mappable.to_rgba(np.where(scored[keep], score[keep], norm.vmin))
            circles = PatchCollection([Circle((a, b), radius) for a, b in zip(x[keep], y[keep])],
                                      facecolor="none", edgecolors=colours, linewidth=1.2)
            ax.add_collection(circles)
            cbar = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
            cbar.set_label("score")
        elif keep.any():
            circles = PatchCollection([Circle((a, b), radius) for a, b in zip(x[keep], y[keep])],
                                      facecolor="none", edgecolor=PICK_COLOUR if labels is not None else "C1",
                                      linewidth=1.4)
            ax.add_collection(circles)
    if labels is not None:
        from matplotlib.lines import Line2D
        ax.plot(np.asarray(labels.x, float), np.asarray(labels.y, float), linestyle="none", marker="+",
                markersize=7, markeredgewidth=1.4, color=LABEL_COLOUR)
        pick_text = "%d picks" % n_shown
        if threshold is not None:
            pick_text += ", score >= %.3g" % threshold
        handles = [Line2D([], [], linestyle="none", marker="o", markersize=11, markerfacecolor="none",
                          markeredgecolor=PICK_COLOUR, markeredgewidth=1.4, label=pick_text),
                   Line2D([], [], linestyle="none", marker="+", markersize=9, markeredgewidth=1.4,
                          color=LABEL_COLOUR, label="%d hand-labelled particles" % len(labels))]
        if n_shown < len(x):
            handles.append(Line2D([], [], linestyle="none", marker="o", markersize=11, markerfacecolor="none",
                                  markeredgecolor=(1.0, 0.55, 0.55, 0.8), label="%d below the threshold"
                                  % (len(x) - n_shown)))
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=len(handles),
                  fontsize=8, frameon=False, handletextpad=0.3, columnspacing=1.2)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    if title is None:
        title = "%d picks%s" % (n_shown, "" if threshold is None else
                                " with score >= %.4g (%d below, dashed)" % (threshold, len(x) - n_shown))
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, path)


def plot_score_histogram(scores, path, threshold=None, n_micrographs=None, expected_per_micrograph=None):
    """Histogram of pick scores with the threshold (and the count at or above it) marked.

    n_micrographs, expected_per_micrograph (the -n of training): also mark the score above which
    the picks number the expected particles, so a threshold reads as a particle count. Scores are
    network logits that rank picks, not probabilities (picking.py).
    """
    from topazpu_core.metrics import threshold_for_count

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    scores = scores[np.isfinite(scores)]
    per = (lambda n: " (%.1f per micrograph)" % (n / n_micrographs)) if n_micrographs else (lambda n: "")
    fig = _new_figure(6.4, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    if scores.size:
        ax.hist(scores, bins=min(60, max(10, int(np.sqrt(scores.size)))), color="C0", alpha=0.8)
    else:
        ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
    if threshold is not None:
        n_above = int((scores >= threshold).sum())
        ax.axvline(threshold, color="C3", ls="--", lw=1.5,
                   label="threshold %.3g: %d of %d picks kept%s" % (threshold, n_above, scores.size, per(n_above)))
    if expected_per_micrograph and n_micrographs and scores.size:
        expected = expected_per_micrograph * n_micrographs
        if scores.size >= expected:
            at = threshold_for_count(scores, expected)
            ax.axvline(at, color="C2", ls=":", lw=1.5,
                       label="%.3g: the expected %.0f particles (%.3g per micrograph, training -n)"
                       % (at, expected, expected_per_micrograph))
        else:
            ax.plot([], [], " ", label="fewer picks than the expected %.0f particles (%.3g per micrograph)"
                    % (expected, expected_per_micrograph))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=7)
    ax.set_xlabel("score (network logit: ranks picks, not a probability)")
    ax.set_ylabel("picks")
    ax.set_title("%d picks%s" % (scores.size, (" on %d micrographs" % n_micrographs + per(scores.size))
                                 if n_micrographs else ""))
    fig.tight_layout()
    return _save(fig, path)


def plot_histograms(series, path, xlabel, title=None, bins=40):
    """Overlaid histograms (densities, shared bins) of several named samples, each mean marked.

    series: list of (name, 1-D values).
    """
    series = [(name, np.asarray(v, dtype=np.float64).reshape(-1)) for name, v in series]
    series = [(name, v[np.isfinite(v)]) for name, v in series]
    if not any(v.size for _, v in series):
        raise TopazPuError("%s: no values to draw" % os.fspath(path))
    edges = np.histogram_bin_edges(np.concatenate([v for _, v in series]), bins=bins)
    fig = _new_figure(6.4, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, v) in enumerate(series):
        if not v.size:
            continue
        color = "C%d" % (i % 10)
        ax.hist(v, bins=edges, density=True, histtype="step", lw=1.5, color=color,
                label="%s: %d, mean %.3g" % (name, v.size, v.mean()))
        ax.axvline(v.mean(), color=color, ls="--", lw=1)
    ax.legend(loc="upper right", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_image_gallery(rows, path, title=None):
    """Rows of small grey images (e.g. 2D class averages) with a caption and a coloured frame each.

    rows: list of (row_label, items); items: list of dicts with "image" (2-D array), and optional
    "caption" (str) and "color" (a matplotlib colour for the frame; none = no frame). Each image
    is scaled to its own 1st/99th percentiles. Rows may differ in length.
    """
    rows = [(label, list(items)) for label, items in rows]
    if not rows or not any(items for _, items in rows):
        raise TopazPuError("%s: no images to draw" % os.fspath(path))
    ncols = max(len(items) for _, items in rows)
    fig = _new_figure(1.5 * ncols + 1.2, 1.75 * len(rows) + (0.4 if title else 0.1))
    for r, (label, items) in enumerate(rows):
        for c in range(ncols):
            ax = fig.add_subplot(len(rows), ncols, r * ncols + c + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if c >= len(items):
                ax.set_axis_off()
                continue
            item = items[c]
            image = np.asarray(item["image"], dtype=np.float32)
            if image.ndim != 2:
                raise TopazPuError("%s: gallery image %d of row %r has shape %s, not 2-D"
                                   % (os.fspath(path), c, label, image.shape))
            lo, hi = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1.0, interpolation="nearest")
            if item.get("caption"):
                ax.set_title(item["caption"], fontsize=7)
            for spine in ax.spines.values():
                if item.get("color"):
                    spine.set_edgecolor(item["color"])
                    spine.set_linewidth(3)
                else:
                    spine.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
