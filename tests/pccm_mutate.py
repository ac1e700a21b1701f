"""Mutations of ``.pccm`` artifacts for the campaigns of ``test_pccm_mutations.py``: edits of
manifest fields, of array members (contents, shapes, dtypes, headers) and of the zip archive,
drawn by hypothesis; ``reseal`` recomputes the checksums as a hostile editor would."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
import zipfile
from typing import Any

import numpy as np
from hypothesis import note
from hypothesis import strategies as st

#: replacement values for a manifest field
VALUES: list[Any] = [0, 1, -1, 2, 3, 50_000_000, -50_000_000, 2**62, 2**63, 10**30, 1.5, -0.0,
                     1e308, "x", "", None, True, [], {}, [[[[]]]], {"__array__": "nope.npy"},
                     {"__tuple__": []}, {"__class__": "Circuit", "fields": {}},
                     {"__dict__": {"a": 1}}, {"__set__": [1]}]


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def archive(items: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", method) as z:
        warnings.simplefilter("ignore", UserWarning)  # (a duplicated member, on purpose)
        for n, b in items:
            z.writestr(n, b)
    return buf.getvalue()


def reseal(m: dict[str, bytes]) -> dict[str, bytes]:
    """The members with ``checksums.json`` recomputed over the others."""
    sums = {n: hashlib.sha256(b).hexdigest() for n, b in m.items() if n != "checksums.json"}
    return dict(m, **{"checksums.json": json.dumps(sums).encode()})


def _paths(tree: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, at + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, at + (i,))
    return out


def _edit_json(draw: Any, man: Any) -> Any:
    paths = [p for p in _paths(man) if p]
    path = draw(st.sampled_from(paths))
    parent = man
    for k in path[:-1]:
        parent = parent[k]
    op = draw(st.sampled_from(["set", "set", "set", "delete", "add"]))
    note(f"manifest {'.'.join(map(str, path))}: {op}")
    if op == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif op == "add" and isinstance(parent, dict):
        parent["unknown_field"] = draw(st.sampled_from(VALUES))
    else:
        value = draw(st.sampled_from(VALUES))
        old = parent[path[-1]]
        if isinstance(old, int) and not isinstance(old, bool) and draw(st.booleans()):
            value = old + draw(st.sampled_from([-2, -1, 1, 2, 1000]))
        parent[path[-1]] = value
        note(f"  = {value!r}")
    return man


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _edit_array(draw: Any, raw: bytes) -> bytes:
    arr = np.load(io.BytesIO(raw), allow_pickle=False)
    op = draw(st.sampled_from(["element", "element", "element", "dtype", "shape", "pickle",
                               "header", "truncate"]))
    note(f"array: {op}")
    if op == "element" and arr.size:
        a = arr.copy().reshape(-1)
        i = draw(st.integers(0, a.size - 1))
        if a.dtype.kind == "f":
            a[i] = draw(st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 2.0, 1e300]))
        elif a.dtype.kind == "b":
            a[i] = not a[i]
        else:
            a[i] = draw(st.sampled_from([-1, 0, 1, int(a[i]) + 1, int(a[i]) - 1, 50_000_000,
                                         -50_000_000, 2**62]))
        note(f"  [{i}] = {a[i]!r}")
        return _npy(a.reshape(arr.shape))
    if op == "dtype":
        dt = draw(st.sampled_from(["<i4", "<f8", "<i8", ">i8", "<f4", "|u1", "<c16"]))
        return _npy(arr.astype(dt))
    if op == "shape":
        shape = draw(st.sampled_from([(-1,), (1, -1), (-1, 1)]))
        a = arr.reshape(shape) if arr.size else np.zeros((0, 0), arr.dtype)
        if draw(st.booleans()) and arr.size:
            a = arr.reshape(-1)[:-1]
        return _npy(a)
    if op == "pickle":
        return _npy(np.array([object()], dtype=object))
    if op == "header":
        return raw.replace(str(arr.shape).encode(), b"(1000000000000,)", 1)
    return raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]


@st.composite
def mutated(draw: Any, data: bytes, *, hostile: bool) -> bytes:
    """``data`` (a ``.pccm`` file) with one mutation; ``hostile``: checksums resealed."""
    m = members(data)
    kind = draw(st.sampled_from(["json", "json", "array", "array", "zip"]))
    if kind == "json":
        man = _edit_json(draw, json.loads(m["manifest.json"]))
        m["manifest.json"] = json.dumps(man).encode()
    elif kind == "array":
        name = draw(st.sampled_from(sorted(n for n in m if n.endswith(".npy"))))
        note(f"member {name}")
        m[name] = _edit_array(draw, m[name])
    if hostile:
        m = reseal(m)
    items = list(m.items())
    if kind == "zip":
        op = draw(st.sampled_from(["drop", "duplicate", "extra", "bytes", "cut", "bzip"]))
        note(f"zip: {op}")
        i = draw(st.integers(0, len(items) - 1))
        if op == "drop":
            del items[i]
        elif op == "duplicate":
            items.append(items[i])
        elif op == "extra":
            items.append((draw(st.sampled_from(["x.npy", "evil.pkl", "manifest.json"])), b"x"))
        elif op == "bzip":
            return archive(items, zipfile.ZIP_BZIP2)
        raw = bytearray(archive(items))
        if op == "bytes":
            at = draw(st.integers(0, len(raw) - 1))
            raw[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            raw = raw[: draw(st.integers(0, len(raw) - 1))]
        return bytes(raw)
    return archive(items)
