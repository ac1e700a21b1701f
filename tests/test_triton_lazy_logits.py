"""Sum logits left to their first reader in EM-only training (option ``lazy_logits``).

An EM step with parameter gradients off updates the kernels' linear weights alone and gives
the ``sum_logits`` storage back; every reader (the attribute, ``state_dict``, parameters, a
pass with gradients, saving) must get the logits an EM step writes itself, to the bit: the
oracle is the same training with ``lazy_logits=False`` (kernels under ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import pccc  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from pccc.structures import HCLT  # noqa: E402

pytest.importorskip("triton")
pytestmark = [pytest.mark.interpret, pytest.mark.usefixtures("triton_cache")]
if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("bit-for-bit comparison under the interpreter", allow_module_level=True)

RNG = np.random.default_rng(5)
X = torch.as_tensor(RNG.integers(0, 3, (96, 5)))
CIRCUIT = HCLT(X.numpy(), 4, num_cats=3, seed=2)


def _em(lazy: bool, steps: int = 2) -> tuple[object, torch.nn.Parameter]:
    m = pccc.compile(CIRCUIT, backend="triton", device="cpu", precision="fp32",
                     lazy_logits=lazy)
    m.param_grads = False
    param = m._parameters["sum_logits"]
    opt = MiniBatchEM(m, step_size=0.1, pseudocount=0.1)
    for i in range(steps):
        m(X[i * 32:(i + 1) * 32]).mean().backward()
        opt.step()
    return m, param


def test_em_steps_give_the_storage_back_and_readers_get_it_to_the_bit(tmp_path) -> None:
    """After lazy EM steps the storage is given back; the attribute, ``state_dict``, passes,
    a saved module and logits a user writes all see the eager module's values."""
    lazy, param = _em(True)
    eager, _ = _em(False)
    assert param.numel() == 0  # given back after the first step
    assert eager._parameters["sum_logits"].numel() == eager.executor._w.numel()
    got = lazy.sum_logits  # the first reader
    assert got is param and param.numel() == eager.sum_logits.numel()
    np.testing.assert_array_equal(got.detach().numpy(), eager.sum_logits.detach().numpy())
    a, b = lazy.state_dict(), eager.state_dict()
    for k in b:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)
    x = X[64:96]
    np.testing.assert_array_equal(lazy(x).detach().numpy(), eager(x).detach().numpy())
    MiniBatchEM(lazy).step()  # given back again; then saved (and so read)
    MiniBatchEM(eager).step()
    assert param.numel() == 0
    path = tmp_path / "m.pccm"
    pccc.save(lazy, path)
    back = pccc.load_module(path, device="cpu")
    np.testing.assert_array_equal(back(x).detach().numpy(), eager(x).detach().numpy())
    for mod in (lazy, eager):  # logits written through the attribute are taken
        MiniBatchEM(mod).step()
        with torch.no_grad():
            mod.sum_logits.mul_(0.5)
        mod.params_changed()
    np.testing.assert_array_equal(lazy(x).detach().numpy(), eager(x).detach().numpy())


def test_training_goes_on_after_a_read_and_with_gradients() -> None:
    """A read between steps, more EM steps (the storage given back again), then a pass with
    parameter gradients: the gradients and the trained parameters are the eager module's."""
    ms = [_em(lazy)[0] for lazy in (True, False)]
    for m in ms:
        _ = m.sum_logits
        opt = MiniBatchEM(m, step_size=0.1, pseudocount=0.1)
        m(X[:32]).mean().backward()
        opt.step()
    assert ms[0]._parameters["sum_logits"].numel() == 0
    grads = []
    for m in ms:
        m.param_grads = True
        m.zero_grad()
        (m(X[32:64]) * torch.linspace(0.5, 1.5, 32)).sum().backward()
        grads.append(m.sum_logits.grad.numpy().copy())
    np.testing.assert_array_equal(grads[0], grads[1])
    for p, q in zip(ms[0].parameters(), ms[1].parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())



def test_a_module_with_nonzero_padding_logits_keeps_them() -> None:
    m = pccc.compile(CIRCUIT, backend="triton", device="cpu", precision="fp32",
                     lazy_logits=True)
    m.param_grads = False
    pad = torch.nonzero(m.executor.dp.group_ids() < 0)[:, 0]
    assert len(pad)  # (this circuit's weights have padding entries)
    with torch.no_grad():
        m._parameters["sum_logits"][pad[0]] = 3.0
    m(X[:32]).mean().backward()
    MiniBatchEM(m).step()
    assert m._parameters["sum_logits"].numel() == m.executor._w.numel()
    assert float(m.sum_logits.detach()[pad[0]]) == 3.0
