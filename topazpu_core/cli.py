"""The `topazpu` command line: an argparse root over an explicit list of command modules.

Each module in `topazpu_core.commands` has `add_args(parser)` and `main(args)`; the first
line of its docstring is the one-line help, the rest is the description shown by `-h`.
"""
import argparse
import importlib
import logging
import sys

from topazpu_core import __version__
from topazpu_core.errors import EXIT_SKIPPED, TopazPuError

COMMAND_GROUPS = [
    ("picking", ["train", "extract", "pick"]),
    ("images", ["preprocess"]),
    ("coordinates", ["convert", "evaluate"]),
]

logger = logging.getLogger("topazpu_core")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="topazpu",
        description="Positive-unlabeled particle picking for cryo-EM micrographs.",
        epilog="exit status: 0 done; 2 error (nothing written; the message names the file); %d done, but "
               "unreadable micrographs were skipped (pick, extract, preprocess: each named on a "
               "'skipped: PATH: REASON' line of stdout); 130 interrupted" % EXIT_SKIPPED,
        fromfile_prefix_chars="@",
    )
    parser.add_argument("--version", action="version", version="topazpu " + __version__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group, names in COMMAND_GROUPS:
        for name in names:
            module = importlib.import_module("topazpu_core.commands." + name)
            doc = (module.__doc__ or "").strip()
            summary = doc.splitlines()[0] if doc else name
            p = sub.add_parser(
                name,
                help="[%s] %s" % (group, summary),
                description=doc,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                fromfile_prefix_chars="@",
            )
            module.add_args(p)
            p.set_defaults(_main=module.main)
    return parser


def configure_logging(verbose=False):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("topazpu_core")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        result = args._main(args)
    except TopazPuError as e:
        print("topazpu %s: error: %s" % (args.command, e), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("topazpu %s: interrupted" % args.command, file=sys.stderr)
        sys.exit(130)
    if isinstance(result, int) and result:  # 0 returns normally (in-process callers, tests)
        sys.exit(result)


if __name__ == "__main__":
    main()
