"""Non-maximum suppression of a dense score map into particle picks.

Greedy NMS over *every* pixel at or above the threshold, deterministic (priority = score
descending, then row-major pixel index), the semantics of Topaz's extraction: the highest
remaining pixel is kept and every pixel within distance <= radius of it is removed, until no
pixel is left. This can keep a pixel that is not a local maximum (a flank pixel just outside the
radius of a stronger peak whose own neighbourhood was suppressed), which is what a naive
reference implementation does.

It runs the greedy step on chunks of the sorted candidates: a chunk's candidates that are
already suppressed are dropped with one vectorised mask look-up, the survivors are resolved
among themselves with vectorised rounds on their small conflict matrix, and every kept pick
stamps a precomputed disk into a padded suppression mask. Python work is per chunk, not per
pixel.
"""
import logging

import numpy as np

from topazpu_core.errors import TopazPuError

logger = logging.getLogger(__name__)

# Wanted number of not-yet-suppressed candidates per chunk (keeps the conflict matrix small).
_TARGET_ALIVE = 64
_MIN_CHUNK = 64
_MAX_ALIVE = 4 * _TARGET_ALIVE  # hard cap on the conflict matrix size
_MAX_ROUNDS = 4  # vectorised rounds per chunk before the one-by-one finish
_MAX_CHUNK = 1 << 16


def disk_offsets(radius):
    """Integer offsets (dy, dx) with dy**2 + dx**2 <= radius**2, row-major order."""
    r = int(np.floor(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    inside = dy * dy + dx * dx <= radius * radius
    return dy[inside], dx[inside]


def _priority_order(flat_scores):
    """Order of candidates by score descending, ties by ascending position (candidates come in
    row-major order, so a position is the row-major rank of the pixel)."""
    order = np.argsort(-flat_scores)  # fast unstable sort; the order within ties is fixed below
    values = flat_scores[order]
    same = values[1:] == values[:-1]
    if same.any():
        # positions taking part in a tie, grouped by tie value (groups are contiguous)
        tied = np.zeros(values.size, dtype=bool)
        tied[1:] |= same
        tied[:-1] |= same
        pos = np.flatnonzero(tied)
        group = np.cumsum(np.concatenate(([True], values[pos[1:]] != values[pos[:-1]])))
        n = np.int64(values.size)
        order[pos] = np.sort(group.astype(np.int64) * n + order[pos]) % n
    return order


def _greedy(ys, xs, shape, radius, max_picks):
    """Greedy suppression over candidates already in priority order; returns kept positions."""
    height, width = shape
    r = int(np.floor(radius))
    pad_w = width + 2 * r
    mask = np.zeros((height + 2 * r) * pad_w, dtype=bool)
    ody, odx = disk_offsets(radius)
    stamp = (ody * pad_w + odx).astype(np.int64)
    flat = (ys.astype(np.int64) + r) * pad_w + (xs.astype(np.int64) + r)
    r2 = float(radius) * float(radius)

    kept = []
    n_kept = 0
    pos = 0
    n = flat.size
    chunk = _MIN_CHUNK
    while pos < n:
        stop = min(n, pos + chunk)
        alive = np.flatnonzero(~mask[flat[pos:stop]]) + pos
        if alive.size > _MAX_ALIVE:
            # too many survivors for one conflict matrix: stop the chunk at the cap, the rest
            # is read again (against the updated mask) in the next chunk
            stop = int(alive[_MAX_ALIVE])
            alive = alive[:_MAX_ALIVE]
        if alive.size:
            keep = alive[_resolve_chunk(ys[alive], xs[alive], r2)]
            mask[(flat[keep][:, None] + stamp[None, :]).ravel()] = True
            kept.append(keep)
            n_kept += keep.size
            if max_picks is not None and n_kept >= max_picks:
                break
        # aim the next chunk at about _TARGET_ALIVE surviving candidates
        frac = max(alive.size, 1) / (stop - pos)
        chunk = int(min(_MAX_CHUNK, max(_MIN_CHUNK, _TARGET_ALIVE / frac)))
        pos = stop
    keep = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    if max_picks is not None:
        keep = keep[:max_picks]
    return keep


def _resolve_chunk(ys, xs, r2):
    """Greedy (lexicographically first) independent set among candidates in priority order.

    Vectorised rounds: a candidate is kept once no higher-priority neighbour is undecided or
    kept; the neighbours of new keeps are removed. Returns indices of kept candidates.
    """
    m = ys.size
    if m == 1:
        return np.zeros(1, dtype=np.int64)
    y = ys.astype(np.float64)
    x = xs.astype(np.float64)
    conflict = (y[:, None] - y[None, :]) ** 2 + (x[:, None] - x[None, :]) ** 2 <= r2
    np.fill_diagonal(conflict, False)
    if not conflict.any():
        return np.arange(m)
    higher = np.tril(conflict, -1)  # higher[i, j]: j precedes i and conflicts with it
    undecided = np.ones(m, dtype=bool)
    kept = np.zeros(m, dtype=bool)
    for _ in range(_MAX_ROUNDS):
        blocked = (higher & (undecided | kept)[None, :]).any(axis=1)
        new = undecided & ~blocked
        kept |= new
        undecided &= ~new
        undecided &= ~conflict[:, new].any(axis=1)
        if not undecided.any():
            return np.flatnonzero(kept)
    # long dependency chains (e.g. a monotonic ramp): finish one candidate at a time
    for i in np.flatnonzero(undecided).tolist():
        if not (higher[i] & kept).any():
            kept[i] = True
    return np.flatnonzero(kept)


def non_maximum_suppression(
    score_map, radius, threshold=-np.inf, max_picks=None, edge_margin=0
):
    """Greedy non-maximum suppression of a 2-D score map.

    Args:
        score_map: 2-D array (rows = y, columns = x). NaN pixels are never picked.
        radius: suppression radius in pixels; a kept pick removes every candidate at
            Euclidean distance <= radius. 0 keeps every pixel at or above the threshold.
        threshold: only pixels with score >= threshold are candidates (they are also the only
            ones that could suppress a candidate above it, so the threshold only filters).
        max_picks: keep at most this many picks (the highest-scoring ones); None = no cap.
        edge_margin: pixels closer than this many pixels to the border (y < m, y > H-1-m,
            likewise x) are neither picked nor allowed to suppress anything.

    Returns:
        (ys, xs, scores): int64 row and column indices and float64 scores, sorted by
        decreasing score, ties by row-major index.
    """
    score = np.asarray(score_map)
    if score.ndim != 2:
        raise TopazPuError("non-maximum suppression needs a 2-D score map, got shape %s" % (score.shape,))
    if not np.isfinite(radius) or radius < 0:
        raise TopazPuError("NMS radius must be a finite number >= 0, got %r" % (radius,))
    if max_picks is not None and max_picks < 0:
        raise TopazPuError("max_picks must be >= 0, got %r" % (max_picks,))
    edge_margin = int(edge_margin)
    if edge_margin < 0:
        raise TopazPuError("edge margin must be >= 0, got %r" % (edge_margin,))
    if not np.issubdtype(score.dtype, np.floating):
        score = score.astype(np.float64)

    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    height, width = score.shape
    if max_picks == 0 or height <= 2 * edge_margin or width <= 2 * edge_margin:
        return empty

    valid = ~np.isnan(score)
    if threshold > -np.inf:
        valid &= score >= threshold
    if edge_margin:
        inner = np.zeros_like(valid)
        inner[edge_margin : height - edge_margin, edge_margin : width - edge_margin] = True
        valid &= inner

    flat_index = np.flatnonzero(valid.ravel())
    if flat_index.size == 0:
        return empty
    flat_scores = score.ravel()[flat_index]
    order = _priority_order(flat_scores)
    cand = flat_index[order]
    ys, xs = np.divmod(cand, width)
    keep = _greedy(ys, xs, score.shape, radius, max_picks)
    return ys[keep], xs[keep], flat_scores[order][keep].astype(np.float64)
