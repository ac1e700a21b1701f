"""Every option of every command: its kind, range, help and default, checked in one place.

:data:`KINDS` gives the type of each option by its name, whatever the command (``--seed``
is the same everywhere), with per-command entries where a command differs
(:data:`COMMAND_KINDS`). :func:`apply` runs on every subcommand's parser once its module
added the arguments: it sets each known option's type to its kind, so that argparse refuses
a bad value before the command runs (``pccc train: error: argument --latents: must be an
integer in 1..65536, got '0'``), and completes the help: the range or the choices, and the
default. :func:`check_files` then refuses missing output folders, outputs that are folders
and outputs that are inputs, before any work. Plugins (``--load``, ``PCCC_PLUGINS``, entry
points) are loaded before the command line is parsed, so a backend a plugin registers is a
valid ``--backend``.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_INT = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class Int:
    """An integer in ``lo .. hi``."""

    lo: int
    hi: int

    def __call__(self, text: str) -> int:
        if not _INT.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        v = int(text)
        if not self.lo <= v <= self.hi:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return v

    def describe(self) -> str:
        if self.hi >= 1 << 60:
            return f"an integer >= {self.lo}"
        return f"an integer in {self.lo}..{self.hi}"


@dataclass(frozen=True)
class Float:
    """A finite number from ``lo`` (``lo_open``: excluded) to ``hi`` (inclusive)."""

    lo: float
    hi: float = math.inf
    lo_open: bool = False

    def __call__(self, text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        low_ok = v > self.lo if self.lo_open else v >= self.lo
        if not (math.isfinite(v) and low_ok and v <= self.hi):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return v

    def describe(self) -> str:
        if math.isinf(self.hi):
            return f"a number {'>' if self.lo_open else '>='} {self.lo:g}"
        left = "(" if self.lo_open else "["
        return f"a number in {left}{self.lo:g}, {self.hi:g}]"


@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple[str, ...]

    def __call__(self, text: str) -> str:
        if text not in self.values:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return text

    def describe(self) -> str:
        return "one of " + ", ".join(self.values)


class Device:
    """``cpu``, ``cuda`` or ``cuda:N``."""

    def __call__(self, text: str) -> str:
        if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", text):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return text

    def describe(self) -> str:
        return "cpu, cuda or cuda:N"


class Backend:
    """A registered backend (``reference`` too where ``reference`` is true)."""

    def __init__(self, reference: bool):
        self.reference = reference

    def names(self) -> list[str]:
        from pccc.backends import registry

        return [n for n in registry.names() if self.reference or n != "reference"]

    def __call__(self, text: str) -> str:
        if text not in self.names():
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return text

    def describe(self) -> str:
        return "one of " + ", ".join(self.names())


Kind = Callable[[str], Any]
BIG = 1 << 62
#: the kind of every option, by its destination name
KINDS: dict[str, Kind] = {
    "batch_size": Int(1, 1 << 24), "batch": Int(1, 1 << 24), "latents": Int(1, 1 << 16),
    "epochs": Int(1, 1 << 20),
    "step_size": Float(0.0, 1.0, lo_open=True), "pseudocount": Float(0.0),
    "patience": Int(0, 1 << 20), "num_cats": Int(2, 1 << 20), "depth": Int(1, 30),
    "repetitions": Int(1, 1 << 12), "split_interval": Int(1, 1 << 16),
    "seed": Int(0, (1 << 63) - 1), "perturb": Float(0.0), "threads": Int(0, 1 << 12),
    "elide_above": Int(-1, BIG), "vars": Int(1, 1 << 16), "k": Int(1, 1 << 10),
    "rows": Int(5, 1 << 30), "num_samples": Int(1, 1 << 31), "device": Device(),
    "dtype": Choice(("float32", "float64")), "em": Choice(("minibatch", "fullbatch")),
    "input_dist": Choice(("categorical", "bernoulli", "binomial", "gaussian",
                          "discrete_logistic")),
    "backend": Backend(reference=True), "max_memory": Float(0.0, lo_open=True),
    "progress": Choice(("auto", "on", "off")), "max_nodes": Int(1, BIG),
}
#: where a command's option differs from :data:`KINDS`
COMMAND_KINDS: dict[tuple[str, str], Kind] = {
    ("train", "backend"): Backend(reference=False),
    ("compile", "backend"): Backend(reference=False),
}
#: help of options their command left without one
HELP: dict[str, str] = {
    "epochs": "training epochs (EM passes over the training data)",
    "batch_size": "examples per batch", "step_size": "mini-batch EM step size",
    "pseudocount": "EM pseudocount (Laplace smoothing of every update)",
    "seed": "random seed (structure, initialization, batch order)",
    "device": "torch device", "dtype": "compute dtype", "output": "the file to write",
    "load": "import a .py file or module that registers passes or backends (repeatable; "
            "also the PCCC_PLUGINS environment variable and pccc.passes entry points)",
}


def _help(action: argparse.Action, kind: Kind | None) -> str:
    text = action.help or HELP.get(action.dest, action.dest.replace("_", " "))
    extra = []
    if kind is not None and hasattr(kind, "describe"):
        extra.append(kind.describe())
    elif action.choices is not None:
        extra.append("one of " + ", ".join(map(str, action.choices)))
    if "default" not in text and not action.required and action.nargs != 0:
        extra.append(f"default: {'none' if action.default in (None, []) else action.default}")
    if not extra:
        return text
    if re.search(r"\([^()]*default[^()]*\)$", text):  # (one parenthesis for the default)
        return f"{text[:-1]}; {'; '.join(extra)})"
    return f"{text} ({'; '.join(extra)})"


#: options that name a file a command writes, or reads, by destination name
OUTPUTS = ("output", "out", "plot")
INPUTS = ("file", "input", "data", "evidence", "structure")


def _label(action: argparse.Action) -> str:
    longs = [o for o in action.option_strings if o.startswith("--")]
    return (longs or action.option_strings or [str(action.metavar or action.dest).upper()])[0]


def apply(command: str, parser: argparse.ArgumentParser) -> None:
    """Give the options of ``command``'s parser their kinds, complete their help, and note
    which name files it writes and reads (for :func:`check_files`)."""
    parser.set_defaults(files={a.dest: _label(a) for a in parser._actions
                               if a.dest in OUTPUTS + INPUTS})
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings and \
                action.dest in ("func",):
            continue
        kind = COMMAND_KINDS.get((command, action.dest), KINDS.get(action.dest))
        takes_value = action.nargs != 0 and action.option_strings
        if kind is not None and takes_value:
            action.type = kind
            action.choices = None  # (the kind checks them, and says so in its message)
        action.help = _help(action, kind if takes_value else None)


def add_load(parser: argparse.ArgumentParser) -> None:
    """``--load PLUGIN``, on every command."""
    if "--load" not in parser._option_string_actions:
        parser.add_argument("--load", action="append", metavar="PLUGIN", default=[],
                            help=HELP["load"])


def plugin_specs(argv: list[str]) -> list[str]:
    """The ``--load`` values of a command line, read before it is parsed."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--load", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    return list(known.load)


def check_files(args: argparse.Namespace) -> None:
    """Outputs whose folder exists and that are not folders, none of them an input (the
    options named in :data:`OUTPUTS` and :data:`INPUTS`)."""
    from pccc.files import check_distinct, check_output

    files = getattr(args, "files", {})
    outs = {label: getattr(args, d, None) for d, label in files.items() if d in OUTPUTS}
    ins = {label: getattr(args, d, None) for d, label in files.items() if d in INPUTS}
    for label, path in outs.items():
        if path is not None:
            check_output(path, label)
    check_distinct(outs, {k: v for k, v in ins.items() if isinstance(v, str)})
