"""Print IR values as ``.pcir`` text; the grammar is documented in ``docs/ir.md``.

Printing is deterministic and idempotent: node ids are positions in topological order
(``%0`` first), attributes are sorted by name, parameters are sorted by key, floats are written
with ``repr`` so that they parse back bit-exactly. Parameters are written inline, into a sidecar
``.npz`` (``= npz "file.npz"``) or elided to their shape (``= elided``).

Levels other than L0 register their printer with :func:`register_printer` (``import pccc.ir``
registers L1-L3); :func:`to_text` dispatches on the value's ``level`` attribute.

Example::

    text = to_text(circuit)                          # everything inline
    text = to_text(circuit, elide_above=64)          # big arrays as their shape only
    text, arrays = to_text_npz(circuit, "c.npz")     # arrays go to the sidecar
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pccc.ir.circuit import Circuit, InputVector, ProductVector
from pccc.ir.lexer import BARE_RE, Key, Ref, quote

#: format version written on the first line (``pcir 1 L0``)
VERSION = 1

_PRINTERS: dict[str, Callable[..., str]] = {}


def register_printer(level: str, fn: Callable[..., str]) -> None:
    """Make :func:`to_text` print values whose ``level`` attribute is ``level`` with ``fn``."""
    _PRINTERS[level] = fn


def header(level: str) -> str:
    """The first line of a ``.pcir`` text of ``level``."""
    return f"pcir {VERSION} {level}"


def format_key(name: str) -> str:
    """``@name``, quoted when the key is not a bare identifier."""
    return "@" + (name if BARE_RE.match(name) else quote(name))


def format_value(v: Any) -> str:
    """One attribute value in the shared value grammar (see :mod:`pccc.ir.lexer`)."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, str):
        return quote(v)
    if isinstance(v, Ref):
        return f"%{v.id}"
    if isinstance(v, Key):
        return format_key(v.name)
    if isinstance(v, np.ndarray):
        return format_array(v)
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    raise TypeError(f"cannot print attribute value of type {type(v).__name__}")


def format_array(a: np.ndarray) -> str:
    """A nested list; floats exactly (``repr``), integers as integers."""
    if a.ndim == 0:
        return format_value(a.item())
    if np.issubdtype(a.dtype, np.integer):
        body = [str(int(x)) for x in a.ravel()]
    else:
        body = [repr(float(x)) for x in a.ravel()]
    return _nest(body, a.shape)


def _nest(flat: list[str], shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return "[" + ", ".join(flat) + "]"
    step = len(flat) // shape[0] if shape[0] else 0
    return "[" + ", ".join(_nest(flat[i * step:(i + 1) * step], shape[1:])
                           for i in range(shape[0])) + "]"


def format_attrs(attrs: Mapping[str, Any]) -> str:
    """``key=value`` pairs sorted by key, separated by blanks."""
    return " ".join(f"{k}={format_value(attrs[k])}" for k in sorted(attrs))


def node_line(c: Circuit, i: int) -> str:
    """The text of node vector ``i`` (without comments)."""
    nd = c.nodes[i]
    if isinstance(nd, InputVector):
        attrs: dict[str, Any] = dict(nd.attrs)
        attrs.update(n=nd.n, var=nd.var)
        if nd.param is not None:
            attrs["param"] = Key(nd.param)
        return f"%{i} = input {nd.dist} {format_attrs(attrs)}"
    kids = ", ".join(f"%{ch}" for ch in nd.children)
    attrs = {"n": nd.n}
    if isinstance(nd, ProductVector):
        if nd.edges is not None:
            attrs["edges"] = nd.edges
    else:
        attrs["param"] = Key(nd.param)
    return f"%{i} = {nd.kind}({kids}) {format_attrs(attrs)}"


def _shape(a: np.ndarray) -> str:
    return "f64[" + ", ".join(str(d) for d in a.shape) + "]"


def param_line(key: str, a: np.ndarray, mode: str, sidecar: str | None = None) -> str:
    """One parameter line: ``param @key f64[shape] = <inline | elided | npz "file">``."""
    head = f"param {format_key(key)} {_shape(a)} = "
    if mode == "elided":
        return head + "elided"
    if mode == "npz":
        assert sidecar is not None
        return head + "npz " + quote(sidecar)
    return head + format_array(a)


def _circuit_text(c: Circuit, modes: Mapping[str, str], sidecar: str | None) -> str:
    lines = [header("L0"), f"circuit num_vars={c.num_vars} root=%{c.root}"]
    lines += [node_line(c, i) for i in range(len(c.nodes))]
    lines += [param_line(k, a, modes[k], sidecar) for k, a in c.params.items()]
    return "\n".join(lines) + "\n"


def _print_l0(c: Circuit, *, elide_above: int | None = None) -> str:
    modes = {k: ("elided" if elide_above is not None and a.size > elide_above else "inline")
             for k, a in c.params.items()}
    return _circuit_text(c, modes, None)


register_printer("L0", _print_l0)


def to_text(value: Any, *, elide_above: int | None = None, source: Any = None) -> str:
    """Print an IR value of any registered level.

    Args:
        value: an IR value (``Circuit`` for L0; L1-L3 values register their printers).
        elide_above: arrays with more elements than this are printed as their shape only
            (such text parses back only with ``allow_elided=True``); None keeps everything.
        source: L1 and L2 only: a :class:`pccc.ir.print_lowered.SourceRef` that names the
            source circuit by its digest instead of embedding it (None: embedded).
    """
    level = getattr(value, "level", None)
    fn = _PRINTERS.get(str(level))
    if fn is None:
        raise TypeError(f"no printer for IR level {level!r}")
    if source is not None:
        if level not in ("L1", "L2"):
            raise TypeError(f"a {level} text has no source circuit to name")
        return fn(value, elide_above=elide_above, source=source)
    return fn(value, elide_above=elide_above)


def to_text_npz(c: Circuit, sidecar: str) -> tuple[str, dict[str, np.ndarray]]:
    """Print an L0 circuit whose parameters go to the sidecar ``.npz`` file ``sidecar``.

    Returns:
        The text and the arrays to save (``np.savez`` with these keys) as ``sidecar``, a path
        relative to the folder of the ``.pcir`` file.
    """
    modes = dict.fromkeys(c.params, "npz")
    return _circuit_text(c, modes, sidecar), dict(c.params.items())
