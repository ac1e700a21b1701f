"""Parse the L3 ``KernelPlan`` text written by :mod:`pccc.ir.print_lowered`.

Statements, in the order the printer writes them::

    plan num_node_slots=N [num_roots=n] num_vars=V reserved_params=R root_slot=S version=1
    meta key="value" ...                          (optional)
    var_cards i64[V] = [...]
    input DIST attr=value ... node_start=S param_size=P
      vars i64[n] = ...   param_start i64[n] = ...   values i64[n] = ...  (indicators)
    product num_elem_slots=E reserved=R
      part elem_start=S
        children i64[E, F] = ...
    sum
      part B=b C=c
        node_start ... chunk_start ... param_start ... num_chunks ... [reads ...]
    params f64[...] = ...   param_group ...   group_size ...   input_params ...
    map @key i64[shape] = ...                     (one per source parameter array)
    input_keys [@k, ...]

An array value is a nested list, ``elided`` (filled with zeros when elision is allowed),
``npz "file.npz" "key"``, or nothing on its line and the wrapped lines of
:mod:`pccc.ir.print_plan` below it (``a:b | item, ...``, the margins checked).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from pccc.ir.lexer import Key, Token, TokenStream
from pccc.ir.npzio import NpyError, NpzReader
from pccc.ir.parser import sidecar
from pccc.ir.plan import (
    PLAN_VERSION,
    InputLayer,
    KernelPlan,
    ProductLayer,
    ProductPartition,
    SumLayer,
    SumPartition,
)


class PlanParser:
    """State of one L3 parse."""

    def __init__(self, ts: TokenStream, base_dir: Path, allow_elided: bool,
                 map_arrays: bool = False):
        self.ts = ts
        self.base_dir = base_dir
        self.allow_elided = allow_elided
        self.map_arrays = map_arrays
        self.npz: dict[str, NpzReader] = {}

    def line_end(self) -> None:
        self.ts.end_line()
        self.ts.skip_newlines()

    def head(self, word: str) -> dict[str, tuple[Any, Token]]:
        self.ts.skip_newlines()
        self.ts.expect("IDENT", word, what=f"'{word}'")
        attrs = self.ts.attrs()
        self.line_end()
        return attrs

    def int_attr(self, attrs: dict[str, tuple[Any, Token]], name: str) -> int:
        if name not in attrs:
            raise self.ts.error(f"missing attribute {name!r}")
        val, tok = attrs.pop(name)
        if not isinstance(val, int) or isinstance(val, bool):
            raise self.ts.error(f"{name} must be an integer, got {val!r}", tok)
        return val

    def array(self, name: str) -> np.ndarray:
        """``name dtype[shape] = value``."""
        self.ts.expect("IDENT", name, what=f"'{name}'")
        return self.array_body()

    def array_body(self) -> np.ndarray:
        """``dtype[shape] = value`` up to the end of the line."""
        ts = self.ts
        dt = ts.expect("IDENT", what="'i64' or 'f64'")
        if dt.text not in ("i64", "f64"):
            raise ts.error(f"unknown element type {dt.text!r} (i64, f64)", dt)
        dtype = np.int64 if dt.text == "i64" else np.float64
        stok = ts.peek()
        shape = ts.value()
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ts.error("expected a shape [d0, d1, ...]", stok)
        ts.expect("SYM", "=")
        out = self.array_value(tuple(shape), dtype)
        self.line_end()
        return out

    def array_value(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        ts = self.ts
        tok = ts.peek()
        if ts.accept("IDENT", "elided"):
            if not self.allow_elided:
                raise ts.error(f"array of shape {shape} is elided (printed as its shape only)",
                               tok)
            return np.zeros(shape, dtype)
        if ts.accept("IDENT", "npz"):
            ftok = ts.expect("STRING", what="sidecar file name")
            ktok = ts.expect("STRING", what="array name in the sidecar")
            path = self.base_dir / ftok.value
            try:  # (the archive is opened once, at its first array)
                store = sidecar(self.npz, path)
                read = store.mapped if self.map_arrays else store.array
                arr = read(ktok.value, shape)
            except NpyError as e:
                raise ts.error(f"sidecar {path}: {e}", ftok) from None
            if not np.can_cast(arr.dtype, dtype, "same_kind"):
                raise ts.error(f"sidecar {path}: array {ktok.value!r} holds {arr.dtype}, not "
                               f"{np.dtype(dtype)}", ftok)
            arr = arr.astype(dtype, copy=False)
        elif ts.at("NEWLINE"):
            return self.wrapped(shape, dtype)
        else:
            val = ts.value()
            try:
                arr = np.array(val, dtype=dtype) if val != [] else np.zeros(shape, dtype)
            except (TypeError, ValueError):
                raise ts.error("expected a nested list of numbers", tok) from None
        if arr.shape != shape:
            raise ts.error(f"array of shape {arr.shape}, declared {shape}", tok)
        return arr

    def wrapped(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """The lines of a wrapped array, ``i, ..., a:b | item, item, ...`` each: items ``a``
        to ``b - 1`` along the axis after the prefix ``i, ...``, in row-major order."""
        ts = self.ts
        total = math.prod(shape)
        flat: list[Any] = []
        while len(flat) < total:
            ts.expect("NEWLINE", what=f"the next line of an array of shape {shape}")
            ts.skip_newlines()
            tok = ts.peek()
            index = [int(ts.expect("INT", what="an index range 'a:b |'").value)]
            while ts.accept("SYM", ","):
                index.append(int(ts.expect("INT", what="an index").value))
            ts.expect("SYM", ":", what="':' of an index range")
            hi = int(ts.expect("INT", what="the end of an index range").value)
            ts.expect("SYM", "|", what="'|' after the index range")
            k, lo = len(index) - 1, index[-1]
            if k >= len(shape) or not 0 <= lo < hi <= shape[k] or any(
                    not 0 <= i < d for i, d in zip(index[:-1], shape)):
                raise ts.error(f"index range outside an array of shape {shape}", tok)
            step = math.prod(shape[k + 1:])
            start = int(np.ravel_multi_index(tuple(index) + (0,) * (len(shape) - k - 1), shape))
            if start != len(flat):
                at = np.unravel_index(len(flat), shape)
                raise ts.error(f"this line starts at {tuple(index)}, the array goes on at "
                               f"{tuple(int(i) for i in at)}", tok)
            for j in range(hi - lo):
                if j:
                    ts.expect("SYM", ",", what="',' between items")
                item = np.asarray(ts.value(), dtype=object).ravel()
                if item.size != step:
                    raise ts.error(f"an item of {item.size} numbers, expected {step}")
                flat.extend(item.tolist())
        try:
            return np.array(flat, dtype=dtype).reshape(shape)
        except (TypeError, ValueError):
            raise ts.error("expected numbers") from None

    def key_list(self) -> list[Key]:
        """``[@a, @b, ...]``, its lines wrapped anywhere after a comma."""
        ts = self.ts
        ts.expect("SYM", "[", what="a list of keys [@a, @b]")
        keys: list[Key] = []
        while not ts.accept("SYM", "]"):
            if keys:
                ts.expect("SYM", ",", what="',' or ']'")
                ts.skip_newlines()
            keys.append(ts.expect("KEY", what="a key @name").value)
        return keys

    def input_layer(self) -> InputLayer:
        ts = self.ts
        ts.expect("IDENT", "input")
        dist = ts.expect("IDENT", what="distribution name").text
        attrs = ts.attrs()
        self.line_end()
        node_start = self.int_attr(attrs, "node_start")
        psize = self.int_attr(attrs, "param_size")
        fam = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                           for k, (v, _) in attrs.items()))
        vars_ = self.array("vars")
        pstart = self.array("param_start")
        values = self.array("values") if ts.at("IDENT", "values") else None
        return InputLayer(dist, fam, node_start, vars_, pstart, psize, values)

    def product_layer(self) -> ProductLayer:
        attrs = self.head("product")
        n, reserved = self.int_attr(attrs, "num_elem_slots"), self.int_attr(attrs, "reserved")
        parts = []
        while self.ts.at("IDENT", "part"):
            pattrs = self.head("part")
            start = self.int_attr(pattrs, "elem_start")
            parts.append(ProductPartition(start, self.array("children")))
        return ProductLayer(n, reserved, tuple(parts))

    def sum_layer(self) -> SumLayer:
        self.head("sum")
        parts = []
        while self.ts.at("IDENT", "part"):
            pattrs = self.head("part")
            B, C = self.int_attr(pattrs, "B"), self.int_attr(pattrs, "C")
            arrays = [self.array(n) for n in ("node_start", "chunk_start", "param_start",
                                              "num_chunks")]
            reads = self.array("reads") if self.ts.at("IDENT", "reads") else None
            node_start, chunk_start, param_start, num_chunks = arrays
            parts.append(SumPartition(B, C, node_start, chunk_start, param_start, num_chunks,
                                      reads))
        return SumLayer(tuple(parts))

    def run(self) -> KernelPlan:
        ts = self.ts
        attrs = self.head("plan")
        version = self.int_attr(attrs, "version")
        if version != PLAN_VERSION:
            raise ts.error(f"plan version {version}; this pccc reads {PLAN_VERSION}")
        head = {k: self.int_attr(attrs, k) for k in
                ("num_node_slots", "num_vars", "reserved_params", "root_slot")}
        num_roots = self.int_attr(attrs, "num_roots") if "num_roots" in attrs else 1
        meta: tuple[tuple[str, str], ...] = ()
        if ts.at("IDENT", "meta"):
            meta = tuple((k, str(v)) for k, (v, _) in self.head("meta").items())
        cards = self.array("var_cards")
        inputs = []
        while ts.at("IDENT", "input"):
            inputs.append(self.input_layer())
        layers: list[ProductLayer | SumLayer] = []
        while ts.at("IDENT", "product") or ts.at("IDENT", "sum"):
            layers.append(self.product_layer() if ts.at("IDENT", "product")
                          else self.sum_layer())
        flat = {n: self.array(n) for n in ("params", "param_group", "group_size",
                                            "input_params")}
        pmap: dict[str, np.ndarray] = {}
        while ts.at("IDENT", "map"):
            ts.next()
            ktok = ts.expect("KEY", what="parameter key @name")
            if ktok.value.name in pmap:
                raise ts.error(f"map {ktok.text} given twice", ktok)
            pmap[ktok.value.name] = self.array_body()
        ts.expect("IDENT", "input_keys", what="'input_keys [...]'")
        keys = self.key_list()
        self.line_end()
        if not ts.at("EOF"):
            raise ts.error(f"unexpected {ts.peek().text!r} at the end of a plan")
        return KernelPlan(
            num_vars=head["num_vars"], var_cards=cards, num_node_slots=head["num_node_slots"],
            root_slot=head["root_slot"], input_layers=tuple(inputs), layers=tuple(layers),
            params=flat["params"], reserved_params=head["reserved_params"],
            param_group=flat["param_group"], group_size=flat["group_size"],
            input_params=flat["input_params"], param_map=pmap,
            input_param_keys=frozenset(k.name for k in keys), meta=meta, num_roots=num_roots)

