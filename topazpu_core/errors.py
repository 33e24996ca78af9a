"""The one error type the engine raises for bad input.

Its message is a single line meant for a person: it names the file and the problem.
The command line prints it without a traceback.
"""


class TopazPuError(Exception):
    """Bad input or a failed precondition, explained in one line."""


def require_file(path, expected="a file"):
    """Raise a one-line TopazPuError unless `path` is an existing regular file."""
    import os

    if not os.path.exists(path):
        raise TopazPuError("%s: no such file" % path)
    if os.path.isdir(path):
        raise TopazPuError("%s: is a directory, expected %s" % (path, expected))
