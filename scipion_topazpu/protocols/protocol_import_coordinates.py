"""TopazPuProtImportCoordinates: particle coordinates from common file formats."""
import enum
import glob
import os

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pwem.objects import SetOfCoordinates
from pwem.protocols import ProtImport

from .. import convert
from ..constants import COORD_FORMATS, COORD_FORMAT_LABELS

# Files larger than this (in total) are not read by the form's validation.
_VALIDATE_MAX_BYTES = 20 * 1024 * 1024


def _pathSize(path):
    """Bytes of a file, or of all files under a folder."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f)) for root, _, names in os.walk(path) for f in names)
    return os.path.getsize(path)


class TopazPuImportCoordinatesOutputs(enum.Enum):
    outputCoordinates = SetOfCoordinates


class TopazPuProtImportCoordinates(ProtImport):
    """Import particle coordinates (e.g. hand-picked particles) onto a set of micrographs.

    Reads Topaz TSV (image_name x_coord y_coord [score]), RELION STAR (any version,
    including 3.1+ files with an optics block), EMAN box (one file per micrograph) and
    EMAN2 json, plain CSV with a header, and cryoSPARC .cs files. Coordinates are
    matched to the micrographs by file name (with or without folders and extensions);
    names that match no micrograph stop the import with a message listing them and
    the closest micrograph names. Coordinates outside their micrograph are dropped
    (the log says how many).

    Coordinates are x = column, y = row, origin at the first pixel (Scipion's and
    RELION's convention); use the scale factor when they were picked on micrographs
    of another pixel size.
    """
    _label = 'import coordinates'
    _devStatus = BETA
    _possibleOutputs = TopazPuImportCoordinatesOutputs

    # -------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label='Import')
        form.addParam('inputMicrographs', params.PointerParam, pointerClass='SetOfMicrographs',
                      important=True, label='Micrographs',
                      help='The micrographs the coordinates belong to. Coordinates are matched to them '
                           'by file name (folders and extensions ignored).')
        form.addParam('filesPath', params.PathParam, important=True,
                      label='Coordinate file or folder',
                      help='One coordinate file; or a folder of EMAN .box or EMAN2 *_info.json files (one per '
                           'micrograph); or a folder plus a pattern selecting several files of one format.')
        form.addParam('filesPattern', params.StringParam, default='',
                      label='Pattern (in the folder)',
                      help='Glob pattern of the files to read when the path is a folder, e.g. "*.star". '
                           'Empty: the folder is read as a whole (EMAN box or EMAN2 json folders).')
        form.addParam('fileFormat', params.EnumParam, choices=COORD_FORMAT_LABELS, default=0,
                      label='Format',
                      help='File format; "auto" decides by extension and content:\n'
                           '.txt/.tsv/.tab Topaz TSV, .star RELION STAR, .box EMAN box, .json EMAN2 json, '
                           '.csv CSV, .cs cryoSPARC.')
        form.addParam('boxSize', params.IntParam, default=64, validators=[params.Positive],
                      label='Box size (px)',
                      help='Box size of the output coordinates, in pixels of the micrographs above. '
                           'About 1.5 times the particle diameter is typical.')
        form.addParam('scale', params.FloatParam, default=1.0, validators=[params.Positive],
                      expertLevel=params.LEVEL_ADVANCED,
                      label='Scale factor',
                      help='Multiply the coordinates read from the files by this factor. Example: '
                           'coordinates picked on micrographs binned by 2 and imported onto the unbinned '
                           'ones need 2.')
        form.addParam('invertY', params.BooleanParam, default=False, expertLevel=params.LEVEL_ADVANCED,
                      label='Flip y?',
                      help='Yes: y becomes (micrograph height - 1 - y), for files whose origin is the '
                           'bottom-left corner. EMAN box files are already handled by the reader.')

    # --------------------------- INSERT steps functions ---------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.importStep, self.getFiles(), self.getFormatName(),
                                 self.scale.get(), self.invertY.get())

    # --------------------------- STEPS functions ----------------------------
    def importStep(self, files, fmt, scale, invertY):
        micSet = self.inputMicrographs.get()
        micMap = convert.MicrographMap(micSet)
        coords = self.readFiles(files, fmt, micMap, scale, invertY)
        self.info('Read %d coordinates on %d micrographs from %d file(s).'
                  % (len(coords), len(coords.image_names()), len(files)))
        coordSet = self._createSetOfCoordinates(self.inputMicrographs)
        coordSet.setBoxSize(self.boxSize.get())
        convert.coordinatesToSet(coords, micMap, coordSet)
        self._defineOutputs(**{TopazPuImportCoordinatesOutputs.outputCoordinates.name: coordSet})
        self._defineSourceRelation(self.inputMicrographs, coordSet)

    @staticmethod
    def readFiles(files, fmt, micMap, scale=1.0, invertY=False):
        """Read, match, scale, flip and clip the coordinates of `files` (engine Coordinates)."""
        from topazpu_core.coordinates import Coordinates, read_coordinates, match_image_names, drop_outside
        shapes = micMap.imageShapes()
        tables = []
        for path in files:
            table = read_coordinates(path, fmt=fmt, image_shapes=shapes)
            tables.append(match_image_names(table, micMap.imageNames(), path))
        coords = Coordinates.concat(tables) if tables else Coordinates.empty()
        if scale != 1.0:
            coords = coords.scaled(scale)
        if invertY and len(coords):
            heights = [shapes[n][0] for n in coords.image_name]
            coords = Coordinates.from_arrays(coords.image_name, coords.x,
                                             [h - 1 - y for h, y in zip(heights, coords.y)],
                                             coords.score if coords.has_scores else None)
        source = files[0] if len(files) == 1 else os.path.dirname(files[0]) if files else 'coordinates'
        return drop_outside(coords, shapes, source)

    # --------------------------- UTILS functions ----------------------------
    def getFormatName(self):
        return COORD_FORMATS[self.fileFormat.get()]

    def getFiles(self):
        """Sorted coordinate files selected by the path and pattern."""
        path = os.path.expanduser(self.filesPath.get() or '')
        pattern = (self.filesPattern.get() or '').strip()
        if os.path.isdir(path) and not pattern:
            return [os.path.abspath(path)]   # box/json folders are read as a whole
        if os.path.isdir(path):
            files = glob.glob(os.path.join(path, pattern))
        elif any(c in path for c in '*?['):
            files = glob.glob(path)
        else:
            files = [path] if os.path.exists(path) else []
        return sorted(os.path.abspath(f) for f in files if os.path.isfile(f))


    # --------------------------- INFO functions -----------------------------
    def _validate(self):
        from topazpu_core.errors import TopazPuError
        errors = []
        micSet = self.inputMicrographs.get()
        if micSet is None:
            return ['No input micrographs.']
        if micSet.getSize() == 0:
            return ['The input set of micrographs is empty.']
        path = self.filesPath.get()
        if not path:
            return ['Give a coordinate file or folder.']
        files = self.getFiles()
        if not files:
            return ['No coordinate file found at %s%s.' % (
                path, (' matching "%s"' % self.filesPattern.get()) if self.filesPattern.get() else '')]
        dups = convert.duplicateImageNames(micSet)
        if dups:
            errors.append('These micrograph file names occur more than once in the input set, so '
                          'coordinates cannot be matched to them: %s.' % ', '.join(dups[:5]))
            return errors
        if sum(_pathSize(f) for f in files) <= _VALIDATE_MAX_BYTES:
            try:
                coords = self.readFiles(files, self.getFormatName(), convert.MicrographMap(micSet),
                                        self.scale.get() or 1.0, self.invertY.get())
            except TopazPuError as e:
                errors.append(str(e))
            except (OSError, ValueError) as e:
                errors.append('Cannot read the coordinates: %s' % e)
            else:
                if len(coords) == 0:
                    errors.append('No coordinate of %s falls inside the micrographs.' % path)
        return errors

    def _summary(self):
        summary = []
        if self.filesPath.get():
            summary.append('Coordinates from %s (%s).' % (self.filesPath.get(), self.getFormatName()))
        if self.isFinished() and self.hasAttribute('outputCoordinates'):
            out = self.outputCoordinates
            summary.append('Imported %d coordinates on %d micrographs, box size %d px.'
                           % (out.getSize(), len(convert.coordinatesMicNames(out)), out.getBoxSize()))
        return summary

    def _methods(self):
        if not (self.isFinished() and self.hasAttribute('outputCoordinates')):
            return []
        out = self.outputCoordinates
        return ['%d particle coordinates were imported from %s with topazpu (box size %d px).'
                % (out.getSize(), os.path.basename(self.filesPath.get() or ''), out.getBoxSize())]

    def _citations(self):
        return []
