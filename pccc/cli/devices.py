"""Which backend a command runs on, and the line that says so.

On a CUDA device ``pccc train`` and ``pccc eval`` run the Triton backend unless ``--backend``
names another (the torch backend is far slower there: an MNIST HCLT-128 epoch took 62-70 s
with it on an H100, 0.35 s with Triton); where Triton does not import they fall back to
torch. On the CPU they run torch (``eval`` in float64, as exact as the reference evaluator
and faster: see ``docs/benchmarks.md``).
"""

from __future__ import annotations

from typing import Any

from pccc.ir.errors import PcccError


def is_cuda(device: str) -> bool:
    """Whether ``device`` names a CUDA device (``cuda``, ``cuda:1``)."""
    return str(device).split(":", 1)[0] == "cuda"


def check_device(device: str) -> None:
    """Refuse a CUDA device where torch sees none, in one line."""
    if is_cuda(device):
        import torch

        if not torch.cuda.is_available():
            raise PcccError(f"--device {device}: no CUDA device is available here")


def triton_imports() -> bool:
    """Whether the Triton backend can be loaded here."""
    from pccc.backends import registry

    try:
        registry.get("triton")
    except PcccError:
        return False
    return True


def default_backend(device: str) -> str:
    """The compiling backend for ``device`` when none is named: ``triton`` on a CUDA device
    where Triton imports, else ``torch``."""
    return "triton" if is_cuda(device) and triton_imports() else "torch"


def load_pccm(path: str, backend: str | None, device: str, dtype: str | None, purpose: str
              ) -> tuple[Any, Any]:
    """A ``.pccm`` module for a command and its source circuit (None where it holds none):
    on ``backend`` (default: the one its file names), or on the CPU where ``backend`` is
    ``reference``, which needs the source circuit (``purpose`` words the refusal)."""
    import pccc

    ref = backend == "reference"
    if not ref:
        check_device(device)
    model = pccc.load_module(path, device="cpu" if ref else device, dtype=dtype,
                             backend=None if ref else backend)
    circuit = model.to_circuit() if model.source_circuit is not None else None
    if ref and circuit is None:
        raise PcccError(f"{path}: the module holds no source circuit to {purpose}")
    return model, circuit


def dtype_name(model: Any) -> str:
    """A compiled module's dtype as printed (``float32``)."""
    return str(model.dtype).replace("torch.", "")


def describe(backend: str, device: str, dtype: str) -> str:
    """The first line of a command's output: ``backend: triton (cuda, float32)``."""
    return f"backend: {backend} ({device}, {dtype})"
