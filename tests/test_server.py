"""The command line against real Milvus gRPC servers of two engines: Milvus Lite 3 (pure Python)
and milvus-lite 2.5.1 (Milvus's C++ engine). Neither is a Milvus standalone: none can be
installed on these machines, so what a 2.4/2.5 standalone does differently is untested here."""

import json

import pytest
from support.milvus_servers import ENGINES, running

from milvus_rag import cli, embedding
from milvus_rag.chunking import load_phrasings
from milvus_rag.config import phrasings_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tmp_path_factory):
    yield from running(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture()
def run(server, monkeypatch, fake_embedding, docs_zip, capsys):
    monkeypatch.setenv("MILVUS_URI", server.uri)
    monkeypatch.setenv("MILVUS_DOCS_ZIP", str(docs_zip))
    monkeypatch.setattr(embedding, "load_embedding", lambda choice: fake_embedding)

    def call(*argv):
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    return call


def test_ingest_twice_then_ask(run, server):
    collection = f"ingest_{server.engine}"
    first = json.loads(run("ingest", "--collection", collection, "--rebuild"))
    assert (first["count"], first["rows"], first["added"]) == (61, 305, 305)
    second = json.loads(run("ingest", "--collection", collection))
    assert (second["count"], second["added"], second["removed"]) == (61, 0, 0)
    # a question worded exactly as one phrasing: the grouped search must return that entry,
    # once, with the entry's own text (the stand-in embedding matches words, not meaning)
    table = load_phrasings(phrasings_path())
    asked = table[("product_faq.md", "Where does Milvus store data?")][0]
    answer = json.loads(run("ask", asked, "--json", "--collection", collection))
    titles = [hit["title"] for hit in answer["hits"]]
    assert titles[0] == "Where does Milvus store data?" and len(set(titles)) == len(titles)
    assert "etcd" in answer["answer"] and asked not in answer["hits"][0]["text"]


def test_eval_runs_every_strategy_and_bm25_scores_are_positive(run, server, tmp_path):
    questions = tmp_path / "q.jsonl"
    lines = [{"q": "How does Milvus flush data?", "gold": "How does Milvus flush data?"},
             {"q": "Where does Milvus store data?", "gold": "Where does Milvus store data?"}]  # fmt: skip
    questions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = run("eval", "--questions", str(questions), "--collection", f"eval_{server.engine}",
              "--strategy", "entry-bm25")  # fmt: skip
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:1].islower()}
    assert {"entry-dense", "entry-bm25", "entry-hybrid-rrf", "tutorial-bm25"} <= rows.keys()
    assert json.loads(out.splitlines()[-1])["hit@1"] == 1.0  # BM25 finds a quoted title first
