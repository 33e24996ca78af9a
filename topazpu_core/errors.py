"""The one error type the engine raises for bad input, and the one rule for a bad micrograph.

Its message is a single line meant for a person: it names the file and the problem.
The command line prints it without a traceback (exit status 2).

A micrograph that cannot be read does not stop `pick`, `extract` or `preprocess`: it is left
out, named on a `skipped: <path>: <reason>` line of stdout, counted, and the command exits
with EXIT_SKIPPED (3) instead of 0 after writing the results of the others. A run in which no
micrograph can be read is an error.
"""

EXIT_SKIPPED = 3


class TopazPuError(Exception):
    """Bad input or a failed precondition, explained in one line."""


def require_file(path, expected="a file"):
    """Raise a one-line TopazPuError unless `path` is an existing regular file."""
    import os

    if not os.path.exists(path):
        raise TopazPuError("%s: no such file" % path)
    if os.path.isdir(path):
        raise TopazPuError("%s: is a directory, expected %s" % (path, expected))


def require_some_readable(paths, done, skipped):
    """Refuse a run in which no micrograph could be read (each one is named in `skipped`)."""
    if paths and not done:
        raise TopazPuError("no readable micrograph among %d given (first: %s)"
                           % (len(paths), skipped[0][1] if skipped else "-"))


def report_skipped(skipped, total):
    """Print a `skipped: <path>: <reason>` line per unreadable micrograph and their count on
    stdout; -> the command's exit status (EXIT_SKIPPED if any was skipped, else 0)."""
    for _, reason in skipped:
        print("skipped: %s" % reason)
    if not skipped:
        return 0
    print("%d of %d micrographs unreadable, skipped (exit status %d)" % (len(skipped), total, EXIT_SKIPPED))
    return EXIT_SKIPPED
