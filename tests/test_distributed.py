"""Data-parallel training on ``torch.distributed`` with 2 gloo processes on the CPU.

The oracle is one process on the union of the ranks' data: after mini-batch EM steps (each
rank a different, unevenly sized part of each step's batch), full-batch EM epochs,
``pccc.training.train`` in full-batch mode, and SGD steps through ``DistributedDataParallel``,
each rank's parameters equal the one-process run's to 1e-9 in float64. The workers run once
per module (one spawn of 2 processes) and write what they hold; the tests compare.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import pccc
from pccc import distributed
from pccc.ir import CircuitBuilder
from pccc.training import TrainConfig, train

WORLD = 2
#: rows of each rank in each mini-batch EM step (uneven on purpose; the union: 24)
SPLIT = (9, 15)
STEPS = 3
TOL = dict(rtol=1e-9, atol=1e-12)


def _mixed() -> tuple[pccc.ir.Circuit, np.ndarray]:
    """A circuit over four families (categorical, bernoulli, binomial, gaussian) and data with
    missing values (NaN): every kind of EM statistic."""
    b = CircuitBuilder(rng=3)
    ins = [b.input(0, "categorical", n=2, card=3), b.input(1, "bernoulli", n=2),
           b.input(2, "binomial", n=2, total=4), b.input(3, "gaussian", n=2)]
    left = b.sum([b.product(ins[:2])], n=2)
    right = b.sum([b.product(ins[2:])], n=2)
    c = b.build(b.sum([b.product([left, right])]), num_vars=4)
    rng = np.random.default_rng(1)
    n = 60
    x = np.stack([rng.integers(0, 3, n), rng.integers(0, 2, n), rng.integers(0, 5, n),
                  rng.normal(0.5, 2.0, n)], 1).astype(np.float64)
    x[rng.random(x.shape) < 0.15] = np.nan
    return c, x


def _hclt() -> tuple[pccc.ir.Circuit, np.ndarray]:
    """A hidden Chow-Liu tree over 6 ternary variables, data with missing values (-1)."""
    rng = np.random.default_rng(2)
    z = rng.integers(0, 3, 60)
    x = np.stack([(z + (rng.random(60) < 0.2 * j)) % 3 for j in range(1, 7)], 1)
    c = pccc.structures.HCLT(x, 3, input_dist="categorical", num_cats=3, seed=0)
    x = np.where(rng.random(x.shape) < 0.1, -1, x)
    return c, x


CASES = {"mixed": _mixed, "hclt": _hclt}


def _model(c: pccc.ir.Circuit) -> torch.nn.Module:
    return pccc.compile(c, backend="torch", dtype=torch.float64)


def _params(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().double().numpy().copy() for k, v in model.state_dict().items()}


def _minibatch(x: np.ndarray, model: torch.nn.Module, parts: list[np.ndarray] | None) -> None:
    """``STEPS`` mini-batch EM steps; step ``s`` reads ``parts[s]`` (default: the union of
    its rows)."""
    opt = pccc.optim.MiniBatchEM(model, step_size=0.3, pseudocount=0.1)
    width = sum(SPLIT)
    for s in range(STEPS):
        xb = x[s * width: (s + 1) * width] if parts is None else parts[s]
        model(torch.as_tensor(xb)).sum().backward()
        opt.step()


def _fullbatch(x: np.ndarray, model: torch.nn.Module, chunk: int) -> None:
    """Two full-batch EM epochs over ``x`` in batches of ``chunk`` rows."""
    opt = pccc.optim.FullBatchEM(model, pseudocount=0.1)
    for _ in range(2):
        for s in range(0, len(x), chunk):
            model(torch.as_tensor(x[s: s + chunk])).sum().backward()
        opt.step()


def _rank_parts(x: np.ndarray, rank: int) -> list[np.ndarray]:
    """Rank ``rank``'s rows of each mini-batch step (``SPLIT``)."""
    width, lo = sum(SPLIT), sum(SPLIT[:rank])
    return [x[s * width + lo: s * width + lo + SPLIT[rank]] for s in range(STEPS)]


def _ddp_steps(x: np.ndarray, model: torch.nn.Module, wrap: bool, rank: int) -> None:
    """Two SGD steps on the mean negative log-likelihood: through DDP on this rank's half of
    each batch of 20 rows (``wrap``), else on the whole batch."""
    from torch.nn.parallel import DistributedDataParallel

    net = DistributedDataParallel(model, broadcast_buffers=False) if wrap else model
    sgd = torch.optim.SGD(model.parameters(), lr=0.5)
    for s in range(2):
        xb = x[s * 20: (s + 1) * 20]
        if wrap:
            xb = xb[rank * 10: (rank + 1) * 10]
        sgd.zero_grad()
        (-net(torch.as_tensor(xb)).mean()).backward()
        sgd.step()


def _train_cfg(em: str) -> TrainConfig:
    return TrainConfig(epochs=3, batch_size=10, em=em, step_size=0.3, patience=0,
                       progress=False)


def _worker(rank: int, init: str, out: str) -> None:
    """One rank: every scenario, its parameters written to ``out/<rank>.pt``."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init}", rank=rank,
                                         world_size=WORLD,
                                         timeout=datetime.timedelta(seconds=60))
    got: dict[str, object] = {}
    for name, make in CASES.items():
        c, x = make()
        m = _model(c)
        _minibatch(x, m, _rank_parts(x, rank))
        got[f"minibatch/{name}"] = _params(m)
        m = _model(c)
        _fullbatch(distributed.shard(x), m, chunk=7)
        got[f"fullbatch/{name}"] = _params(m)
        m = _model(c)
        _ddp_steps(x, m, True, rank)
        got[f"ddp/{name}"] = _params(m)
    c, x = _hclt()
    for em in ("fullbatch", "minibatch"):
        m = _model(c)
        valid = x[:19] if rank == 0 else None  # (read on rank 0 only)
        hist = train(m, distributed.shard(x[19:]), valid, _train_cfg(em))
        got[f"train-{em}"] = _params(m)
        got[f"train-{em}/history"] = (hist.train_ll, hist.valid_ll, hist.best_epoch)
    torch.save(got, Path(out) / f"{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    """What each of the 2 gloo ranks holds after the scenarios of :func:`_worker`."""
    import torch.multiprocessing as mp

    tmp = tmp_path_factory.mktemp("dist")
    ctx = mp.start_processes(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD,
                             join=False, start_method="spawn")
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=1):  # (raises when a rank fails)
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the gloo ranks did not finish within 180 s")
    return [torch.load(tmp / f"{r}.pt", weights_only=False) for r in range(WORLD)]


def _assert_params(got: dict[str, np.ndarray], want: dict[str, np.ndarray], label: str) -> None:
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], err_msg=f"{label}: {k}", **TOL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_minibatch_em_equals_one_process_on_the_union(ranks, name):
    c, x = CASES[name]()
    one = _model(c)
    _minibatch(x, one, None)
    want = _params(one)
    for r in range(WORLD):
        _assert_params(ranks[r][f"minibatch/{name}"], want, f"rank {r}")
    alone = _model(c)  # a rank's own rows alone step elsewhere: the sum over ranks matters
    _minibatch(x, alone, _rank_parts(x, 0))
    assert not np.allclose(_params(alone)["sum_logits"], want["sum_logits"], rtol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fullbatch_em_equals_one_process_on_the_union(ranks, name):
    c, x = CASES[name]()
    one = _model(c)
    _fullbatch(x, one, chunk=len(x))
    want = _params(one)
    for r in range(WORLD):
        _assert_params(ranks[r][f"fullbatch/{name}"], want, f"rank {r}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_ddp_gradient_step_equals_one_process_on_the_union(ranks, name):
    c, x = CASES[name]()
    one = _model(c)
    _ddp_steps(x, one, False, 0)
    want = _params(one)
    start = _params(_model(c))
    assert not np.allclose(want["sum_logits"], start["sum_logits"])  # the steps moved
    for r in range(WORLD):
        _assert_params(ranks[r][f"ddp/{name}"], want, f"rank {r}")


def test_train_fullbatch_equals_one_process(ranks):
    c, x = _hclt()
    one = _model(c)
    hist = train(one, x[19:], x[:19], _train_cfg("fullbatch"))
    for r in range(WORLD):
        _assert_params(ranks[r]["train-fullbatch"], _params(one), f"rank {r}")
        tr, va, best = ranks[r]["train-fullbatch/history"]
        np.testing.assert_allclose(tr, hist.train_ll, **TOL)
        np.testing.assert_allclose(va, hist.valid_ll, **TOL)
        assert best == hist.best_epoch


def test_train_minibatch_ranks_agree_with_uneven_shards(ranks):
    """41 rows in shards of 21 and 20 rows, batches of 10: rank 0 takes 3 batches, rank 1 two
    and an empty third; the ranks end equal, their histories too, and the parameters moved."""
    c, _ = _hclt()
    a, b = ranks[0]["train-minibatch"], ranks[1]["train-minibatch"]
    _assert_params(a, b, "rank 1 against rank 0")
    assert ranks[0]["train-minibatch/history"] == ranks[1]["train-minibatch/history"]
    assert not np.allclose(a["sum_logits"], _params(_model(c))["sum_logits"])


def test_split_ranges_cover_the_rows_once():
    for n in (0, 1, 5, 40, 41):
        for k in (1, 2, 3, 8):
            parts = [distributed.split_range(n, r, k) for r in range(k)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(p[1] == q[0] for p, q in zip(parts, parts[1:]))
            sizes = [p[1] - p[0] for p in parts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_alone_the_helpers_do_nothing():
    x = np.arange(10)
    assert distributed.group_of() is None
    assert (distributed.rank(), distributed.world_size()) == (0, 1)
    assert distributed.shard(x) is not x and np.array_equal(distributed.shard(x), x)
    assert distributed.all_reduce_sum([1.5, 2.0], None) == [1.5, 2.0]


def test_pccc_train_under_torchrun_writes_once_what_one_process_writes(tmp_path):
    """``torchrun --nproc_per_node=2 -m pccc train --em fullbatch``: one model written (by rank
    0), equal to what ``pccc train`` writes alone (full-batch EM: the union's statistics)."""
    import subprocess
    import sys

    from pccc.cli.main import main
    from tests.test_train_cli import _folder

    data = _folder(tmp_path)
    args = ["train", "--structure", "hclt", "--latents", "2", "--data", str(data),
            "--epochs", "3", "--batch-size", "32", "--em", "fullbatch", "--patience", "0",
            "--no-progress"]
    alone = tmp_path / "alone.jpc"
    assert main([*args, "-o", str(alone)]) == 0
    both = tmp_path / "both.jpc"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", "-m", "pccc", *args, "-o", str(both)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("wrote ") == 1 and run.stdout.count("test log-likelihood") == 1
    assert "data parallel: 2 ranks (gloo)" in run.stdout
    assert sorted(p.name for p in tmp_path.glob("*.jpc")) == ["alone.jpc", "both.jpc"]
    want, got = pccc.load(alone), pccc.load(both)
    assert got.params.keys() == want.params.keys()
    for k in want.params:
        np.testing.assert_allclose(got.params[k], want.params[k], rtol=1e-4, atol=1e-6,
                                   err_msg=k)


def _triton_worker(rank: int, init: str, out: str) -> None:
    """One rank of mini-batch EM on the Triton backend under the interpreter."""
    import os

    os.environ["TRITON_INTERPRET"] = "1"
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init}", rank=rank,
                                         world_size=WORLD,
                                         timeout=datetime.timedelta(seconds=300))
    c, x = _mixed()
    m = _triton(c)
    _minibatch(x, m, _rank_parts(x, rank))
    got = {"minibatch": _params(m)}
    m = _triton(c)
    _ddp_steps(x, m, True, rank)
    got["ddp"] = _params(m)
    torch.save(got, Path(out) / f"{rank}.pt")
    torch.distributed.destroy_process_group()


def _triton(c: pccc.ir.Circuit) -> torch.nn.Module:
    return pccc.compile(c, backend="triton", device="cpu", precision="fp32")


@pytest.mark.heavy
@pytest.mark.interpret
@pytest.mark.usefixtures("triton_cache")
def test_triton_em_and_ddp_equal_one_process_on_the_union(tmp_path, monkeypatch):
    """The Triton backend's EM statistics (``em_statistics``: its own layout) summed by gloo
    over 2 ranks under ``TRITON_INTERPRET=1``, and its gradients averaged by DDP: the
    one-process Triton runs on the union."""
    import os
    import sys

    import torch.multiprocessing as mp

    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton was imported for the GPU in this process")
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # (read when triton is first imported)
    pytest.importorskip("triton")
    mp.start_processes(_triton_worker, args=(str(tmp_path / "init"), str(tmp_path)),
                       nprocs=WORLD, join=True, start_method="spawn")
    c, x = _mixed()
    one = _triton(c)
    _minibatch(x, one, None)
    want = {"minibatch": _params(one)}
    one = _triton(c)
    _ddp_steps(x, one, False, 0)
    want["ddp"] = _params(one)
    for r in range(WORLD):
        got = torch.load(tmp_path / f"{r}.pt", weights_only=False)
        for case, params in want.items():
            assert got[case].keys() == params.keys()
            for k, w in params.items():
                np.testing.assert_allclose(got[case][k], w, rtol=1e-5, atol=1e-6,
                                           err_msg=f"rank {r}, {case}: {k}")


def test_torchrun_variables_choose_the_group_and_device():
    from pccc.cli.cmd_train import Launch

    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1"}
    alone = Launch("cuda", env={k: v for k, v in env.items() if k != "MASTER_ADDR"})
    assert (alone.launched, alone.rank, alone.world, alone.device) == (False, 0, 1, "cuda")
    gpu = Launch("cuda", env=env)
    assert (gpu.launched, gpu.rank, gpu.world, gpu.lead) == (True, 3, 4, False)
    assert (gpu.device, gpu.backend) == ("cuda:1", "nccl")
    cpu = Launch("cpu", env=env)
    assert (cpu.device, cpu.backend) == ("cpu", "gloo")
    with pytest.raises(pccc.PcccError, match="--device cuda:2: under torchrun"):
        Launch("cuda:2", env=env)
