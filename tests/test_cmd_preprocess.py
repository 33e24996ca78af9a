"""`topazpu preprocess` run in-process on the bundled micrographs."""
import argparse
import csv
import json
import os
import shutil

import mrcfile
import numpy as np
import pytest

import topazpu_core
from topazpu_core.cli import main
from topazpu_core.commands import preprocess as cmd
from topazpu_core.datasets import bundled_micrographs
from topazpu_core.images import image_name, read_image


def run(argv):
    main(["preprocess"] + [str(a) for a in argv])


def run_failing(argv, capsys):
    with pytest.raises(SystemExit) as e:
        run(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_preprocess_bundled_scale_2(tmp_path):
    out = tmp_path / "out"
    mics = bundled_micrographs()
    run(["-s", 2, "-o", out] + mics)
    meta = json.loads((out / "preprocess.json").read_text())
    assert meta["scale"] == 2 and meta["method"] == "gmm" and meta["seed"] == 0
    assert meta["version"] == topazpu_core.__version__
    assert sorted(meta["images"]) == sorted(image_name(p) for p in mics)
    for p in mics:
        name = image_name(p)
        with mrcfile.open(out / (name + ".mrc")) as m:
            assert m.data.shape == (300, 310) and m.data.dtype == np.float32
            assert float(m.voxel_size.x) == pytest.approx(4.0)  # 2 A/px x 2
            data = m.data.copy()
        entry = meta["images"][name]
        assert entry["source"] == os.path.abspath(p)
        assert entry["shape"] == [300, 310] and entry["pixel_size"] == pytest.approx(4.0)
        for key in ("alpha", "mu", "sigma", "weights", "x_center", "x_scale"):
            assert key in entry
        assert abs(float(np.median(data))) < 0.05 and abs(float(data.std()) - 1) < 0.05
    with open(out / "preprocess.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["image_name"] for r in rows] == [image_name(p) for p in mics]
    assert float(rows[0]["alpha"]) == pytest.approx(meta["images"][rows[0]["image_name"]]
                                                    ["alpha"])
    assert (out / "run.log").exists()
    leftovers = [n for n in os.listdir(out) if n.startswith(".")]
    assert not leftovers


def test_affine_fractional_scale_directory_input(tmp_path):
    out = tmp_path / "aff"
    run(["-s", 1.5, "--affine", "-o", out, os.path.dirname(bundled_micrographs()[0])])
    meta = json.loads((out / "preprocess.json").read_text())
    assert meta["method"] == "affine" and len(meta["images"]) == 4
    name = image_name(bundled_micrographs()[1])
    a = read_image(str(out / (name + ".mrc")))
    assert a.shape == (400, 413)
    assert abs(a.mean()) < 1e-4 and abs(a.std() - 1) < 1e-3
    assert meta["images"][name]["pixel_size"] == pytest.approx(3.0)


def test_per_image_method_list_file_and_seed(tmp_path):
    listing = tmp_path / "mics.txt"
    listing.write_text("\n".join(os.path.relpath(p, tmp_path)
                                 for p in bundled_micrographs()[:2]) + "\n")
    out = tmp_path / "per"
    run(["-s", 3, "--method", "gmm-per-image", "--seed", 5, "--sample", 20000, "-o", out,
         listing])
    meta = json.loads((out / "preprocess.json").read_text())
    assert meta["method"] == "gmm-per-image" and meta["seed"] == 5 and meta["sample"] == 20000
    assert len(meta["images"]) == 2
    for entry in meta["images"].values():
        assert entry["shape"] == [200, 206] and entry["alpha"] == 1.0


def test_missing_micrograph_is_a_clean_error(tmp_path, capsys):
    err = run_failing(["-s", 2, "-o", tmp_path / "o", tmp_path / "absent.mrc"], capsys)
    assert "absent.mrc" in err and "Traceback" not in err


def test_unreadable_micrographs_skipped_named_counted_and_logged(tmp_path, capsys):
    """The rule of pick and extract: the good micrographs are written, exactly as without the bad
    ones; each bad one is named on a `skipped:` line and in run.log; exit status 3."""
    folder = tmp_path / "in"
    folder.mkdir()
    for p in bundled_micrographs()[:2]:
        shutil.copy(p, folder)
    raw = open(bundled_micrographs()[2], "rb").read()
    (folder / "mm_truncated.mrc").write_bytes(raw[: len(raw) // 2])
    (folder / "zz_broken.mrc").write_bytes(b"garbage" * 300)
    out, good = tmp_path / "o", tmp_path / "good"
    for method in ("gmm", "affine"):
        with pytest.raises(SystemExit) as e:
            run(["-s", 2, "--method", method, "-o", out / method, folder])
        assert e.value.code == 3
        stdout = capsys.readouterr().out
        skipped = [line for line in stdout.splitlines() if line.startswith("skipped: ")]
        assert len(skipped) == 2, stdout
        assert skipped[0].startswith("skipped: %s: " % (folder / "mm_truncated.mrc")) and "truncated" in skipped[0]
        assert skipped[1].startswith("skipped: %s: " % (folder / "zz_broken.mrc")), skipped
        assert "2 of 4 micrographs unreadable, skipped" in stdout
        log = (out / method / "run.log").read_text()
        assert "mm_truncated.mrc" in log and "zz_broken.mrc" in log and "WARNING" in log
        run(["-s", 2, "--method", method, "-o", good / method, *bundled_micrographs()[:2]])
        meta = json.loads((out / method / "preprocess.json").read_text())
        assert sorted(meta["images"]) == sorted(image_name(p) for p in bundled_micrographs()[:2])
        for p in bundled_micrographs()[:2]:  # the same output as a run on the good ones alone
            name = image_name(p) + ".mrc"
            np.testing.assert_array_equal(read_image(str(out / method / name)), read_image(str(good / method / name)))


def test_no_readable_micrograph_is_an_error_in_run_log(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "zz_broken.mrc").write_bytes(b"garbage" * 300)
    out = tmp_path / "o"
    err = run_failing(["-s", 2, "-o", out, folder], capsys)
    assert "no readable micrograph" in err and "zz_broken.mrc" in err
    assert not (out / "preprocess.json").exists()
    assert os.listdir(out) == ["run.log"]
    log = (out / "run.log").read_text()
    assert "ERROR error: no readable micrograph" in log and "zz_broken.mrc" in log


def test_bad_scale_and_sample(tmp_path, capsys):
    err = run_failing(["-s", 0.5, "-o", tmp_path / "o", bundled_micrographs()[0]], capsys)
    assert "scale" in err
    err = run_failing(["--sample", 10, "-o", tmp_path / "o", bundled_micrographs()[0]], capsys)
    assert "--sample" in err and "1/N" in err


def test_duplicate_image_names(tmp_path, capsys):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(bundled_micrographs()[0], tmp_path / sub)
    err = run_failing(["-o", tmp_path / "o", tmp_path / "a", tmp_path / "b"], capsys)
    assert "image name" in err


def test_refuses_to_overwrite_inputs(tmp_path, capsys):
    shutil.copy(bundled_micrographs()[0], tmp_path)
    err = run_failing(["-o", tmp_path, tmp_path], capsys)
    assert "overwrite" in err


def test_every_option_help_has_a_default():
    parser = argparse.ArgumentParser()
    cmd.add_args(parser)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in (action.help or ""), action.option_strings
        if not action.option_strings:
            assert "default" in action.help


def test_reference_run_normalises_later_micrographs_with_the_first_fit(tmp_path, capsys):
    """`--reference` (streaming): a second batch is normalised with the first batch's data-set
    mixture, recorded in its preprocess.json; a bad reference is a clear error naming the file."""
    mics = bundled_micrographs()
    run(["-s", 2, "-o", tmp_path / "b0"] + mics[:2])
    run(["-s", 2, "-o", tmp_path / "b1", "--reference", tmp_path / "b0" / "preprocess.json"] + mics[2:])
    first = json.loads((tmp_path / "b0" / "preprocess.json").read_text())
    later = json.loads((tmp_path / "b1" / "preprocess.json").read_text())
    assert later["reference"] == str(tmp_path / "b0" / "preprocess.json")
    ref = next(iter(first["images"].values()))
    for entry in later["images"].values():
        assert entry["mu"] == ref["mu"] and entry["sigma"] == ref["sigma"] and entry["weights"] == ref["weights"]
    data = read_image(str(tmp_path / "b1" / (image_name(mics[2]) + ".mrc")))
    assert abs(float(np.median(data))) < 0.05 and abs(float(data.std()) - 1) < 0.05
    (tmp_path / "bad.json").write_text("{not json")
    assert "bad.json" in run_failing(["-s", 2, "-o", tmp_path / "b2", "--reference", tmp_path / "bad.json", mics[3]], capsys)
    err = run_failing(["-s", 2, "--affine", "-o", tmp_path / "b3", "--reference", tmp_path / "b0" / "preprocess.json",
                       mics[3]], capsys)
    assert "gmm" in err
