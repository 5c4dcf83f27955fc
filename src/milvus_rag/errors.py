"""Errors as one sentence: the exception users see, and Milvus's errors said the same way.

A failure the user can fix ends in one sentence that says what happened, why (the underlying
error's type and first line, kept as ``__cause__``) and what to do. In a notebook,
:func:`show_errors_briefly` shows such errors as that sentence instead of a long traceback.
Nothing here imports pymilvus until a notebook asks for the brief display."""

import contextlib
import logging
import sys
from collections.abc import Iterator


class RagError(Exception):
    """A failure the user can fix; ``str(err)`` is the whole message."""


def first_line(text: str, limit: int = 300) -> str:
    """The first non-blank line of ``text``, cut to at most ``limit`` characters (ending "…")."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def cause(err: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, short enough to quote inside a sentence."""
    message = first_line(str(getattr(err, "message", "") or err), limit)
    return first_line(f"{type(err).__name__}: {message}" if message else type(err).__name__, limit)


def milvus_sentence(err: BaseException, rerun: str) -> str:
    """One sentence for an error Milvus raised; ``rerun`` says how to reconnect and reload
    where the error is shown (a notebook's connect cell, or the command again)."""
    code = getattr(err, "code", None)
    message = str(getattr(err, "message", "") or err)
    if code == 2 or "Fail connecting" in message:
        fix = f"the server went away or this client was released; {rerun}"
    elif code == 101 or "state 'released'" in message or "not loaded" in message:
        fix = f"the collection is not loaded into memory; {rerun} (it loads the collections it finds)"
    elif code == 100 or "can't find collection" in message or "ollection not found" in message:
        fix = "the collection does not exist: run the cells (or the ingest command) that create it"
    elif "dimension" in message.lower():
        fix = "the collection was built with another embedding model: rebuild it with this one"
    else:
        fix = "check MILVUS_URI and the collection, or rebuild it"
    return f"Milvus refused the request ({cause(err)}): {fix}."


@contextlib.contextmanager
def quiet(logger: str, level: int = logging.CRITICAL) -> Iterator[None]:
    """Show only ``level`` and above from ``logger`` for a while, then its level as it was
    (pymilvus logs every failed call with a traceback, which the error's sentence says in one)."""
    log = logging.getLogger(logger)
    saved = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(saved)


def show_errors_briefly() -> None:
    """In IPython (JupyterLab, Colab), show a ``RagError`` or a Milvus error as one sentence.

    The cell still fails, with the exception's type and sentence as its error output, so papermill
    and nbmake report that sentence too. pymilvus's own error logs (tracebacks of each failed call)
    are silenced for the session. A handler the user installed for other exception types stays in
    place. Calling this again changes nothing."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or RagError in shell.custom_exceptions:
        return
    from pymilvus.exceptions import MilvusException

    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    others = tuple(shell.custom_exceptions)
    previous = shell.CustomTB if others else None

    def handler(shell, etype, value, tb, tb_offset=None):
        if previous is not None and not issubclass(etype, RagError | MilvusException):
            return previous(etype, value, tb, tb_offset)
        if issubclass(etype, MilvusException):
            value = milvus_sentence(value, "run the connect cell again")
        line = f"{etype.__name__}: {value}"
        shell._showtraceback(etype, value, [line])  # an error output, as a traceback would be
        return [line]

    shell.set_custom_exc((RagError, MilvusException, *others), handler)
