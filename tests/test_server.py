"""The command line against real Milvus gRPC servers: Milvus Lite 3 (pure Python) and
milvus-lite 2.5.1 (Milvus's C++ engine) by default, the Milvus 2.3.5 standalone in the standalone
rehearsal (tests/standalone/rehearse.py; no grouping, no BM25, rows counted only once flushed)."""

import json

import pytest
from support.milvus_servers import ENGINES, start

from milvus_rag import cli, embedding
from milvus_rag.chunking import load_phrasings
from milvus_rag.config import phrasings_path
from milvus_rag.search import STRATEGIES

pytestmark = pytest.mark.slow


class Restartable:
    """The module's server, which a test may crash (SIGKILL) and start again on its data: one
    standalone at a time per network (tests/support/ENGINES.md)."""

    def __init__(self, engine: str, folder):
        self.engine, self.folder, self.starts = engine, folder, 0
        self._start()

    def _start(self):
        self.starts += 1
        self.now = start(self.engine, self.folder / "data", self.folder / f"{self.starts}.log")

    @property
    def uri(self) -> str:
        return self.now.uri

    def crash_and_restart(self) -> None:
        self.now.kill()
        self._start()


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tmp_path_factory):
    restartable = Restartable(request.param, tmp_path_factory.mktemp(request.param))
    yield restartable
    restartable.now.stop()


@pytest.fixture()
def run(server, monkeypatch, fake_embedding, docs_zip, capsys):
    monkeypatch.delenv("MILVUS_LITE_PATH", raising=False)
    monkeypatch.setenv("MILVUS_URI", server.uri)
    monkeypatch.setenv("MILVUS_DOCS_ZIP", str(docs_zip))
    monkeypatch.setattr(embedding, "load_embedding", lambda choice, base_url="": fake_embedding)

    def call(*argv):
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        assert code == 0, err
        call.err = err  # what the command said on stderr
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
    if server.engine == "standalone":  # Milvus 2.3: no BM25, the dense strategies measured
        out = run("eval", "--questions", str(questions), "--collection", "eval_standalone",
                  "--strategy", "entry-dense")  # fmt: skip
        assert "\nSkipped tutorial-bm25, tutorial-hybrid-rrf, entry-bm25, " in run.err
        rows = {line.split(maxsplit=1)[0] for line in out.splitlines() if line} & set(STRATEGIES)
        assert rows == {"tutorial-dense", "entry-dense", "entry-phrasings-dense"}
        assert json.loads(out.splitlines()[-1])["hit@1"] == 1.0
        return
    out = run("eval", "--questions", str(questions), "--collection", f"eval_{server.engine}",
              "--strategy", "entry-bm25")  # fmt: skip
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:1].islower()}
    assert {"entry-dense", "entry-bm25", "entry-hybrid-rrf", "tutorial-bm25"} <= rows.keys()
    assert json.loads(out.splitlines()[-1])["hit@1"] == 1.0  # BM25 finds a quoted title first


def test_the_printed_counts_are_the_rows_in_the_collection(run, server):
    """On a server, collection statistics count only flushed rows (0 right after an ingest)."""
    from pymilvus import MilvusClient

    from milvus_rag import index

    report = json.loads(run("ingest", "--collection", f"counted_{server.engine}", "--rebuild"))
    client = MilvusClient(uri=server.uri)
    name = report["collection"]
    strong = client.query(name, output_fields=["count(*)"], consistency_level="Strong")
    assert report["rows"] == strong[0]["count(*)"] == 305
    assert f"{name} (305 rows)" in index.open_existing(client, [name], embedding.load_embedding(""))
    client.close()


def test_phrasings_figures_match_milvus_lite(run, server, tmp_path, monkeypatch, minilm):
    """eval --only --strategy entry-phrasings-dense gives the same figures on the server as on
    Milvus Lite (in-process), grouping or not. With the real model: the stand-in's bags of words
    tie exactly, and engines break ties differently."""
    monkeypatch.setattr(embedding, "load_embedding", lambda choice, base_url="": minilm)
    path = "data/eval/real_test.jsonl"
    argv = ["eval", "--only", "--strategy", "entry-phrasings-dense", "--questions", path]
    on_server = json.loads(run(*argv, "--collection", f"fig_{server.engine}").splitlines()[-1])
    monkeypatch.delenv("MILVUS_URI")
    monkeypatch.setenv("MILVUS_LITE_PATH", str(tmp_path / "lite.db"))
    on_lite = json.loads(run(*argv).splitlines()[-1])
    assert on_server == on_lite and on_lite["n"] > 40


def test_own_documents_and_all_docs(run, server, tmp_path):
    from milvus_rag.config import project_root

    sample = str(project_root() / "data" / "sample_docs")
    base = ["--collection", f"own_{server.engine}"]
    report = json.loads(run("ingest", "--docs", sample, *base))
    assert report["added"] == report["rows"] > 0
    answer = json.loads(run("ask", "Which index type should I use for a small collection?",
                            "--docs", sample, "--json", *base))  # fmt: skip
    titles = [hit["title"] for hit in answer["hits"]]
    assert len(titles) == len(set(titles)) == 3
    docs = json.loads(run("ingest", "--all-docs", *base))
    assert docs["collection"].endswith("_docs") and docs["rows"] == docs["added"] > 3000


def test_what_built_a_collection_survives_a_crash_between_two_ingests(run, server, monkeypatch):
    """The server killed (SIGKILL) after an ingest: its record, complete, is still there, so the
    next ingest and ask do nothing and say nothing (Milvus 2.3 loses the last properties write)."""
    from pymilvus import MilvusClient

    from milvus_rag import index

    name = json.loads(run("ingest", "--collection", f"crash_{server.engine}", "--rebuild"))["collection"]
    client = MilvusClient(uri=server.uri)
    recorded = index.built_by(client, name)
    client.close()
    server.crash_and_restart()
    monkeypatch.setenv("MILVUS_URI", server.uri)  # the port it got this time
    client = MilvusClient(uri=server.uri)
    assert index.built_by(client, name) == recorded and recorded.get("complete", True) is True
    client.load_collection(name)
    assert index.count(client, name) == 305
    client.close()
    again = json.loads(run("ingest", "--collection", f"crash_{server.engine}"))
    assert (again["added"], again["removed"], again["rows"]) == (0, 0, 305)
    run("ask", "Where does Milvus store data?", "--json", "--collection", f"crash_{server.engine}")
    assert "did not match" not in run.err
