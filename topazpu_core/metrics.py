"""Particle-level evaluation: one-to-one matching of picks to targets, precision-recall, AP.

Matching rule (used by `evaluate`, hence by every AP this package reports):
a pick and a target can match when their Euclidean distance is <= the assignment radius, and
each target matches at most one pick (one-to-one), per micrograph.

* Without scores (`match_picks(pick_xy, target_xy, radius)`): a maximum one-to-one matching
  (as many true positives as possible), and among those the one with the smallest total distance
  (`scipy.optimize.linear_sum_assignment` on each connected group of nearby picks and targets).
* With scores (`match_picks(..., scores=s)`, what `evaluate` does): picks are taken by decreasing
  score (ties by input order); each takes the nearest free target within the radius, and when
  none is free, earlier picks may move to other targets in range (an augmenting path) so that
  the new pick also matches. Earlier picks never lose their match. Result: at *every* score
  threshold, the number of true positives among the picks at or above it equals the largest
  one-to-one matching those picks allow. This is the usual "greedy by score" rule of detection
  benchmarks, minus its dependence on which target a high-scoring pick happened to take, and it
  gives the same total number of true positives as the score-free matching.

Average precision = sum over distinct score thresholds (ties merged into one step) of
precision x (increase in recall), recall counted over ALL targets, so targets no pick matches
keep recall below 1 (the paper's definition; Topaz's up to its strict `d < r`).

Sparse targets (`n_positives`): when the targets are a uniform random sample of the particles
present ("selected completely at random") and the number of particles present is known (from
-n: particles per micrograph x micrographs), the recall of the targets at any threshold is an
unbiased estimate of the true recall, so the true positives among the picks kept are about
recall x n_positives and precision ~= min(1, recall x n_positives / picks kept). With
n_positives = the number of targets (complete labels) this is the exact precision. The
estimated curve gives an estimated AP and best-F1 threshold; `best_f1_index` is the one rule
for choosing a best-F1 point used everywhere (evaluation, training, the Scipion wizard).
"""
import logging

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from topazpu_core.errors import TopazPuError

logger = logging.getLogger(__name__)

IMAGE_MODES = ("target", "predicted", "union")


def _as_xy(xy, what):
    arr = np.asarray(xy, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise TopazPuError("%s must be an (N, 2) array of x, y; got shape %s" % (what, arr.shape))
    if not np.all(np.isfinite(arr)):
        raise TopazPuError("%s contain NaN or infinite coordinates" % what)
    return arr


def candidate_pairs(pick_xy, target_xy, radius):
    """All (pick, target, distance) with distance <= radius, sorted by pick, distance, target."""
    pick_xy = _as_xy(pick_xy, "picks")
    target_xy = _as_xy(target_xy, "targets")
    empty = (np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0))
    if len(pick_xy) == 0 or len(target_xy) == 0 or radius < 0:
        return empty
    # a slightly larger search radius, then the exact test on the distances computed here
    sdm = cKDTree(pick_xy).sparse_distance_matrix(
        cKDTree(target_xy), radius * (1 + 1e-9) + 1e-9, output_type="ndarray")
    p = sdm["i"].astype(np.intp)
    t = sdm["j"].astype(np.intp)
    d = np.hypot(pick_xy[p, 0] - target_xy[t, 0], pick_xy[p, 1] - target_xy[t, 1])
    ok = d <= radius
    p, t, d = p[ok], t[ok], d[ok]
    order = np.lexsort((t, d, p))
    return p[order], t[order], d[order]


def match_picks(pick_xy, target_xy, radius, scores=None):
    """True-positive flag per pick from a one-to-one matching within `radius` (distance <= radius).

    pick_xy, target_xy: (N, 2) arrays of (x, y) on one micrograph. scores: optional, one per pick;
    when given, higher-scoring picks have priority (see the module docstring); when None, a
    maximum matching of smallest total distance. Returns a bool array of len(pick_xy).
    """
    pick_xy = _as_xy(pick_xy, "picks")
    target_xy = _as_xy(target_xy, "targets")
    n_picks = len(pick_xy)
    if scores is None:
        return _match_unordered(pick_xy, target_xy, radius)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size != n_picks:
        raise TopazPuError("match_picks: %d scores for %d picks" % (scores.size, n_picks))
    if np.isnan(scores).any():
        raise TopazPuError("match_picks: %d picks have no score (NaN)" % int(np.isnan(scores).sum()))
    order = np.argsort(-scores, kind="stable")
    return _match_by_priority(pick_xy, target_xy, radius, order)


def _match_unordered(pick_xy, target_xy, radius):
    n_picks, n_targets = len(pick_xy), len(target_xy)
    is_tp = np.zeros(n_picks, dtype=bool)
    p, t, d = candidate_pairs(pick_xy, target_xy, radius)
    if p.size == 0:
        return is_tp
    # connected groups of the bipartite pick-target graph (targets numbered after the picks)
    graph = coo_matrix((np.ones(p.size), (p, n_picks + t)), shape=(n_picks + n_targets,) * 2)
    _, label = connected_components(graph, directed=False)
    group = label[p]
    pairs_in_group = np.bincount(group)
    # a group with a single pair: that pick matches that target
    single = pairs_in_group[group] == 1
    is_tp[p[single]] = True
    multi = ~single
    if multi.any():
        gp, gt, gd, gg = p[multi], t[multi], d[multi], group[multi]
        order = np.argsort(gg, kind="stable")
        gp, gt, gd, gg = gp[order], gt[order], gd[order], gg[order]
        bounds = np.flatnonzero(np.diff(gg)) + 1
        for sp, st, sd in zip(np.split(gp, bounds), np.split(gt, bounds), np.split(gd, bounds)):
            picks_u, pi = np.unique(sp, return_inverse=True)
            targets_u, ti = np.unique(st, return_inverse=True)
            # every pair in range saves `big`, more than all distances together, so the
            # assignment maximises the number of matches first, then minimises total distance
            big = (float(radius) + 1.0) * (min(len(picks_u), len(targets_u)) + 1)
            cost = np.zeros((len(picks_u), len(targets_u)))
            cost[pi, ti] = sd - big
            rows, cols = linear_sum_assignment(cost)
            matched = cost[rows, cols] < 0
            is_tp[picks_u[rows[matched]]] = True
    return is_tp


def _match_by_priority(pick_xy, target_xy, radius, order):
    """Matroid-greedy matching: picks in `order`, each added if an augmenting path exists."""
    n_picks, n_targets = len(pick_xy), len(target_xy)
    is_tp = np.zeros(n_picks, dtype=bool)
    p, t, _ = candidate_pairs(pick_xy, target_xy, radius)
    if p.size == 0:
        return is_tp
    start = np.searchsorted(p, np.arange(n_picks + 1)).tolist()
    nbr = t.tolist()  # per pick, targets by increasing distance
    match_t = [-1] * n_targets  # target -> pick
    match_p = [-1] * n_picks  # pick -> target
    dead = [False] * n_targets  # targets from which no free target can be reached (stays true)
    seen = [0] * n_targets
    stamp = 0
    has_nbr = np.diff(start) > 0
    for root in np.asarray(order)[has_nbr[order]].tolist():
        stamp += 1
        # the root's nearest free target, if any
        free = -1
        for k in range(start[root], start[root + 1]):
            if match_t[nbr[k]] < 0:
                free = nbr[k]
                break
        if free >= 0:
            match_t[free] = root
            match_p[root] = free
            continue
        # otherwise depth-first search for an augmenting path through matched targets
        stack = [(root, start[root])]
        path = []  # targets taken on the way down, path[i] leads from stack[i] to stack[i + 1]
        visited = []
        found = -1
        while stack:
            q, k = stack[-1]
            end = start[q + 1]
            advanced = False
            while k < end:
                tt = nbr[k]
                k += 1
                if dead[tt] or seen[tt] == stamp:
                    continue
                seen[tt] = stamp
                visited.append(tt)
                owner = match_t[tt]
                if owner < 0:
                    found = tt
                    break
                stack[-1] = (q, k)
                stack.append((owner, start[owner]))
                path.append(tt)
                advanced = True
                break
            if found >= 0:
                break
            if not advanced:
                stack.pop()
                if path:
                    path.pop()
        if found >= 0:
            path.append(found)
            for (q, _), tt in zip(stack, path):
                match_t[tt] = q
                match_p[q] = tt
        else:
            for tt in visited:
                dead[tt] = True
    is_tp[:] = np.asarray(match_p) >= 0
    return is_tp


def _steps(scores, is_tp):
    """Distinct thresholds (descending) with the cumulative picks and true positives at each."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    is_tp = np.asarray(is_tp, dtype=bool).reshape(-1)
    if scores.size != is_tp.size:
        raise TopazPuError("%d scores but %d true-positive flags" % (scores.size, is_tp.size))
    if np.isnan(scores).any():
        raise TopazPuError("%d picks have no score (NaN); precision-recall needs a score per pick"
                           % int(np.isnan(scores).sum()))
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    tp = np.cumsum(is_tp[order])
    last = np.ones(s.size, dtype=bool)  # last position of each run of equal scores
    last[:-1] = s[1:] != s[:-1]
    return s[last], (np.flatnonzero(last) + 1).astype(np.int64), tp[last].astype(np.int64)


def _precision(n_tp, n_kept, n_targets, n_positives):
    """Precision per step: exact when n_positives is None or equals n_targets, else estimated
    from the targets' recall (see the module docstring), capped at 1."""
    kept = np.maximum(n_kept, 1)
    if n_positives is None or n_positives == n_targets:
        return n_tp / kept
    if n_positives < n_targets:
        raise TopazPuError("%g particles present but %d targets: the targets are a sample of the particles, "
                           "so there must be at least as many particles" % (n_positives, n_targets))
    return np.minimum(1.0, n_tp / n_targets * n_positives / kept)


def f1_score(precision, recall):
    """Elementwise F1 = 2PR / (P + R), 0 where P + R = 0."""
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    denom = precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)


def best_f1_index(threshold, precision, recall):
    """Index of the best-F1 point of a precision-recall curve (arrays in any order): the maximum
    F1, and among equal maxima the highest threshold. None for an empty curve."""
    threshold = np.asarray(threshold, dtype=np.float64)
    if threshold.size == 0:
        return None
    f1 = np.nan_to_num(f1_score(precision, recall), nan=-1.0)
    best = np.flatnonzero(f1 == f1.max())
    return int(best[np.argmax(threshold[best])])


def threshold_for_count(scores, count):
    """The score threshold keeping about `count` picks (the count-th highest score; the lowest
    score when there are fewer picks). None without scores."""
    scores = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))[::-1]
    if scores.size == 0:
        return None
    k = int(np.clip(round(count), 1, scores.size))
    return float(scores[k - 1])


def precision_recall_curve(scores, is_tp, n_targets, n_positives=None):
    """Precision, recall and F1 when keeping picks with score >= threshold, per distinct score.

    Returns a dict of float arrays "threshold" (descending), "precision", "recall", "f1"
    (recall over all `n_targets`; F1 = 0 where precision + recall = 0). n_positives: the
    number of particles present when the targets are a random sample of them; precision is
    then estimated (module docstring).
    """
    thr, n_kept, n_tp = _steps(scores, is_tp)
    precision = _precision(n_tp, n_kept, n_targets, n_positives)
    recall = n_tp / n_targets if n_targets > 0 else np.full(n_tp.size, np.nan)
    return {"threshold": thr, "precision": precision, "recall": recall, "f1": f1_score(precision, recall)}


def average_precision(scores, is_tp, n_targets, n_positives=None):
    """Sum over distinct thresholds of precision x recall increment; recall over all targets.

    Exact ties in score form one step (their order cannot matter). NaN when n_targets == 0.
    n_positives: as in precision_recall_curve (an estimated AP from sparse targets).
    """
    if n_targets <= 0:
        return float("nan")
    _, n_kept, n_tp = _steps(scores, is_tp)
    if n_tp.size == 0:
        return 0.0
    precision = _precision(n_tp, n_kept, n_targets, n_positives)
    gain = np.diff(np.concatenate(([0], n_tp))) / n_targets
    return float(np.sum(precision * gain))


def _select_images(picks, targets, images):
    if images is None or (isinstance(images, str) and images == "target"):
        return targets.image_names()
    if isinstance(images, str):
        if images == "predicted":
            return picks.image_names()
        if images == "union":
            return sorted(set(picks.image_names()) | set(targets.image_names()))
        raise TopazPuError("unknown image selection %r (choose from %s, or a list of names)"
                           % (images, ", ".join(IMAGE_MODES)))
    return sorted(set(str(n) for n in images))


def evaluate(picks, targets, radius, images=None, n_positives=None):
    """Match picks to targets on each micrograph and summarise precision and recall.

    picks, targets: Coordinates (picks need a score each; targets' scores are ignored).
    radius: assignment radius in pixels (a pick at distance <= radius of a target can match it).
    images: None or "target" = the micrographs named in targets (picks elsewhere are ignored);
        "predicted" = those named in picks; "union" = both; or an explicit list of names.
    n_positives: the number of particles on those micrographs when the targets are a random
        sample of them (default: the targets are all of them); precision, AP and the best F1
        are then estimates (module docstring).

    Returns a dict: ap, best_f1, threshold_at_best_f1 (the lowest score kept at the best F1;
    None without picks), precision_at_best_f1, recall_at_best_f1, n_picks, n_targets,
    n_true_positives (over all picks), n_images, and "curve" (precision_recall_curve's dict).
    """
    if not np.isfinite(radius) or radius < 0:
        raise TopazPuError("assignment radius must be a finite number >= 0, got %r" % (radius,))
    names = _select_images(picks, targets, images)
    pick_groups = picks.by_image()
    target_groups = targets.by_image()
    all_scores, all_tp = [], []
    n_targets = 0
    for name in names:
        tgt = target_groups.get(name)
        n_t = 0 if tgt is None else len(tgt)
        n_targets += n_t
        pk = pick_groups.get(name)
        if pk is None or len(pk) == 0:
            continue
        if np.isnan(pk.score).any():
            raise TopazPuError(
                "%d picks on micrograph %r have no score; evaluation needs a score per pick"
                % (int(np.isnan(pk.score).sum()), name))
        if n_t:
            tp = match_picks(pk.xy, tgt.xy, radius, scores=pk.score)
        else:
            tp = np.zeros(len(pk), dtype=bool)
        all_scores.append(pk.score)
        all_tp.append(tp)
    if n_targets == 0:
        raise TopazPuError("no targets on the %d evaluated micrographs; nothing to compare the picks with"
                           % len(names))
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    is_tp = np.concatenate(all_tp) if all_tp else np.zeros(0, dtype=bool)
    curve = precision_recall_curve(scores, is_tp, n_targets, n_positives)
    best = best_f1_index(curve["threshold"], curve["precision"], curve["recall"])
    if best is not None:
        best_f1 = float(curve["f1"][best])
        thr, prec, rec = (float(curve[k][best]) for k in ("threshold", "precision", "recall"))
    else:
        best_f1, thr, prec, rec = 0.0, None, 0.0, 0.0
    result = {
        "ap": average_precision(scores, is_tp, n_targets, n_positives),
        "best_f1": best_f1,
        "threshold_at_best_f1": thr,
        "precision_at_best_f1": prec,
        "recall_at_best_f1": rec,
        "n_picks": int(scores.size),
        "n_targets": int(n_targets),
        "n_positives": float(n_targets if n_positives is None else n_positives),
        "n_true_positives": int(is_tp.sum()),
        "n_images": len(names),
        "curve": curve,
    }
    logger.debug("evaluate: %d picks, %d targets on %d micrographs, AP %.4f",
                 result["n_picks"], n_targets, len(names), result["ap"])
    return result
