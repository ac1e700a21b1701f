"""The parallel-JIT helper (``backends/triton/prejit.py``) on the CPU: launches are recorded,
not run; launches are told apart by the kernel's name in the table, the launch's keywords and
its arguments' values (tensors by dtype); the kernel table is restored whatever the recorded
pass does; warm-ups go through the table's kernels with their bound constexpr values."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import pccc  # noqa: E402
from pccc.backends.triton import prejit  # noqa: E402
from tests.test_triton_backend import _dense_circuit  # noqa: E402

pytest.importorskip("triton")
pytestmark = pytest.mark.interpret
DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


def _model():
    return pccc.compile(_dense_circuit(), backend="triton", device=DEV, precision="fp32")


def test_recorded_pass_launches_nothing_and_names_its_kernels():
    m = _model()
    x = torch.randint(0, 5, (7, 4), device=DEV)
    b = m.executor._static(m, 7)
    before = b.node.clone()
    rec = prejit.Recorder(m.executor.kernels)
    m.executor.dp.k = rec
    try:
        m.executor.dp.prepare_inputs(x, None, b.xt, b.mt)
        m.executor.dp.forward(b.xt, b.mt, 7, m.executor._w, m.executor._in_args, b.node)
    finally:
        m.executor.dp.k = m.executor.kernels
    names = {name for name, *_ in rec.calls}
    assert all(fn is getattr(m.executor.kernels, name) for name, fn, *_ in rec.calls)
    assert any(n.startswith("sum_fwd_") for n in names), names
    assert any(n.startswith("input_fwd_") for n in names), names
    assert torch.equal(b.node, before)  # recorded, not run
    ll = m(x)  # the real module still runs (and matches a fresh one)
    assert torch.allclose(ll, _model()(x))


def test_distinct_keys_on_kernel_keywords_and_values():
    t = torch.zeros(64, device=DEV)
    u = torch.ones(8, device=DEV)  # another tensor of the same dtype: the same key
    i = torch.zeros(8, dtype=torch.int32, device=DEV)
    calls = [("f", 1, (1,), (t, 32, 5), {"BT": 16}), ("f", 2, (2,), (u, 32, 5), {"BT": 16}),
             ("f", 3, (1,), (t, 48, 5), {"BT": 16}), ("f", 4, (1,), (i, 32, 5), {"BT": 16}),
             ("f", 5, (1,), (t, 32, 5), {"BT": 32}), ("g", 6, (1,), (t, 32, 5), {"BT": 16}),
             ("f", 7, (1,), (t, 32.0, 5), {"BT": 16})]
    assert [c[1] for c in prejit.distinct(calls)] == [1, 3, 4, 5, 6, 7]


def test_warmup_passes_the_bound_constexprs(monkeypatch):
    """A recorded launch of a specialized kernel warms up its kernel with the table's
    constexpr values added to the launch's own keywords."""
    from pccc.backends.triton.specialized import specialize

    seen = []

    class Fake:
        __name__ = "k"

        def warmup(self, *args, grid, **kw):
            seen.append((args, grid, kw))

    k = specialize(Fake(), "k_b4", B=4, MIX="tf32")
    table = type("Table", (), {"k_b4": k})()
    owner = type("Owner", (), {"k": table})()

    def run() -> None:
        owner.k.k_b4[(2, 3)](1, 2, BT=16)
        owner.k.k_b4[(2, 3)](1, 2, BT=16)  # the same launch: warmed up once

    assert prejit.prejit(owner, "k", run, threads=1) == 1
    assert seen == [((1, 2), (2, 3), {"B": 4, "MIX": "tf32", "BT": 16})]
    assert owner.k is table


def test_module_restored_when_the_pass_fails():
    m = _model()

    def boom() -> None:
        m.executor.dp.k.em_weights[(1,)]()  # a recorded launch
        raise RuntimeError("pass failed")

    with pytest.raises(RuntimeError, match="pass failed"):
        prejit.prejit(m.executor.dp, "k", boom)
    assert m.executor.dp.k is m.executor.kernels


def _specializations(m, rows: int) -> set:
    """The kernels and constexpr keywords (tiles, modes, warps) of one training pass of
    ``rows`` examples (recorded, not run)."""
    m.executor.use_graphs = False  # (on a GPU: a replayed graph would launch nothing to record)
    m.executor.parallel_jit = False
    rec = prejit.Recorder(m.executor.kernels)
    m.executor.dp.k = rec
    try:
        m(torch.randint(0, 5, (rows, 4), device=DEV)).mean().backward()
    finally:
        m.executor.dp.k = m.executor.kernels
    return {(name, tuple(sorted(kw.items()))) for name, _, _, _, kw in rec.calls}


def test_smaller_batch_compiles_nothing_new():
    """An epoch's last, smaller batch after full ones launches no kernel with new constexpr
    values: the column tiles follow the buffers' width, not the batch."""
    m = _model()
    m(torch.randint(0, 5, (512, 4), device=DEV))  # buffers sized for 512 columns
    full = _specializations(m, 512)
    assert _specializations(m, 40) <= full
    assert _specializations(m, 7) <= full


def test_first_forward_compiles_its_em_backward_too(monkeypatch):
    """EM training: the first forward hands its own pass, the backwards it will be followed
    by (before and after EM steps: those after store flows) and the EM step's kernels to one
    parallel compile; those backwards then compile nothing themselves."""
    from pccc.backends.triton import graphs

    seen = []
    monkeypatch.setattr(graphs, "prejit", lambda owner, attr, *runs, **kw: seen.append(len(runs)))
    m = _model()
    m.executor.parallel_jit = True  # as on a GPU (the stand-in above compiles nothing)
    m.param_grads = False
    x = torch.randint(0, 5, (9, 4), device=DEV)
    ll = m(x)
    assert seen == [4]
    ll.mean().backward()
    m.em_step(0.1, 0.1)
    m(x).mean().backward()
    assert seen == [4]  # the backwards' kernels were in the forward's compile
    m.param_grads = True
    m(x).mean().backward()  # gradients wanted: a backward of its own, compiled on its own
    assert seen == [4, 1]


def test_recording_the_em_kernels_leaves_training_as_it_was(monkeypatch):
    """The first forward of EM training records the EM step's kernels (the weights' update and
    the categorical inputs' own EM kernel) without running them: the EM steps that follow
    give the same parameters as a module that compiled nothing ahead."""
    names: list[set[str]] = []
    monkeypatch.setattr(prejit, "compile_parallel",
                        lambda calls, *a, **k: names.append({c[0] for c in calls}) or 0)
    x = torch.randint(0, 5, (9, 4), device=DEV)

    def train(ahead: bool):
        torch.manual_seed(0)
        m = _model()
        m.executor.parallel_jit = ahead
        m.param_grads = False
        for _ in range(2):
            m(x).mean().backward()
            m.em_step(0.1, 0.1)
        return m

    a, b = train(True), train(False)
    assert len(names) == 1 and {"em_weights", "cat_em"} <= names[0], names
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert torch.equal(a(x), b(x))


def test_startup_log_names_each_pass_once():
    m = _model()
    x = torch.randint(0, 5, (7, 4), device=DEV)
    m(x).sum().backward()
    log = list(m.executor.startup_log)
    passes = [e["pass"] for e in log]
    assert len(passes) == len(set(e["key"] for e in log)) >= 2, log  # forward and backward
    assert all(e["first_run_s"] >= 0 and e["parallel_compile_s"] >= 0 for e in log)
    if DEV == "cpu":  # no CUDA graphs, no parallel compile on the interpreter
        assert all(e["graph_capture_s"] is None and e["compiled_launches"] == 0 for e in log)
    m(x).sum().backward()  # the same passes again: nothing new
    assert m.executor.startup_log == log


def test_triton_is_hashed_once_on_a_thread_of_its_own():
    th = prejit.hash_triton_early()
    if th is None:  # this Triton has no such hash: nothing to start
        pytest.skip("no triton.runtime.cache.triton_key")
    assert prejit.hash_triton_early() is th  # one per process
    prejit._triton_hashed()
    assert not th.is_alive()
    from triton.runtime.cache import triton_key

    misses = triton_key.cache_info().misses
    key = triton_key()  # kept: no second hash of Triton's library
    assert triton_key.cache_info().misses == misses and isinstance(key, str) and key


def test_prepare_starts_the_hash_only_for_a_gpu_with_the_parallel_compile(monkeypatch):
    """The backend's ``prepare`` (run by ``pccc.compile`` before the passes) starts the hash
    for a CUDA device with ``parallel_jit`` on, and nothing on a CPU or with it off."""
    import pccc.backends.triton as tb

    calls: list[str] = []
    monkeypatch.setattr(prejit, "hash_triton_early", lambda: calls.append("hash"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    tb.prepare("cpu")
    tb.prepare("cuda", parallel_jit=False)
    assert calls == []
    tb.prepare("cuda", precision="fp32")
    assert calls == ["hash"]


class _Src:
    def __init__(self, sig: dict, consts: dict):
        self.signature, self.constants = sig, consts


class _Kernel:
    def __init__(self, sig: dict, consts: dict | None = None):
        self.src, self.metadata = _Src(sig, consts or {}), object()


class _Future:
    def __init__(self, kernel):
        self.kernel = kernel

    def result(self, ignore_errors: bool = False):
        return self.kernel


def test_launchers_built_once_per_signature(monkeypatch):
    """The warm-ups' results (compiled kernels, futures, None for a kernel compiled
    elsewhere) get one launcher build per distinct (signature, constants): the driver's
    ``launcher_cls`` called for each; a failing build is skipped, not raised."""
    from concurrent.futures import ThreadPoolExecutor

    import triton

    built = []

    class Driver:
        def launcher_cls(self, src, metadata):
            if src.signature.get("x") == "bad":
                raise RuntimeError("no host compiler")
            built.append((tuple(src.signature.items()), tuple(src.constants.items())))

    monkeypatch.setattr(triton.runtime.driver, "_active", Driver())
    a = _Kernel({"x": "*fp32", "n": "i32"})
    same = _Kernel({"x": "*fp32", "n": "i32"})
    other = _Kernel({"x": "*fp32", "n": "i32"}, {(2,): 64})
    bad = _Kernel({"x": "bad"})
    with ThreadPoolExecutor(4) as pool:
        n = prejit.build_launchers([a, _Future(same), None, _Future(other), bad], pool)
    assert n == 2
    assert sorted(built) == sorted([((("x", "*fp32"), ("n", "i32")), ()),
                                    ((("x", "*fp32"), ("n", "i32")), (((2,), 64),))])


def test_no_launcher_builds_without_the_driver_hook(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    import triton

    monkeypatch.setattr(triton.runtime.driver, "_active", object())
    with ThreadPoolExecutor(1) as pool:
        assert prejit.build_launchers([_Kernel({"x": "*fp32"})], pool) == 0
