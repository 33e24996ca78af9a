"""Topaz TSV ("coord"): a header line, then `image_name x_coord y_coord [score]` per particle.

Columns are found by name in the header (tab-separated; any whitespace accepted when the
header has no tab); extra columns such as Topaz's `source` are ignored. The score column is
written only when some score is finite.
"""
import numpy as np

from topazpu_core.atomic import atomic_write
from topazpu_core.coordinates._files import parse_coordinate, parse_score, read_text
from topazpu_core.coordinates.table import Coordinates, format_float, format_score
from topazpu_core.errors import TopazPuError

REQUIRED = ("image_name", "x_coord", "y_coord")


def read_coord(path, image_shapes=None):
    lines = read_text(path).splitlines()
    header_index = next(i for i, line in enumerate(lines) if line.strip())
    header_line = lines[header_index]
    sep = "\t" if "\t" in header_line else None
    header = [h.strip() for h in header_line.split(sep)]
    lowered = [h.lower() for h in header]
    missing = [c for c in REQUIRED if c not in lowered]
    if missing:
        raise TopazPuError(
            "%s: line %d: not a Topaz coordinate header (missing column %s; expected "
            "'image_name<TAB>x_coord<TAB>y_coord[<TAB>score]')"
            % (path, header_index + 1, ", ".join(missing)))
    i_name, i_x, i_y = (lowered.index(c) for c in REQUIRED)
    i_score = lowered.index("score") if "score" in lowered else None
    needed = max(i_name, i_x, i_y)
    names, xs, ys, scores = [], [], [], []
    for number, line in enumerate(lines[header_index + 1:], start=header_index + 2):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split(sep)
        if sep is not None and len(fields) <= needed:
            fields = line.split()  # tolerate space-separated rows
        if len(fields) <= needed:
            raise TopazPuError("%s: line %d: expected at least %d columns, found %d"
                               % (path, number, needed + 1, len(fields)))
        names.append(fields[i_name].strip())
        xs.append(parse_coordinate(fields[i_x], path, number, "x_coord"))
        ys.append(parse_coordinate(fields[i_y], path, number, "y_coord"))
        if i_score is not None and i_score < len(fields):
            scores.append(parse_score(fields[i_score], path, number))
        else:
            scores.append(np.nan)
    return Coordinates.from_arrays(names, xs, ys, scores)


def write_coord(coords, path, box_size=None, image_shapes=None):
    with_score = coords.has_scores
    with atomic_write(path) as f:
        f.write("image_name\tx_coord\ty_coord" + ("\tscore\n" if with_score else "\n"))
        for i in range(len(coords)):
            row = [coords.image_name[i], format_float(coords.x[i]), format_float(coords.y[i])]
            if with_score:
                row.append(format_score(coords.score[i]))
            f.write("\t".join(row) + "\n")
    return [path]
