"""Reads of a :class:`~pccc.backends.module.CompiledCircuit`'s parameters and of the buffers
an EM step writes, and its saving and loading (``state_dict``), which first order the current
stream after any EM step its executor runs in flight (:meth:`Executor.settle`; see
:mod:`pccc.backends.module`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from pccc.backends.module import CompiledCircuit


def _settled(name: str, doc: str, deferred: bool = False) -> Any:
    """A read accessor of the module's parameter or buffer ``name`` that settles the
    executor's work in flight first (see the module docstring); ``sum_logits`` also has it
    write them if it left them unwritten (:meth:`Executor.materialize`). nn.Module's own
    ``register_parameter``/``register_buffer`` set the tensor; before that, reading it is an
    ``AttributeError``, as for any missing attribute."""

    def get(self: CompiledCircuit) -> Any:
        tensors = self.__dict__["_parameters" if name in _PARAMETERS else "_buffers"]
        if name not in tensors:
            raise AttributeError(name)
        executor = self.__dict__.get("executor")
        if executor is not None:
            executor.settle(self, deferred)
            if name == "sum_logits":
                executor.materialize(self)
        return tensors[name]

    return property(get, doc=doc)


#: the accessors of :func:`_settled` that read ``_parameters`` (the others read ``_buffers``)
_PARAMETERS = frozenset({"sum_logits", "input_raw"})


class SettledModule(nn.Module):
    """The settled accessors of :class:`CompiledCircuit` (see the module docstring)."""

    executor: Any

    sum_logits = _settled("sum_logits", "flat logits of the sum weights (``nn.Parameter``)")
    input_raw = _settled("input_raw", "input parameters in unconstrained coordinates "
                                      "(``nn.Parameter``)")
    sum_norm = _settled("sum_norm", "log-normalizer of each weight group (last: padding)")
    input_shift = _settled("input_shift", "log-normalizer of each input node")
    sum_flows = _settled("sum_flows", "the sum weights' EM flows since the last EM step",
                         deferred=True)

    def settle(self) -> None:
        """Order the current stream after any EM step in flight and write what it left to
        its first reader (see :meth:`Executor.settle` and :meth:`Executor.materialize`); no
        host wait."""
        self.executor.settle(self, deferred=True)
        self.executor.materialize(self)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self.settle()
        return super().state_dict(*args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self.settle()
        return super().load_state_dict(*args, **kwargs)

    def named_parameters(self, *args: Any, **kwargs: Any) -> Any:
        self.settle()
        return super().named_parameters(*args, **kwargs)

    def named_buffers(self, *args: Any, **kwargs: Any) -> Any:
        self.settle()
        return super().named_buffers(*args, **kwargs)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the parameters' gradients (which no EM step writes: no wait for one in
        flight, so a training loop may call this between a step and its per-batch sync)."""
        for p in self._parameters.values():
            if p is None or p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_()
                p.grad.zero_()

    def params_changed(self) -> None:
        """Re-read the parameters before the next pass (after writes through ``.data``,
        which a backend keeping copies of its own does not see)."""
        self.executor.params_changed(self)
