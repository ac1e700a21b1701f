"""Parse ``.pcir`` text back into IR values (hand-written, recursive descent).

The first line names the format version and the level (``pcir 1 L0``); :func:`parse` reads it
and hands the rest to the parser registered for that level (:func:`register_parser`), so every
level shares the ``.pcir`` extension. This module parses L0; the grammar is in ``docs/ir.md``.

Errors are :class:`~pccc.ir.errors.ParseError` with ``file:line:col: message``. The parser
checks what the text can get wrong (references, shapes, duplicate ids and keys); the deeper
invariants are left to :func:`pccc.ir.verify`.

Example::

    c = parse(open("c.pcir").read(), file="c.pcir")
    assert parse(to_text(c)) == c
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pccc.ir import dists
from pccc.ir.circuit import Circuit, InputVector, Node, ProductVector, SumVector
from pccc.ir.errors import ParseError
from pccc.ir.lexer import Key, Ref, Token, TokenStream
from pccc.ir.limits import MAX_VALUES, vars_problem
from pccc.ir.npzio import NpyError, NpzReader
from pccc.ir.printer import VERSION
from pccc.ir.source import SourceMap

_PARSERS: dict[str, Callable[..., Any]] = {}


def register_parser(level: str, fn: Callable[..., Any]) -> None:
    """Make :func:`parse` hand texts whose header names ``level`` to ``fn(stream, **options)``."""
    _PARSERS[level] = fn


def parse(text: str, *, file: str = "<string>", base_dir: str | Path | None = None,
          allow_elided: bool = False, source: Any = None, map_arrays: bool = False) -> Any:
    """Parse a ``.pcir`` text of any registered level.

    Args:
        text: the file's contents.
        file: the name used in error messages.
        base_dir: folder that sidecar ``.npz`` names are relative to (default: the folder of
            ``file``, or the current folder).
        allow_elided: fill parameters printed as ``elided`` uniformly instead of refusing them.
        source: the source circuit of an L1 or L2 text that names it by digest (or an L1/L2
            value lowered from it); ignored by the other levels. None: the text embeds it or
            names its file.
        map_arrays: L3 only: view the sidecar arrays in their files (read from the disk where
            used, CRCs unchecked) instead of reading them: a quick look at a large plan.

    Raises:
        ParseError: ``file:line:col: message`` at the first error.
    """
    ts = TokenStream(text, file)
    ts.skip_newlines()
    first = ts.expect("IDENT", "pcir", what="'pcir <version> <level>' on the first line")
    version = ts.expect("INT", what="format version")
    if version.value != VERSION:
        raise ts.error(f"unsupported .pcir version {version.value} (this pccc reads {VERSION})",
                       version)
    level = ts.expect("IDENT", what="IR level (L0, L1, L2, L3)")
    ts.end_line()
    fn = _PARSERS.get(level.text)
    if fn is None:
        known = ", ".join(sorted(_PARSERS))
        raise ts.error(f"unknown IR level {level.text!r} (known: {known})", level)
    if base_dir is None:
        base_dir = Path(file).parent if file != "<string>" else Path(".")
    del first
    options: dict[str, Any] = {"base_dir": Path(base_dir), "allow_elided": allow_elided}
    if source is not None and level.text in ("L1", "L2"):
        options["source"] = source
    if map_arrays and level.text == "L3":
        options["map_arrays"] = True
    return fn(ts, **options)


def _int(ts: TokenStream, val: Any, tok: Token, what: str, minimum: int = 0) -> int:
    if not isinstance(val, int) or val < minimum:
        raise ts.error(f"{what} must be an integer >= {minimum}, got {val!r}", tok)
    return val


class _L0Parser:
    """State of one L0 parse: nodes so far, which node names which key, parameters."""

    def __init__(self, ts: TokenStream, base_dir: Path, allow_elided: bool):
        self.ts = ts
        self.base_dir = base_dir
        self.allow_elided = allow_elided
        self.nodes: list[Node] = []
        self.users: dict[str, tuple[int, Token]] = {}
        self.params: dict[str, np.ndarray] = {}
        self.elided: dict[str, tuple[int, ...]] = {}
        self.npz: dict[str, NpzReader] = {}
        self.lines: list[int] = []

    def run(self) -> Circuit:
        ts = self.ts
        ts.skip_newlines()
        ts.expect("IDENT", "circuit", what="'circuit num_vars=N root=%R'")
        head = ts.attrs()
        ts.end_line()
        for name, (_, tok) in head.items():
            if name not in ("num_vars", "root"):
                raise ts.error(f"unknown circuit attribute {name!r}", tok)
        ts.skip_newlines()
        while ts.at("REF"):
            self.node()
            ts.skip_newlines()
        while ts.at("IDENT", "param"):
            self.param()
            ts.skip_newlines()
        if not ts.at("EOF"):
            raise ts.error(f"expected a node '%{len(self.nodes)} = ...' or 'param @key ...', "
                           f"got {ts.peek().text!r}")
        return self.finish(head)

    def finish(self, head: dict[str, tuple[Any, Token]]) -> Circuit:
        ts = self.ts
        for key, (_, tok) in sorted(self.users.items()):
            if key not in self.params and key not in self.elided:
                raise ts.error(f"parameter @{key} is used but never defined", tok)
        self.fill_elided()
        num_vars = 0
        if "num_vars" in head:
            num_vars = _int(ts, head["num_vars"][0], head["num_vars"][1], "num_vars")
            msg = vars_problem(num_vars)
            if msg:
                raise ts.error(msg, head["num_vars"][1])
        root = len(self.nodes) - 1
        if "root" in head:
            val, tok = head["root"]
            if not isinstance(val, Ref) or not 0 <= val.id < len(self.nodes):
                got = f"%{val.id}" if isinstance(val, Ref) else repr(val)
                raise ts.error(f"root must name a defined node, got {got}", tok)
            root = val.id
        used = [nd.var + 1 for nd in self.nodes if isinstance(nd, InputVector)]
        if used and num_vars < max(used):
            raise ts.error(f"num_vars={num_vars} but variable {max(used) - 1} is used",
                           head.get("num_vars", (0, ts.peek()))[1])
        n = len(self.nodes)
        source = SourceMap.of(ts.file, self.lines[:n], range(n), prefix="%",
                              text=ts.text if ts.file == "<string>" else None)
        return Circuit(tuple(self.nodes), self.params, num_vars, root, source)

    def node(self) -> None:
        ts = self.ts
        tok = ts.next()
        self.lines.append(tok.line)
        if tok.value.id != len(self.nodes):
            raise ts.error(f"expected node %{len(self.nodes)} (nodes are numbered in order), "
                           f"got {tok.text}", tok)
        ts.expect("SYM", "=")
        kind = ts.expect("IDENT", what="node kind (input, sum, product)")
        if kind.text == "input":
            dist = ts.expect("IDENT", what="distribution name")
            if dist.text not in dists.names():
                raise ts.error(f"unknown distribution {dist.text!r} "
                               f"(known: {', '.join(dists.names())})", dist)
            nd: Node = self.input(dist.text, ts.attrs(), dist)
        elif kind.text in ("sum", "product"):
            kids = self.children()
            attrs = ts.attrs()
            nd = self.sum(kids, attrs, kind) if kind.text == "sum" else self.product(
                kids, attrs, kind)
        else:
            raise ts.error(f"unknown node kind {kind.text!r} (input, sum, product)", kind)
        ts.end_line()
        self.nodes.append(nd)

    def children(self) -> tuple[int, ...]:
        ts = self.ts
        ts.expect("SYM", "(")
        kids: list[int] = []
        while True:
            tok = ts.expect("REF", what="child reference %id")
            if tok.value.id >= len(self.nodes):
                raise ts.error(f"child {tok.text} is not defined before node "
                               f"%{len(self.nodes)}", tok)
            kids.append(tok.value.id)
            if ts.accept("SYM", ")"):
                return tuple(kids)
            ts.expect("SYM", ",", what="',' or ')'")

    def take(self, attrs: dict[str, tuple[Any, Token]], name: str, where: Token) -> Any:
        if name not in attrs:
            raise self.ts.error(f"missing attribute {name!r}", where)
        return attrs.pop(name)

    def int_attr(self, attrs: dict[str, tuple[Any, Token]], name: str, where: Token,
                 minimum: int) -> int:
        val, tok = self.take(attrs, name, where)
        return _int(self.ts, val, tok, name, minimum)

    def key(self, attrs: dict[str, tuple[Any, Token]], where: Token) -> str:
        val, tok = self.take(attrs, "param", where)
        if not isinstance(val, Key):
            raise self.ts.error(f"param must be a key @name, got {val!r}", tok)
        self.users.setdefault(val.name, (len(self.nodes), tok))
        return val.name

    def no_extra(self, attrs: dict[str, tuple[Any, Token]], kind: str) -> None:
        for name, (_, tok) in attrs.items():
            raise self.ts.error(f"unknown attribute {name!r} for {kind}", tok)

    def input(self, dist: str, attrs: dict[str, tuple[Any, Token]], where: Token) -> Node:
        ts = self.ts
        n = self.int_attr(attrs, "n", where, 1)
        var = self.int_attr(attrs, "var", where, 0)
        key = self.key(attrs, where) if "param" in attrs else None
        for name, (v, tok) in attrs.items():
            ok = (isinstance(v, (int, float, str)) or isinstance(v, list) and all(
                isinstance(e, int) for e in v))
            if not ok:
                raise ts.error(f"attribute {name!r} must be a number, a string or a list of "
                               "integers", tok)
        for name, extra in (("card", 0), ("total", 1)):  # table sizes: refused at the number
            val, tok = attrs.get(name, (None, where))
            if isinstance(val, int) and val + extra > MAX_VALUES:
                raise ts.error(f"{name}={val}: a variable has at most {MAX_VALUES} values "
                               "(2**20)", tok)
        plain = {k: tuple(v) if isinstance(v, list) else v for k, (v, _) in attrs.items()}
        msg = dists.get(dist).check_attrs(n, plain)
        if msg:
            raise ts.error(msg, where)
        return InputVector(n, var, dist, tuple(sorted(plain.items())), key)

    def sum(self, kids: tuple[int, ...], attrs: dict[str, tuple[Any, Token]], where: Token
            ) -> Node:
        n = self.int_attr(attrs, "n", where, 1)
        key = self.key(attrs, where)
        self.no_extra(attrs, "sum")
        return SumVector(n, kids, key)

    def product(self, kids: tuple[int, ...], attrs: dict[str, tuple[Any, Token]],
                where: Token) -> Node:
        n = self.int_attr(attrs, "n", where, 1)
        edges = None
        if "edges" in attrs:
            val, tok = attrs.pop("edges")
            edges = self.array(val, tok, (n, len(kids)), np.int64)
        self.no_extra(attrs, "product")
        return ProductVector(n, kids, edges)

    def array(self, val: Any, tok: Token, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """A nested list checked against ``shape`` (an empty list stands for any empty shape)."""
        if val == [] and math.prod(shape) == 0:
            return np.zeros(shape, dtype=dtype)
        try:
            arr = np.array(val, dtype=object)
        except ValueError:
            arr = None
        if arr is None or arr.shape != shape:
            got = "a ragged list" if arr is None else f"shape {arr.shape}"
            raise self.ts.error(f"expected an array of shape {shape}, got {got}", tok)
        flat = arr.ravel().tolist()
        ok = int if dtype is np.int64 else (int, float)
        if not all(isinstance(x, ok) and not isinstance(x, bool) for x in flat):
            raise self.ts.error(f"expected {'integers' if dtype is np.int64 else 'numbers'} "
                                f"in the array", tok)
        return np.array(flat, dtype=dtype).reshape(shape)

    def shape(self) -> tuple[int, ...]:
        ts = self.ts
        ts.expect("IDENT", "f64", what="'f64[...]'")
        ts.expect("SYM", "[")
        dims: list[int] = []
        while not ts.accept("SYM", "]"):
            if dims:
                ts.expect("SYM", ",", what="',' or ']'")
            tok = ts.expect("INT", what="dimension")
            dims.append(_int(ts, tok.value, tok, "dimension"))
        return tuple(dims)

    def param(self) -> None:
        ts = self.ts
        ts.next()
        ktok = ts.expect("KEY", what="parameter key @name")
        key = ktok.value.name
        if key in self.params or key in self.elided:
            raise ts.error(f"parameter @{key} defined twice", ktok)
        shape = self.shape()
        ts.expect("SYM", "=")
        tok = ts.peek()
        if ts.accept("IDENT", "elided"):
            self.elided[key] = shape
            if not self.allow_elided:
                raise ts.error(f"parameter @{key} is elided (only its shape {shape} was "
                               "printed); print without elision or allow elided parameters "
                               "to fill them uniformly", tok)
        elif ts.accept("IDENT", "npz"):
            ftok = ts.expect("STRING", what="sidecar file name")
            self.params[key] = self.from_npz(ftok, key, shape)
        else:
            self.params[key] = self.array(ts.value(), tok, shape, np.float64)
        ts.end_line()

    def from_npz(self, ftok: Token, key: str, shape: tuple[int, ...]) -> np.ndarray:
        try:
            store = sidecar(self.npz, self.base_dir / ftok.value)
            return np.asarray(store.array(key, shape), dtype=np.float64)
        except NpyError as e:
            raise self.ts.error(f"sidecar {self.base_dir / ftok.value}: {e}", ftok) from None

    def fill_elided(self) -> None:
        """Uniform values for elided parameters (only reached with ``allow_elided``)."""
        for key, shape in self.elided.items():
            user = self.nodes[self.users[key][0]] if key in self.users else None
            arr: np.ndarray | None = None
            if isinstance(user, InputVector):
                arr = dists.get(user.dist).default_params(user.n, user.attr_dict(), None)
            elif isinstance(user, SumVector) and shape and shape[-1]:
                arr = np.full(shape, 1.0 / shape[-1])
            if arr is None or arr.shape != shape:
                arr = np.ones(shape)
            self.params[key] = arr


def sidecar(opened: dict[str, NpzReader], path: Path) -> NpzReader:
    """The sidecar archive at ``path``, opened once per parse (kept in ``opened``)."""
    store = opened.get(str(path))
    if store is None:
        store = opened[str(path)] = NpzReader(path)
    return store


def _parse_l0(ts: TokenStream, *, base_dir: Path, allow_elided: bool) -> Circuit:
    p = _L0Parser(ts, base_dir, allow_elided)
    try:
        return p.run()
    finally:
        for store in p.npz.values():
            store.close()


register_parser("L0", _parse_l0)


def parse_circuit(text: str, **options: Any) -> Circuit:
    """Parse a ``.pcir`` text that must hold an L0 circuit (options as :func:`parse`)."""
    value = parse(text, **options)
    if not isinstance(value, Circuit):
        file = options.get("file", "<string>")
        raise ParseError(f"expected an L0 circuit, got level {getattr(value, 'level', '?')}",
                         file=file, line=1, col=1)
    return value
