"""Coordinate formats: round trips, RELION STAR 3.0/3.1, conventions, real files, bad input."""
import glob
import json
import logging
import os

import numpy as np
import pytest

from topazpu_core.coordinates import (
    FORMATS, Coordinates, detect_format, drop_outside, match_image_names, read_coordinates,
    write_coordinates)
from topazpu_core.datasets import bundled_particles
from topazpu_core.errors import TopazPuError

from shared_fixtures import SHARED_DATA

CRYOPPP_CSV = os.path.join(SHARED_DATA, "empiar10017-bgal/cryoppp_explicit_gt/Falcon_2012_06_12-14_33_35_0.csv")
UCSF_STARS = sorted(glob.glob(os.path.join(SHARED_DATA, "ucsf1142-single/*.star")))

OUTPUT_PATHS = {"coord": "out.txt", "star": "out.star", "box": "boxes", "json": "info",
                "csv": "out.csv", "cs": "out.cs"}
CARRIES_SCORES = {"coord", "star", "json", "csv", "cs"}


def sample(scores=True):
    names = ["mic_a", "mic_a", "May08_03.05.02.bin2", "mic_b", "mic_b", "mic_b"]
    x = [10.25, 300.0, 47.5, 0.0, 599.875, 123.456]
    y = [20.5, 15.0, 33.3, 619.0, 0.125, 77.0]
    s = [-1.5, 2.25, 0.0, 7.0, -6.125, 3.5] if scores else None
    return Coordinates.from_arrays(names, x, y, s)


SHAPES = {"mic_a": (620, 600), "mic_b": (620, 600), "May08_03.05.02.bin2": (620, 600)}


def sort_rows(c):
    order = np.lexsort((c.y, c.x, c.image_name.astype(str)))
    return c.subset(order)


def assert_same(a, b, atol=1e-6, scores=True):
    a, b = sort_rows(a), sort_rows(b)
    assert a.image_name.tolist() == b.image_name.tolist()
    np.testing.assert_allclose(a.x, b.x, atol=atol)
    np.testing.assert_allclose(a.y, b.y, atol=atol)
    if scores:
        np.testing.assert_allclose(a.score, b.score, atol=1e-5)


# ----- the table -----------------------------------------------------------------------------

def test_table_basics():
    c = sample()
    assert len(c) == 6 and c.has_scores
    assert c.image_names() == ["May08_03.05.02.bin2", "mic_a", "mic_b"]
    parts = c.by_image()
    assert list(parts) == ["May08_03.05.02.bin2", "mic_a", "mic_b"]
    assert parts["mic_b"].x.tolist() == [0.0, 599.875, 123.456]
    assert c.xy.shape == (6, 2)
    np.testing.assert_allclose(c.scaled(0.5).x, c.x * 0.5)
    assert len(c.subset(c.score > 0)) == 3
    assert len(c.subset([0, 2])) == 2
    assert len(Coordinates.concat([c, c])) == 12
    assert len(Coordinates.concat([])) == 0 and len(Coordinates.empty()) == 0
    assert not sample(scores=False).has_scores
    assert Coordinates.from_arrays("one", [1, 2], [3, 4]).image_name.tolist() == ["one", "one"]


# ----- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path, fmt):
    c = sample()
    out = str(tmp_path / "nested" / OUTPUT_PATHS[fmt])
    write_coordinates(c, out, fmt, box_size=40, image_shapes=SHAPES)
    back = read_coordinates(out, fmt)
    atol = 1e-3 if fmt == "cs" else 1e-6  # cryoSPARC stores float32 fractions
    assert_same(c, back, atol=atol, scores=fmt in CARRIES_SCORES)
    if fmt not in CARRIES_SCORES:
        assert not back.has_scores
    assert read_coordinates(out).image_names() == c.image_names()  # auto-detected


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_without_scores(tmp_path, fmt):
    c = sample(scores=False)
    out = str(tmp_path / OUTPUT_PATHS[fmt])
    write_coordinates(c, out, fmt, box_size=33, image_shapes=SHAPES)
    back = read_coordinates(out, fmt)
    assert_same(c, back, atol=1e-3 if fmt == "cs" else 1e-6, scores=False)
    assert not back.has_scores


def test_bundled_particles_round_trip_all_formats(tmp_path):
    c = read_coordinates(bundled_particles())
    assert len(c) == 632 and len(c.image_names()) == 4
    shapes = {n: (620, 600) for n in c.image_names()}
    for fmt in FORMATS:
        out = str(tmp_path / OUTPUT_PATHS[fmt])
        write_coordinates(c, out, fmt, box_size=33, image_shapes=shapes)
        assert_same(c, read_coordinates(out, fmt), atol=1e-3, scores=False)


def test_bundled_particles():
    c = read_coordinates(bundled_particles())
    assert len(c) == 632
    counts = {k: len(v) for k, v in c.by_image().items()}
    assert counts == {"May08_03.05.02.bin2": 149, "May08_04.36.57.bin2": 155,
                      "May08_05.24.39.bin2": 170, "May08_07.13.35.bin2": 158}
    assert (c.x[0], c.y[0]) == (203.0, 16.1)
    assert not c.has_scores


def test_coord_writes_score_only_when_finite(tmp_path):
    write_coordinates(sample(scores=False), tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_text().splitlines()[0] == "image_name\tx_coord\ty_coord"
    write_coordinates(sample(), tmp_path / "b.txt")
    lines = (tmp_path / "b.txt").read_text().splitlines()
    assert lines[0] == "image_name\tx_coord\ty_coord\tscore"
    assert lines[1] == "mic_a\t10.25\t20.5\t-1.5"


def test_coord_extra_columns_ignored(tmp_path):
    p = tmp_path / "t.tab"
    p.write_text("image_name\tx_coord\ty_coord\tscore\tsource\nm1\t1.5\t2\t0.3\tgt\nm1\t4\t5\t\tgt\n")
    c = read_coordinates(p)
    assert c.x.tolist() == [1.5, 4.0] and c.score[0] == 0.3 and np.isnan(c.score[1])


# ----- STAR ----------------------------------------------------------------------------------

STAR_30 = """
# RELION; version 3.0

data_

loop_
_rlnMicrographName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnAutopickFigureOfMerit #4
_rlnClassNumber #5
MotionCorr/job002/Movies/May08_03.05.02.bin2.mrc   203.25    16.125   0.75  1
MotionCorr/job002/Movies/May08_03.05.02.bin2.mrc    66.7     18.4    -1.5   1
"Micrographs/mic 2.mrc"  10 20 3 2   # a comment
"""

STAR_31 = """
# version 30001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMicrographPixelSize #3
opticsGroup1 1 1.06

# version 30001

data_particles

loop_
_rlnCoordinateX #1
_rlnCoordinateY #2
_rlnMicrographName #3
_rlnOpticsGroup #4
_rlnParticleScore #5
1000.5 2000.25 job005/Micrographs/FoilHole_1_Data_2.mrc 1 0.5
17 18 job005/Micrographs/FoilHole_3_Data_4.tiff 1 0.25
"""


def test_star_30_literal(tmp_path):
    p = tmp_path / "picks.star"
    p.write_text(STAR_30)
    c = read_coordinates(p)
    assert c.image_name.tolist() == ["May08_03.05.02.bin2", "May08_03.05.02.bin2", "mic 2"]
    assert c.x.tolist() == [203.25, 66.7, 10.0]   # floats kept, not truncated
    assert c.y.tolist() == [16.125, 18.4, 20.0]
    assert c.score.tolist() == [0.75, -1.5, 3.0]


def test_star_31_with_optics_block(tmp_path):
    p = tmp_path / "particles.star"
    p.write_text(STAR_31)
    c = read_coordinates(p, "star")
    assert c.image_name.tolist() == ["FoilHole_1_Data_2", "FoilHole_3_Data_4"]
    assert c.x.tolist() == [1000.5, 17.0] and c.y.tolist() == [2000.25, 18.0]
    assert c.score.tolist() == [0.5, 0.25]


def test_star_31_simple_pairs_and_no_comment_numbers(tmp_path):
    text = ("data_optics\n_rlnOpticsGroup 1\n_rlnImagePixelSize 2.0\n\n"
            "data_particles\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnMicrographName\n"
            "5 6 'a/b/c.d.mrc'\n")
    p = tmp_path / "x.star"
    p.write_text(text)
    c = read_coordinates(p)
    assert c.image_name.tolist() == ["c.d"] and c.x.tolist() == [5.0]


def test_star_without_micrograph_name_uses_file_name(tmp_path):
    p = tmp_path / "May08_03.05.02.bin2_autopick.star"
    p.write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1.5 2.5\n")
    c = read_coordinates(p)
    assert c.image_name.tolist() == ["May08_03.05.02.bin2"]


def test_star_writer_layout(tmp_path):
    p = tmp_path / "o.star"
    write_coordinates(sample(), p)
    text = p.read_text()
    assert "# version 30001" in text and "\ndata_\n" in text
    for label in ("_rlnMicrographName #1", "_rlnCoordinateX #2", "_rlnCoordinateY #3",
                  "_rlnAutopickFigureOfMerit #4"):
        assert label in text
    assert "mic_a.mrc 10.25 20.5 -1.5" in text
    write_coordinates(sample(scores=False), tmp_path / "n.star")
    assert "_rlnAutopickFigureOfMerit" not in (tmp_path / "n.star").read_text()


@pytest.mark.skipif(not UCSF_STARS, reason="ucsf1142 STAR not available")
def test_ucsf1142_star():
    c = read_coordinates(UCSF_STARS[0])
    assert len(c) == 45
    assert c.image_names() == ["Ucsf_stack_1142_DW"]
    assert c.x[0] == pytest.approx(839.125024) and c.y[0] == pytest.approx(19.979167)
    assert c.score[0] == pytest.approx(0.624705)
    assert ((c.x >= 0) & (c.x < 959) & (c.y >= 0) & (c.y < 927)).all()


# ----- box / json / csv / cs -----------------------------------------------------------------

def test_box_corner_convention(tmp_path):
    c = Coordinates.from_arrays(["m"], [100], [50])
    write_coordinates(c, tmp_path / "b", "box", box_size=40)
    line = (tmp_path / "b" / "m.box").read_text().splitlines()[0]
    assert line.split() == ["80", "30", "40", "40"]
    back = read_coordinates(tmp_path / "b" / "m.box")   # a single file: name = stem
    assert back.image_name.tolist() == ["m"] and (back.x[0], back.y[0]) == (100.0, 50.0)


def test_box_odd_size_keeps_half_pixels(tmp_path):
    (tmp_path / "k.box").write_text("10\t20\t33\t33\t-3\n")
    c = read_coordinates(tmp_path / "k.box")
    assert (c.x[0], c.y[0]) == (26.5, 36.5)


def test_box_needs_box_size(tmp_path):
    with pytest.raises(TopazPuError, match="box size"):
        write_coordinates(sample(), tmp_path / "b", "box")


def test_box_and_json_auto_output_need_a_format(tmp_path):
    with pytest.raises(TopazPuError, match="--to box"):
        write_coordinates(sample(), tmp_path / "x.box", box_size=10)


def test_json_eman2_layout(tmp_path):
    write_coordinates(sample(), tmp_path / "info", "json")
    info = json.loads((tmp_path / "info" / "mic_a_info.json").read_text())
    assert info["boxes"][0] == [10.25, 20.5, "manual", -1.5]
    (tmp_path / "e2").mkdir()
    (tmp_path / "e2" / "m_info.json").write_text('{"boxes": [[5, 6, "manual"]], "ctf": []}')
    (tmp_path / "e2" / "empty_info.json").write_text('{"ctf": []}')
    c = read_coordinates(tmp_path / "e2")
    assert c.image_name.tolist() == ["m"] and np.isnan(c.score[0])


CSV_CRYOPPP = "X-Coordinate,Y-Coordinate,Diameter\n3752,693,108\n3474,182,108\n"


def test_csv_cryoppp_literal(tmp_path):
    p = tmp_path / "Falcon_2012_06_12-14_33_35_0.csv"
    p.write_text(CSV_CRYOPPP)
    c = read_coordinates(p)
    assert c.image_name.tolist() == ["Falcon_2012_06_12-14_33_35_0"] * 2
    assert c.x.tolist() == [3752, 3474] and c.y.tolist() == [693, 182]


@pytest.mark.skipif(not os.path.exists(CRYOPPP_CSV), reason="CryoPPP CSV not available")
def test_csv_cryoppp_file():
    c = read_coordinates(CRYOPPP_CSV)
    assert len(c) == 629 and c.image_names() == ["Falcon_2012_06_12-14_33_35_0"]
    assert (c.x[0], c.y[0]) == (3752.0, 693.0)


def test_csv_header_aliases(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("Micrograph, X , Y ,Confidence\ndata/m1.mrc,1.5,2.5,0.9\n")
    c = read_coordinates(p)
    assert c.image_name.tolist() == ["m1"] and c.x.tolist() == [1.5] and c.score.tolist() == [0.9]


def test_cs_convention(tmp_path):
    c = Coordinates.from_arrays(["m"], [150.0], [50.0], [0.5])
    write_coordinates(c, tmp_path / "p.cs", image_shapes={"m": (100, 200)})   # (height, width)
    data = np.load(tmp_path / "p.cs", allow_pickle=False)
    assert data["location/center_x_frac"][0] == pytest.approx(0.75)
    assert data["location/center_y_frac"][0] == pytest.approx(0.5)
    assert data["location/micrograph_shape"][0].tolist() == [100, 200]
    assert data["location/micrograph_path"][0] == b"m.mrc"
    back = read_coordinates(tmp_path / "p.cs")
    assert (back.x[0], back.y[0], back.score[0]) == (150.0, 50.0, 0.5)


def test_cs_needs_shapes_and_refuses_pickles(tmp_path):
    with pytest.raises(TopazPuError, match="shape"):
        write_coordinates(sample(), tmp_path / "p.cs")
    objects = np.zeros(2, dtype=[("location/micrograph_path", object), ("location/center_x_frac", "f4"),
                                 ("location/center_y_frac", "f4")])
    np.save(tmp_path / "o.npy", objects, allow_pickle=True)
    os.rename(tmp_path / "o.npy", tmp_path / "o.cs")
    with pytest.raises(TopazPuError, match="o.cs.*Python objects"):
        read_coordinates(tmp_path / "o.cs")


def test_cs_shape_from_image_shapes(tmp_path):
    data = np.zeros(1, dtype=[("location/micrograph_path", "S20"), ("location/center_x_frac", "f4"),
                              ("location/center_y_frac", "f4")])
    data[0] = (b"J1/imported/q.mrc", 0.5, 0.25)
    with open(tmp_path / "q.cs", "wb") as f:
        np.save(f, data)
    with pytest.raises(TopazPuError, match="micrograph_shape"):
        read_coordinates(tmp_path / "q.cs")
    c = read_coordinates(tmp_path / "q.cs", image_shapes={"q": (400, 100)})
    assert (c.x[0], c.y[0]) == (50.0, 100.0)


# ----- detection and errors ------------------------------------------------------------------

def test_detect_format(tmp_path):
    for name, fmt in [("a.txt", "coord"), ("a.TSV", "coord"), ("a.tab", "coord"), ("a.coord", "coord"),
                      ("a.star", "star"), ("a.box", "box"), ("a_info.json", "json"), ("a.csv", "csv"),
                      ("a.cs", "cs")]:
        assert detect_format(str(tmp_path / name)) == fmt
    (tmp_path / "boxes").mkdir()
    (tmp_path / "boxes" / "m.box").write_text("")
    assert detect_format(tmp_path / "boxes") == "box"
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "m_info.json").write_text("{}")
    assert detect_format(tmp_path / "js") == "json"
    with pytest.raises(TopazPuError, match=r"picks\.xyz: unknown coordinate format.*--from"):
        detect_format(str(tmp_path / "picks.xyz"))


@pytest.mark.parametrize("name,content,pattern", [
    ("missing.txt", None, r"missing\.txt: no such file"),
    ("empty.txt", "", r"empty\.txt: empty file"),
    ("binary.star", b"\x00\x01\x02data_", r"binary\.star: not a text file"),
    ("nohead.txt", "m1\t1\t2\n", r"nohead\.txt: line 1: .*missing column"),
    ("bad.txt", "image_name\tx_coord\ty_coord\nm\t1\t2\nm\tone\t2\n", r"bad\.txt: line 3: x_coord is not a number: 'one'"),
    ("short.txt", "image_name\tx_coord\ty_coord\nm\t1\n", r"short\.txt: line 2: expected at least 3"),
    ("nan.csv", "image_name,x,y\nm,nan,2\n", r"nan\.csv: line 2: x is not finite"),
    ("nocols.csv", "image_name,col,row\nm,1,2\n", r"nocols\.csv: CSV header has no x column"),
    ("noxy.star", "data_\nloop_\n_rlnMicrographName\nm.mrc\n", r"noxy\.star: no table with _rlnCoordinateX"),
    ("ragged.star", "data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n1 2\n3\n", r"ragged\.star: line 6: expected 2 values"),
    ("garbled.star", "hello world\n", r"garbled\.star: line 1: not a STAR file"),
    ("badnum.star", STAR_30.replace("66.7", "6x6"), r"badnum\.star: line \d+: _rlnCoordinateX is not a number"),
    ("bad.box", "1 2 x 4\n", r"bad\.box: line 1: width is not a number"),
    ("few.box", "1 2\n", r"few\.box: line 1: expected 'x y width height'"),
    ("bad_info.json", "{boxes", r"bad_info\.json: line 1: not valid JSON"),
    ("str_info.json", '{"boxes": [["a", 1, "manual"]]}', r"str_info\.json: box 1: x is not a finite number"),
    ("text.cs", "not numpy", r"text\.cs: not a cryoSPARC \.cs file"),
])
def test_bad_input_errors(tmp_path, name, content, pattern):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TopazPuError, match=pattern) as info:
        read_coordinates(p)
    assert "\n" not in str(info.value)


def test_cs_missing_fields(tmp_path):
    with open(tmp_path / "f.cs", "wb") as f:
        np.save(f, np.zeros(3, dtype=[("uid", "u8")]))
    with pytest.raises(TopazPuError, match=r"f\.cs: .cs file lacks field location/center_x_frac"):
        read_coordinates(tmp_path / "f.cs")


def test_empty_tables_read_as_empty(tmp_path):
    (tmp_path / "h.txt").write_text("image_name\tx_coord\ty_coord\n")
    assert len(read_coordinates(tmp_path / "h.txt")) == 0
    (tmp_path / "e.box").write_text("")
    assert len(read_coordinates(tmp_path / "e.box")) == 0


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path):
    write_coordinates(sample(), tmp_path / "d" / "o.txt")
    write_coordinates(sample(), tmp_path / "boxes", "box", box_size=20)
    assert sorted(os.listdir(tmp_path / "boxes")) == ["May08_03.05.02.bin2.box", "mic_a.box", "mic_b.box"]
    assert os.listdir(tmp_path / "d") == ["o.txt"]


# ----- matching and filtering ----------------------------------------------------------------

def test_match_image_names_by_basename_and_suffix():
    c = Coordinates.from_arrays(
        ["MotionCorr/job1/May08_03.05.02.bin2.mrc", "May08_04.36.57.bin2_autopick",
         "012345678901234567890_May08_05.24.39.bin2_patch_aligned_doseweighted", "May08_07.13.35.bin2"],
        [1, 2, 3, 4], [5, 6, 7, 8])
    known = ["/data/May08_03.05.02.bin2.mrc", "May08_04.36.57.bin2", "May08_05.24.39.bin2",
             "May08_07.13.35.bin2"]
    m = match_image_names(c, known, "picks.star")
    assert m.image_name.tolist() == ["May08_03.05.02.bin2", "May08_04.36.57.bin2",
                                     "May08_05.24.39.bin2", "May08_07.13.35.bin2"]
    assert m.x.tolist() == [1, 2, 3, 4]


def test_match_does_not_confuse_similar_names():
    c = Coordinates.from_arrays(["mic_11"], [1], [2])
    with pytest.raises(TopazPuError, match="mic_11"):
        match_image_names(c, ["mic_1", "mic_2"], "p.txt")


def test_unmatched_names_error_message():
    names = ["May08_03.05.02.bin", "May08_04.36.57", "x1", "x2", "x3", "x4", "May08_07.13.35.bin2"]
    c = Coordinates.from_arrays(names, np.arange(7), np.arange(7))
    known = ["May08_03.05.02.bin2", "May08_04.36.57.bin2", "May08_07.13.35.bin2"]
    with pytest.raises(TopazPuError) as info:
        match_image_names(c, known, "targets.star")
    msg = str(info.value)
    assert msg.startswith("targets.star: 6 of 7 image names match no micrograph")
    assert "'May08_03.05.02.bin' (nearest: 'May08_03.05.02.bin2'" in msg
    assert "'May08_04.36.57' (nearest: 'May08_04.36.57.bin2'" in msg
    assert "and 1 more" in msg and "\n" not in msg
    dropped = match_image_names(c, known, "targets.star", drop_unmatched=True)
    assert dropped.image_name.tolist() == ["May08_07.13.35.bin2"]


def test_drop_outside_counts(caplog):
    c = Coordinates.from_arrays(["a"] * 5 + ["b", "unknown"],
                                [0, 599.4, 599.5, -1, 10, 5, -50], [0, 619, 10, 10, 620, 5, 5])
    logger = logging.getLogger("topazpu_core")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="topazpu_core"):
            kept = drop_outside(c, {"a": (620, 600), "b": (620, 600)}, "p.txt")
    finally:
        logger.removeHandler(caplog.handler)
    assert kept.x.tolist() == [0, 599.4, 5, -50]
    assert any("p.txt: dropped 3 of 7 coordinates" in r.getMessage() for r in caplog.records)
