"""EMAN2 `<image_name>_info.json` files: {"boxes": [[x, y, "manual"], ...]}, one per micrograph.

EMAN2 stores box centres, in the micrograph's array coordinates (no flip). A fourth element,
when numeric, is read as the score (EMAN2's automatic pickers write one); we write it only
for finite scores. Reading takes one file or a directory of `*_info.json` (recursively); a
file without "boxes" has no particles. Writing puts `<dir>/<image_name>_info.json`.
"""
import json
import math
import os

from topazpu_core.atomic import atomic_write
from topazpu_core.coordinates._files import list_files, read_text
from topazpu_core.coordinates.table import Coordinates, format_float, name_from_coordinate_file
from topazpu_core.errors import TopazPuError

SUFFIX = "_info.json"
BOX_TYPE = "manual"


def _name_of(relative_path):
    if relative_path.lower().endswith(SUFFIX):
        return relative_path[: -len(SUFFIX)]
    return name_from_coordinate_file(relative_path, ".json")


def _number(value, path, index, column):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise TopazPuError("%s: box %d: %s is not a finite number: %r" % (path, index, column, value))
    return float(value)


def read_json_file(path, image_name=None):
    name = image_name or _name_of(os.path.basename(path))
    try:
        info = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise TopazPuError("%s: line %d: not valid JSON: %s" % (path, e.lineno, e.msg)) from None
    if not isinstance(info, dict):
        raise TopazPuError("%s: expected a JSON object with a \"boxes\" list" % path)
    boxes = info.get("boxes", [])
    if not isinstance(boxes, list):
        raise TopazPuError("%s: \"boxes\" is not a list" % path)
    xs, ys, scores = [], [], []
    for i, box in enumerate(boxes, start=1):
        if not isinstance(box, list) or len(box) < 2:
            raise TopazPuError("%s: box %d: expected [x, y, ...], found %r" % (path, i, box))
        xs.append(_number(box[0], path, i, "x"))
        ys.append(_number(box[1], path, i, "y"))
        score = box[3] if len(box) > 3 else None
        ok = isinstance(score, (int, float)) and not isinstance(score, bool)
        scores.append(float(score) if ok else math.nan)
    return Coordinates.from_arrays([name] * len(xs), xs, ys, scores)


def read_json(path, image_shapes=None):
    if os.path.isdir(path):
        files = list_files(path, SUFFIX) or list_files(path, ".json")
        if not files:
            raise TopazPuError("%s: directory has no EMAN2 *_info.json files" % path)
        return Coordinates.concat(
            [read_json_file(f, _name_of(os.path.relpath(f, path).replace(os.sep, "/"))) for f in files])
    return read_json_file(path)


def write_json(coords, path, box_size=None, image_shapes=None):
    if os.path.isfile(path):
        raise TopazPuError("%s: json output is a directory of per-micrograph files, and this is a file" % path)
    written = []
    for name, part in coords.by_image().items():
        boxes = []
        for x, y, s in zip(part.x, part.y, part.score):
            box = [float(format_float(x)), float(format_float(y)), BOX_TYPE]
            if math.isfinite(s):
                box.append(float(s))
            boxes.append(box)
        out = os.path.join(path, name + SUFFIX)
        with atomic_write(out) as f:
            f.write('{"boxes": [\n')
            f.write(",\n".join("  " + json.dumps(b) for b in boxes))
            f.write("\n]}\n")
        written.append(out)
    os.makedirs(path, exist_ok=True)
    return written
