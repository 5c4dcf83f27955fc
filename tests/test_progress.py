"""Progress bars: a widget in a notebook while they run, then text a saved notebook can show."""

import pytest

from milvus_rag import index


@pytest.fixture()
def kernel(monkeypatch):
    """An in-process IPython shell that says it runs in a kernel, recording what it displays."""
    import IPython.display
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    settings = Config()
    settings.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=settings)
    monkeypatch.setattr(shell, "kernel", object(), raising=False)
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj))

    def display(obj, display_id=None):
        shown.append(("display", obj))
        return Handle()

    monkeypatch.setattr(IPython.display, "display", display)
    yield shown
    InteractiveShell.clear_instance()


def test_in_a_notebook_the_widget_is_replaced_by_its_last_line_of_text(kernel, monkeypatch, fake_embedding, capsys):
    monkeypatch.setenv("RAG_PROGRESS", "auto")
    index.embed_documents(fake_embedding, ["a", "b", "c"])
    (first, widget), (then, text) = kernel
    assert (first, then) == ("display", "update")
    assert type(widget).__name__ == "TqdmHBox"  # the ipywidgets progress bar of tqdm.notebook
    assert type(text).__name__ == "Pretty" and "3/3" in text.data and "100%" in text.data
    assert capsys.readouterr().err == ""


def test_headless_notebooks_get_text_on_stdout_never_stderr(kernel, monkeypatch, fake_embedding, capsys):
    monkeypatch.setenv("RAG_PROGRESS", "text")
    index.embed_documents(fake_embedding, ["a", "b"])
    out, err = capsys.readouterr()
    assert kernel == [] and "2/2" in out and err == ""


def test_a_terminal_gets_text_on_stderr_clear_of_the_output(fake_embedding, capsys):
    index.embed_documents(fake_embedding, ["a", "b"])
    out, err = capsys.readouterr()
    assert out == "" and "2/2" in err


def test_an_interrupted_run_replaces_its_widget_with_text_at_once(kernel, monkeypatch, fake_embedding):
    """Kernel > Interrupt while a batch is embedded: the widget becomes text before the error
    reaches the cell, although the traceback (kept by IPython, here by pytest) holds every frame:
    a notebook saved then reopens without "Error displaying widget"."""
    monkeypatch.setenv("RAG_PROGRESS", "auto")
    embedded = fake_embedding.encode_documents

    def interrupted(texts):
        if fake_embedding.embedded:
            raise KeyboardInterrupt
        return embedded(texts)

    monkeypatch.setattr(fake_embedding, "encode_documents", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught:
        index.embed_documents(fake_embedding, [f"text {n}" for n in range(index.INSERT_BATCH + 1)])
    assert caught.traceback  # still alive
    (first, widget), (then, text) = kernel
    assert (first, then) == ("display", "update")
    assert type(text).__name__ == "Pretty" and f"{index.INSERT_BATCH}/{index.INSERT_BATCH + 1}" in text.data
