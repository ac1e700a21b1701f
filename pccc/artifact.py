"""``.pccm`` compiled-module artifacts: the L3 plan with its current parameters, the source
circuit, and how they were made, in a safe format (never pickle).

A ``.pccm`` file is a zip archive holding ``manifest.json``, one ``.npy`` member per array
(written with ``allow_pickle=False``) and ``checksums.json``, the SHA-256 of every other
member. The manifest records the format version, the pccc and plan versions, the backend,
dtype, pipeline and options, and the plan and source circuit as JSON trees whose arrays point
at the ``.npy`` members. A saved module also stores its exact state (``state``: its parameters
and buffers as it holds them, in its dtype). Loading re-creates the module from the plan
without re-running the passes, then sets that state, so the loaded module computes bit for bit
what the saved one did (the plan's values alone went through ``exp`` and ``log``; files
without a state load from them).

Nothing in a file is trusted: reading checks the archive and its checksums
(:mod:`pccc.archive`), decodes the manifest against the schema of every field
(:mod:`pccc.manifest`), runs the plan verifier with the parameter values
(:func:`pccc.ir.plan_verify.verify_plan`) and the L0 verifier on the source circuit, checks
that the two agree, and checks the options against the backend and the state against the
module it is set on, before any kernel runs. Every refusal is an
:class:`~pccc.archive.ArtifactError` naming the file and the member or field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pccc.archive import CHECKSUMS, MANIFEST, Archive, ArtifactError
from pccc.ir import circuit as l0
from pccc.ir import plan as l3
from pccc.ir.errors import PcccError
from pccc.manifest import SCHEMA, Manifest, check_header, decode, source_sizes_problem

FORMAT = "pccm"
FORMAT_VERSION = 2

class _Encoder:
    """Turns a tree of IR dataclasses into JSON plus named arrays."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def encode(self, obj: Any, path: str) -> Any:
        if isinstance(obj, np.ndarray):
            name = f"{path}.npy"
            self.arrays[name] = np.ascontiguousarray(obj)
            return {"__array__": name}
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            name = type(obj).__name__  # (the fields the schema stores: not Circuit.source)
            fields = {f: self.encode(getattr(obj, f), f"{path}.{f}") for f in SCHEMA[name]}
            return {"__class__": name, "fields": fields}
        if isinstance(obj, (frozenset, set)):
            return {"__set__": sorted(obj)}
        if isinstance(obj, tuple):
            return {"__tuple__": [self.encode(v, f"{path}.{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self.encode(v, f"{path}.{i}") for i, v in enumerate(obj)]
        if hasattr(obj, "items"):
            return {"__dict__": {str(k): self.encode(v, f"{path}.{k}") for k, v in obj.items()}}
        if isinstance(obj, (np.integer, np.floating)):
            return obj.item()
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"cannot store a {type(obj).__name__} in a .pccm manifest")


def write_artifact(path: str | os.PathLike[str], plan: l3.KernelPlan, source: l0.Circuit | None,
                   *, backend: str, dtype: str, pipeline: str | None,
                   options: dict[str, Any], state: dict[str, np.ndarray] | None = None) -> None:
    """Write a ``.pccm`` file atomically (see the module docstring; ``state``: a module's
    exact state, see ``CompiledCircuit.exact_state``)."""
    from pccc import __version__
    from pccc.formats import atomic_write

    enc = _Encoder()
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "pccc_version": __version__,
        "plan_version": l3.PLAN_VERSION, "backend": backend, "dtype": dtype,
        "pipeline": pipeline, "options": options,
        "plan": enc.encode(plan, "plan"),
        "source": None if source is None else enc.encode(source, "source"),
        "state": None if state is None else enc.encode(state, "state"),
    }
    text = json.dumps(manifest, indent=1, sort_keys=True)
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise PcccError(f"{p}: folder {parent} does not exist")
    sums: dict[str, str] = {}
    with atomic_write(p) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, method in _members(text, enc.arrays):
            sums[name] = hashlib.sha256(data).hexdigest()
            z.writestr(name, data, compress_type=method, compresslevel=1)
        z.writestr(CHECKSUMS, json.dumps(sums, indent=0, sort_keys=True), compresslevel=1)


def _members(text: str, arrays: dict[str, np.ndarray]) -> Iterator[tuple[str, bytes, int]]:
    """The manifest's and the arrays' members, as bytes, with their zip method: floating
    point arrays (parameters: deflate gets through them at a few MB/s) are stored, the rest
    deflated at level 1 (text, indices)."""
    yield MANIFEST, text.encode("utf-8"), zipfile.ZIP_DEFLATED
    for name, arr in arrays.items():
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        method = zipfile.ZIP_STORED if arr.dtype.kind in "fc" else zipfile.ZIP_DEFLATED
        yield name, buf.getvalue(), method


def read_artifact(path: str | os.PathLike[str]) -> tuple[dict[str, Any], l3.KernelPlan,
                                                         l0.Circuit | None]:
    """(manifest, plan, source circuit) of a ``.pccm`` file, all checked (see the module
    docstring); the manifest as a dict of its plain fields."""
    m = read_checked(path)
    head = {"format": FORMAT, "format_version": FORMAT_VERSION, "pccc_version": m.pccc_version,
            "plan_version": l3.PLAN_VERSION, "backend": m.backend, "dtype": m.dtype,
            "pipeline": m.pipeline, "options": m.options}
    return head, m.plan, m.source


def read_checked(path: str | os.PathLike[str]) -> Manifest:
    """The decoded manifest of a ``.pccm`` file whose plan, source circuit and state passed
    every check.

    Raises:
        ArtifactError: naming the file and the member or field at fault.
    """
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(p, "no such file" if not p.exists() else "not a file")
    with Archive(p) as ar:
        raw = ar.manifest()
        check_header(p, raw, FORMAT_VERSION, l3.PLAN_VERSION)
        ar.check_sums()
        m = decode(p, raw, ar)
    _check_plan(p, m.plan)
    if m.source is not None:
        _check_source(p, m.source, m.plan)
    for k, v in (m.state or {}).items():
        if v.dtype.kind == "f" and (np.isnan(v).any() or np.isposinf(v).any()):
            raise ArtifactError(p, "holds NaN or +inf", field=f"state.{k}")
    return m


def _check_plan(p: Path, plan: l3.KernelPlan) -> None:
    from pccc.ir.errors import VerifyError
    from pccc.ir.plan_verify import check_once

    try:
        check_once(plan, values=True)
    except VerifyError as e:
        raise ArtifactError(p, str(e), field="plan") from None


def _check_source(p: Path, source: l0.Circuit, plan: l3.KernelPlan) -> None:
    """The source circuit: sizes, the L0 verifier, and agreement with the plan."""
    from pccc.ir import verify
    from pccc.ir.errors import VerifyError

    problem = source_sizes_problem(source, plan.num_roots)
    if problem is None and source.num_vars != plan.num_vars:
        problem = f"{source.num_vars} variables, the plan {plan.num_vars}"
    if problem is None:
        try:
            verify(source)
        except VerifyError as e:
            problem = str(e).splitlines()[0]
    if problem is None:
        cards = source.var_cards()
        want = np.array([cards.get(v) or 0 for v in range(source.num_vars)], np.int64)
        if not np.array_equal(want, plan.var_cards):
            problem = "the variables' values differ from the plan's var_cards"
    for key, idx in plan.param_map.items():
        if problem is None and key in source.params and source.params[key].shape != idx.shape:
            problem = (f"parameter {key!r} has shape {source.params[key].shape}, the plan's "
                       f"param_map {idx.shape}")
    if problem is not None:
        raise ArtifactError(p, problem, field="source")


def save_module(model: Any, path: str | os.PathLike[str]) -> None:
    """Write a compiled module (its plan with the current parameters) as ``.pccm``."""
    import torch

    plan = model.current_plan()
    state = {k: v.cpu().numpy() for k, v in model.exact_state().items()}
    dtype = "float64" if model.dtype == torch.float64 else "float32"
    write_artifact(path, plan, model.to_circuit() if model.source_circuit is not None else None,
                   backend=getattr(model, "backend_name", "torch"), dtype=dtype,
                   pipeline=getattr(model, "pipeline", None),
                   options=getattr(model, "compile_options", {}), state=state)


def read_module(path: str | os.PathLike[str], *, device: Any = None, dtype: Any = None,
                backend: str | None = None) -> Any:
    """A compiled module from a ``.pccm`` file, without re-running the passes (every part
    of the file checked first: :func:`read_checked`)."""
    from pccc.api import _dtype
    from pccc.backends import registry

    p = Path(path)
    m = read_checked(p)
    name = backend or m.backend
    factory = registry.get(name)
    opts = {k: v for k, v in m.options.items() if k != "training"}
    if name != m.backend:  # the options were the recorded backend's (precision...)
        opts = {}
    _check_options(p, name, opts)
    model = factory(m.plan, device=device, dtype=_dtype(dtype or m.dtype), **opts)
    if m.state is not None:
        _load_state(p, model, m.state, m.dtype)
    model.source_circuit = m.source
    model.pipeline = m.pipeline
    model.backend_name = name
    model.compile_options = m.options
    return model


def _check_options(p: Path, backend: str, opts: dict[str, Any]) -> None:
    from pccc.backends import registry

    try:
        registry.check_options(backend, opts)
    except PcccError as e:
        raise ArtifactError(p, str(e), field="options") from None


def _load_state(p: Path, model: Any, state: dict[str, np.ndarray], dtype: str) -> None:
    """Set a stored exact state after checking it against the module's own entries."""
    import torch

    own = model.exact_state()
    for k, v in state.items():
        mine = own.get(k)
        if mine is None:
            continue  # (another backend's entry: the module ignores it)
        want = dtype if mine.is_floating_point() else str(mine.dtype).replace("torch.", "")
        if tuple(mine.shape) != v.shape or str(v.dtype) != want:
            raise ArtifactError(p, f"{v.dtype} {v.shape}, expected {want} "
                                f"{tuple(mine.shape)}", field=f"state.{k}")
    model.load_exact_state({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    from pccc.ir.errors import VerifyError
    from pccc.ir.plan_verify import verify_plan

    try:  # (the values the state makes, e.g. exp of its logits, must be in their domains)
        verify_plan(model.current_plan())
    except VerifyError as e:
        raise ArtifactError(p, f"the parameters it sets: {e}", field="state") from None
