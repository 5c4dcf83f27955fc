"""The one exception type users see: a sentence that says what happened, why, and what to do."""

from __future__ import annotations

import sys


class RagError(Exception):
    """A failure the user can fix; ``str(err)`` is the whole message.

    Raised ``from`` the underlying exception, whose type and message the sentence names.
    """


def first_line(text: str, limit: int = 300) -> str:
    """The first non-blank line of ``text``, cut to at most ``limit`` characters (ending "…")."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def cause(err: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, at most ``limit`` characters: short enough to
    quote inside a sentence."""
    message = first_line(str(err), limit)
    return first_line(f"{type(err).__name__}: {message}" if message else type(err).__name__, limit)


def show_errors_briefly() -> None:
    """In IPython (JupyterLab, Colab), show a ``RagError`` as its one sentence, no traceback.

    The cell still counts as failed. A handler the user installed for other exception types
    stays in place and is still called for those. Calling this again changes nothing.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or RagError in shell.custom_exceptions:
        return
    others = tuple(shell.custom_exceptions)
    previous = shell.CustomTB if others else None  # bound: (etype, value, tb, tb_offset)

    def handler(shell, etype, value, tb, tb_offset=None):
        if previous is not None and not issubclass(etype, RagError):
            return previous(etype, value, tb, tb_offset)
        print(f"{etype.__name__}: {value}", file=sys.stderr)
        return [f"{etype.__name__}: {value}"]

    shell.set_custom_exc((RagError, *others), handler)
