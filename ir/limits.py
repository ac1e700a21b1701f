"""Size limits that every reader and the verifier enforce (see ``docs/formats.md``, Limits).

A circuit file names sizes as plain numbers (a variable's number of values, a binomial's
trials, the number of variables) that evaluators turn into tables and loops. These limits keep
a mistyped or hostile number from allocating gigabytes or running for hours: readers refuse a
number past its limit at its ``file:line:col``, the verifier refuses a circuit built in Python
that breaks one, naming the node.

- :data:`MAX_VALUES`: values of one discrete variable (an indicator's or categorical's
  ``card``, a binomial's ``total + 1``, a domain size in ``.spn``, an indicator's value + 1).
- :data:`MAX_VARS`: variables of one circuit (``num_vars``, a literal's ``|lit|``).
- :data:`MAX_NESTING`: brackets nested in one ``.pcir`` value (arrays have at most 2 levels).
"""

from __future__ import annotations

#: the most values one discrete variable may have (2**20)
MAX_VALUES = 1 << 20
#: the most variables one circuit may have (2**24)
MAX_VARS = 1 << 24
#: the deepest nesting of brackets in one ``.pcir`` value
MAX_NESTING = 32


def values_problem(count: int, what: str = "the variable") -> str | None:
    """A message when ``count`` values exceed :data:`MAX_VALUES`, else None."""
    if count > MAX_VALUES:
        return f"{what} would have {count} values; the limit is {MAX_VALUES} (2**20)"
    return None


def vars_problem(count: int, what: str = "num_vars") -> str | None:
    """A message when ``count`` variables exceed :data:`MAX_VARS`, else None."""
    if count > MAX_VARS:
        return f"{what}: {count} variables; the limit is {MAX_VARS} (2**24)"
    return None
