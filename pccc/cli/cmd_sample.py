"""``pccc sample CIRCUIT -n N [--evidence DATA] [--seed S] -o OUT``: exact samples (the
command lives beside ``pccc query`` in :mod:`pccc.cli.cmd_query`)."""

from __future__ import annotations

from typing import Any

from pccc.cli.cmd_query import add_sample_parser


def add_parser(sub: Any) -> None:
    add_sample_parser(sub)
