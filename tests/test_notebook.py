"""The tutorial notebook as people use it in JupyterLab: one kernel taken through an interrupted
run, Run All with a failing LLM, Run All again once it is fixed, cells re-run, the Milvus Lite
path released and opened again; then new kernels that run one section each after only the
cells it needs, as a reader coming back the next day does. Outputs are asserted. (nbmake runs it
once more, top to bottom, as CI and `make test` do; tests/browser drives it in JupyterLab.)"""

import asyncio
import contextlib
import copy
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

NOTEBOOK = (
    Path(__file__).resolve().parents[1] / "notebooks" / "build_RAG_with_milvus_and_lepton.ipynb"
)
SETUP = ["parameters", "injected-parameters", "errors", "docs", "model", "connect"]
"""What every section needs: the parameters (papermill's injected cell follows the tagged one),
the error display, the docs, the model and the connection."""
SECTIONS = {
    "tutorial": ["split", "test-embedding", "create-collection", "insert", "search", "hits",
                 "llm-client", "prompt", "answer"],
    "evaluation": ["evaluate", "plot", "default", "abstention"],
    "improved": ["improved-ingest", "improved-search", "improved-answer"],
    "own_docs": ["own-docs", "own-answer"],
    "clean_up": ["clean-up"],
}  # fmt: skip
"""Each section's cells, as its first text cell says: after the set-up cells, nothing else (the
tutorial's cells need one another: on a new database its search needs its insert first)."""
TUTORIAL_SEARCH = ["search", "hits", "llm-client", "prompt", "answer"]  # on an existing database

pytestmark = pytest.mark.slow
CELL_TIMEOUT_S = 300  # the slowest cell takes seconds; a hang is reported well before CI's limit


@contextlib.contextmanager
def stacks_on_timeout(client, folder: Path):
    """Run ``client``'s cells; on a cell timeout, fail with every thread's stack in the kernel, so
    a hang names the call it hangs in. faulthandler writes them to a file on SIGUSR1 (the kernel's
    own stderr is a pipe that dies with the hung cell); a cell outside the notebook sets it up."""
    stacks = folder / f"stacks-{id(client)}.txt"
    setup = nbformat.v4.new_code_cell(
        f"import faulthandler as _fh, signal as _sig\n"
        f"_fh.register(_sig.SIGUSR1, file=open({str(stacks)!r}, 'w'), all_threads=True)"
    )
    client.nb.cells.append(setup)  # nbclient stores a run cell at its index: give it its own
    client.execute_cell(setup, len(client.nb.cells) - 1)
    client.nb.cells.pop()
    try:
        yield
    except CellTimeoutError as err:
        os.kill(client.km.provisioner.process.pid, signal.SIGUSR1)
        for _ in range(50):
            time.sleep(0.1)
            if stacks.stat().st_size:
                break
        pytest.fail(f"{err}\nThe kernel's threads:\n{stacks.read_text()}")


def stream_of(cell, name: str = "stdout") -> str:
    return "".join(o.get("text", "") for o in cell.outputs
                   if o.output_type == "stream" and o.name == name)  # fmt: skip


def cell(nb, cell_id: str):
    for candidate in nb.cells:
        tags = candidate.metadata.get("tags", [])
        if candidate.get("id") == cell_id or cell_id in tags:
            return candidate
    raise KeyError(cell_id)


def errors_in(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.output_type == "error"]  # fmt: skip


def run(client, nb, ids) -> None:
    for cell_id in ids:
        target = cell(nb, cell_id)
        client.execute_cell(target, nb.cells.index(target))


def run_all(client, nb) -> None:
    for number, each in enumerate(nb.cells):
        client.execute_cell(each, number)


def new_cell(nb, source: str):
    added = nbformat.v4.new_code_cell(source)
    nb.cells.append(added)
    return added


@pytest.fixture(scope="module")
def session(tmp_path_factory, docs_zip):
    """Kernels taken through what people do to them; the notebook of each stage is kept."""
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
    pristine = load_notebook_node(str(NOTEBOOK))
    nb = parameterize_notebook(copy.deepcopy(pristine), {**parameters, "LLM_BASE_URL": failing_url})
    resources = {"metadata": {"path": str(NOTEBOOK.parent)}}
    stages = {}

    def fresh_kernel(stage: str, ids: list[str], uri: str = "", **more) -> None:
        """Restart and Run (some) cells: a new kernel, only ``ids`` run, on the same data (or on
        the new database ``uri``); a failing cell stops it, its error kept for the stage's test."""
        fresh = parameterize_notebook(copy.deepcopy(pristine),
                                      {**parameters, **({"MILVUS_URI": uri} if uri else {}), **more})  # fmt: skip
        client = NotebookClient(fresh, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                resources=resources)  # fmt: skip
        with (client.setup_kernel(), stacks_on_timeout(client, folder),
              contextlib.suppress(CellExecutionError)):
            run(client, fresh, ids)
        stages[stage] = fresh

    try:
        client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                resources=resources)  # fmt: skip
        with client.setup_kernel(), stacks_on_timeout(client, folder):
            # 1. A run interrupted (Kernel > Interrupt) while it builds and searches the
            #    evaluation collections: embedding, inserting and searching Milvus.
            stop = nb.cells.index(cell(nb, "evaluate"))
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
            injected = cell(nb, "injected-parameters")
            injected.source = injected.source.replace(f'"{failing_url}"', '""')
            run_all(client, nb)
            stages["fixed"] = copy.deepcopy(nb)
            # 4. One cell re-run: the connect cell, then the search.
            run(client, nb, ["connect", "search"])
            stages["rerun"] = copy.deepcopy(nb)
            # 5. The clean-up text's advice, pasted into a new cell; then, to go on here, the
            #    connect cell again and a search.
            advice = re.search(r"run `([^`]+)` in a cell", cell(nb, "about-clean-up").source)
            released = new_cell(nb, advice.group(1))
            client.execute_cell(released, len(nb.cells) - 1)
            with pytest.raises(CellExecutionError):  # the client was released: one sentence
                run(client, nb, ["search"])
            stages["search_after_release"] = copy.deepcopy(cell(nb, "search"))
            run(client, nb, ["connect", "search", "improved-search"])
            stages["released"] = copy.deepcopy(nb)
        # 6. Coming back the next day: a new kernel for each section, after only the set-up
        #    cells, on the database the runs above filled and on a new one.
        fresh_kernel("existing:tutorial_search", [*SETUP, *TUTORIAL_SEARCH])
        for section, ids in SECTIONS.items():
            fresh_kernel(f"existing:{section}", [*SETUP, *ids])
            fresh_kernel(f"new:{section}", [*SETUP, *ids], str(folder / f"new-{section}.db"))
        mine = folder / "my-docs"
        mine.mkdir()
        (mine / "guide.md").write_text("# Guide\n\nFLAT suits small collections.\n", encoding="utf-8")
        (mine / "latin1.md").write_bytes("# Größe\n".encode("latin-1"))
        fresh_kernel("own_docs_with_a_bad_file", [*SETUP, *SECTIONS["own_docs"]], MY_DOCS=str(mine))
    finally:
        patch.undo()
        endpoint.shutdown()
    return stages, handler


def test_a_failing_llm_leaves_the_rest_standing_and_never_shows_the_key(session):
    from support.endpoints import CANARY_KEY

    stages, handler = session
    nb = stages["failing_llm"]
    assert errors_in(nb) == []
    assert handler.requests and all(CANARY_KEY in auth for auth in handler.requests)
    for cell_id in ("answer", "improved-answer"):
        said = stream_of(cell(nb, cell_id), "stderr")
        assert said.startswith("RagError: The LLM endpoint") and "rejected the API key (HTTP 401)" in said
    assert stream_of(cell(nb, "improved-answer")).startswith("Sources:\n[1] ")
    assert "entry-dense" in stream_of(cell(nb, "evaluate"))
    assert "Where does Milvus store data?" in stream_of(cell(nb, "improved-search"))
    text = nbformat.writes(nb)
    assert CANARY_KEY not in text and CANARY_KEY[:8] not in text


def test_run_all_again_reproduces_the_tutorial(session):
    nb = session[0]["fixed"]
    assert errors_in(nb) == []
    assert stream_of(cell(nb, "split")).strip() == "72"
    assert stream_of(cell(nb, "insert")).strip().splitlines()[-1] == "72"
    assert stream_of(cell(nb, "test-embedding")).splitlines()[0] in ("384", "768")
    question, shown = stream_of(cell(nb, "search")).split("\n\n", 1)
    assert question == "Question: How is data stored in milvus?"
    hits = json.loads(shown)
    assert len(hits) == 3 and hits[0][0].strip().startswith("Where does Milvus store data?")
    compact = stream_of(cell(nb, "hits"))
    assert compact.startswith("[1] product_faq.md · Where does Milvus store data? (score 0.")
    answer = stream_of(cell(nb, "answer"))
    assert "etcd" in answer and "MinIO" in answer
    assert "local answerer" in stream_of(cell(nb, "llm-client"))


def test_run_all_again_measures_retrieval_and_runs_the_improved_pipeline(session):
    nb = session[0]["fixed"]
    table = stream_of(cell(nb, "evaluate"))
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line[:1].isalpha()
            and "-" in line.split()[0]}  # fmt: skip
    assert {"tutorial-dense", "entry-dense", "entry-phrasings-dense", "entry-bm25",
            "entry-hybrid-rrf", "entry-hybrid-weighted"} <= set(rows)  # fmt: skip
    assert rows["entry-phrasings-dense"][-1] == "*"
    plot = cell(nb, "plot")
    assert any("image/png" in o.get("data", {}) for o in plot.outputs)
    assert stream_of(cell(nb, "default")).startswith("Default by the rule: entry-")
    synced = stream_of(cell(nb, "improved-ingest"))
    assert "61 entries in 305 rows, 0 added, 0 removed." in synced  # nothing new the 2nd time
    found = stream_of(cell(nb, "improved-search")).splitlines()
    assert found[0].startswith("[1] product_faq.md · Where does Milvus store data?")
    answer, sources = stream_of(cell(nb, "improved-answer")).split("\n\nSources:\n")
    assert "etcd" in answer and answer.rstrip().endswith("[1]")
    assert sources.splitlines()[0].startswith("[1] product_faq.md · Where does Milvus store data?")
    own = stream_of(cell(nb, "own-docs"))
    assert "rerun_sample_docs" in own and "0 rows added" in own and "Skipped" not in own
    question, answer = stream_of(cell(nb, "own-answer")).split("\n\n", 1)
    assert question == "Question: Which index type should I use for a small collection?"
    answer, sources = answer.split("\n\nSources:\n")
    assert "FLAT" in answer and answer.rstrip().endswith("[1]")
    assert sources.startswith("[1] indexes/choosing_an_index.markdown · FLAT (score 0.")
    abstention = stream_of(cell(nb, "abstention")).splitlines()
    assert abstention[0].startswith("Coverage on held-out questions (real_test.jsonl: answerable")
    assert abstention[1].startswith("- unanswerable questions abstained on: ")


def test_no_stray_empty_outputs_and_no_stderr_but_the_llms(session):
    """No blank block of its own (a frontend joins a stream's pieces that follow each other, but
    shows a blank one after other output as an empty strip), and no stderr (a pink strip in
    JupyterLab): the failing LLM's sentence is the only stderr a run shows."""
    nb = session[0]["fixed"]
    for each in nb.cells:
        previous = None
        for output in each.get("outputs", []):
            if output.output_type == "stream":
                assert output.text.strip() or (previous or {}).get("name") == output.name, (
                    f"a stray empty {output.name} output in {each.get('id')}")  # fmt: skip
                assert output.name == "stdout", f"stderr in {each.get('id')}: {output.text[:200]}"
            previous = output


def test_cells_run_again_and_after_a_release_work(session):
    for stage in ("rerun", "released"):
        nb = session[0][stage]
        assert errors_in(nb) == [], stage
        hits = json.loads(stream_of(cell(nb, "search")).split("\n\n", 1)[1])
        assert hits[0][0].strip().startswith("Where does Milvus store data?")
    connect = stream_of(cell(session[0]["released"], "connect"))
    assert connect.startswith("From an earlier run, loaded for search: rerun (72 rows), rerun_faq")


def test_a_milvus_error_in_the_tutorials_own_cell_is_one_sentence_that_says_what_to_do(session):
    """The search cell run after `release(MILVUS_URI)`, before the connect cell: pymilvus's own
    error (and its logged tracebacks) becomes one error output whose advice then works."""
    searched = session[0]["search_after_release"]
    (error,) = [o for o in searched.outputs if o.output_type == "error"]
    assert error.ename == "MilvusException" and len(error.traceback) == 1
    assert error.evalue.startswith("Milvus refused the request (MilvusException: ")
    assert "run the connect cell again" in error.evalue
    assert not [o for o in searched.outputs if o.output_type == "stream" and o.name == "stderr"]


@pytest.mark.parametrize(("database", "section"), [("existing", "tutorial_search"),
                                                    *[(database, section) for section in SECTIONS
                                                      for database in ("existing", "new")]])  # fmt: skip
def test_each_section_runs_in_a_new_kernel_after_only_the_set_up_cells(session, section, database):
    nb = session[0][f"{database}:{section}"]
    assert errors_in(nb) == []
    connected = stream_of(cell(nb, "connect"))
    assert connected.startswith("From an earlier run, loaded for search" if database == "existing"
                                else "No collection from an earlier run")  # fmt: skip
    ids = SECTIONS.get(section, TUTORIAL_SEARCH)
    assert stream_of(cell(nb, ids[-1])) or section == "clean_up", f"{ids[-1]} printed nothing"
    if section in ("tutorial", "tutorial_search"):
        assert "etcd" in stream_of(cell(nb, "answer"))
    if section in ("improved", "own_docs"):
        assert "\n\nSources:\n[1] " in stream_of(cell(nb, ids[-1]))


def test_own_documents_say_skipped_once_per_file_and_answer_from_the_rest(session):
    nb = session[0]["own_docs_with_a_bad_file"]
    assert errors_in(nb) == []
    said = stream_of(cell(nb, "own-docs")).splitlines()
    skipped = [line for line in said if "Skipped" in line]
    assert len(skipped) == 1 and skipped[0].startswith("Skipped latin1.md: ")
    assert skipped[0].count("Skipped") == 1
    assert re.search(r"sources:\n\[1\] guide\.md · Guide \(score", stream_of(cell(nb, "own-answer")),
                     re.IGNORECASE)  # covered or not, its numbered sources  # fmt: skip


def test_a_failing_cell_headless_ends_with_its_sentence(tmp_path):
    """papermill (as CI and `make run` call it) prints the cell's error: type and sentence."""
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as caught:
        pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "out.ipynb"), kernel_name="python3",
                            progress_bar=False, cwd=str(NOTEBOOK.parent),
                            parameters={"DOCS_SOURCE": str(tmp_path / "nowhere.zip"),
                                        "MILVUS_URI": str(tmp_path / "m.db")})  # fmt: skip
    assert caught.value.ename == "RagError"
    assert "RagError: The docs source" in str(caught.value) and "does not exist" in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_parameters_cell_reads_every_setting_from_config():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = cell(nb, "parameters").source
    assigned = [line.split("=")[0].strip() for line in source.splitlines() if " = " in line]
    assert assigned == ["DOCS_SOURCE", "MILVUS_URI", "COLLECTION_NAME", "EMBEDDING_MODEL",
                        "EMBEDDING_BASE_URL", "LLM_BASE_URL", "LLM_MODEL", "QUESTION", "TOP_K", "EVAL_QUESTIONS",
                        "MY_DOCS", "MY_QUESTION"]  # fmt: skip
    calls = re.findall(r"= (\w+)\(", source)
    assert set(calls) <= {"setting", "positive_int", "milvus_uri", "my_docs"}
    literals = re.findall(r'"([^"]*)"', source)
    from milvus_rag.config import DEFAULTS

    assert set(literals) <= set(DEFAULTS), "a literal default in the cell: defaults live in config"


def test_committed_notebook_is_clean():
    """Outputs of a real run that open clean: no stderr strips, no widget views, the kernelspec
    JupyterLab writes, no run metadata, no keys or machine paths (check_secrets too)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata.kernelspec == {"display_name": "Python 3 (ipykernel)",
                                      "language": "python", "name": "python3"}  # fmt: skip
    assert "papermill" not in nb.metadata
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs for c in code if "print(" in c.source)
    outputs = [o for c in code for o in c.outputs]
    assert not errors_in(nb)
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    ids = [c.get("id") for c in nb.cells]
    assert len(ids) == len(set(ids)) and all(ids)
    assert nb.cells[0].cell_type == "markdown" and "colab-badge" in nb.cells[0].source
