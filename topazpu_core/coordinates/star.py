"""RELION STAR coordinates: a small STAR parser and a coordinate writer.

Reading accepts RELION 3.0 files (one data block with a loop) and 3.1+ files (a `data_optics`
block, then `data_particles` or `data_`): every loop that has `_rlnCoordinateX` and
`_rlnCoordinateY` is read, in file order. Labels may carry RELION's `#N` column numbers,
values may be quoted, `#` starts a comment. `_rlnMicrographName` is matched by base name
(directories and a known image extension removed, "a/b/mic.mrc" -> "mic"); without it, the
image name is the file name minus ".star" and a picker suffix ("mic_autopick.star" -> "mic").
Coordinates are read as floats (never truncated). `_rlnAutopickFigureOfMerit` (else
`_rlnParticleScore`) becomes the score.

Writing produces a RELION 3.1+ coordinate-style file: `# version 30001`, one `data_` block
with a loop of `_rlnMicrographName` (image name + ".mrc" unless it already has an image
extension), `_rlnCoordinateX`, `_rlnCoordinateY`, and `_rlnAutopickFigureOfMerit` when any
score is finite (a missing score is written "nan").
"""
import re
from dataclasses import dataclass, field

import numpy as np

from topazpu_core.atomic import atomic_write
from topazpu_core.coordinates._files import parse_coordinate, parse_score, read_text
from topazpu_core.coordinates.table import (
    IMAGE_NAME_EXTENSIONS, Coordinates, format_float, format_score, micrograph_name, name_from_coordinate_file)
from topazpu_core.errors import TopazPuError

_COMMENT = re.compile(r"(^|\s)#")
SCORE_LABELS = ("autopickfigureofmerit", "particlescore")


@dataclass
class StarTable:
    """One loop (or the key-value pairs of a block, as a one-row table)."""
    block: str
    labels: list
    rows: list = field(default_factory=list)
    line_numbers: list = field(default_factory=list)

    def column(self, key):
        """Index of a label by its normalised name ("CoordinateX" finds "_rlnCoordinateX"), or None."""
        key = normalise_label(key)
        for i, label in enumerate(self.labels):
            if normalise_label(label) == key:
                return i
        return None


def normalise_label(label):
    label = label.strip().lstrip("_").lower()
    return label[3:] if label.startswith("rln") else label


def split_values(line, path, number):
    """Whitespace-separated values of a line, honouring '...'/"..." quotes and # comments."""
    if "'" not in line and '"' not in line:
        match = _COMMENT.search(line)
        return (line[: match.start()] if match else line).split()
    values, i, n = [], 0, len(line)
    while i < n:
        c = line[i]
        if c.isspace():
            i += 1
        elif c == "#":
            break
        elif c in "'\"":
            # a quote closes only when followed by whitespace or the end of the line (STAR rule)
            j = i + 1
            while j < n and not (line[j] == c and (j + 1 == n or line[j + 1].isspace())):
                j += 1
            if j >= n:
                raise TopazPuError("%s: line %d: unterminated quote" % (path, number))
            values.append(line[i + 1: j])
            i = j + 1
        else:
            j = i
            while j < n and not line[j].isspace():
                j += 1
            values.append(line[i:j])
            i = j
    return values


def parse_star(text, path):
    """All tables of a STAR text, in file order (loops, and each block's key-value pairs)."""
    tables = []
    block = None
    loop = None          # the StarTable being read
    in_header = False    # reading the loop's labels
    pairs = None         # key-value table of the current block
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        lower = line.lower()
        if lower.startswith("data_"):
            block, loop, in_header, pairs = line.split()[0][5:], None, False, None
            continue
        if block is None:
            raise TopazPuError("%s: line %d: not a STAR file (text before the first data_ block)"
                               % (path, number))
        if lower.split()[0] == "loop_":
            loop = StarTable(block, [])
            tables.append(loop)
            in_header = True
            continue
        if lower.split()[0] == "stop_":
            loop, in_header = None, False
            continue
        if line.startswith("_"):
            if loop is not None and in_header:
                loop.labels.append(line.split()[0])
                continue
            loop = None
            values = split_values(line, path, number)
            if len(values) != 2:
                raise TopazPuError("%s: line %d: expected '_label value', found %r" % (path, number, line))
            if pairs is None:
                pairs = StarTable(block, [], [[]], [number])
                tables.append(pairs)
            pairs.labels.append(values[0])
            pairs.rows[0].append(values[1])
            continue
        if loop is None:
            raise TopazPuError("%s: line %d: value outside a loop: %r" % (path, number, line[:60]))
        in_header = False
        values = split_values(line, path, number)
        if not values:
            continue
        if len(values) != len(loop.labels):
            raise TopazPuError("%s: line %d: expected %d values (one per label), found %d"
                               % (path, number, len(loop.labels), len(values)))
        loop.rows.append(values)
        loop.line_numbers.append(number)
    if block is None:
        raise TopazPuError("%s: not a STAR file (no data_ block)" % path)
    return tables


def read_star(path, image_shapes=None):
    tables = parse_star(read_text(path), path)
    chosen = [t for t in tables if t.column("CoordinateX") is not None and t.column("CoordinateY") is not None]
    if not chosen:
        labels = sorted({normalise_label(l) for t in tables for l in t.labels})
        raise TopazPuError("%s: no table with _rlnCoordinateX and _rlnCoordinateY (labels found: %s)"
                           % (path, ", ".join(labels[:12]) or "none"))
    default_name = name_from_coordinate_file(path, ".star")
    parts = []
    for table in chosen:
        i_x, i_y = table.column("CoordinateX"), table.column("CoordinateY")
        i_name = table.column("MicrographName")
        i_score = next((table.column(s) for s in SCORE_LABELS if table.column(s) is not None), None)
        names, xs, ys, scores = [], [], [], []
        for row, number in zip(table.rows, table.line_numbers):
            names.append(micrograph_name(row[i_name]) if i_name is not None else default_name)
            xs.append(parse_coordinate(row[i_x], path, number, "_rlnCoordinateX"))
            ys.append(parse_coordinate(row[i_y], path, number, "_rlnCoordinateY"))
            scores.append(parse_score(row[i_score], path, number, table.labels[i_score])
                          if i_score is not None else np.nan)
        parts.append(Coordinates.from_arrays(names, xs, ys, scores))
    return Coordinates.concat(parts)


def _quote(value):
    if not value or any(c.isspace() for c in value) or value[0] in "'\"_#":
        return '"%s"' % value
    return value


def star_micrograph_name(image_name):
    if any(image_name.lower().endswith(ext) for ext in IMAGE_NAME_EXTENSIONS):
        return image_name
    return image_name + ".mrc"


def write_star(coords, path, box_size=None, image_shapes=None):
    with_score = coords.has_scores
    labels = ["_rlnMicrographName", "_rlnCoordinateX", "_rlnCoordinateY"]
    if with_score:
        labels.append("_rlnAutopickFigureOfMerit")
    with atomic_write(path) as f:
        f.write("\n# version 30001\n\ndata_\n\nloop_\n")
        for i, label in enumerate(labels, start=1):
            f.write("%s #%d\n" % (label, i))
        for i in range(len(coords)):
            row = [_quote(star_micrograph_name(coords.image_name[i])),
                   format_float(coords.x[i]), format_float(coords.y[i])]
            if with_score:
                row.append(format_score(coords.score[i]))
            f.write(" ".join(row) + "\n")
        f.write("\n")
    return [path]
