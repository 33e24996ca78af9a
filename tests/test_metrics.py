"""Matching, precision-recall and average precision against hand-worked and brute-force answers."""
import time

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from topazpu_core.coordinates import Coordinates
from topazpu_core.errors import TopazPuError
from topazpu_core.metrics import average_precision, evaluate, match_picks, precision_recall_curve


def coords(rows):
    """Coordinates from (image, x, y[, score]) tuples."""
    names = [r[0] for r in rows]
    x = [r[1] for r in rows]
    y = [r[2] for r in rows]
    score = [r[3] if len(r) > 3 else np.nan for r in rows]
    return Coordinates.from_arrays(names, x, y, score)


def max_matching(picks, targets, radius):
    """Brute-force size of the largest one-to-one matching within `radius`."""
    if len(picks) == 0 or len(targets) == 0:
        return 0
    d = np.hypot(picks[:, None, 0] - targets[None, :, 0], picks[:, None, 1] - targets[None, :, 1])
    cost = np.where(d <= radius, -1.0, 0.0)
    rows, cols = linear_sum_assignment(cost)
    return int((cost[rows, cols] < 0).sum())


# Hand-worked example, assignment radius 4.
#   image A targets (10,10) (50,50) (90,90)   image B targets (20,20) (60,60)   -> 5 targets
#   picks:  A (11,10) 0.9  -> TP (target 10,10)
#           A (10,12) 0.8  -> FP (second pick on target 10,10; the 0.9 pick has it)
#           A (50,53) 0.8  -> TP (tied with the FP above: one step)
#           B (20,21) 0.7  -> TP
#           B (60,64) 0.7  -> TP (distance exactly 4 = radius)
#           A (200,200) 0.5 -> FP
#           C (10,10) 0.95 -> ignored (image C has no targets; images = targets' images)
#   target A (90,90) is never matched: recall stops at 4/5.
#   steps (threshold: picks kept, TPs, precision, recall):
#     0.9: 1, 1, 1,   1/5
#     0.8: 3, 2, 2/3, 2/5
#     0.7: 5, 4, 4/5, 4/5
#     0.5: 6, 4, 2/3, 4/5
#   AP = 1*(1/5) + (2/3)*(1/5) + (4/5)*(2/5) + (2/3)*0 = 15/75 + 10/75 + 24/75 = 49/75
#   F1 per step: 1/3, 1/2, 4/5, 8/11 -> best F1 4/5 at threshold 0.7 (precision 4/5, recall 4/5)
#   (without merging the 0.8 tie, FP-then-TP would give the same 2/15, TP-then-FP 1/5.)
HAND_TARGETS = [("A", 10, 10), ("A", 50, 50), ("A", 90, 90), ("B", 20, 20), ("B", 60, 60)]
HAND_PICKS = [("A", 11, 10, 0.9), ("A", 10, 12, 0.8), ("A", 50, 53, 0.8), ("B", 20, 21, 0.7),
              ("B", 60, 64, 0.7), ("A", 200, 200, 0.5), ("C", 10, 10, 0.95)]


def test_evaluate_hand_worked_example():
    result = evaluate(coords(HAND_PICKS), coords(HAND_TARGETS), 4.0)
    assert result["ap"] == pytest.approx(49 / 75, abs=1e-12)
    assert result["best_f1"] == pytest.approx(0.8, abs=1e-12)
    assert result["threshold_at_best_f1"] == 0.7
    assert result["precision_at_best_f1"] == pytest.approx(0.8)
    assert result["recall_at_best_f1"] == pytest.approx(0.8)
    assert result["n_picks"] == 6
    assert result["n_targets"] == 5
    assert result["n_true_positives"] == 4
    assert result["n_images"] == 2
    curve = result["curve"]
    np.testing.assert_array_equal(curve["threshold"], [0.9, 0.8, 0.7, 0.5])
    np.testing.assert_allclose(curve["precision"], [1, 2 / 3, 4 / 5, 2 / 3])
    np.testing.assert_allclose(curve["recall"], [1 / 5, 2 / 5, 4 / 5, 4 / 5])
    np.testing.assert_allclose(curve["f1"], [1 / 3, 1 / 2, 4 / 5, 8 / 11])


def test_evaluate_image_selection():
    picks, targets = coords(HAND_PICKS), coords(HAND_TARGETS)
    # union: the 0.95 pick on C becomes a first-ranked false positive
    union = evaluate(picks, targets, 4.0, images="union")
    assert union["n_picks"] == 7 and union["n_images"] == 3
    assert union["ap"] == pytest.approx((1 / 2) * (1 / 5) + (2 / 4) * (1 / 5) + (4 / 6) * (2 / 5))
    only_b = evaluate(picks, targets, 4.0, images=["B"])
    assert only_b["ap"] == pytest.approx(1.0) and only_b["n_targets"] == 2
    predicted = evaluate(picks, targets, 4.0, images="predicted")
    assert predicted["n_targets"] == 5 and predicted["n_picks"] == 7


def test_two_picks_on_one_target_give_one_true_positive():
    tp = match_picks([[0.0, 0.0], [1.0, 0.0]], [[0.5, 0.0]], 2.0)
    assert tp.sum() == 1
    tp = match_picks([[0.0, 0.0], [1.0, 0.0]], [[0.5, 0.0]], 2.0, scores=[0.1, 0.9])
    np.testing.assert_array_equal(tp, [False, True])  # the higher score wins


def test_distance_exactly_at_radius_counts():
    assert match_picks([[3.0, 4.0]], [[0.0, 0.0]], 5.0).tolist() == [True]
    assert match_picks([[3.0, 4.0]], [[0.0, 0.0]], 5.0, scores=[1.0]).tolist() == [True]
    assert match_picks([[3.0, 4.0001]], [[0.0, 0.0]], 5.0).tolist() == [False]
    assert match_picks([[16.0, 0.0]], [[0.0, 0.0]], 16.0).tolist() == [True]


def test_later_pick_matches_when_an_earlier_one_can_move():
    # the 0.9 pick is nearest T1 but can also reach T2; the 0.5 pick can only reach T1
    targets = [[0.0, 0.0], [4.0, 0.0]]
    picks = [[1.8, 0.0], [-2.0, 0.0]]
    tp = match_picks(picks, targets, 3.0, scores=[0.9, 0.5])
    np.testing.assert_array_equal(tp, [True, True])


def test_score_priority_matching_is_maximal_at_every_threshold():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n, m = rng.integers(0, 14), rng.integers(0, 10)
        picks = rng.integers(0, 12, (n, 2)).astype(float)
        targets = rng.integers(0, 12, (m, 2)).astype(float)
        radius = float(rng.choice([1.0, 2.0, 3.0]))
        scores = rng.integers(0, 4, n).astype(float)
        unordered = match_picks(picks, targets, radius)
        assert unordered.sum() == max_matching(picks, targets, radius)
        tp = match_picks(picks, targets, radius, scores=scores)
        for t in np.unique(scores):
            keep = scores >= t
            assert tp[keep].sum() == max_matching(picks[keep], targets, radius)


def test_unordered_matching_minimises_total_distance():
    # both one-to-one assignments are complete; the one with less total distance is chosen,
    # which leaves the far pick (index 2) unmatched
    targets = [[0.0, 0.0], [10.0, 0.0]]
    picks = [[1.0, 0.0], [9.0, 0.0], [3.0, 0.0]]
    np.testing.assert_array_equal(match_picks(picks, targets, 4.0), [True, True, False])


def test_average_precision_merges_ties_and_caps_recall():
    # four picks with one score, two true: one step, precision 1/2, recall 2/4
    assert average_precision([1.0] * 4, [True, False, True, False], 4) == pytest.approx(0.25)
    # same result whatever the order of tied picks
    assert average_precision([1.0] * 4, [False, False, True, True], 4) == pytest.approx(0.25)
    # all picks right but half the targets missed: AP 0.5
    assert average_precision([3.0, 2.0], [True, True], 4) == pytest.approx(0.5)
    assert average_precision([], [], 3) == 0.0
    assert np.isnan(average_precision([1.0], [True], 0))


def test_precision_recall_curve_descending_with_ties():
    curve = precision_recall_curve([0.2, 0.5, 0.5, 0.9], [False, True, False, True], 2)
    np.testing.assert_array_equal(curve["threshold"], [0.9, 0.5, 0.2])
    np.testing.assert_allclose(curve["precision"], [1.0, 2 / 3, 0.5])
    np.testing.assert_allclose(curve["recall"], [0.5, 1.0, 1.0])


def test_nan_scores_and_no_targets_are_errors():
    picks = coords([("A", 10, 10), ("A", 50, 50)])  # no scores
    with pytest.raises(TopazPuError, match="no score"):
        evaluate(picks, coords(HAND_TARGETS), 4.0)
    with pytest.raises(TopazPuError, match="no targets"):
        evaluate(coords(HAND_PICKS), coords(HAND_TARGETS), 4.0, images=["C"])
    with pytest.raises(TopazPuError):
        evaluate(coords(HAND_PICKS), coords(HAND_TARGETS), 4.0, images="everything")


def test_no_picks_gives_zero():
    result = evaluate(Coordinates.empty(), coords(HAND_TARGETS), 4.0)
    assert result["ap"] == 0.0 and result["best_f1"] == 0.0
    assert result["threshold_at_best_f1"] is None and result["n_picks"] == 0


def test_matching_is_fast_on_a_crowded_micrograph():
    rng = np.random.default_rng(0)
    targets = rng.uniform(0, 1200, (700, 2))
    picks = np.concatenate([targets[rng.integers(0, 700, 1400)] + rng.normal(0, 6, (1400, 2)),
                            rng.uniform(0, 1200, (600, 2))])
    scores = rng.normal(size=len(picks))
    start = time.perf_counter()
    tp = match_picks(picks, targets, 16.0, scores=scores)
    tp0 = match_picks(picks, targets, 16.0)
    elapsed = time.perf_counter() - start
    assert tp.sum() == tp0.sum() == max_matching(picks, targets, 16.0)
    assert elapsed < 2.0


def synthetic_picks(seed=0, n_micrographs=10, per_micrograph=150, fp_per_micrograph=150):
    """Particles on a grid (spacing 40 px) and scored picks: one near each particle found (score
    ~ N(1, 1)), false picks between the grid points (score ~ N(-1, 1)) -> (picks, particles)."""
    rng = np.random.default_rng(seed)
    picks, particles = [], []
    for m in range(n_micrographs):
        cells = rng.permutation(400)[:per_micrograph + fp_per_micrograph]
        gx, gy = (cells % 20) * 40.0 + 20, (cells // 20) * 40.0 + 20
        name = "mic%02d" % m
        for i, (x, y) in enumerate(zip(gx, gy)):
            if i < per_micrograph:
                particles.append((name, x, y))
                if rng.random() < 0.9:  # 10% of the particles are never picked
                    picks.append((name, x + rng.normal(0, 2), y + rng.normal(0, 2), rng.normal(1, 1)))
            else:
                picks.append((name, x, y, rng.normal(-1, 1)))
    return coords(picks), coords(particles)


def test_sparse_labels_estimate_the_dense_precision_recall_curve():
    picks, particles = synthetic_picks()
    truth = evaluate(picks, particles, 8.0)
    n_true = len(particles)
    for seed, fraction in ((1, 0.1), (2, 0.2), (3, 0.5)):
        rng = np.random.default_rng(seed)
        labels = particles.subset(np.sort(rng.permutation(n_true)[:int(fraction * n_true)]))
        naive = evaluate(picks, labels, 8.0)
        est = evaluate(picks, labels, 8.0, images=particles.image_names(), n_positives=n_true)
        # the plain AP against sparse labels is about fraction x the truth; the estimate is the truth
        assert naive["ap"] < fraction * truth["ap"] + 0.1
        assert est["ap"] == pytest.approx(truth["ap"], abs=0.03), (fraction, est["ap"], truth["ap"])
        assert est["best_f1"] == pytest.approx(truth["best_f1"], abs=0.04)
        # the estimated best-F1 threshold is nearly as good on the true curve
        at = truth["curve"]["threshold"] >= est["threshold_at_best_f1"]
        f1_there = truth["curve"]["f1"][np.flatnonzero(at)[-1]]
        assert f1_there >= truth["best_f1"] - 0.02
        # and precision at a few thresholds
        for t in (2.0, 1.0, 0.0):
            i_true = np.flatnonzero(truth["curve"]["threshold"] >= t)[-1]
            i_est = np.flatnonzero(est["curve"]["threshold"] >= t)[-1]
            assert est["curve"]["precision"][i_est] == pytest.approx(truth["curve"]["precision"][i_true], abs=0.06)


def test_estimate_with_every_label_is_exact_and_needs_enough_positives():
    picks, particles = synthetic_picks(n_micrographs=2)
    exact = evaluate(picks, particles, 8.0)
    same = evaluate(picks, particles, 8.0, n_positives=len(particles))
    assert same["ap"] == exact["ap"] and same["best_f1"] == exact["best_f1"]
    with pytest.raises(TopazPuError, match="at least as many particles"):
        evaluate(picks, particles, 8.0, n_positives=len(particles) - 1)


def test_best_f1_index_and_count_threshold():
    from topazpu_core.metrics import best_f1_index, threshold_for_count

    # equal F1 at thresholds 1 and 3: the highest threshold wins, whatever the order of the arrays
    assert best_f1_index([1.0, 3.0, 2.0], [0.5, 0.5, 0.2], [0.5, 0.5, 0.2]) == 1
    assert best_f1_index([], [], []) is None
    s = [0.5, 3.0, -1.0, 2.0]
    assert threshold_for_count(s, 2) == 2.0 and threshold_for_count(s, 10) == -1.0
    assert threshold_for_count(s, 0) == 3.0 and threshold_for_count([], 3) is None
