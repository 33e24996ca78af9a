"""Conversion between Scipion sets and the engine's files and tables.

The engine names a micrograph by its file name without the last extension
(`topazpu_core.images.image_name`); Scipion names it by `micName` and `objId`.
Coordinates are in pixels of the micrographs they belong to, x = column, y = row,
origin at the first pixel, in both Scipion and the engine: converting between two
micrograph sets of different pixel size multiplies them by the ratio of sampling rates.
"""
import logging
import os
from collections import Counter, OrderedDict

import numpy as np
import pyworkflow.object as pwobj
from pwem.objects import Coordinate

from .constants import SCORE_ATTR, SET_METHOD_ATTR, SET_SCALE_ATTR, PIXEL_SIZE_TOLERANCE

logger = logging.getLogger(__name__)


# ---- names ---------------------------------------------------------------------------
def engineImageName(path):
    """The engine's name of a micrograph file: its file name without the last extension."""
    from topazpu_core.images import image_name
    return image_name(path)


def stemName(name):
    """A micrograph reference reduced to its base name minus a known image extension.

    Unlike engineImageName, keeps dots that are not image extensions ("a.bin2" stays).
    """
    from topazpu_core.coordinates import micrograph_name
    return micrograph_name(name)


def micName(mic):
    """The Scipion micName of a micrograph, or its file name when micName is unset."""
    return mic.getMicName() or os.path.basename(mic.getFileName())


def duplicateImageNames(micSet):
    """Engine image names shared by more than one micrograph of `micSet` (sorted)."""
    counts = Counter(engineImageName(mic.getFileName()) for mic in micSet.iterItems())
    return sorted(name for name, n in counts.items() if n > 1)


class MicrographMap:
    """Look-up of the micrographs of a set by engine image name, micName and objId.

    Items are clones, so the map outlives the set's iteration.
    """

    def __init__(self, micSet):
        self.byImageName = OrderedDict()
        self.byMicName = {}
        self.byStem = {}
        self.byId = {}
        self.samplingRate = micSet.getSamplingRate()
        for mic in micSet.iterItems():
            mic = mic.clone()
            self.byImageName[engineImageName(mic.getFileName())] = mic
            self.byMicName[micName(mic)] = mic
            self.byStem.setdefault(stemName(micName(mic)), mic)
            self.byId[mic.getObjId()] = mic

    def __len__(self):
        return len(self.byImageName)

    def imageNames(self):
        return list(self.byImageName)

    def find(self, micNameValue=None, micId=None):
        """The micrograph with this micName (preferred) or id, or None."""
        if micNameValue is not None and micNameValue in self.byMicName:
            return self.byMicName[micNameValue]
        if micNameValue is not None:
            # Coordinates made elsewhere may carry a path or a name without extension.
            stem = stemName(micNameValue)
            if stem in self.byImageName:
                return self.byImageName[stem]
            if stem in self.byStem:
                return self.byStem[stem]
        if micNameValue is None and micId is not None:
            return self.byId.get(micId)
        return None

    def knows(self, micNameValue):
        """True when a coordinate with this micName would find a micrograph here."""
        return self.find(micNameValue) is not None

    def imageShapes(self):
        """image name -> (height, width), from the file headers."""
        from topazpu_core.images import image_shape
        return {name: tuple(image_shape(mic.getFileName())) for name, mic in self.byImageName.items()}


# ---- frames --------------------------------------------------------------------------
def frameScale(fromSamplingRate, toSamplingRate):
    """Factor converting pixel coordinates from one pixel size to another."""
    if not fromSamplingRate or not toSamplingRate:
        return 1.0
    return float(fromSamplingRate) / float(toSamplingRate)


def samePixelSize(a, b, tolerance=PIXEL_SIZE_TOLERANCE):
    return abs(a - b) <= tolerance * max(abs(a), abs(b))


# ---- coordinates ---------------------------------------------------------------------
def coordinatesMicNames(coordSet):
    """Sorted unique micNames of a SetOfCoordinates (one SQL query, no iteration)."""
    values = coordSet.getUniqueValues('_micName')
    return sorted(v for v in values if v is not None)


def countsPerMicrograph(coordSet):
    """micName -> number of coordinates."""
    counts = Counter()
    for coord in coordSet.iterItems():
        counts[coord.getMicName()] += 1
    return dict(counts)


def setToCoordinates(coordSet, micMap, scale=None):
    """Convert a SetOfCoordinates to engine Coordinates in the frame of `micMap`'s micrographs.

    Coordinates whose micrograph is not in the map are left out; returns
    (Coordinates, sorted list of the missing micNames). `scale` defaults to the ratio
    of the coordinates' micrograph sampling rate to the map's.
    """
    from topazpu_core.coordinates import Coordinates
    if scale is None:
        coordMics = coordSet.getMicrographs()
        fromRate = coordMics.getSamplingRate() if coordMics is not None else None
        scale = frameScale(fromRate, micMap.samplingRate)
    names, xs, ys, scores, missing = [], [], [], [], set()
    hasScore = None
    for coord in coordSet.iterItems():
        mic = micMap.find(coord.getMicName(), coord.getMicId())
        if mic is None:
            missing.add(coord.getMicName() or str(coord.getMicId()))
            continue
        names.append(engineImageName(mic.getFileName()))
        xs.append(coord.getX() * scale)
        ys.append(coord.getY() * scale)
        if hasScore is None:
            hasScore = coord.hasAttribute(SCORE_ATTR)
        scores.append(getattr(coord, SCORE_ATTR).get() if hasScore else np.nan)
    coords = Coordinates.from_arrays(np.array(names, dtype=object), np.array(xs, dtype=float),
                                     np.array(ys, dtype=float),
                                     np.array(scores, dtype=float) if hasScore else None)
    return coords, sorted(missing)


def coordinatesToSet(coords, micMap, outputSet, scale=1.0, withScores=None):
    """Append engine Coordinates to a SetOfCoordinates.

    `scale` multiplies the engine coordinates (into the frame of the micrographs of
    `micMap`); positions are rounded to the nearest pixel. Scores (when the table has
    them, or `withScores` is True) go into the Float attribute `_topazpuScore`.
    Returns the number of coordinates added.
    """
    withScores = coords.has_scores if withScores is None else withScores
    coord = Coordinate()
    added = 0
    for name, sub in coords.by_image().items():
        mic = micMap.byImageName.get(name)
        if mic is None:
            raise KeyError('coordinates for %s, which is not one of the micrographs' % name)
        for x, y, s in zip(sub.x * scale, sub.y * scale, sub.score):
            coord.setObjId(None)
            coord.setMicrograph(mic)
            coord.setPosition(int(round(x)), int(round(y)))
            if withScores:
                setattr(coord, SCORE_ATTR, pwobj.Float(float(s) if np.isfinite(s) else None))
            outputSet.append(coord)
            added += 1
    return added


def setScores(coordSet):
    """The `_topazpuScore` values of a SetOfCoordinates as a float array (NaN when unset)."""
    values = []
    for coord in coordSet.iterItems():
        attr = getattr(coord, SCORE_ATTR, None)
        value = attr.get() if attr is not None else None
        values.append(np.nan if value is None else value)
    return np.array(values, dtype=float)


# ---- preprocessed micrographs ----------------------------------------------------------
def preprocessInfo(micSet):
    """(scale, method) if `micSet` holds micrographs written by `topazpu preprocess`, else None.

    Uses the attributes set by the normalize protocol, else a preprocess.json beside the
    first micrograph.
    """
    scale = getattr(micSet, SET_SCALE_ATTR, None)
    if scale is not None and scale.get():
        method = getattr(micSet, SET_METHOD_ATTR, None)
        return float(scale.get()), (method.get() if method is not None else None)
    first = micSet.getFirstItem() if micSet.getSize() else None
    if first is None:
        return None
    from topazpu_core.preprocessing import read_preprocess_record
    data = read_preprocess_record(os.path.dirname(os.path.realpath(first.getFileName())))
    if data is None:
        return None
    return float(data.get('scale', 1.0)), data.get('method')


def writeListFile(paths, listPath):
    """A text file listing `paths`, one per line (absolute), for `--train-images` and co."""
    os.makedirs(os.path.dirname(os.path.abspath(listPath)), exist_ok=True)
    with open(listPath, 'w') as f:
        for p in paths:
            f.write(os.path.abspath(p) + '\n')
    return listPath
