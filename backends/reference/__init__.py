"""The float64 numpy oracle: node by node, log space, no cleverness."""

from pccc.backends.reference.evaluate import log_likelihood, node_values

__all__ = ["log_likelihood", "node_values"]
