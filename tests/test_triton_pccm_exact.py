"""A Triton module saved as ``.pccm`` and loaded computes bit for bit the same
log-likelihoods, before and after EM steps (``TRITON_INTERPRET=1`` without a GPU)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.pccm_exact import check_exact_roundtrip  # noqa: E402
from tests.strategies import ALL_DISTS, circuits, data_for  # noqa: E402

triton = pytest.importorskip("triton")

pytestmark = [pytest.mark.interpret, pytest.mark.usefixtures("triton_cache")]
DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


@settings(max_examples=3, deadline=None)
@given(st.data(), st.sampled_from([0, 2]))
def test_saved_and_loaded_modules_agree_bit_for_bit(tmp_path_factory, data, steps):
    c = data.draw(circuits(dists=ALL_DISTS, max_vars=3, max_n=2))
    x = data.draw(data_for(c, n_rows=6))
    check_exact_roundtrip(c, x, "triton", DEV, steps, tmp_path_factory.mktemp("pccm"))
