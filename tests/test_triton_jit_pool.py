"""The parallel compile's worker processes (``backends/triton/jit_pool.py``): what a launch
carries to a worker specializes as the launch itself does, and a worker finds the kernel
table by its file and warms up the named kernel with the launch's arguments."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("triton")

from pccc.backends.triton import jit_pool  # noqa: E402


def _triton_key(arg):
    # Triton's own specialization of one argument: the oracle of what a stand-in must match
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend

    return native_specialize_impl(BaseBackend, arg, False, True, True)


class _Table:
    __name__ = "table"
    __file__ = "/nonexistent/kernels.py"


@pytest.mark.parametrize("arg", [
    torch.zeros(8), torch.zeros(9)[1:], torch.zeros(8, dtype=torch.int8)[3:],
    torch.zeros(4, dtype=torch.int64), torch.zeros(6, dtype=torch.bfloat16)[2:],
    torch.zeros(6, dtype=torch.int32)[1:], 0, 1, 16, 17, 2**40, 0.5, True])
def test_a_travelling_argument_specializes_as_the_original(arg):
    spec = jit_pool.launch_spec(_Table(), "k", (3, 2), (arg,), {})
    assert spec is not None
    (carried,) = spec.args
    stand_in = jit_pool._Pointer(carried) if isinstance(carried, jit_pool.PointerArg) else carried
    assert _triton_key(stand_in) == _triton_key(arg)


def test_launches_that_cannot_travel_stay_with_the_parent():
    assert jit_pool.launch_spec(_Table(), "k", (1,), (object(),), {}) is None
    assert jit_pool.launch_spec(_Table(), "k", (1,), (), {"f": object()}) is None
    assert jit_pool.launch_spec(object(), "k", (1,), (1,), {}) is None  # no module file
    spec = jit_pool.launch_spec(_Table(), "k", lambda meta: (1,), (1,), {"B": 4, "num_warps": 8})
    assert spec is not None and spec.grid == (1,) and dict(spec.kwargs) == {"B": 4,
                                                                           "num_warps": 8}


_TABLE = '''
import json


class Probe:
    def __init__(self, out):
        self.out = out

    def warmup(self, *args, grid, **kwargs):
        def show(a):
            if hasattr(a, "data_ptr"):
                return [str(a.dtype), a.data_ptr() % 16 == 0]
            return a
        with open(self.out, "w") as f:
            json.dump({"args": [show(a) for a in args], "grid": list(grid),
                       "kwargs": {k: show(v) for k, v in kwargs.items()}}, f)


probe = Probe(OUT)
'''


def test_a_worker_process_warms_up_the_named_kernel_of_the_table_file(tmp_path):
    out = tmp_path / "seen.json"
    path = tmp_path / "kernels.py"
    path.write_text(_TABLE.replace("OUT", repr(str(out))))

    class Table:
        __name__ = "pccc_test_table"
        __file__ = str(path)

    x = torch.zeros(5)
    spec = jit_pool.launch_spec(Table(), "probe", (4, 2), (x, x[1:], 7),
                                {"BT": 64, "num_warps": 4, "y": x[2:].to(torch.int8)})
    try:
        jobs = jit_pool.compile_specs([spec], 1)
        jit_pool.wait_all(jobs)
        assert jobs[0].result() == "probe"
    finally:
        jit_pool.shutdown()
    seen = json.loads(out.read_text())
    assert seen == {"args": [["torch.float32", True], ["torch.float32", False], 7],
                    "grid": [4, 2],
                    "kwargs": {"BT": 64, "num_warps": 4, "y": ["torch.int8", True]}}
