"""pccc: a compiler for probabilistic circuits."""

__version__ = "0.1.0"
