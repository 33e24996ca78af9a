"""PickJournal: per-micrograph parts of an unfinished pick run, keyed by the run that wrote them."""
import numpy as np

from topazpu_core.pick_journal import PickJournal

KEY = {"command": "pick", "model_sha256": "ab" * 32, "options": {"radius": 8.0, "threshold": -np.inf},
       "micrographs": ["/data/a.mrc", "/data/b.mrc"]}


def test_parts_round_trip_and_survive_a_new_journal_of_the_same_run(tmp_path):
    out = tmp_path / "picks.star"
    j = PickJournal(out, KEY)
    j.save("/data/a.mrc", "a", [1.5, 2.0], [3.0, 4.25], [0.5, -1.0], (600, 620))
    j.save("/data/b.mrc", "b", [], [], [], (600, 620))  # a micrograph with no picks is recorded too
    again = PickJournal(out, dict(KEY))
    name, coords, shape = again.load("/data/a.mrc")
    assert name == "a" and shape == (600, 620)
    np.testing.assert_array_equal(coords.x, [1.5, 2.0])
    np.testing.assert_array_equal(coords.y, [3.0, 4.25])
    np.testing.assert_array_equal(coords.score, [0.5, -1.0])
    assert list(coords.image_name) == ["a", "a"]
    name, coords, _ = again.load("/data/b.mrc")
    assert name == "b" and len(coords) == 0
    assert again.n_resumed == 2
    again.finish()
    assert not (tmp_path / "picks.star.parts").exists()


def test_other_run_or_damaged_part_is_not_reused(tmp_path):
    out = tmp_path / "picks.star"
    j = PickJournal(out, KEY)
    j.save("/data/a.mrc", "a", [1.0], [2.0], [0.0], (10, 10))
    other = dict(KEY, options={"radius": 9.0, "threshold": -np.inf})
    assert PickJournal(out, other).load("/data/a.mrc") is None  # options changed: started afresh
    j = PickJournal(out, KEY)
    j.save("/data/a.mrc", "a", [1.0], [2.0], [0.0], (10, 10))
    part = next((tmp_path / "picks.star.parts").glob("mic-*.npz"))
    part.write_bytes(part.read_bytes()[:40])  # truncated: that micrograph is picked again
    assert PickJournal(out, KEY).load("/data/a.mrc") is None
