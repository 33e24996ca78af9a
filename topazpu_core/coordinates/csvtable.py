"""CSV with a header row: image name, x, y and an optional score, columns found by name.

Header names are matched case-insensitively, ignoring spaces, '-' and '_':
  image: image_name, micrograph, micrograph_name, micrographname, image, mic, filename, file
  x:     x_coord, x, x-coordinate, xcoordinate, coordinatex, center_x
  y:     y_coord, y, y-coordinate, ycoordinate, coordinatey, center_y
  score: score, confidence, figure_of_merit, autopickfigureofmerit, probability
Without an image column (the CryoPPP form `X-Coordinate,Y-Coordinate,Diameter`) every row
belongs to the image named by the file's stem. Image names are matched by base name (a
directory and a known image extension are removed). Other columns are ignored.
Writing produces `image_name,x_coord,y_coord,score` (score column only when any is finite).
"""
import csv
import io
import os

import numpy as np

from topazpu_core.atomic import atomic_write
from topazpu_core.coordinates._files import parse_coordinate, parse_score, read_text
from topazpu_core.coordinates.table import Coordinates, format_float, format_score, micrograph_name, strip_pick_suffix
from topazpu_core.errors import TopazPuError

ALIASES = {
    "image": ("imagename", "micrograph", "micrographname", "image", "mic", "filename", "file", "name"),
    "x": ("xcoord", "x", "xcoordinate", "coordinatex", "centerx", "centrex"),
    "y": ("ycoord", "y", "ycoordinate", "coordinatey", "centery", "centrey"),
    "score": ("score", "confidence", "figureofmerit", "autopickfigureofmerit", "probability"),
}


def _key(header):
    key = header.strip().lower()
    for c in " -_":
        key = key.replace(c, "")
    return key[3:] if key.startswith("rln") else key


def _find(keys, role):
    for alias in ALIASES[role]:
        if alias in keys:
            return keys.index(alias)
    return None


def read_csv(path, image_shapes=None):
    text = read_text(path)
    first = next(line for line in text.splitlines() if line.strip())
    delimiter = next((d for d in ",\t;" if d in first), ",")
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as e:
        raise TopazPuError("%s: not a readable CSV file: %s" % (path, e)) from None
    header_at = next((i for i, r in enumerate(rows) if any(c.strip() for c in r)), None)
    if header_at is None:
        raise TopazPuError("%s: CSV file holds only separators, no header row" % path)
    header = rows[header_at]
    keys = [_key(h) for h in header]
    i_name, i_x, i_y, i_score = (_find(keys, role) for role in ("image", "x", "y", "score"))
    if i_x is None or i_y is None:
        raise TopazPuError(
            "%s: CSV header has no %s column (found: %s; expected e.g. image_name,x_coord,y_coord)"
            % (path, "x" if i_x is None else "y", ",".join(h.strip() for h in header)))
    default_name = strip_pick_suffix(os.path.splitext(os.path.basename(path))[0])
    needed = max(i for i in (i_name, i_x, i_y) if i is not None)
    names, xs, ys, scores = [], [], [], []
    for number, row in enumerate(rows[header_at + 1:], start=header_at + 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= needed:
            raise TopazPuError("%s: line %d: expected at least %d columns, found %d"
                               % (path, number, needed + 1, len(row)))
        names.append(micrograph_name(row[i_name].strip()) if i_name is not None else default_name)
        xs.append(parse_coordinate(row[i_x], path, number, header[i_x].strip()))
        ys.append(parse_coordinate(row[i_y], path, number, header[i_y].strip()))
        if i_score is not None and i_score < len(row):
            scores.append(parse_score(row[i_score], path, number, header[i_score].strip()))
        else:
            scores.append(np.nan)
    return Coordinates.from_arrays(names, xs, ys, scores)


def write_csv(coords, path, box_size=None, image_shapes=None):
    with_score = coords.has_scores
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image_name", "x_coord", "y_coord"] + (["score"] if with_score else []))
        for i in range(len(coords)):
            row = [coords.image_name[i], format_float(coords.x[i]), format_float(coords.y[i])]
            if with_score:
                row.append(format_score(coords.score[i]))
            writer.writerow(row)
    return [path]
