"""The L0 verifier: structural invariants, parameter shapes, smoothness, decomposability.

:func:`verify` raises :class:`~pccc.ir.errors.VerifyError` naming the first offending node, with
its printed line as context. Normalization is *reported* by
:func:`is_normalized`, never required: EM and gradient training keep circuits unnormalized on
purpose.

Example::

    from pccc.ir import verify, is_normalized
    verify(circuit)                 # raises VerifyError on a broken circuit
    print(is_normalized(circuit))   # True when every sum row and every input sums to 1
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from pccc.ir import dists, limits
from pccc.ir.analyses import scopes
from pccc.ir.circuit import Circuit, InputVector, ProductVector, SumVector
from pccc.ir.errors import VerifyError


def _fmt_scope(s: frozenset[int]) -> str:
    return "{" + ", ".join(str(v) for v in sorted(s)) + "}"


def _context(c: Circuit, node: int) -> str:
    """The line of ``node`` (one line, so the CLI's message stays two lines): as its file
    wrote it, for a circuit read from one, else as printed."""
    from pccc.ir.printer import node_line

    if c.source is not None:
        text = c.source.source_line(node)
        return "    " + text if text else ""
    try:
        return "    " + node_line(c, node)
    except Exception:  # a node too broken to print: the message alone must do
        return ""


def _fail(c: Circuit, node: int, message: str) -> VerifyError:
    where = c.source.where(node) if c.source is not None else None
    return VerifyError(message, node=node, context=_context(c, node), where=where)


def _ref(c: Circuit, node: int) -> str:
    """Another node named in a message: ``%3``, or ``node 12 (line 7)`` of its file."""
    return c.source.ref(node) if c.source is not None else f"%{node}"


def _check_structure(c: Circuit, i: int) -> None:
    nd = c.nodes[i]
    if not isinstance(nd, (InputVector, ProductVector, SumVector)):
        raise VerifyError(f"not a node vector: {type(nd).__name__}", node=i)
    if not isinstance(nd.n, (int, np.integer)) or nd.n < 1:
        raise _fail(c, i, f"vector size n={nd.n} must be a positive integer")
    if isinstance(nd, InputVector):
        if not 0 <= nd.var < c.num_vars:
            raise _fail(c, i, f"variable {nd.var} outside 0..{c.num_vars - 1}")
        return
    if not nd.children:
        raise _fail(c, i, f"{nd.kind} vector without children")
    for ch in nd.children:
        if not 0 <= ch < len(c.nodes):
            raise VerifyError(f"child %{ch} is not defined", node=i)
        if ch >= i:
            raise VerifyError(f"child %{ch} does not come before its parent (cycle or order)",
                              node=i)


def _check_product(c: Circuit, i: int, nd: ProductVector) -> None:
    sizes = [c.nodes[ch].n for ch in nd.children]
    if nd.edges is None:
        bad = [ch for ch, m in zip(nd.children, sizes) if m not in (1, nd.n)]
        if bad:
            m = c.nodes[bad[0]].n
            raise _fail(c, i, f"element-wise product of {nd.n} nodes has child %{bad[0]} of "
                              f"{m} nodes (need {nd.n} or 1)")
        return
    if nd.edges.shape != (nd.n, len(nd.children)):
        raise _fail(c, i, f"edges of shape {nd.edges.shape}, expected {(nd.n, len(nd.children))}")
    for j, (ch, m) in enumerate(zip(nd.children, sizes)):
        col = nd.edges[:, j]
        if col.size and (col.min() < 0 or col.max() >= m):
            raise _fail(c, i, f"edges column {j} points outside child %{ch} (0..{m - 1})")


def _input_shape(c: Circuit, i: int, nd: InputVector) -> tuple[int, ...] | None:
    """Check an input vector's distribution and attributes; return its parameter shape."""
    try:
        cls = dists.get(nd.dist)
    except KeyError as e:
        raise _fail(c, i, str(e.args[0])) from None
    attrs = nd.attr_dict()
    try:
        msg = cls.check_attrs(nd.n, attrs)
        card = cls.cardinality(attrs) if msg is None else None
    except (TypeError, ValueError) as e:  # attribute values of the wrong kind
        msg = f"{nd.dist}: malformed attributes ({e})"
    if msg:
        raise _fail(c, i, msg)
    if card is not None and card < 1:
        raise _fail(c, i, f"{nd.dist}: the variable would have {card} values")
    shape = cls.param_shape(nd.n, attrs)
    if shape is None and nd.param is not None:
        raise _fail(c, i, f"{nd.dist} takes no parameters but names @{nd.param}")
    return shape


def _check_params(c: Circuit, i: int) -> None:
    nd = c.nodes[i]
    if isinstance(nd, ProductVector):
        _check_product(c, i, nd)
        return
    if isinstance(nd, InputVector):
        shape = _input_shape(c, i, nd)
        if shape is None:
            return
    else:
        shape = (nd.n, sum(c.nodes[ch].n for ch in nd.children))
    if nd.param is None or nd.param not in c.params:
        raise _fail(c, i, f"parameter @{nd.param} is not in the parameter store")
    arr = c.params[nd.param]
    if arr.shape != shape:
        raise _fail(c, i, f"parameter @{nd.param} has shape {arr.shape}, expected {shape}")
    if isinstance(nd, SumVector):
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise _fail(c, i, f"sum weights @{nd.param} must be finite and >= 0")
        return
    msg = dists.get(nd.dist).check_params(arr, nd.attr_dict())
    if msg:
        raise _fail(c, i, f"parameter @{nd.param}: {msg}")


def _domain(card: int | None) -> str:
    return "a continuous domain" if card is None else f"{card} values"


def _check_domains(c: Circuit) -> None:
    """One variable, one domain: every input over a variable gives it the same number of values
    (None: continuous), so that a data value means the same to each of them."""
    first: dict[int, tuple[int, int | None]] = {}
    for i, nd in enumerate(c.nodes):
        if not isinstance(nd, InputVector):
            continue
        card = dists.get(nd.dist).cardinality(nd.attr_dict())
        j, card0 = first.setdefault(nd.var, (i, card))
        if card != card0:
            at = _ref(c, j)
            raise _fail(c, i, f"variable {nd.var} has {_domain(card0)} at "
                              f"{at if at.startswith('node') else 'node ' + at} but "
                              f"{_domain(card)} here ({nd.dist}): one variable, one domain")


def _check_scopes(c: Circuit) -> None:
    sc = scopes(c)
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, SumVector):
            first = nd.children[0]
            for ch in nd.children[1:]:
                if sc[ch] != sc[first]:
                    raise _fail(c, i, f"not smooth: children {_ref(c, first)} and "
                                      f"{_ref(c, ch)} have scopes {_fmt_scope(sc[first])} and "
                                      f"{_fmt_scope(sc[ch])}")
        elif isinstance(nd, ProductVector):
            seen: dict[int, int] = {}
            for ch in nd.children:
                for v in sc[ch]:
                    if v in seen and seen[v] != ch:
                        a = seen[v]
                        raise _fail(c, i, f"not decomposable: children {_ref(c, a)} and "
                                          f"{_ref(c, ch)} share variable {v} (scopes "
                                          f"{_fmt_scope(sc[a])} and {_fmt_scope(sc[ch])})")
                    seen[v] = ch
            if len(set(nd.children)) != len(nd.children):
                raise _fail(c, i, "not decomposable: a child appears twice")


def verify(c: Circuit) -> None:
    """Check every invariant of an L0 circuit; raise :class:`VerifyError` at the first failure.

    Checked: node kinds; children defined and before their parents (so the DAG is acyclic);
    vector sizes and arities; product ``edges`` tables; input distributions, attributes and
    variables; sizes within :mod:`pccc.ir.limits`; one domain per variable (every input over
    it gives it the same number of values, or all are continuous); parameter keys, shapes and
    ranges (finite, non-negative weights); the root; smoothness of sums and decomposability of
    products.

    Raises:
        VerifyError: naming the node (``%id`` as printed) and the offending detail.
    """
    from pccc.ir.verify_arrays import passes_checks  # (here: `import pccc` stays lighter)

    if passes_checks(c):  # the checks of verify_nodes over arrays of node vectors
        return
    verify_nodes(c)


@contextlib.contextmanager
def verified(c: Circuit) -> Iterator[None]:
    """:func:`verify` around a block of work that needs ``c`` well-formed but does not depend
    on its parameter values being in range (compiling it, say).

    Everything but those ranges is checked on entry; the parameter arrays are read on another
    thread while the block runs (numpy reads them without the GIL) and waited for on exit.

    Raises:
        VerifyError: as :func:`verify`, on entry, or on exit (then also in place of an
            exception the block raised, which is chained to it).
    """
    from concurrent.futures import ThreadPoolExecutor

    from pccc.ir.verify_arrays import structure_checks

    later = structure_checks(c)
    if later is None:
        verify_nodes(c)  # raises, naming the node
        later = []
    with ThreadPoolExecutor(1, thread_name_prefix="pccc-verify") as pool:
        values = pool.submit(lambda: all(check() for check in later))
        try:
            yield
        finally:
            if not values.result():
                verify_nodes(c)


def verify_nodes(c: Circuit) -> None:
    """:func:`verify` node by node: the definition of the checks, and where a failure is named.

    Slower than :func:`verify` on large circuits (scopes are sets, parameters are checked per
    node), which runs it only once its array checks have found a violation.
    """
    if not c.nodes:
        raise VerifyError("the circuit has no nodes")
    if not 0 <= c.root < len(c.nodes):
        raise VerifyError(f"root %{c.root} is not defined")
    msg = limits.vars_problem(c.num_vars)
    if msg:
        raise VerifyError(msg)
    for i in range(len(c.nodes)):
        _check_structure(c, i)
    for i in range(len(c.nodes)):
        _check_params(c, i)
    _check_domains(c)
    _check_scopes(c)


def is_smooth(c: Circuit) -> bool:
    """True when the children of every sum vector have the same scope."""
    from pccc.ir.verify_arrays import scope_properties

    flags = scope_properties(c)
    if flags is not None:
        return flags[0]
    sc = scopes(c)
    return all(len({sc[ch] for ch in nd.children}) <= 1
               for nd in c.nodes if isinstance(nd, SumVector))


def is_decomposable(c: Circuit) -> bool:
    """True when the children of every product vector have pairwise disjoint scopes."""
    from pccc.ir.verify_arrays import scope_properties

    flags = scope_properties(c)
    if flags is not None:
        return flags[1]
    sc = scopes(c)
    for nd in c.nodes:
        if isinstance(nd, ProductVector):
            total = sum(len(sc[ch]) for ch in nd.children)
            if len(frozenset().union(*(sc[ch] for ch in nd.children))) != total:
                return False
    return True


def _input_normalized(c: Circuit, nd: InputVector, tol: float) -> bool:
    cls = dists.get(nd.dist)
    attrs = nd.attr_dict()
    card = cls.cardinality(attrs)
    if card is None:
        return bool(cls.normalized)
    # the probabilities of all values must add up to 1
    mass = cls.total_mass(c.params.get(nd.param or ""), attrs, nd.n)
    return bool(np.all(np.abs(mass - 1.0) <= tol))


def is_normalized(c: Circuit, tol: float = 1e-6) -> bool:
    """True when every sum weight row and every input node sums to 1 (within ``tol``).

    A smooth, decomposable, normalized circuit is a normalized distribution. Continuous inputs
    count as normalized when their family is (``Distribution.normalized``). A circuit whose
    inputs give one variable different domains is not normalized (nor valid: see
    :func:`verify`).
    """
    try:
        _check_domains(c)
    except VerifyError:
        return False
    for nd in c.nodes:
        if isinstance(nd, SumVector):
            w = c.params[nd.param]
            if not np.all(np.abs(w.sum(axis=1) - 1.0) <= tol):
                return False
        elif isinstance(nd, InputVector) and not _input_normalized(c, nd, tol):
            return False
    return True
