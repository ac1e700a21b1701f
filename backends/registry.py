"""The backend registry: a backend turns a :class:`~pccc.ir.plan.KernelPlan` into a module.

A backend module calls :func:`register` at import; :func:`get` imports the known backend modules
lazily, so ``import pccc`` stays cheap and a backend whose dependencies are missing (Triton on a
machine without it) only fails when asked for.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from pccc.ir.errors import PcccError

#: factory(plan, *, device, dtype, **options) -> torch.nn.Module (a CompiledCircuit)
Factory = Callable[..., Any]
#: validator(**options) -> the backend's options value; raises PcccError naming a bad option
Validator = Callable[..., Any]

#: prepare(device, **options) -> None: work a backend may start before the passes run
Preparer = Callable[..., None]

_BACKENDS: dict[str, Factory] = {}
_VALIDATORS: dict[str, Validator] = {}
_PREPARERS: dict[str, Preparer] = {}
#: name -> module that registers it on import
_KNOWN = {"torch": "pccc.backends.torch", "triton": "pccc.backends.triton"}


def register(name: str, factory: Factory, *, options: Validator | None = None,
             prepare: Preparer | None = None) -> None:
    """Make ``factory`` available as backend ``name`` (user backends welcome).

    Args:
        options: validates the backend's keyword options into its options value (for the
            Triton backend ``TritonOptions.from_kwargs``), raising :class:`PcccError` that
            names a bad option; :func:`check_options` calls it. Without it the factory's
            keyword-only parameters are the options.
        prepare: called by ``pccc.compile`` with the device and the (checked) options
            before the passes run, to start work the module will need on threads of its own
            (the Triton backend starts hashing Triton for its kernel cache keys); it must
            not fail for anything the factory would accept.
    """
    _BACKENDS[name] = factory
    for table, value in ((_VALIDATORS, options), (_PREPARERS, prepare)):
        if value is not None:
            table[name] = value
        else:
            table.pop(name, None)


def prepare(name: str, device: Any, options: dict[str, Any]) -> None:
    """Run backend ``name``'s ``prepare`` (see :func:`register`), if it has one."""
    fn = _PREPARERS.get(name)
    if fn is not None:
        fn(device, **options)


def get(name: str) -> Factory:
    """The factory of backend ``name``; raises :class:`PcccError` listing the known ones."""
    if name not in _BACKENDS and name in _KNOWN:
        try:
            importlib.import_module(_KNOWN[name])
        except ImportError as e:
            raise PcccError(f"backend {name!r} is not available here: {e}") from None
    if name not in _BACKENDS:
        known = sorted(set(_BACKENDS) | set(_KNOWN) | {"reference"})
        raise PcccError(f"unknown backend {name!r} (known: {', '.join(known)})")
    return _BACKENDS[name]


def check_options(name: str, options: dict[str, Any]) -> None:
    """Refuse options that backend ``name`` does not take: through the validator it was
    registered with, else by its factory's keyword-only parameters besides ``device`` and
    ``dtype`` (an option of another type than the default is refused too).

    Raises:
        PcccError: naming the option and what the backend takes.
    """
    factory = get(name)
    validator = _VALIDATORS.get(name)
    if validator is not None:
        validator(**options)
        return
    params = inspect.signature(factory).parameters
    if any(q.kind == q.VAR_KEYWORD for q in params.values()):
        return  # (a factory of its own that takes anything checks its options itself)
    takes = {n: q for n, q in params.items()
             if q.kind == q.KEYWORD_ONLY and n not in ("device", "dtype")}
    for key, value in options.items():
        q = takes.get(key)
        if q is None:
            raise PcccError(f"backend {name!r} takes no option {key!r} (it takes: "
                            f"{', '.join(takes) or 'none'})")
        if q.default not in (q.empty, None) and type(value) is not type(q.default):
            raise PcccError(f"backend {name!r}: option {key}={value!r} is not a "
                            f"{type(q.default).__name__}")


def names() -> list[str]:
    return sorted(set(_BACKENDS) | set(_KNOWN) | {"reference"})
