"""Format dispatch: one dict of readers and one of writers keyed by format name, and detect_format."""
import logging
import os

from topazpu_core.coordinates.box import read_box, write_box
from topazpu_core.coordinates.cryosparc import read_cs, write_cs
from topazpu_core.coordinates.csvtable import read_csv, write_csv
from topazpu_core.coordinates.eman2json import read_json, write_json
from topazpu_core.coordinates.star import read_star, write_star
from topazpu_core.coordinates.tsv import read_coord, write_coord
from topazpu_core.errors import TopazPuError
from topazpu_core.options import COORDINATE_FORMATS

logger = logging.getLogger(__name__)

FORMATS = COORDINATE_FORMATS
# formats written as one file per micrograph into a directory
DIRECTORY_FORMATS = ("box", "json")

EXTENSIONS = {
    ".txt": "coord", ".tsv": "coord", ".tab": "coord", ".coord": "coord",
    ".star": "star", ".box": "box", ".json": "json", ".csv": "csv", ".cs": "cs",
}

READERS = {"coord": read_coord, "star": read_star, "box": read_box, "json": read_json,
           "csv": read_csv, "cs": read_cs}
WRITERS = {"coord": write_coord, "star": write_star, "box": write_box, "json": write_json,
           "csv": write_csv, "cs": write_cs}


def _directory_format(path):
    names = []
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        names.extend(f.lower() for f in files if not f.startswith("."))
    kinds = set()
    if any(n.endswith(".box") for n in names):
        kinds.add("box")
    if any(n.endswith("_info.json") for n in names):
        kinds.add("json")
    if len(kinds) == 1:
        return kinds.pop()
    if kinds:
        raise TopazPuError("%s: directory holds both .box and _info.json files; use --from box or --from json" % path)
    raise TopazPuError("%s: directory holds no .box or *_info.json files (unknown coordinate format; use --from)" % path)


def detect_format(path):
    """Coordinate format of `path` by its extension, or of a directory by the files in it."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return _directory_format(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    raise TopazPuError(
        "%s: unknown coordinate format (extension %r; known: %s); use --from/--to to name one of %s"
        % (path, ext, " ".join(sorted(EXTENSIONS)), ", ".join(FORMATS)))


def _check_format(fmt, path):
    if fmt not in FORMATS:
        raise TopazPuError("%s: unknown coordinate format %r (choose from %s)" % (path, fmt, ", ".join(FORMATS)))


def read_coordinates(path, fmt="auto", image_shapes=None):
    """Read a coordinate file (or, for box/json, a directory of per-micrograph files).

    image_shapes: dict image name -> (height, width), used by .cs files lacking shapes.
    Raises TopazPuError with a one-line message naming the file for any bad input.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise TopazPuError("%s: no such file or directory" % path)
    if fmt in (None, "auto"):
        fmt = detect_format(path)
    _check_format(fmt, path)
    if os.path.isdir(path) and fmt not in DIRECTORY_FORMATS:
        raise TopazPuError("%s: is a directory; the %s format is a single file" % (path, fmt))
    coords = READERS[fmt](path, image_shapes=image_shapes)
    logger.debug("%s: read %d coordinates on %d micrographs (%s)", path, len(coords),
                 len(coords.image_names()), fmt)
    return coords


def write_coordinates(coords, path, fmt="auto", box_size=None, image_shapes=None):
    """Write `coords` atomically; box/json write `<path>/<image_name>.box|_info.json`.

    box needs box_size (pixels); cs needs image_shapes (image name -> (height, width)).
    Returns the list of files written. Parent directories are created.
    """
    path = os.fspath(path)
    if fmt in (None, "auto"):
        if os.path.isdir(path):
            raise TopazPuError("%s: is a directory; name the format of the per-micrograph files "
                               "with --to box or --to json" % path)
        fmt = detect_format(path)
        if fmt in DIRECTORY_FORMATS:
            raise TopazPuError("%s: %s output is a directory of per-micrograph files; give a "
                               "directory and --to %s" % (path, fmt, fmt))
    _check_format(fmt, path)
    if fmt not in DIRECTORY_FORMATS and os.path.isdir(path):
        raise TopazPuError("%s: is a directory; the %s format is written to a single file" % (path, fmt))
    return WRITERS[fmt](coords, path, box_size=box_size, image_shapes=image_shapes)
