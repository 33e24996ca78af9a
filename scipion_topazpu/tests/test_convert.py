"""Conversion between Scipion sets and engine tables, without protocol runs."""
import json
import os

import numpy as np
import pyworkflow.object as pwobj
import pytest
from pwem.objects import Coordinate, Micrograph, SetOfCoordinates, SetOfMicrographs

from scipion_topazpu import convert
from scipion_topazpu.constants import SCORE_ATTR, SET_METHOD_ATTR, SET_SCALE_ATTR


def makeMics(folder, names, samplingRate, sub='', write=True):
    mics = SetOfMicrographs(filename=os.path.join(folder, 'mics_%s_%s.sqlite' % (sub, samplingRate)))
    mics.setSamplingRate(samplingRate)
    for i, name in enumerate(names, start=1):
        path = os.path.join(folder, sub, name)
        mic = Micrograph(location=path)
        mic.setObjId(i)
        mic.setMicName(os.path.basename(name))
        mic.setSamplingRate(samplingRate)
        mics.append(mic)
    if write:
        mics.write()
    return mics


def makeCoords(folder, mics, rows, boxSize=50, scores=False):
    coords = SetOfCoordinates(filename=os.path.join(folder, 'coords_%d.sqlite' % len(os.listdir(folder))))
    coords.setMicrographs(mics)
    coords.setBoxSize(boxSize)
    byName = {m.getMicName(): m.clone() for m in mics}
    for row in rows:
        coord = Coordinate()
        coord.setMicrograph(byName[row[0]])
        coord.setPosition(row[1], row[2])
        if scores:
            setattr(coord, SCORE_ATTR, pwobj.Float(row[3]))
        coords.append(coord)
    coords.write()
    return coords


NAMES = ['May08_03.05.02.bin2.mrc', 'May08_04.36.57.bin2.mrc', 'mic3.mrc']


def test_micrograph_map_lookups(tmp_path):
    mics = makeMics(str(tmp_path), NAMES, 3.5)
    m = convert.MicrographMap(mics)
    assert m.imageNames() == ['May08_03.05.02.bin2', 'May08_04.36.57.bin2', 'mic3']
    assert m.find('May08_03.05.02.bin2.mrc').getObjId() == 1
    assert m.find('some/dir/May08_04.36.57.bin2.mrc').getObjId() == 2   # path -> base name
    assert m.find('May08_04.36.57.bin2').getObjId() == 2                # without extension
    assert m.find('mic3.tif').getObjId() == 3                           # other image extension
    assert m.find('unknown.mrc') is None
    assert m.find(None, 3).getObjId() == 3
    assert m.knows('mic3.mrc') and not m.knows('mic4.mrc')


def test_duplicate_image_names(tmp_path):
    mics = SetOfMicrographs(filename=str(tmp_path / 'dups.sqlite'))
    for i, path in enumerate(['a/x.mrc', 'b/x.mrc', 'b/y.mrc'], start=1):
        mic = Micrograph(location=path)
        mic.setObjId(i)
        mic.setMicName(path.replace('/', '_'))
        mics.append(mic)
    assert convert.duplicateImageNames(mics) == ['x']


def test_frame_scale():
    assert convert.frameScale(3.5, 7.0) == pytest.approx(0.5)
    assert convert.frameScale(None, 7.0) == 1.0
    assert convert.samePixelSize(3.5, 3.6) and not convert.samePixelSize(3.5, 4.0)


def test_set_to_coordinates_rescales_between_frames(tmp_path):
    raw = makeMics(str(tmp_path), NAMES, 3.5, sub='raw')
    small = makeMics(str(tmp_path), NAMES[:2], 7.0, sub='small')
    coords = makeCoords(str(tmp_path), raw, [('May08_03.05.02.bin2.mrc', 100, 40, 1.5),
                                             ('May08_04.36.57.bin2.mrc', 10, 20, -2.0),
                                             ('mic3.mrc', 5, 5, 0.0)], scores=True)
    table, missing = convert.setToCoordinates(coords, convert.MicrographMap(small))
    assert missing == ['mic3.mrc']
    assert list(table.image_name) == ['May08_03.05.02.bin2', 'May08_04.36.57.bin2']
    np.testing.assert_allclose(table.x, [50, 5])
    np.testing.assert_allclose(table.y, [20, 10])
    np.testing.assert_allclose(table.score, [1.5, -2.0])
    table, missing = convert.setToCoordinates(coords, convert.MicrographMap(raw), scale=1.0)
    assert missing == [] and len(table) == 3 and table.has_scores


def test_coordinates_to_set_round_trip(tmp_path):
    from topazpu_core.coordinates import Coordinates
    mics = makeMics(str(tmp_path), NAMES, 3.5)
    table = Coordinates.from_arrays(np.array(['mic3', 'May08_03.05.02.bin2', 'mic3'], dtype=object),
                                    np.array([10.4, 20.6, 30.0]), np.array([1.0, 2.0, 3.49]),
                                    np.array([0.5, -1.0, np.nan]))
    out = SetOfCoordinates(filename=str(tmp_path / 'out.sqlite'))
    out.setMicrographs(mics)
    micMap = convert.MicrographMap(mics)
    assert convert.coordinatesToSet(table, micMap, out, scale=2.0) == 3
    out.write()
    rows = sorted((c.getMicName(), c.getX(), c.getY()) for c in out)
    assert rows == [('May08_03.05.02.bin2.mrc', 41, 4), ('mic3.mrc', 21, 2), ('mic3.mrc', 60, 7)]
    scores = convert.setScores(out)
    assert sorted(s for s in scores if np.isfinite(s)) == [-1.0, 0.5]
    assert convert.countsPerMicrograph(out) == {'mic3.mrc': 2, 'May08_03.05.02.bin2.mrc': 1}
    assert convert.coordinatesMicNames(out) == ['May08_03.05.02.bin2.mrc', 'mic3.mrc']
    bad = Coordinates.from_arrays(np.array(['nope'], dtype=object), np.array([1.0]), np.array([1.0]))
    with pytest.raises(KeyError):
        convert.coordinatesToSet(bad, micMap, out)


def test_preprocess_info(tmp_path):
    folder = tmp_path / 'pre'
    folder.mkdir()
    mics = makeMics(str(tmp_path), ['pre/a.mrc'], 7.0)
    assert convert.preprocessInfo(mics) is None
    (folder / 'preprocess.json').write_text(json.dumps({'scale': 2.0, 'method': 'affine', 'images': {}}))
    (folder / 'a.mrc').write_bytes(b'')
    assert convert.preprocessInfo(mics) == (2.0, 'affine')
    mics2 = makeMics(str(tmp_path), ['b.mrc'], 7.0, sub='other')
    setattr(mics2, SET_SCALE_ATTR, pwobj.Float(4.0))
    setattr(mics2, SET_METHOD_ATTR, pwobj.String('gmm'))
    assert convert.preprocessInfo(mics2) == (4.0, 'gmm')


def test_write_list_file(tmp_path):
    path = convert.writeListFile(['x/a.mrc', '/abs/b.mrc'], str(tmp_path / 'sub' / 'list.txt'))
    lines = open(path).read().split()
    assert lines[1] == '/abs/b.mrc' and os.path.isabs(lines[0])
