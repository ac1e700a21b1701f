"""A float32 torch module saved as ``.pccm`` and loaded computes bit for bit the same
log-likelihoods, before and after EM steps; files without a stored state still load."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

import pccc
from pccc.artifact import write_artifact
from tests.pccm_exact import check_exact_roundtrip
from tests.strategies import ALL_DISTS, circuits, data_for

torch.set_num_threads(1)


@given(st.data(), st.sampled_from([0, 1, 3]))
def test_saved_and_loaded_modules_agree_bit_for_bit(tmp_path_factory, data, steps):
    c = data.draw(circuits(dists=ALL_DISTS, max_vars=4))
    x = data.draw(data_for(c, n_rows=8))
    check_exact_roundtrip(c, x, "torch", "cpu", steps, tmp_path_factory.mktemp("pccm"))


def test_a_file_without_a_state_loads_from_its_plan(tmp_path):
    b = pccc.ir.CircuitBuilder(rng=3)
    x = [b.input(v, "categorical", n=3, card=4) for v in range(3)]
    model = pccc.compile(b.build(b.sum([b.product(x)])))
    data = torch.as_tensor(np.array([[0, 1, 2], [3, -1, 0], [1, 2, -1]]))
    model(data).sum().backward()
    pccc.optim.MiniBatchEM(model, step_size=0.5, pseudocount=0.1).step()
    path = tmp_path / "m.pccm"
    # (as `pccc compile` writes: the plan's values, no state)
    write_artifact(path, model.current_plan(), model.to_circuit(), backend="torch",
                   dtype="float32", pipeline=model.pipeline, options={}, state=None)
    with zipfile.ZipFile(path) as z:
        assert json.loads(z.read("manifest.json"))["state"] is None
    back = pccc.load_module(path)
    np.testing.assert_allclose(back(data).detach().numpy(), model(data).detach().numpy(),
                               rtol=1e-5)
