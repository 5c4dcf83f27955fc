"""Errors as one sentence: Milvus's errors explained, and the brief display in IPython."""

import logging

import pytest
from pymilvus.exceptions import MilvusException

from milvus_rag.errors import RagError, cause, milvus_sentence, quiet, show_errors_briefly


@pytest.mark.parametrize(
    "code, message, says",
    [
        (2, "Fail connecting to server on 127.0.0.1:45013", "server went away or this client"),
        (101, "Collection 'c' is in state 'released'; call load()", "not loaded into memory"),
        (100, "can't find collection[database=default][collection=c]", "does not exist"),
        (1100, "vector dimension mismatch, expected 768 got 384", "another embedding model"),
        (65535, "something else", "check MILVUS_URI"),
    ],
)
def test_each_milvus_error_gets_its_cause_and_its_fix(code, message, says):
    sentence = milvus_sentence(MilvusException(code=code, message=message), "RERUN")
    assert sentence.startswith(f"Milvus refused the request (MilvusException: {message}")
    assert says in sentence and sentence.endswith(".")
    assert ("RERUN" in sentence) == (code in (2, 101))


def test_cause_is_the_type_and_the_first_line_cut_short():
    assert cause(ValueError("first\nsecond")) == "ValueError: first"
    assert cause(ValueError("")) == "ValueError"
    assert cause(ValueError("x" * 500), limit=20) == "ValueError: xxxxxxx…"


def test_quiet_restores_the_level():
    log = logging.getLogger("milvus_rag.test")
    log.setLevel(logging.INFO)
    with quiet("milvus_rag.test"):
        assert log.level == logging.CRITICAL
    assert log.level == logging.INFO


@pytest.fixture()
def shell(monkeypatch):
    """An in-process IPython shell that records the error outputs a kernel would send."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    shown = []
    settings = Config()
    settings.HistoryManager.enabled = False  # no history database
    instance = InteractiveShell.instance(config=settings)
    monkeypatch.setattr(instance, "_showtraceback", lambda e, v, stb: shown.append((e, v, stb)))
    monkeypatch.setattr(logging.getLogger("pymilvus"), "level", logging.WARNING)
    yield instance, shown
    InteractiveShell.clear_instance()


def test_a_rag_error_is_shown_as_its_type_and_sentence_and_the_cell_fails(shell):
    instance, shown = shell
    show_errors_briefly()
    result = instance.run_cell("from milvus_rag.errors import RagError\nraise RagError('What. Why. Do.')")
    assert not result.success and isinstance(result.error_in_exec, RagError)
    assert [(e.__name__, stb) for e, _, stb in shown] == [
        ("RagError", ["RagError: What. Why. Do."])
    ]  # an error output with its ename and evalue: what papermill and nbmake print


def test_a_milvus_error_is_shown_as_a_sentence_and_its_logs_are_silenced(shell):
    instance, shown = shell
    show_errors_briefly()
    assert logging.getLogger("pymilvus").level == logging.CRITICAL
    instance.run_cell(
        "from pymilvus.exceptions import MilvusException\n"
        "raise MilvusException(code=101, message=\"Collection 'c' is in state 'released'\")"
    )
    (etype, _, stb), = shown
    assert etype is MilvusException and len(stb) == 1
    assert stb[0].startswith("MilvusException: Milvus refused the request (") and "connect cell" in stb[0]


def test_other_errors_keep_their_traceback_and_a_users_handler_stays(shell):
    instance, shown = shell
    mine = []
    instance.set_custom_exc((KeyError,), lambda self, e, v, tb, tb_offset=None: mine.append(e))
    show_errors_briefly()
    show_errors_briefly()  # twice changes nothing
    instance.run_cell("raise KeyError('k')")
    assert mine == [KeyError] and shown == []
    instance.run_cell("raise ZeroDivisionError")  # not ours: IPython's full traceback
    assert [e for e, _, _ in shown] == [ZeroDivisionError]


def test_outside_ipython_nothing_changes():
    from IPython.core.interactiveshell import InteractiveShell

    assert not InteractiveShell.initialized()
    show_errors_briefly()  # no shell: nothing to do, and no error
    assert not InteractiveShell.initialized()
