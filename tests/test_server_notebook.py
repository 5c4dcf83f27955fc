"""The notebook, top to bottom, against a real Milvus gRPC server of each engine (issue: the
README's promise that MILVUS_URI alone moves the tutorial to a server). Run by `make rehearse`
(CI), not by `make test`: two more notebook runs would double its time."""

import json

import nbformat
import papermill as pm
import pytest
from support.milvus_servers import ENGINES, running

NOTEBOOK = "notebooks/build_RAG_with_milvus_and_lepton.ipynb"

pytestmark = [pytest.mark.slow, pytest.mark.rehearsal]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_notebook_runs_against_a_server(engine, tmp_path, docs_zip, monkeypatch):
    from milvus_rag.config import project_root

    root = project_root()
    monkeypatch.delenv("MILVUS_LITE_PATH", raising=False)
    for server in running(engine, tmp_path / "server"):
        output = tmp_path / "executed.ipynb"
        pm.execute_notebook(
            str(root / NOTEBOOK), str(output), cwd=str(root / "notebooks"), kernel_name="python3",
            progress_bar=False,
            parameters={"DOCS_SOURCE": str(docs_zip), "MILVUS_URI": server.uri,
                        "COLLECTION_NAME": f"nb_{engine}", "EMBEDDING_MODEL": "minilm"},
        )  # fmt: skip
        nb = nbformat.read(output, as_version=4)
    def stdout(cell_id: str) -> str:
        cell = next(c for c in nb.cells if c.get("id") == cell_id)
        return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")

    hits = json.loads(stdout("search").split("\n\n", 1)[1])  # after the question's line
    assert hits[0][0].strip().startswith("Where does Milvus store data?")
    if engine == "standalone":  # Milvus 2.3: one line names the strategies skipped, and why
        assert stdout("evaluate").startswith("Skipped tutorial-bm25, ") and "runs 2.3." in stdout(
            "evaluate"
        )
    assert "entry-bm25" in stdout("evaluate")
    improved = stdout("improved-search").splitlines()  # TOP_K hits, TOP_K different entries
    assert len(improved) == 3 == len({line.split(" · ", 1)[1].rsplit(" (", 1)[0] for line in improved})
    assert stdout("connect").startswith("No collection from an earlier run")
