"""The tutorial notebook as people use it in JupyterLab: one kernel, an interrupted run, Run All
with a failing LLM, Run All again once it is fixed, one cell re-run. Its outputs are asserted
on the last Run All. (nbmake runs it once more, top to bottom, as CI and `make test` do.)"""

import asyncio
import copy
import json
import threading
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

NOTEBOOK = (
    Path(__file__).resolve().parents[1] / "notebooks" / "build_RAG_with_milvus_and_lepton.ipynb"
)

pytestmark = pytest.mark.slow


def stdout_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs
                   if o.output_type == "stream" and o.name == "stdout")  # fmt: skip


def stderr_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs
                   if o.output_type == "stream" and o.name == "stderr")  # fmt: skip


def cell_with(nb, fragment: str):
    return next(c for c in nb.cells if c.cell_type == "code" and fragment in c.source)


def run_all(client, nb) -> None:
    for number, cell in enumerate(nb.cells):
        client.execute_cell(cell, number)


@pytest.fixture(scope="module")
def session(tmp_path_factory, docs_zip):
    """A kernel taken through what people do to it; the notebook of each stage is kept."""

    from _pytest.monkeypatch import MonkeyPatch
    from support.endpoints import CANARY_KEY, FailingEndpoint, base_url, serve

    folder = tmp_path_factory.mktemp("notebook")
    handler = type("Rejects", (FailingEndpoint,), {"status": 401, "requests": []})
    endpoint = serve(handler)
    failing_url = base_url(endpoint)

    patch = MonkeyPatch()
    patch.setenv("LLM_API_KEY", CANARY_KEY)  # the kernel inherits the environment
    parameters = {"DOCS_SOURCE": str(docs_zip), "MILVUS_URI": str(folder / "rerun.db"),
                  "COLLECTION_NAME": "rerun", "TOP_K": 3}  # fmt: skip
    nb = parameterize_notebook(
        load_notebook_node(str(NOTEBOOK)), {**parameters, "LLM_BASE_URL": failing_url}
    )
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})  # fmt: skip
    stages = {}
    try:
        with client.setup_kernel():
            # 1. A run interrupted (Kernel > Interrupt) while it builds and searches the
            #    evaluation collections: embedding, inserting and searching Milvus.
            stop = next(i for i, c in enumerate(nb.cells) if "build_collections(" in c.source)
            for number in range(stop):
                client.execute_cell(nb.cells[number], number)
            timer = threading.Timer(2.0, lambda: asyncio.run(client.km.interrupt_kernel()))
            timer.start()
            with pytest.raises(CellExecutionError, match="KeyboardInterrupt"):
                client.execute_cell(nb.cells[stop], stop)
            timer.join()
            # 2. Run All, with an LLM endpoint that rejects the key.
            run_all(client, nb)
            stages["failing_llm"] = copy.deepcopy(nb)
            # 3. The endpoint fixed (no LLM_BASE_URL: the local answerer), Run All again.
            injected = next(
                c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])
            )
            injected.source = injected.source.replace(f'"{failing_url}"', '""')
            run_all(client, nb)
            stages["fixed"] = copy.deepcopy(nb)
            # 4. One cell re-run: the connect cell, then the search.
            for fragment in ("MilvusClient(uri=", "search_res = milvus_client.search("):
                number = next(i for i, c in enumerate(nb.cells) if fragment in c.source)
                client.execute_cell(nb.cells[number], number)
            stages["rerun"] = copy.deepcopy(nb)
    finally:
        patch.undo()
        endpoint.shutdown()
    return stages, handler


def errors_in(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "error"]  # fmt: skip


def test_a_failing_llm_leaves_the_rest_standing_and_never_shows_the_key(session):
    from support.endpoints import CANARY_KEY

    stages, handler = session
    nb = stages["failing_llm"]
    assert errors_in(nb) == []
    assert handler.requests and all(CANARY_KEY in auth for auth in handler.requests)
    for fragment in ("llm_client.chat.completions.create(", "build_messages("):
        assert "rejected the API key (HTTP 401)" in stderr_of(cell_with(nb, fragment))
    assert "entry-dense" in stdout_of(cell_with(nb, "evaluation.format_table("))
    assert "Where does Milvus store data?" in stdout_of(cell_with(nb, "faq_res = "))
    text = nbformat.writes(nb)
    assert CANARY_KEY not in text and CANARY_KEY[:8] not in text


def test_run_all_again_reproduces_the_tutorial(session):
    nb = session[0]["fixed"]
    assert errors_in(nb) == []
    assert stdout_of(cell_with(nb, 'split("# ")')).strip() == "72"
    assert stdout_of(cell_with(nb, "milvus_client.insert(")).strip() == "72"
    assert stdout_of(cell_with(nb, "embedding_dim = len(")).splitlines()[0] in ("384", "768")
    hits = json.loads(stdout_of(cell_with(nb, "retrieved_lines_with_distances = ")))
    assert len(hits) == 3 and hits[0][0].strip().startswith("Where does Milvus store data?")
    compact = stdout_of(cell_with(nb, "print(format_hits(to_hits(search_res[0])))"))
    assert compact.startswith("[1] product_faq.md · Where does Milvus store data? (distance 0.")
    answer = stdout_of(cell_with(nb, "llm_client.chat.completions.create("))
    assert "etcd" in answer and "MinIO" in answer


def test_run_all_again_measures_retrieval_and_runs_the_improved_pipeline(session):
    nb = session[0]["fixed"]
    table = stdout_of(cell_with(nb, "evaluation.format_table("))
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:-1]}
    assert set(rows) == {"tutorial-dense", "tutorial-bm25", "tutorial-hybrid-rrf", "entry-dense",
                         "entry-phrasings-dense", "entry-bm25", "entry-hybrid-rrf",
                         "entry-hybrid-weighted"}  # fmt: skip
    default = rows["entry-phrasings-dense"]
    assert default[-1] == "*" and int(default[1]) >= 100
    plot = cell_with(nb, "evaluation.plot(")
    assert any("image/png" in o.get("data", {}) for o in plot.outputs)
    assert stdout_of(cell_with(nb, "choose_default(")).startswith("entry-phrasings-dense: ")
    synced = stdout_of(cell_with(nb, "print(sync("))
    assert "'count': 61, 'rows': 305" in synced and "'added': 0" in synced  # nothing new
    found = stdout_of(cell_with(nb, "faq_res = ")).splitlines()
    assert found[0].startswith("[1] product_faq.md · Where does Milvus store data?")
    answer, sources = stdout_of(cell_with(nb, "build_messages(")).split("\n\nSources:\n")
    assert "etcd" in answer and answer.rstrip().endswith("[1]")
    assert sources.splitlines()[0].startswith("[1] product_faq.md · Where does Milvus store data?")


def test_no_stray_empty_outputs(session):
    """No blank block of its own: a frontend joins a stream's pieces that follow each other
    (a text bar's last newline), but shows a blank one after other output as an empty strip."""
    nb = session[0]["fixed"]
    for cell in nb.cells:
        previous = None
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and not output.text.strip():
                assert previous is not None and previous.get("name") == output.name, (
                    f"a stray empty {output.name} output under {cell.source[:60]!r}"
                )
            previous = output


def test_one_cell_run_again_works(session):
    nb = session[0]["rerun"]
    assert errors_in(nb) == []
    hits = json.loads(stdout_of(cell_with(nb, "retrieved_lines_with_distances = ")))
    assert hits[0][0].strip().startswith("Where does Milvus store data?")


def test_parameters_cell_reads_every_setting_from_config():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [line.split("=")[0].strip() for line in cell.source.splitlines() if " = " in line]
    assert assigned == ["DOCS_SOURCE", "MILVUS_URI", "COLLECTION_NAME", "EMBEDDING_MODEL",
                        "LLM_BASE_URL", "LLM_MODEL", "QUESTION", "TOP_K", "EVAL_QUESTIONS"]  # fmt: skip
    assert all("setting(" in line or "positive_int(" in line for line in cell.source.splitlines()
               if " = " in line)  # fmt: skip
    assert '"' not in cell.source.replace('setting("', "").replace('positive_int("', "").replace(
        '")', ""
    )


def test_committed_notebook_is_clean():
    """Outputs of a real run, no run metadata, no keys or machine paths (check_secrets too)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert "papermill" not in nb.metadata
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs for c in code if "print(" in c.source)
    assert not errors_in(nb)
    assert nb.cells[0].cell_type == "markdown" and "colab-badge" in nb.cells[0].source
