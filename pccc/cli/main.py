"""Entry point of the ``pccc`` command.

Each subcommand lives in ``pccc/cli/cmd_<name>.py`` and defines ``add_parser(subparsers)``, which
adds its parser and sets ``func`` (called with the parsed namespace, returns an exit status).
A user error (any :class:`pccc.ir.PcccError`, a missing file, a bad option) prints one or two
lines to stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pccc import __version__
from pccc.ir.errors import PcccError

#: subcommands in the order ``pccc --help`` lists them; a missing module is skipped
COMMANDS = ("demo", "info", "convert", "eval", "query", "sample", "opt", "passes", "compile",
            "train", "bench")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"pccc: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pccc", description="A compiler for probabilistic circuits.")
    parser.add_argument("--version", action="version", version=f"pccc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"pccc.cli.cmd_{name}")
        except ModuleNotFoundError as e:
            if e.name == f"pccc.cli.cmd_{name}":
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PcccError as e:
        print(f"pccc: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"pccc: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pccc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
