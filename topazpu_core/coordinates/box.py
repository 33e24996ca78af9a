"""EMAN .box files: one particle per line, `x y width height` of the box's lower-left corner.

The corner is in the micrograph's array coordinates (no y flip, as Topaz and crYOLO do), so
centre = corner + size / 2, as a float ("80 30 40 40" is the 40-px box centred on (100, 50)).
Extra columns are ignored. Writing needs the box size; integral values are written as
integers. One file per micrograph, `<dir>/<image_name>.box`; reading takes one .box file
(image name = its stem) or a directory of them (searched recursively).
"""
import os

from topazpu_core.atomic import atomic_write
from topazpu_core.coordinates._files import list_files, parse_coordinate, read_text
from topazpu_core.coordinates.table import Coordinates, format_number, name_from_coordinate_file
from topazpu_core.errors import TopazPuError


def read_box_file(path, image_name=None):
    name = image_name or name_from_coordinate_file(path, ".box")
    xs, ys = [], []
    try:
        text = read_text(path)
    except TopazPuError as e:
        if str(e).endswith("empty file"):
            return Coordinates.empty()  # a micrograph without particles
        raise
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 4:
            raise TopazPuError("%s: line %d: expected 'x y width height', found %d values"
                               % (path, number, len(fields)))
        x, y, w, h = (parse_coordinate(v, path, number, c)
                      for v, c in zip(fields[:4], ("x", "y", "width", "height")))
        xs.append(x + w / 2.0)
        ys.append(y + h / 2.0)
    return Coordinates.from_arrays([name] * len(xs), xs, ys)


def read_box(path, image_shapes=None):
    if os.path.isdir(path):
        files = list_files(path, ".box")
        if not files:
            raise TopazPuError("%s: directory has no .box files" % path)
        parts = []
        for f in files:
            rel = os.path.relpath(f, path).replace(os.sep, "/")
            parts.append(read_box_file(f, name_from_coordinate_file(rel, ".box")))
        return Coordinates.concat(parts)
    return read_box_file(path)


def write_box(coords, path, box_size=None, image_shapes=None):
    if box_size is None or not box_size > 0:
        raise TopazPuError("%s: the box format needs a box size (--boxsize, in pixels)" % path)
    if os.path.isfile(path):
        raise TopazPuError("%s: box output is a directory of per-micrograph files, and this is a file" % path)
    half = box_size / 2.0
    size = format_number(box_size)
    written = []
    for name, part in coords.by_image().items():
        out = os.path.join(path, name + ".box")
        with atomic_write(out) as f:
            for x, y in zip(part.x, part.y):
                f.write("%s\t%s\t%s\t%s\n" % (format_number(x - half), format_number(y - half), size, size))
        written.append(out)
    os.makedirs(path, exist_ok=True)
    return written

