"""Index tables beyond int32: a plan of 2^31 weights or more has weight offsets that int32
cannot hold, and the device plan then keeps those tables as int64 (``runtime.index_tensor``;
the kernels widen every offset they load). The limit is lowered here so that small circuits
take that path for nearly every table, and their training and queries must equal the int32
path's to the bit (kernels under ``TRITON_INTERPRET=1``)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import pccc  # noqa: E402
from pccc.backends.triton import weight_tiles  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from pccc.query import mpe, sample  # noqa: E402
from pccc.structures import HCLT, PD  # noqa: E402

pytest.importorskip("triton")
pytestmark = [pytest.mark.interpret, pytest.mark.usefixtures("triton_cache")]
if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("bit-for-bit comparison under the interpreter", allow_module_level=True)


def _circuits() -> list[tuple[str, object, torch.Tensor]]:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, (32, 16))
    x[:, 1] = (x[:, 0] + rng.integers(0, 2, 32)) % 4
    return [("hclt", HCLT(x[:, :6], 4, num_cats=4, seed=2), torch.as_tensor(x[:, :6])),
            ("pd", PD((4, 4), 2, split_intervals=(2, 2), num_cats=4, seed=2), torch.as_tensor(x))]


def _run(c: object, x: torch.Tensor) -> tuple[list[np.ndarray], object]:
    m = pccc.compile(c, backend="triton", device="cpu", precision="fp32")
    opt = MiniBatchEM(m, step_size=0.1, pseudocount=0.1)
    seen = []
    for i in range(2):
        ll = m(x[i * 16:(i + 1) * 16])
        seen.append(ll.detach().numpy().copy())
        ll.mean().backward()
        opt.step()
        m.zero_grad(set_to_none=True)
    m.settle()
    seen += [v.detach().numpy().copy() for v in m.state_dict().values()]
    q = x[:4].clone()
    q[:, ::3] = -1
    seen += [t.numpy() for t in mpe(m, q)]
    seen.append(np.asarray(sample(m, 4, seed=5)))
    return seen, m


@pytest.mark.parametrize("which", [0, 1], ids=["hclt", "pd"])
def test_int64_tables_compute_what_int32_tables_do(which: int, monkeypatch) -> None:
    name, c, x = _circuits()[which]
    narrow, mn = _run(c, x)
    monkeypatch.setattr(weight_tiles, "INDEX_LIMIT", 4)
    wide, mw = _run(c, x)
    dn, dw = mn.executor.dp, mw.executor.dp
    assert all(p.param_start.dtype == torch.int32 for p in dn.parts)
    assert dn.runs[0].dtype == torch.int32
    assert any(p.param_start.dtype == torch.int64 for p in dw.parts)  # the path was taken
    assert dw.runs[0].dtype == torch.int64 and dw.parts[-1].children.dtype == torch.int64
    assert len(narrow) == len(wide)
    for a, b in zip(narrow, wide):
        np.testing.assert_array_equal(a, b, err_msg=name)
