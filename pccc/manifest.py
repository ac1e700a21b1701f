"""The typed manifest of a ``.pccm`` file: what each field must hold, and its decoder.

The manifest stores the plan and the source circuit as JSON trees of IR dataclasses
(``{"__class__": name, "fields": {...}}``, tuples as ``{"__tuple__": [...]}``, arrays as
``{"__array__": member}``). The decoder follows a schema of every field of every class: a
field that is missing, unknown or of the wrong type, an integer past 2**62, an array member of
the wrong dtype or number of dimensions, is refused with an :class:`ArtifactError` that names
the field's path (``plan.layers.3.partitions.0.chunk_start``). Values are checked afterwards
by the verifiers of their level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pccc.archive import Archive, ArtifactError
from pccc.ir import circuit as l0
from pccc.ir import plan as l3

#: integers beyond this magnitude are refused (numpy index arithmetic stays exact)
MAX_INT = 1 << 62


@dataclass(frozen=True)
class Arr:
    """An array member: its dtype (None: any allowed; several: a tuple) and number of
    dimensions (None: any)."""

    dtype: str | tuple[str, ...] | None
    ndim: int | None


I64, I64_2, F64 = Arr("<i8", 1), Arr("<i8", 2), Arr("<f8", 1)
Spec = Any  # "int" | "str" | "attr" | "scalar" | Arr | ("opt"|"tuple"|"set"|"dict", Spec) ...


def _cls(*names: str) -> tuple[str, tuple[str, ...]]:
    return ("class", names)


_ATTRS = ("tuple", ("pair", "str", "attr"))
#: every field of every class a manifest may hold
SCHEMA: dict[str, dict[str, Spec]] = {
    "KernelPlan": {
        "num_vars": "int", "var_cards": I64, "num_node_slots": "int", "root_slot": "int",
        "input_layers": ("tuple", _cls("InputLayer")),
        "layers": ("tuple", _cls("ProductLayer", "SumLayer")),
        "params": Arr(("<f8", "<f4"), 1), "reserved_params": "int",
        "param_group": Arr(("<i4", "<i8"), 1), "group_size": I64,
        "input_params": F64, "param_map": ("dict", Arr("<i8", None)),
        "input_param_keys": ("set", "str"), "meta": ("tuple", ("pair", "str", "str")),
        "num_roots": "int"},
    "InputLayer": {"dist": "str", "attrs": _ATTRS, "node_start": "int", "vars": I64,
                   "param_start": I64, "param_size": "int", "values": ("opt", I64)},
    "ProductLayer": {"num_elem_slots": "int", "reserved": "int",
                     "partitions": ("tuple", _cls("ProductPartition"))},
    "ProductPartition": {"elem_start": "int", "children": I64_2},
    "SumLayer": {"partitions": ("tuple", _cls("SumPartition"))},
    "SumPartition": {"block_size": "int", "chunk_size": "int", "node_start": I64,
                     "chunk_start": I64_2, "param_start": I64_2, "num_chunks": I64},
    "Circuit": {"nodes": ("tuple", _cls("InputVector", "ProductVector", "SumVector")),
                "params": ("dict", Arr("<f8", None)), "num_vars": "int", "root": "int"},
    "InputVector": {"n": "int", "var": "int", "dist": "str", "attrs": _ATTRS,
                    "param": ("opt", "str")},
    "ProductVector": {"n": "int", "children": ("tuple", "int"), "edges": ("opt", I64_2)},
    "SumVector": {"n": "int", "children": ("tuple", "int"), "param": "str"},
}
_CLASSES: dict[str, type] = {cls.__name__: cls for cls in (
    l3.KernelPlan, l3.InputLayer, l3.ProductLayer, l3.ProductPartition, l3.SumLayer,
    l3.SumPartition, l0.Circuit, l0.InputVector, l0.ProductVector, l0.SumVector)}
#: the top-level fields of a manifest
TOP: dict[str, Spec] = {
    "format": "str", "format_version": "int", "pccc_version": "str", "plan_version": "int",
    "backend": "str", "dtype": ("one of", ("float32", "float64")),
    "pipeline": ("opt", "str"), "options": "options", "plan": _cls("KernelPlan"),
    "source": ("opt", _cls("Circuit")), "state": ("opt", ("dict", Arr(None, None)))}


@dataclass(frozen=True)
class Manifest:
    """A decoded manifest."""

    pccc_version: str
    backend: str
    dtype: str
    pipeline: str | None
    options: dict[str, Any]
    plan: l3.KernelPlan
    source: l0.Circuit | None
    state: dict[str, np.ndarray] | None


class Decoder:
    """Decodes manifest trees against :data:`SCHEMA`, reading arrays from the archive."""

    def __init__(self, path: Path, archive: Archive):
        self.path, self.archive = path, archive

    def fail(self, where: str, message: str) -> ArtifactError:
        return ArtifactError(self.path, message, field=where)

    def value(self, tree: Any, spec: Spec, where: str) -> Any:
        if isinstance(spec, Arr):
            return self._array(tree, spec, where)
        if isinstance(spec, str):
            return self._scalar(tree, spec, where)
        kind = spec[0]
        if kind == "opt":
            return None if tree is None else self.value(tree, spec[1], where)
        if kind == "one of":
            if tree not in spec[1]:
                raise self.fail(where, f"{tree!r} is not one of {', '.join(spec[1])}")
            return tree
        if kind == "class":
            return self._object(tree, spec[1], where)
        items = self._wrapped(tree, {"tuple": "__tuple__", "pair": "__tuple__",
                                     "set": "__set__", "dict": "__dict__"}[kind], where)
        if kind == "dict":
            if not isinstance(items, dict):
                raise self.fail(where, "not an object")
            return {str(k): self.value(v, spec[1], f"{where}.{k}") for k, v in items.items()}
        if not isinstance(items, list):
            raise self.fail(where, "not a list")
        if kind == "pair":
            if len(items) != 2:
                raise self.fail(where, f"{len(items)} items, expected 2")
            return (self.value(items[0], spec[1], f"{where}.0"),
                    self.value(items[1], spec[2], f"{where}.1"))
        out = [self.value(v, spec[1], f"{where}.{i}") for i, v in enumerate(items)]
        return frozenset(out) if kind == "set" else tuple(out)

    def _wrapped(self, tree: Any, key: str, where: str) -> Any:
        if not isinstance(tree, dict) or set(tree) != {key}:
            raise self.fail(where, f"expected {{{key!r}: ...}}")
        return tree[key]

    def _scalar(self, tree: Any, spec: str, where: str) -> Any:
        if spec == "int" or (spec in ("attr", "scalar") and isinstance(tree, int)):
            if isinstance(tree, bool) or not isinstance(tree, int):
                raise self.fail(where, f"{_show(tree)} is not an integer")
            if abs(tree) > MAX_INT:
                raise self.fail(where, f"{tree} is past the limit of 2**62")
            return tree
        if spec == "str":
            if not isinstance(tree, str):
                raise self.fail(where, f"{_show(tree)} is not a string")
            return tree
        if spec == "attr":
            if isinstance(tree, dict) and "__tuple__" in tree:
                return self.value(tree, ("tuple", "int"), where)
            if isinstance(tree, (float, str)):
                return tree
            raise self.fail(where, f"{_show(tree)} is not an attribute value")
        if spec == "options":
            return self._options(tree, where)
        raise AssertionError(spec)

    def _options(self, tree: Any, where: str) -> dict[str, Any]:
        if not isinstance(tree, dict):
            raise self.fail(where, "not an object")
        for k, v in tree.items():
            # (a plain value, or one level of name -> plain value: the Triton ``tiles``)
            if isinstance(v, dict):
                self._options(v, f"{where}.{k}")
                if any(isinstance(u, dict) for u in v.values()):
                    raise self.fail(f"{where}.{k}", "nested too deep")
            elif not (v is None or isinstance(v, (bool, int, float, str))):
                raise self.fail(f"{where}.{k}", f"{_show(v)} is not a plain value")
        return dict(tree)

    def _array(self, tree: Any, spec: Arr, where: str) -> np.ndarray:
        name = self._wrapped(tree, "__array__", where)
        if not isinstance(name, str):
            raise self.fail(where, "the array's member name is not a string")
        arr = self.archive.array(name)
        allowed = (spec.dtype,) if isinstance(spec.dtype, str) else spec.dtype
        if allowed is not None and arr.dtype.str not in allowed:
            raise self.fail(where, f"member {name} holds {arr.dtype.str}, expected "
                            f"{' or '.join(allowed)}")
        if spec.ndim is not None and arr.ndim != spec.ndim:
            raise self.fail(where, f"member {name} has {arr.ndim} dimensions, expected "
                            f"{spec.ndim}")
        return arr

    def _object(self, tree: Any, names: tuple[str, ...], where: str) -> Any:
        if not isinstance(tree, dict) or set(tree) != {"__class__", "fields"}:
            raise self.fail(where, "expected {'__class__': ..., 'fields': ...}")
        name, fields = tree["__class__"], tree["fields"]
        if name not in names:
            raise self.fail(where, f"class {_show(name)}, expected {' or '.join(names)}")
        if not isinstance(fields, dict):
            raise self.fail(where, "fields: not an object")
        schema = SCHEMA[name]
        return self.build(name, schema, fields, where)

    def build(self, name: str, schema: dict[str, Spec], fields: dict[str, Any], where: str
              ) -> Any:
        """An instance of class ``name`` from its encoded ``fields``."""
        missing = sorted(set(schema) - set(fields))
        unknown = sorted(set(fields) - set(schema))
        if missing or unknown:
            sub = f"{where}.{(missing or unknown)[0]}"
            raise self.fail(sub, f"missing from {name}" if missing else
                            f"not a field of {name}")
        kwargs = {k: self.value(fields[k], spec, f"{where}.{k}") for k, spec in schema.items()}
        try:
            return _CLASSES[name](**kwargs)
        except (TypeError, ValueError) as e:
            raise self.fail(where, f"not a valid {name} ({e})") from None


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def check_header(path: Path, raw: Any, version: int, plan_version: int) -> None:
    """Refuse a foreign file, or one of another format or plan version, before anything
    else is read."""
    if not isinstance(raw, dict) or raw.get("format") != "pccm":
        raise ArtifactError(path, "not a pccc compiled module (.pccm)")
    ver, made_by = raw.get("format_version"), raw.get("pccc_version", "?")
    if ver != version or raw.get("plan_version") != plan_version:
        raise ArtifactError(path, f"made by pccc {made_by} (module format {ver}, plan "
                            f"v{raw.get('plan_version')}); this pccc reads module format "
                            f"{version}, plan v{plan_version}: recompile the circuit with "
                            "`pccc compile`")


def decode(path: Path, raw: dict[str, Any], archive: Archive) -> Manifest:
    """The typed :class:`Manifest` of a raw manifest whose header passed
    :func:`check_header`."""
    dec = Decoder(path, archive)
    missing = sorted(set(TOP) - set(raw))
    unknown = sorted(set(raw) - set(TOP))
    if missing or unknown:
        field = (missing or unknown)[0]
        raise dec.fail(field, "missing" if missing else "not a manifest field")
    top = {k: dec.value(raw[k], spec, k) for k, spec in TOP.items()}
    return Manifest(top["pccc_version"], top["backend"], top["dtype"], top["pipeline"],
                    top["options"], top["plan"], top["source"], top["state"])


def source_sizes_problem(circuit: l0.Circuit, num_roots: int) -> str | None:
    """Where a source circuit claims more nodes than its arrays, children and the plan's
    roots hold (checked before anything allocates by node counts), else None.

    A product vector over children of one node each may have any number of nodes; its count
    must then be no larger than the largest dimension of a parameter array or the number of
    roots (a parent sum's weights have a column per node; the root vector has a node per
    root)."""
    if not 0 <= circuit.root < len(circuit.nodes):
        return f"source.root: {circuit.root} is not a node"
    if circuit.nodes[circuit.root].n != num_roots:
        return f"source: the root vector has {circuit.nodes[circuit.root].n} nodes, the plan " \
               f"{num_roots} roots"
    cap = max([num_roots, 1] + [d for a in circuit.params.values() for d in a.shape])
    sizes: list[int] = []
    for i, nd in enumerate(circuit.nodes):
        evidence = _node_evidence(circuit, nd, sizes)
        if evidence is None and nd.n > cap:
            return f"source.nodes.{i}: n is {nd.n}, more than any array or root count ({cap})"
        if evidence is not None and nd.n != evidence:
            return f"source.nodes.{i}: n is {nd.n}, but its arrays and children make {evidence}"
        sizes.append(nd.n)
    return None


def _node_evidence(circuit: l0.Circuit, nd: Any, sizes: list[int]) -> int | None:
    """The node count a vector's arrays or children imply (-1: none is possible)."""
    if any(not 0 <= c < len(sizes) for c in nd.children):
        return -1  # (a child that is not an earlier node: refused)
    if isinstance(nd, l0.ProductVector):
        if nd.edges is not None:
            return int(nd.edges.shape[0])
        wide = {sizes[c] for c in nd.children if sizes[c] != 1}
        return wide.pop() if len(wide) == 1 else (-1 if wide else None)
    param = getattr(nd, "param", None)
    if param is not None:
        arr = circuit.params.get(param)
        return -1 if arr is None or arr.ndim == 0 else int(arr.shape[0])
    values = dict(getattr(nd, "attrs", ())).get("values")
    return len(values) if isinstance(values, tuple) else None


__all__ = ["Arr", "Decoder", "Manifest", "SCHEMA", "check_header", "decode",
           "source_sizes_problem"]
