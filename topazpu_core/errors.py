"""The one error type the engine raises for bad input.

Its message is a single line meant for a person: it names the file and the problem.
The command line prints it without a traceback.
"""


class TopazPuError(Exception):
    """Bad input or a failed precondition, explained in one line."""
