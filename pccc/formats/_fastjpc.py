"""Vectorized reading of large ``.jpc`` files (placeholder: always defers)."""

from __future__ import annotations

from pccc.ir.circuit import Circuit


def parse(data: bytes) -> Circuit | None:
    return None
