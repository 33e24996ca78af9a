"""Validation on held-out labels: the split of the labels (training.label_holdout)."""
import numpy as np
import pytest

from topazpu_core.errors import TopazPuError
from topazpu_core.training import Micrograph, keeps_epoch, label_holdout


def micrographs():
    rng = np.random.default_rng(0)
    image = np.zeros((50, 50), np.float32)
    return [Micrograph("a", image, rng.uniform(0, 50, 30), rng.uniform(0, 50, 30)),
            Micrograph("b", image, np.zeros(0), np.zeros(0)),  # unlabelled: trains, never validates
            Micrograph("c", image, rng.uniform(0, 50, 70), rng.uniform(0, 50, 70))]


def test_label_holdout_splits_labels_not_micrographs():
    mics = micrographs()
    train, val = label_holdout(mics, 0.2, seed=4)
    assert [m.name for m in train] == ["a", "b", "c"] and [m.name for m in val] == ["a", "c"]
    assert sum(len(m.x) for m in val) == 20 and sum(len(m.x) for m in train) == 80
    for m in mics:
        if not len(m.x):
            continue
        t = next(x for x in train if x.name == m.name)
        v = next(x for x in val if x.name == m.name)
        # held-out and trained labels partition the micrograph's labels; `known` are the trained ones
        together = sorted(zip(np.r_[t.x, v.x], np.r_[t.y, v.y]))
        assert together == sorted(zip(m.x, m.y))
        assert np.array_equal(v.known, np.stack([t.x, t.y], axis=1))
    # seeded: the same split again, another with another seed
    again, _ = label_holdout(mics, 0.2, seed=4)
    other, _ = label_holdout(mics, 0.2, seed=5)
    assert np.array_equal(again[0].x, train[0].x) and not np.array_equal(other[2].x, train[2].x)


def test_label_holdout_keeps_one_label_each_side():
    mics = micrographs()
    train, val = label_holdout(mics, 0.999, seed=0)
    assert sum(len(m.x) for m in train) == 1
    with pytest.raises(TopazPuError, match="at least 2 labels"):
        label_holdout([Micrograph("a", np.zeros((5, 5)), np.ones(1), np.ones(1))], 0.5)


def test_epoch_choice_allows_for_the_noise_of_few_validation_labels():
    # 40 sparse labels: AP 0.65 has a sampling noise of sqrt(0.65 * 0.35 / 40) = 0.075
    assert keeps_epoch(0.60, 40, 0.66)  # 0.06 below the best: indistinguishable, the later epoch is kept
    assert not keeps_epoch(0.55, 40, 0.66)  # 0.11 below: a real drop
    # 661 dense targets: noise 0.019
    assert keeps_epoch(0.66, 661, 0.67) and not keeps_epoch(0.64, 661, 0.67)
    assert keeps_epoch(0.3, 10, -1.0) and not keeps_epoch(float("nan"), 10, -1.0) and not keeps_epoch(0.5, 0, 0.4)


def test_count_threshold_counts_every_pick(monkeypatch):
    """The default threshold picks AUTO_PICKS_PER_PARTICLE x the expected particles, the picks at
    labels trained on counted like the others (leaving them out left nothing to count when every
    particle is labelled); they stay out of the AP."""
    from topazpu_core import training
    from topazpu_core.coordinates import Coordinates

    # micrograph "a": picks at the 4 trained-on labels scored 9, 9, 2.5, 1.5; elsewhere 5, 4, 3, 2, 1
    known = np.array([[10.0, 10.0], [30.0, 10.0], [10.0, 30.0], [30.0, 30.0]])
    others = np.array([[50.0, 50.0], [70.0, 50.0], [50.0, 70.0], [70.0, 70.0], [90.0, 90.0]])
    xy = np.r_[known, others]
    picks = Coordinates.from_arrays(np.full(len(xy), "a", dtype=object), xy[:, 0], xy[:, 1],
                                    score=np.r_[[9.0, 9.0, 2.5, 1.5], [5.0, 4.0, 3.0, 2.0, 1.0]])
    monkeypatch.setattr(training, "validation_picks", lambda *a, **k: (picks, 4))
    seen = Micrograph("a", np.zeros((100, 100), np.float32), np.zeros(0), np.zeros(0), known=known)
    assert training.AUTO_PICKS_PER_PARTICLE == 1.1
    # 7.45 particles expected: the threshold keeps the 1.1 x 7.45 = 8.2 ~ 8 best of all 9 picks
    # (at 1.0 x: 7, threshold 2.0), with or without the labels trained on
    result = training.validate(None, [seen], 3.0, expected=[7.45])
    assert result["threshold_count"] == 1.5 and "ap" not in result  # no targets: only the threshold
    unseen = Micrograph("a", seen.image, np.zeros(0), np.zeros(0))
    assert training.validate(None, [unseen], 3.0, expected=[7.45])["threshold_count"] == 1.5
    # with targets, the picks at the trained-on labels stay out of the AP: the 5 others, 2 on a target
    targets = Micrograph("a", seen.image, np.array([50.0, 90.0]), np.array([50.0, 90.0]), known=known)
    scored = training.validate(None, [targets], 3.0, expected=[7.45])
    assert scored["threshold_count"] == 1.5 and scored["n_targets"] == 2
