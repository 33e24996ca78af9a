"""`topazpu evaluate` in-process on the bundled particles: JSON output, table, plot, errors."""
import json
import os

import numpy as np
import pytest

from topazpu_core import cli
from topazpu_core.coordinates import Coordinates, read_coordinates, write_coordinates
from topazpu_core.datasets import BUNDLED_PARTICLE_DIAMETER, bundled_particles

RADIUS = str(BUNDLED_PARTICLE_DIAMETER // 2)  # 16 px, the particle radius
REQUIRED = {"ap", "best_f1", "threshold_at_best_f1", "precision_at_best_f1", "recall_at_best_f1",
            "n_picks", "n_targets", "n_images"}


@pytest.fixture(scope="module")
def targets():
    return read_coordinates(bundled_particles())


def perturbed_picks(targets, seed=0, keep=1.0, n_false=0):
    """Targets moved by ~2 px with decreasing scores, a fraction kept, plus low-scoring false picks."""
    rng = np.random.default_rng(seed)
    n = len(targets)
    idx = np.sort(rng.choice(n, int(round(keep * n)), replace=False))
    t = targets.subset(idx)
    picks = Coordinates.from_arrays(t.image_name, t.x + rng.normal(0, 2, len(t)), t.y + rng.normal(0, 2, len(t)),
                                    rng.uniform(0, 10, len(t)))
    if n_false:
        names = rng.choice(np.array(targets.image_names(), dtype=object), n_false)
        # far from every particle: put them outside the micrographs' particle field
        false = Coordinates.from_arrays(names, rng.uniform(-400, -300, n_false), rng.uniform(0, 600, n_false),
                                        rng.uniform(-5, 1, n_false))
        picks = Coordinates.concat([picks, false])
    return picks


def run(capsys, *argv):
    cli.main(["evaluate", *map(str, argv)])
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1  # one JSON object, nothing else on stdout
    return json.loads(out)


def test_perturbed_copy_scores_near_one(tmp_path, capsys, targets):
    picks_path = tmp_path / "picks.txt"
    write_coordinates(perturbed_picks(targets, n_false=60), picks_path)
    table = tmp_path / "out" / "pr.tsv"
    plot = tmp_path / "out" / "pr.png"
    result = run(capsys, picks_path, bundled_particles(), "--match-radius", RADIUS, "--table", table, "--plot", plot)
    assert REQUIRED <= set(result)
    assert "curve" not in result
    assert result["n_targets"] == len(targets) == 632
    assert result["n_picks"] == 632 + 60
    assert result["n_images"] == 4
    assert result["n_true_positives"] == 632
    # every real pick outranks the false ones except those in the overlap of score ranges
    assert 0.97 <= result["ap"] <= 1.0
    assert result["best_f1"] > 0.95
    assert os.path.getsize(plot) > 2000
    lines = table.read_text().splitlines()
    assert lines[0] == "threshold\tprecision\trecall\tf1"
    assert len(lines) == 1 + 692
    last = lines[-1].split("\t")
    assert float(last[2]) == pytest.approx(1.0)


def test_half_the_picks_give_half_the_ap(tmp_path, capsys, targets):
    picks_path = tmp_path / "half.txt"
    write_coordinates(perturbed_picks(targets, keep=0.5), picks_path)
    result = run(capsys, picks_path, bundled_particles(), "--match-radius", RADIUS)
    assert result["n_picks"] == 316
    assert result["ap"] == pytest.approx(0.5, abs=0.005)
    assert result["recall_at_best_f1"] == pytest.approx(0.5, abs=0.005)


def test_image_modes_and_other_names(tmp_path, capsys, targets):
    picks = perturbed_picks(targets, seed=1)
    # picks named by micrograph file name and an extra micrograph with no targets
    extra = Coordinates.from_arrays("other_mic", [10.0, 20.0], [10.0, 20.0], [100.0, 100.0])
    picks = Coordinates.concat([picks, extra])
    picks.image_name = np.array([n + ".mrc" for n in picks.image_name], dtype=object)
    picks_path = tmp_path / "picks.txt"
    write_coordinates(picks, picks_path)
    target_mode = run(capsys, picks_path, bundled_particles(), "--match-radius", RADIUS)
    assert target_mode["n_images"] == 4 and target_mode["n_picks"] == 632
    assert target_mode["ap"] > 0.99
    union = run(capsys, picks_path, bundled_particles(), "--match-radius", RADIUS, "--images", "union")
    assert union["n_images"] == 5 and union["n_picks"] == 634
    assert union["ap"] < target_mode["ap"]  # two top-scoring false picks


def test_errors_exit_2_with_one_line(tmp_path, capsys, targets):
    unscored = tmp_path / "unscored.txt"
    write_coordinates(targets, unscored)
    with pytest.raises(SystemExit) as e:
        cli.main(["evaluate", str(unscored), bundled_particles(), "--match-radius", RADIUS])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "no score" in err and "unscored.txt" in err
    wrong = tmp_path / "wrong.txt"
    write_coordinates(Coordinates.from_arrays("nothing_like_it", [1.0], [2.0], [0.5]), wrong)
    with pytest.raises(SystemExit) as e:
        cli.main(["evaluate", str(wrong), bundled_particles(), "--match-radius", RADIUS])
    assert e.value.code == 2
    assert "wrong.txt" in capsys.readouterr().err
