"""Entry point of the ``pccc`` command.

Each subcommand lives in ``pccc/cli/cmd_<name>.py`` and defines ``add_parser(subparsers)``, which
adds its parser and sets ``func`` (called with the parsed namespace, returns an exit status).
Plugins load first (:func:`load_plugins`), then the command line is parsed with the kinds of
:mod:`pccc.cli.options`, the output files are checked, and the command runs. A user error
(any :class:`pccc.ir.PcccError`, a missing file, a bad option) prints one or two lines to
stderr and exits with status 2, never a traceback; Ctrl-C exits with 130, a closed output pipe
quietly with 141.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence

from pccc import __version__
from pccc.cli import options
from pccc.ir.errors import PcccError

#: subcommands in the order ``pccc --help`` lists them; a missing module is skipped
COMMANDS = ("demo", "info", "convert", "eval", "query", "sample", "opt", "passes", "compile",
            "train", "bench", "viz")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


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
        before = set(sub.choices)
        mod.add_parser(sub)
        for added in [n for n in sub.choices if n not in before]:
            options.add_load(sub.choices[added])
            options.apply(added, sub.choices[added])
    return parser


def load_plugins(specs: list[str]) -> None:
    """Import plugins the same way for every command: ``PCCC_PLUGINS`` (``:``-separated
    files or modules), then ``--load`` values, then ``pccc.passes`` entry points."""
    from pccc.passes.registry import load_entry_points, load_plugin

    env = [s for s in os.environ.get("PCCC_PLUGINS", "").split(os.pathsep) if s]
    for spec in env + specs:
        load_plugin(spec)
    load_entry_points()


def _run(argv: list[str]) -> int:
    load_plugins(options.plugin_specs(argv))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # (--help, --version, or an option refused: already printed)
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    options.check_files(args)
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pccc`` command line (``argv``: the arguments; None: the process's, and the
    process ends after this returns: a Ctrl-C from then on is ignored)."""
    ending = argv is None
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except PcccError as e:
        print(f"pccc: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"pccc: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # (the reader went away, `pccc opt ... | head`: end quietly)
        _stdout_to_devnull()
        return 141  # (128 + SIGPIPE, as a shell reports a tool that the pipe ended)
    except KeyboardInterrupt:
        if ending:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("pccc: interrupted", file=sys.stderr)
        return 130
    finally:
        if ending and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not fail too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
