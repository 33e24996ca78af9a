"""`topazpu convert` run in-process through the command line."""
import argparse
import os

import numpy as np
import pytest

from topazpu_core.coordinates import read_coordinates, write_coordinates, Coordinates
from topazpu_core.datasets import BUNDLED_DIR, bundled_particles


def run(argv):
    """Run `topazpu convert ...` in-process; return the exit code."""
    try:
        from topazpu_core import cli
        parser_ok = True
        cli.build_parser()
    except ModuleNotFoundError as e:  # another engineer's command module not there yet
        if "topazpu_core.commands.convert" in str(e):
            raise
        parser_ok = False
    if parser_ok:
        try:
            result = cli.main(["convert"] + argv)
        except SystemExit as e:
            return e.code or 0
        return result or 0
    from topazpu_core.commands import convert
    parser = argparse.ArgumentParser()
    convert.add_args(parser)
    try:
        return convert.main(parser.parse_args(argv)) or 0
    except Exception as e:  # mirror the CLI's error handling
        from topazpu_core.errors import TopazPuError
        if isinstance(e, TopazPuError):
            print("topazpu convert: error: %s" % e)
            return 2
        raise


def test_coord_star_box_coord_chain(tmp_path, capsys):
    src = bundled_particles()
    orig = read_coordinates(src)
    star = str(tmp_path / "out" / "picks.star")
    assert run([src, "-o", star, "-x", "2", "-s", "1"]) == 0
    out = capsys.readouterr().out
    assert "wrote 632 coordinates on 4 micrographs to %s" % star in out
    c = read_coordinates(star)
    np.testing.assert_allclose(np.sort(c.x), np.sort(orig.x * 2))
    boxes = str(tmp_path / "boxes")
    assert run([star, "-o", boxes, "--to", "box", "--boxsize", "66"]) == 0
    assert len(os.listdir(boxes)) == 4
    back = str(tmp_path / "back.txt")
    assert run([boxes, "-o", back, "-s", "2"]) == 0
    c = read_coordinates(back)
    assert c.image_names() == orig.image_names() and len(c) == 632
    key = lambda t: np.lexsort((t.y, t.x, t.image_name.astype(str)))
    np.testing.assert_allclose(c.xy[key(c)], orig.xy[key(orig)], atol=1e-6)


def test_threshold_and_scaling(tmp_path, capsys):
    src = tmp_path / "scored.txt"
    write_coordinates(Coordinates.from_arrays(["m"] * 4, [10, 20, 30, 40], [1, 2, 3, 4], [-5, -1, 0, 3]), src)
    out = tmp_path / "sel.csv"
    assert run([str(src), "-o", str(out), "-t", "-1", "-s", "4", "-x", "2"]) == 0
    c = read_coordinates(out)
    assert c.x.tolist() == [10.0, 15.0, 20.0] and c.score.tolist() == [-1.0, 0.0, 3.0]
    assert "wrote 3 coordinates on 1 micrographs" in capsys.readouterr().out


def test_multiple_inputs_concatenate(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.star"
    write_coordinates(Coordinates.from_arrays(["m1"], [1], [2]), a)
    write_coordinates(Coordinates.from_arrays(["m2"], [3], [4]), b)
    assert run([str(a), str(b), "-o", str(tmp_path / "j"), "--to", "json"]) == 0
    assert sorted(os.listdir(tmp_path / "j")) == ["m1_info.json", "m2_info.json"]


def test_cs_with_image_dir(tmp_path):
    pytest.importorskip("topazpu_core.images")
    out = tmp_path / "picks.cs"
    assert run([bundled_particles(), "-o", str(out), "--image-dir", BUNDLED_DIR]) == 0
    data = np.load(out, allow_pickle=False)
    assert len(data) == 632
    assert data["location/micrograph_shape"][0].tolist() == [600, 620]   # (height, width)
    c = read_coordinates(out)
    orig = read_coordinates(bundled_particles())
    np.testing.assert_allclose(c.x, orig.x, atol=1e-3)
    np.testing.assert_allclose(c.y, orig.y, atol=1e-3)


def test_errors_exit_2_with_one_line(tmp_path, capsys):
    assert run([str(tmp_path / "nothere.txt"), "-o", str(tmp_path / "o.star")]) == 2
    err = capsys.readouterr()
    text = err.err + err.out
    assert "nothere.txt: no such file" in text and "Traceback" not in text
    assert run([bundled_particles(), "-o", str(tmp_path / "o.xyz")]) == 2
    assert "unknown coordinate format" in "".join(capsys.readouterr())
    assert run([bundled_particles(), "-o", str(tmp_path / "b"), "--to", "box"]) == 2
    assert "--boxsize" in "".join(capsys.readouterr())
    assert run([bundled_particles(), "-o", str(tmp_path / "p.cs")]) == 2
    assert "--image-dir" in "".join(capsys.readouterr())
    assert not os.path.exists(tmp_path / "p.cs")
