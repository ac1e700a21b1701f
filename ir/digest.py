"""Content digests of L0 circuits: how the text of a lowered level names its source circuit.

:func:`circuit_digest` is the SHA-256 of a circuit's value: its nodes (kinds, sizes,
variables, distributions and their attributes, children, ``edges`` tables, parameter keys),
``num_vars``, the root, and every parameter array's key, shape and float64 bytes. It does not
depend on how the circuit was written (inline or sidecar values, comments, file names), so a
circuit read back from any ``.pcir`` form of itself has the same digest, and two circuits with
the same digest are equal (bit for bit, so ``-0.0`` and ``0.0`` differ).

Example::

    circuit_digest(circuit)        # '3b5d...' (64 hex digits); computed once per object
"""

from __future__ import annotations

import hashlib

import numpy as np

from pccc.ir.circuit import Circuit, InputVector, ProductVector

#: the digest's name in texts (``source sha256="..."``)
ALGORITHM = "sha256"


def circuit_digest(c: Circuit) -> str:
    """The SHA-256 (64 hex digits) of the value of ``c``; computed once per circuit object."""
    cached: str | None = c.__dict__.get("_digest")
    if cached is None:
        cached = _digest(c)
        object.__setattr__(c, "_digest", cached)
    return cached


def _digest(c: Circuit) -> str:
    h = hashlib.sha256()
    h.update(f"pcir L0 num_vars={c.num_vars} root={c.root} nodes={len(c.nodes)}\n".encode())
    lines: list[str] = []
    for nd in c.nodes:
        if isinstance(nd, InputVector):
            lines.append(f"input {nd.n} {nd.var} {nd.dist} {nd.attrs!r} {nd.param!r}")
        elif isinstance(nd, ProductVector):
            edges = None if nd.edges is None else nd.edges.shape
            lines.append(f"product {nd.n} {nd.children!r} {edges!r}")
            if nd.edges is not None:  # (the table's bytes go in after the lines)
                h.update("\n".join(lines).encode() + b"\n")
                h.update(np.ascontiguousarray(nd.edges, np.int64).tobytes())
                lines = []
        else:
            lines.append(f"sum {nd.n} {nd.children!r} {nd.param!r}")
    h.update("\n".join(lines).encode() + b"\nparams\n")
    for key, a in c.params.items():
        h.update(f"{key!r} {a.shape!r}\n".encode())
        h.update(np.ascontiguousarray(a, np.float64).tobytes())
    return h.hexdigest()
