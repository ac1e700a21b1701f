"""Errors that carry a location. The CLI prints them in one or two lines and exits 2."""

from __future__ import annotations


class PcccError(Exception):
    """Base class of every user-facing error raised by pccc."""


class ParseError(PcccError):
    """A malformed input file; the message starts with ``file:line:col:``."""

    def __init__(self, message: str, *, file: str = "<string>", line: int = 0, col: int = 0):
        self.file = file
        self.line = line
        self.col = col
        self.detail = message
        where = f"{file}:{line}:{col}" if line else file
        super().__init__(f"{where}: {message}")


class VerifyError(PcccError):
    """An IR value that breaks an invariant; names the node (with its file and line when the
    circuit was read from one) and its context."""

    def __init__(self, message: str, *, node: int | None = None, context: str = "",
                 where: str | None = None):
        """``where`` (``file:line: node <id in the file>``) replaces ``node %<id>`` in the
        message for a circuit read from a file."""
        self.node = node
        self.detail = message
        if where is None:
            where = f"node %{node}" if node is not None else None
        text = f"{where}: {message}" if where else message
        if context:
            text += "\n" + context
        super().__init__(text)


class DataError(PcccError):
    """Data that does not fit the circuit; names the file, row and column."""


class PassError(PcccError):
    """A pass that failed; names the pass and the pipeline that ran before it."""
