"""TopazPuProtImportCoordinates on each coordinate format, in a real project."""
import os

import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject

from scipion_topazpu import convert
from scipion_topazpu.constants import COORD_FORMATS, SCORE_ATTR
from scipion_topazpu.protocols import TopazPuProtImportCoordinates
from scipion_topazpu.tests import common


class TestTopazPuImportFormats(BaseTest):

    @classmethod
    def setUpClass(cls):
        from topazpu_core.coordinates import write_coordinates
        from topazpu_core.images import image_shape
        setupTestProject(cls)
        mics, _ = common.bundled()
        cls.protMics = common.importBundledMicrographs(cls)
        coords = common.readBundledTargets()
        # Scores make the round trip checkable where a format carries them.
        cls.coords = coords.__class__.from_arrays(coords.image_name, coords.x, coords.y,
                                                  np.linspace(-3, 3, len(coords)))
        shapes = {n: image_shape(m) for n, m in zip(cls.coords.image_names(), mics)}
        folder = cls.proj.getTmpPath('formats')
        cls.files = {}
        for fmt, name in [('coord', 'particles.txt'), ('star', 'particles.star'), ('box', 'boxes'),
                          ('json', 'eman2'), ('csv', 'particles.csv'), ('cs', 'particles.cs')]:
            path = os.path.join(folder, name)
            write_coordinates(cls.coords, path, fmt=fmt, box_size=40, image_shapes=shapes)
            cls.files[fmt] = os.path.abspath(path)

    def _import(self, path, fmt='auto', **kwargs):
        prot = self.newProtocol(TopazPuProtImportCoordinates, filesPath=path,
                                fileFormat=COORD_FORMATS.index(fmt), boxSize=40,
                                inputMicrographs=self.protMics.outputMicrographs, **kwargs)
        prot.setObjLabel('import %s' % os.path.basename(path))
        return common.launch(self, prot)

    def _checkPositions(self, coordSet, scale=1.0, scores=False):
        table, missing = convert.setToCoordinates(coordSet, convert.MicrographMap(self.protMics.outputMicrographs))
        self.assertEqual(missing, [])
        self.assertEqual(len(table), len(self.coords))
        from topazpu_core.metrics import match_picks
        expected = self.coords.scaled(scale).by_image()
        for name, got in table.by_image().items():
            # Positions are rounded to whole pixels in Scipion: each must match a source one-to-one.
            matched = match_picks(got.xy, expected[name].xy, 0.75)
            self.assertTrue(matched.all(), '%s: %d of %d coordinates moved' % (name, (~matched).sum(), len(got)))
        if scores:
            self.assertTrue(coordSet.getFirstItem().hasAttribute(SCORE_ATTR))

    def test_each_format_auto_detected(self):
        for fmt in ('coord', 'star', 'box', 'json', 'csv', 'cs'):
            with self.subTest(fmt=fmt):
                prot = self._import(self.files[fmt])
                out = prot.outputCoordinates
                self.assertEqual(out.getSize(), len(self.coords))
                self.assertEqual(out.getBoxSize(), 40)
                self._checkPositions(out, scores=fmt in ('coord', 'star', 'csv', 'cs'))

    def test_explicit_format_pattern_and_scale(self):
        folder = os.path.dirname(self.files['star'])
        prot = self._import(folder, 'star', filesPattern='*.star', scale=0.5)
        self._checkPositions(prot.outputCoordinates, scale=0.5)

    def test_unknown_micrograph_names_fail_validation(self):
        path = self.proj.getTmpPath('wrong_names.txt')
        with open(path, 'w') as f:
            f.write('image_name\tx_coord\ty_coord\nMay08_99.99.99.bin2\t10\t10\n')
        prot = self.newProtocol(TopazPuProtImportCoordinates, filesPath=os.path.abspath(path), boxSize=40,
                                inputMicrographs=self.protMics.outputMicrographs)
        errors = prot.validate()
        self.assertTrue(any('May08_99.99.99.bin2' in e and 'match no micrograph' in e for e in errors), errors)

    def test_missing_file_fails_validation(self):
        prot = self.newProtocol(TopazPuProtImportCoordinates, filesPath='/nonexistent/coords.star', boxSize=40,
                                inputMicrographs=self.protMics.outputMicrographs)
        self.assertTrue(any('No coordinate file found' in e for e in prot.validate()))
