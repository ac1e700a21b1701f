"""The pass registry: passes are functions from IR to IR with keyword-only typed options.

Register a pass with :func:`register_pass`. Its options are its keyword-only parameters: the
annotation gives the type a pipeline string is converted to (``int``, ``float``, ``bool``,
``str``), the default is required, and the ``Args:`` section of the docstring gives each
option's one-line help. The name is kebab-case; option ``block_size`` is written
``block-size`` in pipelines.

Example::

    from pccc.ir import Circuit
    from pccc.passes.registry import register_pass

    @register_pass("my-pass", input_level="L0", output_level="L0")
    def my_pass(c: Circuit, *, factor: float = 1.0) -> Circuit:
        '''One line that ``pccc passes`` shows.

        Args:
            factor: what the option does.
        '''
        return c
"""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pccc.ir.errors import PassError

#: IR levels from the top of the compiler down
LEVELS = ("L0", "L1", "L2", "L3", "L4")
_NAME_RE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")
_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class Option:
    """One keyword-only option of a pass."""

    name: str
    """kebab-case name used in pipeline strings"""
    param: str
    """the Python parameter name"""
    type: type
    """bool, int, float or str"""
    default: Any
    """the default value"""
    help: str = ""
    """one line from the docstring's ``Args:`` section"""

    def convert(self, text: str, pass_name: str) -> Any:
        """Convert a pipeline-string value to the option's type.

        Raises:
            PassError: a value that does not convert.
        """
        try:
            if self.type is bool:
                low = text.lower()
                if low in ("true", "1", "yes", "on"):
                    return True
                if low in ("false", "0", "no", "off"):
                    return False
                raise ValueError(text)
            return self.type(text)
        except ValueError:
            raise PassError(f"{pass_name}: option {self.name}={text!r} is not a valid "
                            f"{self.type.__name__}") from None


@dataclass(frozen=True)
class PassInfo:
    """A registered pass."""

    name: str
    """kebab-case name"""
    fn: Callable[..., Any]
    """the pass: ``fn(ir, **options) -> ir``"""
    input_level: str
    """level it reads (L0..L3)"""
    output_level: str
    """level it returns"""
    options: tuple[Option, ...]
    """keyword-only options in declaration order"""
    summary: str
    """the first line of the docstring"""

    def option(self, name: str) -> Option:
        """The option called ``name`` (kebab-case).

        Raises:
            PassError: an unknown option, listing the valid ones.
        """
        for opt in self.options:
            if opt.name == name:
                return opt
        valid = ", ".join(o.name for o in self.options) or "none"
        raise PassError(f"pass {self.name!r} has no option {name!r} (options: {valid})")


_REGISTRY: dict[str, PassInfo] = {}
_BUILTINS = ("canonicalize", "group_blocks", "partition_layers", "layout_params",
             "schedule_kernels")


def _arg_help(doc: str) -> dict[str, str]:
    """``{param: text}`` from a Google-style ``Args:`` section (continuation lines joined)."""
    out: dict[str, str] = {}
    in_args, current = False, None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:"):
            in_args = True
            continue
        if not in_args:
            continue
        if not stripped or (stripped.endswith(":") and " " not in stripped):
            break
        m = re.match(r"(\w+)(?: \(.*?\))?: (.*)", stripped)
        if m:
            current = m.group(1)
            out[current] = m.group(2)
        elif current is not None:
            out[current] += " " + stripped
    return out


def _options(fn: Callable[..., Any], name: str) -> tuple[Option, ...]:
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    helps = _arg_help(inspect.getdoc(fn) or "")
    params = list(sig.parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY,
                                            params[0].POSITIONAL_OR_KEYWORD):
        raise TypeError(f"pass {name!r}: the first parameter must be the IR value")
    opts = []
    for p in params[1:]:
        if p.kind is not p.KEYWORD_ONLY:
            raise TypeError(f"pass {name!r}: option {p.name!r} must be keyword-only")
        typ = hints.get(p.name)
        if typ not in _TYPES:
            raise TypeError(f"pass {name!r}: option {p.name!r} needs a bool, int, float or "
                            f"str annotation, got {typ!r}")
        if p.default is p.empty:
            raise TypeError(f"pass {name!r}: option {p.name!r} needs a default")
        opts.append(Option(p.name.replace("_", "-"), p.name, typ, p.default,
                           helps.get(p.name, "")))
    return tuple(opts)


def register_pass(name: str, *, input_level: str, output_level: str
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a pass under the kebab-case ``name``.

    Args:
        name: the pipeline name (``group-blocks``); built-in passes live in the module of the
            same name (``passes/group_blocks.py``).
        input_level: the level the pass reads (``L0`` .. ``L4``).
        output_level: the level it returns.
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"pass name {name!r} is not kebab-case")
    for lv in (input_level, output_level):
        if lv not in LEVELS:
            raise ValueError(f"pass {name!r}: unknown level {lv!r} (levels: {LEVELS})")

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            old = _REGISTRY[name].fn
            if (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
                raise ValueError(f"pass {name!r} is already registered by {old.__module__}")
        doc = inspect.getdoc(fn) or ""
        summary = doc.strip().splitlines()[0] if doc.strip() else ""
        _REGISTRY[name] = PassInfo(name, fn, input_level, output_level, _options(fn, name),
                                   summary)
        return fn

    return wrap


def load_builtins() -> None:
    """Import the built-in pass modules (they register themselves)."""
    for mod in _BUILTINS:
        importlib.import_module(f"pccc.passes.{mod}")


def get_pass(name: str) -> PassInfo:
    """The pass registered as ``name``.

    Raises:
        PassError: an unknown name, listing the registered ones.
    """
    load_builtins()
    if name not in _REGISTRY:
        raise PassError(f"unknown pass {name!r} (passes: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]


def all_passes() -> list[PassInfo]:
    """Every registered pass, sorted by name."""
    load_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def unregister_pass(name: str) -> None:
    """Remove a pass (for tests and plugins that reload)."""
    _REGISTRY.pop(name, None)


#: plugins imported so far (a plugin is imported once)
_PLUGINS: set[str] = set()


def load_plugin(spec: str) -> None:
    """Import a module, or a ``.py`` file, whose import registers passes (or backends, or
    distributions); a plugin already imported is not imported again.

    Raises:
        PassError: the file does not exist, or importing it failed (naming the plugin and
            the error).
    """
    import importlib.util
    import sys
    from pathlib import Path

    key = str(Path(spec).resolve()) if spec.endswith(".py") else spec
    if key in _PLUGINS:
        return
    if spec.endswith(".py"):
        path = Path(spec)
        if not path.is_file():
            raise PassError(f"pass plugin {spec}: no such file")
        mod_name = f"pccc_plugin_{path.stem}"
        s = importlib.util.spec_from_file_location(mod_name, path)
        assert s is not None and s.loader is not None
        module = importlib.util.module_from_spec(s)
        sys.modules[mod_name] = module
        try:
            s.loader.exec_module(module)
        except Exception as e:  # (the plugin's own error, in one line)
            sys.modules.pop(mod_name, None)
            raise PassError(f"pass plugin {spec}: {type(e).__name__}: {e}") from None
    else:
        try:
            importlib.import_module(spec)
        except ModuleNotFoundError as e:
            raise PassError(f"pass plugin {spec}: {e}") from None
        except Exception as e:
            raise PassError(f"pass plugin {spec}: {type(e).__name__}: {e}") from None
    _PLUGINS.add(key)


def load_entry_points() -> None:
    """Import every module an installed package lists under the ``pccc.passes`` entry points."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="pccc.passes"):
        ep.load()
