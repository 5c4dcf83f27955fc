"""The tutorial notebook, executed end to end by papermill with small overridden parameters."""

import json
import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from helpers import NOTEBOOK, execute_notebook, source_cell, stdout_of

from milvus_rag.settings import DEFAULTS

REPO = Path(__file__).resolve().parents[1]
PARAMETERS = {  # notebook parameter -> its environment variable
    "DOCS_SOURCE": "MILVUS_DOCS_ZIP",
    "MILVUS_URI": "MILVUS_URI",
    "COLLECTION_NAME": "MILVUS_COLLECTION",
    "EMBEDDING_MODEL": "EMBEDDING_MODEL",
    "LLM_BASE_URL": "LLM_BASE_URL",
    "LLM_MODEL": "LLM_MODEL",
    "QUESTION": "RAG_QUESTION",
    "TOP_K": "RAG_TOP_K",
    "EVAL_QUESTIONS": "RAG_EVAL_QUESTIONS",
}


@pytest.fixture(scope="module")
def executed(tmp_path_factory, docs_zip):
    out = tmp_path_factory.mktemp("nb")
    output = out / "executed.ipynb"
    execute_notebook(
        output,
        DOCS_SOURCE=str(docs_zip),
        MILVUS_URI=str(out / "papermill.db"),
        COLLECTION_NAME="papermill_test",
        TOP_K=3,
    )
    return nbformat.read(output, as_version=4)


def test_notebook_reproduces_the_tutorial(executed):
    assert stdout_of(source_cell(executed, "faq_pieces(docs_dir)")).strip() == "72"
    assert stdout_of(source_cell(executed, "milvus_client.insert(")).strip() == "72"
    dims = stdout_of(source_cell(executed, "embedding_dim = len(")).splitlines()
    assert dims[1] in ("384", "768")
    hits = json.loads(stdout_of(source_cell(executed, "milvus_client.search(")))
    assert len(hits) == 3
    assert hits[0][0].strip().startswith("Where does Milvus store data?")
    answer, sources = stdout_of(source_cell(executed, "chat.completions.create(")).split(
        "\n\nSources:\n"
    )
    assert "etcd" in answer and answer.endswith("[1]")
    assert sources.splitlines()[0].startswith(
        "[1] product_faq.md · Where does Milvus store data? (distance 0."
    )
    assert len(sources.strip().splitlines()) == 3


def test_notebook_measures_retrieval_and_runs_the_improved_pipeline(executed):
    table = stdout_of(source_cell(executed, "evaluation.format_table("))
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:] if line.strip()}
    assert {
        "tutorial-dense",
        "entry-dense",
        "entry-views-dense",
        "entry-bm25",
        "entry-hybrid-rrf",
        "entry-hybrid-weighted",
    } <= rows.keys()
    assert rows["entry-views-dense"][-1] == "*"  # the default, marked
    plot = source_cell(executed, "plot_hit_at_k(")
    assert any("image/png" in o.get("data", {}) for o in plot.outputs)
    improved = stdout_of(source_cell(executed, "retrieval.sync_entries(")).splitlines()
    assert "'count': 61" in improved[0]
    assert improved[1].endswith("product_faq.md · Where does Milvus store data?")
    answer = stdout_of(source_cell(executed, "stream_text(llm"))
    assert (
        "etcd" in answer
        and "Sources:\n[1] product_faq.md · Where does Milvus store data?" in answer
    )


def test_parameters_cell_is_tagged_and_matches_the_defaults():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    pairs = re.findall(r'^(\w+) = (?:int\()?env\("(\w+)", "([^"]*)"\)', cells[0].source, re.M)
    assert {name: variable for name, variable, _ in pairs} == PARAMETERS
    for _, variable, default in pairs:
        assert default == DEFAULTS[variable], variable


def test_committed_notebook_is_clean():
    """First cell markdown with the Colab badge; outputs of a real run; no paths or secrets."""
    text = NOTEBOOK.read_text()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and "colab-badge.svg" in nb.cells[0].source
    assert 'if "google.colab" in sys.modules:' in nb.cells[1].source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs") is not None for c in code)
    assert stdout_of(source_cell(nb, "faq_pieces(docs_dir)")).strip() == "72"
    plot = source_cell(nb, "plot_hit_at_k(")
    assert any("image/png" in o.get("data", {}) for o in plot.outputs)
    assert "entry-views-dense" in stdout_of(source_cell(nb, "evaluation.format_table("))
    for pattern in (
        r"/work/",
        r"/home/",
        r"/tmp/",
        r"/root/",
        r"site-packages",
        r"sk-[A-Za-z0-9]",
        r"nvapi-",
        r"hf_[A-Za-z0-9]{10}",
        r"AKIA[0-9A-Z]{12}",
        r"Bearer ",
    ):
        assert not re.search(pattern, text), pattern
    assert "papermill" not in json.dumps(nb.metadata)
    for cell in code:
        assert "papermill" not in cell.metadata and "execution" not in cell.metadata


def test_rejected_key_shows_one_sentence_and_is_never_saved(
    tmp_path, docs_zip, failing_endpoint, canary_key, monkeypatch
):
    """A key from the environment reaches the endpoint but no output; the error is one line."""
    url, handler = failing_endpoint(401)
    monkeypatch.setenv("LLM_API_KEY", canary_key)
    output = tmp_path / "rejected.ipynb"
    with pytest.raises(pm.PapermillExecutionError):
        execute_notebook(
            output,
            DOCS_SOURCE=str(docs_zip),
            MILVUS_URI=str(tmp_path / "k.db"),
            LLM_BASE_URL=url,
            LLM_MODEL="test-model",
        )
    assert handler.requests == [f"Bearer {canary_key}"]
    text = output.read_text()
    assert canary_key not in text and canary_key[:8] not in text
    nb = nbformat.read(output, as_version=4)
    failed = source_cell(nb, "chat.completions.create(")
    shown = "".join(o.get("text", "") for o in failed.outputs if o.get("output_type") == "stream")
    assert shown.strip() == (
        f"RagError: The LLM endpoint {url} rejected the API key (HTTP 401): check LLM_API_KEY "
        "(or LEPTONAI_TOKEN) and that it is valid for this endpoint."
    )
