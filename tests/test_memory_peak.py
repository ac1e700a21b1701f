"""``benchmarks/memory_peak.py``'s replay of allocation events against a recount of the live
blocks after every event."""

from __future__ import annotations

import os
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from memory_peak import ROOT, peak_live  # noqa: E402


def _events(ops: list[tuple[bool, int, int]]) -> list[dict]:
    """Allocations of fresh addresses and frees of live ones (by position), half of the frees
    as a request followed by its completion."""
    out, live, nxt = [], [], 0
    for alloc, size, pick in ops:
        if alloc or not live:
            nxt += 1
            fr = [{"filename": os.path.join(ROOT, "pccc", f"m{size % 3}.py"), "line": 1,
                   "name": "f"}]
            out.append(dict(action="alloc", addr=nxt, size=size, frames=fr))
            live.append(nxt)
        else:
            addr = live.pop(pick % len(live))
            out.append(dict(action="free_requested", addr=addr, size=0))
            if pick % 2:
                out.append(dict(action="free_completed", addr=addr, size=0))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 1000), st.integers(0, 50)),
                min_size=1, max_size=40))
def test_peak_is_the_largest_live_total(ops):
    ev = _events(ops)
    totals = []
    for i in range(len(ev)):
        sizes = {e["addr"]: e["size"] for e in ev[: i + 1] if e["action"] == "alloc"}
        freed = {e["addr"] for e in ev[: i + 1] if e["action"] != "alloc"}
        totals.append(sum(s for a, s in sizes.items() if a not in freed))
    peak, at, sites = peak_live(ev)
    assert peak == max(totals)
    assert totals[at] == peak and totals.index(peak) == at  # the first moment of the peak
    assert sum(sites.values()) == peak
    assert all(k.startswith(os.path.join("pccc", "m")) for k in sites)
