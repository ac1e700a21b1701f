"""Run PyJuice 2.6.3 on the CPU through Triton's interpreter, for small parity checks.

PyJuice compiles only for CUDA: it asks ``torch.cuda`` for the current device, moves tables
with ``.cuda()``, picks its Triton kernels when a layer's device type is ``cuda`` and calls
three libdevice functions that the interpreter lacks. Importing this module (with
``TRITON_INTERPRET=1`` set before Triton is imported) shims exactly those: tensors stay on the
CPU, layers see a device whose type reads ``cuda``, and ``log1p``, ``pow`` and ``ceil`` become
plain ``tl`` functions. Call :func:`on_cpu` on a compiled ``TensorCircuit``.

Verified against pccc's float64 reference on HCLTs of 4 and 8 latents (forward to 1e-6,
EM steps to float32 noise). With 16 latents or more PyJuice's block-sparse sum kernels give
positive log-likelihoods under the interpreter, so its GPU run is the reference there
(``em_parity.py`` on the device).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


class FakeCuda:
    """A device whose type reads ``cuda`` while the tensors stay on the CPU."""

    type = "cuda"
    index = 0

    def __str__(self) -> str:
        return "cpu"

    __repr__ = __str__


def _cpu(v):
    if isinstance(v, FakeCuda) or (isinstance(v, torch.device) and v.type == "cuda"):
        return "cpu"
    if isinstance(v, str) and v.startswith("cuda"):
        return "cpu"
    return v


def _wrap(fn):
    def wrapped(*a, **k):
        if "device" in k:
            k["device"] = _cpu(k["device"])
        return fn(*a, **k)
    return wrapped


class _Device:
    def __init__(self, *a) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a) -> bool:
        return False


_to = torch.Tensor.to
torch.Tensor.to = lambda self, *a, **k: _to(self, *(_cpu(v) for v in a),  # type: ignore
                                            **{n: _cpu(v) for n, v in k.items()})
torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore
torch.cuda.current_device = lambda: torch.device("cpu")  # type: ignore
torch.cuda.device = _Device  # type: ignore
torch.cuda.synchronize = lambda *a, **k: None  # type: ignore
for _name in ("zeros", "ones", "empty", "full", "tensor", "arange", "rand", "randn",
              "zeros_like", "ones_like", "empty_like", "full_like", "linspace", "randint"):
    setattr(torch, _name, _wrap(getattr(torch, _name)))


@triton.jit
def _log1p(x):
    return tl.log(1.0 + x)


@triton.jit
def _pow(x, y):
    return tl.exp(y * tl.log(x))


@triton.jit
def _ceil(x):
    return tl.ceil(x)


class _Libdevice:
    log1p = _log1p
    pow = _pow
    ceil = _ceil


tl.extra.cuda.libdevice = _Libdevice  # type: ignore


def on_cpu(pc):
    """Point a compiled PyJuice circuit's layers at the CPU Triton path; returns ``pc``."""
    for m in pc.modules():
        if hasattr(m, "device"):
            try:
                m.device = FakeCuda()
            except (AttributeError, TypeError):
                pass
    pc.device = FakeCuda()
    return pc
