"""Particle coordinates: one table type, readers and writers for six formats, name matching.

Formats (`FORMATS`): coord (Topaz TSV), star (RELION 3.0 and 3.1+), box (EMAN, directory of
per-micrograph files), json (EMAN2 `_info.json`, directory), csv (with a header; CryoPPP
form too), cs (cryoSPARC numpy structured array). Each format module documents its
conventions. Everywhere: x = column, y = row, origin at the first pixel (`array[y, x]`), float.
"""
from topazpu_core.coordinates.formats import (
    DIRECTORY_FORMATS, FORMATS, READERS, WRITERS, detect_format, read_coordinates, write_coordinates)
from topazpu_core.coordinates.matching import drop_outside, inside_mask, match_image_names
from topazpu_core.coordinates.table import Coordinates, micrograph_name

__all__ = [
    "Coordinates", "FORMATS", "DIRECTORY_FORMATS", "READERS", "WRITERS", "detect_format",
    "read_coordinates", "write_coordinates", "match_image_names", "drop_outside", "inside_mask",
    "micrograph_name",
]
