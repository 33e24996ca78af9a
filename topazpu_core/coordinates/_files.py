"""Shared helpers of the format modules: reading text with clear errors, parsing numbers."""
import math
import os

from topazpu_core.errors import TopazPuError, require_file  # noqa: F401 (re-exported for the format modules)


def read_text(path):
    """The text of `path` (UTF-8, any newline); clear errors for missing, binary or empty files."""
    require_file(path)
    try:
        with open(path, "r", encoding="utf-8-sig", newline=None) as f:
            text = f.read()
    except UnicodeDecodeError:
        raise TopazPuError("%s: not a text file (cannot decode as UTF-8)" % path) from None
    except OSError as e:
        raise TopazPuError("%s: cannot read: %s" % (path, e.strerror or e)) from None
    if "\x00" in text:
        raise TopazPuError("%s: not a text file (contains NUL bytes)" % path)
    if not text.strip():
        raise TopazPuError("%s: empty file" % path)
    return text


def parse_coordinate(text, path, line_number, column):
    """A finite float from `text`, else TopazPuError naming file, line and column."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise TopazPuError(
            "%s: line %d: %s is not a number: %r" % (path, line_number, column, text)) from None
    if not math.isfinite(value):
        raise TopazPuError("%s: line %d: %s is not finite: %r" % (path, line_number, column, text))
    return value


def parse_score(text, path, line_number, column="score"):
    """A float score; empty, "nan" or "none" give NaN."""
    text = text.strip()
    if text == "" or text.lower() in ("nan", "none", "na", "null"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise TopazPuError(
            "%s: line %d: %s is not a number: %r" % (path, line_number, column, text)) from None


def list_files(directory, suffix):
    """Sorted paths under `directory` (recursively) whose names end with `suffix` (case-insensitive)."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.lower().endswith(suffix.lower()) and not name.startswith("."):
                found.append(os.path.join(root, name))
    return sorted(found)
