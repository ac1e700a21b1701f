"""``.pccm`` compiled-module artifacts: the L3 plan with its current parameters, the source
circuit, and how they were made, in a safe format (never pickle).

A ``.pccm`` file is a zip archive holding ``manifest.json`` and one ``.npy`` member per array
(written with ``allow_pickle=False``, read back the same way). The manifest records the format
version, the pccc and plan versions, the backend, dtype, pipeline and options, and the plan and
source circuit as JSON trees whose arrays point at the ``.npy`` members. A saved module also
stores its exact state (``state``: its parameters and buffers as it holds them, in its dtype).
Loading re-creates the module from the plan without re-running the passes, then sets that
state, so the loaded module computes bit for bit what the saved one did (the plan's values
alone went through ``exp`` and ``log``; files without a state load from them). A truncated or
corrupt archive, a foreign file, or a format version this pccc does not read is refused with a
:class:`PcccError`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from pccc.ir import circuit as l0
from pccc.ir import plan as l3
from pccc.ir.errors import PcccError

FORMAT = "pccm"
FORMAT_VERSION = 1

#: dataclasses that may appear in a manifest tree, by name
_CLASSES: dict[str, type] = {cls.__name__: cls for cls in (
    l3.KernelPlan, l3.InputLayer, l3.ProductLayer, l3.ProductPartition, l3.SumLayer,
    l3.SumPartition, l0.Circuit, l0.InputVector, l0.ProductVector, l0.SumVector)}


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
            fields = {f.name: self.encode(getattr(obj, f.name), f"{path}.{f.name}")
                      for f in dataclasses.fields(obj)}
            return {"__class__": type(obj).__name__, "fields": fields}
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


def _decode(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(tree, list):
        return [_decode(v, arrays) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__array__" in tree:
        return arrays[tree["__array__"]]
    if "__set__" in tree:
        return frozenset(tree["__set__"])
    if "__tuple__" in tree:
        return tuple(_decode(v, arrays) for v in tree["__tuple__"])
    if "__dict__" in tree:
        return {k: _decode(v, arrays) for k, v in tree["__dict__"].items()}
    if "__class__" in tree:
        cls = _CLASSES.get(tree["__class__"])
        if cls is None:
            raise PcccError(f"unknown class {tree['__class__']!r} in the manifest")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: _decode(v, arrays) for k, v in tree["fields"].items() if k in known}
        return cls(**kwargs)
    raise PcccError("malformed manifest node")


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
    with atomic_write(p) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", text)
        for name, arr in enc.arrays.items():
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            z.writestr(name, buf.getvalue())


def read_artifact(path: str | os.PathLike[str]) -> tuple[dict[str, Any], l3.KernelPlan,
                                                         l0.Circuit | None]:
    """(manifest, plan, source circuit) of a ``.pccm`` file; refuses bad files clearly."""
    manifest, plan, source, _ = _read(path)
    return manifest, plan, source


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], l3.KernelPlan,
                                                 l0.Circuit | None, dict[str, np.ndarray] | None]:
    """:func:`read_artifact` and the module's exact state (None in files without one)."""
    p = Path(path)
    if not p.exists():
        raise PcccError(f"{p}: no such file")
    try:
        with zipfile.ZipFile(p) as z:
            manifest = json.loads(z.read("manifest.json"))
            _check_manifest(p, manifest)
            arrays = {}
            for name in z.namelist():
                if name.endswith(".npy"):
                    arrays[name] = np.load(io.BytesIO(z.read(name)), allow_pickle=False)
    except zipfile.BadZipFile as e:
        raise PcccError(f"{p}: not a .pccm file, or truncated/corrupt ({e})") from None
    except KeyError as e:
        raise PcccError(f"{p}: incomplete .pccm file (missing {e})") from None
    except (ValueError, EOFError, OSError) as e:
        raise PcccError(f"{p}: corrupt .pccm file ({e})") from None
    try:
        plan = _decode(manifest["plan"], arrays)
        source = _decode(manifest["source"], arrays) if manifest.get("source") else None
        state = _decode(manifest["state"], arrays) if manifest.get("state") else None
    except (KeyError, TypeError, ValueError) as e:
        raise PcccError(f"{p}: corrupt .pccm manifest ({e})") from None
    return manifest, plan, source, state


def _check_manifest(p: Path, m: Any) -> None:
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise PcccError(f"{p}: not a pccc compiled module (.pccm)")
    ver, made_by = m.get("format_version"), m.get("pccc_version", "?")
    if ver != FORMAT_VERSION or m.get("plan_version") != l3.PLAN_VERSION:
        raise PcccError(f"{p}: made by pccc {made_by} (module format {ver}, plan "
                        f"v{m.get('plan_version')}); this pccc reads module format "
                        f"{FORMAT_VERSION}, plan v{l3.PLAN_VERSION}: recompile the circuit "
                        "with `pccc compile`")


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
    """A compiled module from a ``.pccm`` file, without re-running the passes."""
    from pccc.api import _dtype
    from pccc.backends import registry

    manifest, plan, source, state = _read(path)
    name = backend or manifest["backend"]
    opts = {k: v for k, v in manifest.get("options", {}).items() if k != "training"}
    if name != manifest["backend"]:  # the options were the recorded backend's (precision...)
        opts = {}
    model = registry.get(name)(plan, device=device,
                               dtype=_dtype(dtype or manifest.get("dtype")), **opts)
    if state is not None:
        import torch

        model.load_exact_state({k: torch.from_numpy(v) for k, v in state.items()})
    model.source_circuit = source
    model.pipeline = manifest.get("pipeline")
    model.backend_name = name
    model.compile_options = manifest.get("options", {})
    return model
