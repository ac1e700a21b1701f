"""The Triton backend's options: one frozen, typed value.

``pccc.compile(circuit, backend="triton", **options)`` validates its keyword options into a
:class:`TritonOptions` (:meth:`TritonOptions.from_kwargs`); an unknown or ill-typed option is a
:class:`~pccc.ir.errors.PcccError` that names it and lists the valid ones. The module keeps the
value (``model.options``) and shows it in ``model.artifacts["options"]``. Nothing else chooses
the backend's kernels or behaviour: no environment variable is read (Triton's own and the cache
folder ``PCCC_CACHE_DIR`` aside).

Example::

    model = pccc.compile(c, backend="triton", device="cuda", precision="fp32",
                         cuda_graphs=False, tiles={"fwd": 64})
    print(model.artifacts["options"])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pccc.ir.errors import PcccError

#: tile precisions of the kernels' dot products
PRECISIONS = ("tf32", "fp32", "bf16")

#: the kernels' tile sizes and warps, by name (``tiles=`` overrides any of them):
#: batch columns per program of the sum layers' forward (``fwd``), backward (``bwd``), element
#: flows (``eflow``) and the backward of lone blocks (``bwds``); their warps (``wfwd``,
#: ``wbwd``, ``weflow``, ``wbwds``); node rows, columns and warps of the input layers' forward
#: (``inbn``, ``inbt``, ``win``); columns of the flow ratios (``ratio``); the forward and
#: backward of wide products (``wide``, ``wideb``); the transposed forward of blocks under 64
#: rows (``fwdt``); the categorical statistics' one-hot GEMMs: longest run of one variable's
#: nodes (``catnb``), values per tile (``catkt``), batch columns per step (``catbt``), warps
#: (``wcat``). The defaults are the H100 sweep's best (``docs/benchmarks.md``). The
#: ``schedule-kernels`` pass reads them (its options of the same names).
DEFAULT_TILES: Mapping[str, int] = MappingProxyType({
    "fwd": 32, "bwd": 32, "eflow": 64, "wfwd": 4, "wbwd": 4, "weflow": 8, "bwds": 32,
    "wbwds": 4, "inbn": 16, "inbt": 128, "win": 4, "ratio": 32, "wide": 32, "wideb": 16,
    "fwdt": 64, "catnb": 64, "catkt": 256, "catbt": 32, "wcat": 8})


def _tiles(overrides: Mapping[str, int] | None) -> Mapping[str, int]:
    merged = dict(DEFAULT_TILES)
    for key, value in (overrides or {}).items():
        if key not in DEFAULT_TILES:
            raise PcccError(f"triton backend: unknown tile {key!r} in option 'tiles' (valid: "
                            f"{', '.join(DEFAULT_TILES)})")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1 \
                or value & (value - 1):
            raise PcccError(f"triton backend: option 'tiles': {key}={value!r} must be a "
                            "power of two")
        merged[key] = value
    return MappingProxyType(merged)


@dataclass(frozen=True)
class TritonOptions:
    """Everything that chooses how the Triton backend runs a plan (see the module docstring)."""

    precision: str = "tf32"
    """tile precision of the dot products: ``tf32``, ``fp32`` or ``bf16``"""
    cuda_graphs: bool = True
    """replay each pass's fixed launch sequence as a CUDA graph (CUDA devices only)"""
    overlap_em: bool = True
    """run EM updates on the module's own stream, overlapped with the host's next batch
    (CUDA, EM-only training)"""
    parallel_jit: bool = True
    """compile a pass's kernels in parallel threads before its first launch (CUDA only)"""
    jit_threads: int = 0
    """threads of the parallel compile (0: ``min(16, CPUs)``)"""
    jit_workers: int = 16
    """worker processes, forked from this one, that compile the parallel compile's kernels
    into Triton's cache without the GIL (at most the CPU count; 0: none; CUDA only; forked
    only for a kernel table no earlier process made, whose binaries are not cached)"""
    jit_with_backward: bool = True
    """the first forward of an EM-training module also compiles the backward it predicts"""
    upload_threads: int = 4
    """threads copying the parameter values to the device while kernels load"""
    small_part: int = 1 << 17
    """parts of at most this many weights run their backward as lone blocks (one launch
    where launches, not work, take the time)"""
    round_fanin: bool = False
    """narrow products' fan-in rounded up to a power of two per partition (padding children
    are never read), so that nearby fan-ins share kernels: fewer kernels to compile"""
    flows_in_nodes: bool = False
    """where the schedule allows it (every node row has one writer in a backward pass, as in
    an HCLT: :meth:`~pccc.ir.schedule.KernelSchedule.flows_in_nodes`), training backwards
    keep their flows in the node rows, over the values, and no flow buffer is allocated for
    them (a pass that returns node flows still makes one)"""
    programs: int = 0
    """programs a launch aims for (batch splits and narrower column tiles fill the card
    where a launch has fewer); 0: 4 per multiprocessor of the device"""
    tiles: Mapping[str, int] = field(default_factory=lambda: DEFAULT_TILES)
    """tile sizes and warps by name (:data:`DEFAULT_TILES`)"""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise PcccError(f"triton backend: option 'precision' must be one of "
                            f"{', '.join(PRECISIONS)}, got {self.precision!r}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise PcccError(f"triton backend: option {f.name!r} must be true or false, "
                                f"got {value!r}")
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool)
                                    or value < 0):
                raise PcccError(f"triton backend: option {f.name!r} must be an integer >= 0, "
                                f"got {value!r}")
        if not isinstance(self.tiles, Mapping):
            raise PcccError(f"triton backend: option 'tiles' must be a mapping of tile names "
                            f"to sizes, got {self.tiles!r}")
        object.__setattr__(self, "tiles", _tiles(self.tiles))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The valid option names."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_kwargs(cls, **options: Any) -> TritonOptions:
        """Validate keyword options (``pccc.compile``'s) into a value; unknown ones refused."""
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise PcccError(f"triton backend: unknown option{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(map(repr, unknown))} (valid: {', '.join(cls.names())})")
        return cls(**options)

    def replace(self, **changes: Any) -> TritonOptions:
        """A copy with ``changes`` (validated the same way)."""
        return type(self).from_kwargs(**{**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        """Plain values (``tiles`` as a dict): ``model.artifacts["options"]``'s content."""
        return {f.name: (dict(getattr(self, f.name)) if f.name == "tiles"
                         else getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_text(self) -> str:
        """One ``name = value`` line per option (``tiles`` as ``key=value`` pairs)."""
        lines = []
        for name, value in self.as_dict().items():
            if name == "tiles":
                value = ",".join(f"{k}={v}" for k, v in value.items())
            lines.append(f"{name} = {value}")
        return "\n".join(lines) + "\n"
