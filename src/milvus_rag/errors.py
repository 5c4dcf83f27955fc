"""The one exception type users see: a sentence that says what happened and what to do."""

import sys


class RagError(Exception):
    """A failure the user can fix; ``str(err)`` is the whole, self-contained message."""


def _show_briefly(shell, etype, value, tb, tb_offset=None):
    """IPython handler: a RagError shows as its one sentence, not a traceback.

    The cell still counts as failed (papermill and nbmake stop there).
    """
    print(f"{etype.__name__}: {value}", file=sys.stderr)
    return [f"{etype.__name__}: {value}"]


def show_rag_errors_briefly() -> None:
    """In a Jupyter/IPython session, display RagError as one line; elsewhere do nothing."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        shell.set_custom_exc((RagError,), _show_briefly)
