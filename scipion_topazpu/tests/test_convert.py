"""Conversion between Scipion sets and engine tables, without protocol runs."""
import json
import os
import shutil
import tempfile
import unittest

import numpy as np
import pyworkflow.object as pwobj
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


class TestConvert(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='topazpu-convert-')
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_micrograph_map_lookups(self):
        mics = makeMics(self.tmp, NAMES, 3.5)
        m = convert.MicrographMap(mics)
        self.assertEqual(m.imageNames(), ['May08_03.05.02.bin2', 'May08_04.36.57.bin2', 'mic3'])
        self.assertEqual(m.find('May08_03.05.02.bin2.mrc').getObjId(), 1)
        self.assertEqual(m.find('some/dir/May08_04.36.57.bin2.mrc').getObjId(), 2)   # path -> base name
        self.assertEqual(m.find('May08_04.36.57.bin2').getObjId(), 2)                # without extension
        self.assertEqual(m.find('mic3.tif').getObjId(), 3)                           # other image extension
        self.assertIsNone(m.find('unknown.mrc'))
        self.assertEqual(m.find(None, 3).getObjId(), 3)
        self.assertTrue(m.knows('mic3.mrc'))
        self.assertFalse(m.knows('mic4.mrc'))

    def test_duplicate_image_names(self):
        mics = SetOfMicrographs(filename=os.path.join(self.tmp, 'dups.sqlite'))
        for i, path in enumerate(['a/x.mrc', 'b/x.mrc', 'b/y.mrc'], start=1):
            mic = Micrograph(location=path)
            mic.setObjId(i)
            mic.setMicName(path.replace('/', '_'))
            mics.append(mic)
        self.assertEqual(convert.duplicateImageNames(mics), ['x'])

    def test_frame_scale(self):
        self.assertAlmostEqual(convert.frameScale(3.5, 7.0), 0.5)
        self.assertEqual(convert.frameScale(None, 7.0), 1.0)
        self.assertTrue(convert.samePixelSize(3.5, 3.6))
        self.assertFalse(convert.samePixelSize(3.5, 4.0))

    def test_set_to_coordinates_rescales_between_frames(self):
        raw = makeMics(self.tmp, NAMES, 3.5, sub='raw')
        small = makeMics(self.tmp, NAMES[:2], 7.0, sub='small')
        coords = makeCoords(self.tmp, raw, [('May08_03.05.02.bin2.mrc', 100, 40, 1.5),
                                            ('May08_04.36.57.bin2.mrc', 10, 20, -2.0),
                                            ('mic3.mrc', 5, 5, 0.0)], scores=True)
        table, missing = convert.setToCoordinates(coords, convert.MicrographMap(small))
        self.assertEqual(missing, ['mic3.mrc'])
        self.assertEqual(list(table.image_name), ['May08_03.05.02.bin2', 'May08_04.36.57.bin2'])
        np.testing.assert_allclose(table.x, [50, 5])
        np.testing.assert_allclose(table.y, [20, 10])
        np.testing.assert_allclose(table.score, [1.5, -2.0])
        table, missing = convert.setToCoordinates(coords, convert.MicrographMap(raw), scale=1.0)
        self.assertEqual(missing, [])
        self.assertEqual(len(table), 3)
        self.assertTrue(table.has_scores)

    def test_coordinates_to_set_round_trip(self):
        from topazpu_core.coordinates import Coordinates
        mics = makeMics(self.tmp, NAMES, 3.5)
        table = Coordinates.from_arrays(np.array(['mic3', 'May08_03.05.02.bin2', 'mic3'], dtype=object),
                                        np.array([10.4, 20.6, 30.0]), np.array([1.0, 2.0, 3.49]),
                                        np.array([0.5, -1.0, np.nan]))
        out = SetOfCoordinates(filename=os.path.join(self.tmp, 'out.sqlite'))
        out.setMicrographs(mics)
        micMap = convert.MicrographMap(mics)
        self.assertEqual(convert.coordinatesToSet(table, micMap, out, scale=2.0), 3)
        out.write()
        rows = sorted((c.getMicName(), c.getX(), c.getY()) for c in out)
        self.assertEqual(rows, [('May08_03.05.02.bin2.mrc', 41, 4), ('mic3.mrc', 21, 2), ('mic3.mrc', 60, 7)])
        scores = convert.setScores(out)
        self.assertEqual(sorted(s for s in scores if np.isfinite(s)), [-1.0, 0.5])
        self.assertEqual(convert.countsPerMicrograph(out), {'mic3.mrc': 2, 'May08_03.05.02.bin2.mrc': 1})
        self.assertEqual(convert.coordinatesMicNames(out), ['May08_03.05.02.bin2.mrc', 'mic3.mrc'])
        bad = Coordinates.from_arrays(np.array(['nope'], dtype=object), np.array([1.0]), np.array([1.0]))
        with self.assertRaises(KeyError):
            convert.coordinatesToSet(bad, micMap, out)

    def test_preprocess_info(self):
        folder = os.path.join(self.tmp, 'pre')
        os.makedirs(folder)
        mics = makeMics(self.tmp, ['pre/a.mrc'], 7.0)
        self.assertIsNone(convert.preprocessInfo(mics))
        with open(os.path.join(folder, 'preprocess.json'), 'w') as f:
            json.dump({'scale': 2.0, 'method': 'affine', 'images': {}}, f)
        open(os.path.join(folder, 'a.mrc'), 'wb').close()
        self.assertEqual(convert.preprocessInfo(mics), (2.0, 'affine'))
        mics2 = makeMics(self.tmp, ['b.mrc'], 7.0, sub='other')
        setattr(mics2, SET_SCALE_ATTR, pwobj.Float(4.0))
        setattr(mics2, SET_METHOD_ATTR, pwobj.String('gmm'))
        self.assertEqual(convert.preprocessInfo(mics2), (4.0, 'gmm'))

    def test_write_list_file(self):
        path = convert.writeListFile(['x/a.mrc', '/abs/b.mrc'], os.path.join(self.tmp, 'sub', 'list.txt'))
        with open(path) as f:
            lines = f.read().split()
        self.assertEqual(lines[1], '/abs/b.mrc')
        self.assertTrue(os.path.isabs(lines[0]))
