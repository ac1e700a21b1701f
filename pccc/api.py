"""The public Python API: ``pccc.load``, ``pccc.save``, ``pccc.compile``, ``pccc.load_module``.

Example::

    import pccc
    circuit = pccc.load("model.jpc")
    model = pccc.compile(circuit, backend="torch", device="cpu")
    ll = model(x)                      # x: LongTensor [B, V], -1 = missing
    ll.mean().backward()
    pccc.optim.MiniBatchEM(model, step_size=0.1, pseudocount=0.1).step()
    pccc.save(model, "trained.jpc")

torch is imported only when a module is compiled or loaded.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from pccc.ir.circuit import Circuit
from pccc.ir.errors import PcccError

PathLike = str | os.PathLike[str]


def load(path: PathLike, *, allow_elided: bool = False) -> Any:
    """Read an IR value from a file.

    A ``.pcir`` text gives the value of the level its header names: an L0
    :class:`~pccc.ir.Circuit`, an L1 ``BlockedCircuit``, an L2 ``LayeredCircuit`` or an L3
    ``KernelPlan``. Every other circuit format (``.jpc``, ``.psdd``, ``.spn``; see
    ``pccc.formats.readable()``) gives an L0 circuit. A compiled module (``.pccm``) is read by
    :func:`load_module` instead.

    Args:
        path: the file.
        allow_elided: read a ``.pcir`` text whose arrays were printed as their shape only,
            filling them with placeholder values (else such a text is refused).

    Raises:
        PcccError: an unknown format, a missing file, a ``.pccm`` file; ``ParseError`` (a
            subclass) at ``file:line:col`` for a malformed text.
    """
    from pathlib import Path

    from pccc import formats

    p = Path(path)
    if p.name.lower().endswith(".pccm"):
        raise PcccError(f"{p}: a compiled module; read it with pccc.load_module({str(p)!r})")
    if p.name.lower().endswith(".pcir"):
        from pccc.ir.parse_lowered import read_pcir_any

        if not p.is_file():
            raise PcccError(f"{p}: no such file")
        return read_pcir_any(p, allow_elided=allow_elided)
    return formats.load(p)


def save(obj: Any, path: PathLike) -> None:
    """Write a circuit, or a compiled module's circuit with its current parameters.

    A module is written in its source circuit's structure (parameters read back through the
    plan's ``param_map``). The format follows the extension; the write is atomic. A module saved
    to a ``.pccm`` path is written as a compiled-module artifact (see :func:`load_module`).
    """
    from pccc import formats

    if str(path).lower().endswith(".pccm"):
        if not hasattr(obj, "current_plan"):
            raise PcccError("pccc.save: a .pccm file holds a compiled module; compile first")
        from pccc.artifact import save_module

        save_module(obj, path)
        return

    if isinstance(obj, Circuit):
        circuit = obj
    elif hasattr(obj, "to_circuit"):
        circuit = obj.to_circuit()
    else:
        raise PcccError(f"pccc.save: expected a Circuit or a compiled module, got "
                        f"{type(obj).__name__}")
    formats.save(circuit, path)


def _dtype(dtype: Any) -> Any:
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        table = {"float32": torch.float32, "float64": torch.float64, "fp32": torch.float32,
                 "fp64": torch.float64}
        if dtype not in table:
            raise PcccError(f"unknown dtype {dtype!r} (float32 or float64)")
        return table[dtype]
    return dtype


def compile(circuit: Circuit, backend: str = "torch", *, device: Any = None, dtype: Any = None,
            pipeline: str | None = None, training: bool = True, verify: bool = True,
            **options: Any) -> Any:
    """Compile a circuit into an executable ``torch.nn.Module``.

    Args:
        circuit: the source circuit (kept on the module for :func:`save`).
        backend: a registered backend name (``torch``, ``triton``, ...).
        device: torch device (default CPU).
        dtype: ``torch.float32`` (default) or ``torch.float64`` (or their names).
        pipeline: pass pipeline; None picks the default training/inference pipeline.
        training: keep every source parameter trainable (see ``pccc.passes.compile_plan``).
        verify: check the circuit with the L0 verifier first (:func:`pccc.ir.verify`: smooth,
            decomposable, well-formed, parameters in range); False skips the check.
        options: backend options, checked before the passes run (the Triton backend's:
            :class:`pccc.backends.triton.options.TritonOptions`, kept as ``model.options``).

    Raises:
        VerifyError: the circuit breaks an invariant (the message names the node).
        PcccError: an unknown or ill-typed option (named, with the valid ones).
    """
    from pccc.backends import registry
    from pccc.ir.verify import verified
    from pccc.passes import compile_plan

    if backend == "reference":
        raise PcccError("the reference backend evaluates circuits directly "
                        "(pccc.backends.reference.log_likelihood); it compiles no module")
    factory = registry.get(backend)
    registry.check_options(backend, options)
    registry.prepare(backend, device, options)  # (threads that overlap the passes)
    # (the parameter values are checked while the passes run: see verified)
    with verified(circuit) if verify else contextlib.nullcontext():
        plan = compile_plan(circuit, pipeline, training=training)
    model = factory(plan, device=device, dtype=_dtype(dtype), **options)
    model.source_circuit = circuit
    model.pipeline = dict(plan.meta).get("pipeline", pipeline)
    model.backend_name = backend
    model.compile_options = dict(options, training=training)
    return model


def load_module(path: PathLike, *, device: Any = None, dtype: Any = None,
                backend: str | None = None) -> Any:
    """Load a compiled module from a ``.pccm`` artifact without re-running the passes.

    Args:
        path: the ``.pccm`` file (``pccc compile ... -o model.pccm`` or ``pccc.save``).
        device: torch device.
        dtype: override the dtype recorded in the file.
        backend: override the backend recorded in the file (e.g. ``torch`` on a machine
            without Triton).
    """
    from pccc.artifact import read_module

    return read_module(path, device=device, dtype=dtype, backend=backend)


def load_plugin(path: PathLike) -> None:
    """Import a plugin: a ``.py`` file, or a module name, whose import registers passes
    (``pccc.passes.register_pass``), backends (``pccc.backends.registry.register``) or input
    distributions. Afterwards pipelines name its passes (:func:`compile`'s ``pipeline``,
    ``pccc.passes.compile_plan``) and ``backend=`` its backends. A plugin is imported once;
    loading it again does nothing. The command line loads the same plugins from ``--load``
    and the ``PCCC_PLUGINS`` environment variable.

    Example::

        pccc.load_plugin("my_passes.py")
        model = pccc.compile(circuit, pipeline="canonicalize,temper{power=2},group-blocks,"
                                               "partition-layers,layout-params")

    Raises:
        PassError: the file does not exist, or importing it failed.
    """
    from pccc.passes.registry import load_plugin as _load

    _load(os.fspath(path))
