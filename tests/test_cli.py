"""The command line, called in-process with a stand-in embedding; one real subprocess for the
``error:`` line and exit-code contract."""

import json
import subprocess
import sys

import pytest

from milvus_rag import cli, embedding


@pytest.fixture()
def run(monkeypatch, lite_uri, fake_embedding, docs_zip, capsys, tmp_path):
    """``run(*argv) -> (exit code, stdout, stderr)`` against a fresh Lite path.

    The FAQ phrasings are left out (an empty table): the stand-in embedding matches words, and
    a short phrasing of another entry that shares a question's words would come first."""
    empty = tmp_path / "no-phrasings.jsonl"
    empty.write_text("")
    monkeypatch.setattr(cli, "phrasings_path", lambda: empty)
    monkeypatch.setenv("MILVUS_URI", lite_uri)
    monkeypatch.setenv("MILVUS_DOCS_ZIP", str(docs_zip))
    monkeypatch.setattr(embedding, "load_embedding", lambda choice: fake_embedding)

    def call(*argv):
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return call


def test_ingest_is_idempotent(run):
    code, out, _ = run("ingest")
    assert code == 0
    assert json.loads(out) == {"collection": "my_rag_collection_faq", "count": 61, "rows": 61,
                               "added": 61, "removed": 0}  # fmt: skip
    assert json.loads(run("ingest")[1])["added"] == 0
    assert json.loads(run("ingest", "--rebuild")[1])["added"] == 61


def test_ingest_indexes_the_projects_phrasings_too(run, monkeypatch):
    from milvus_rag.config import phrasings_path

    monkeypatch.setattr(cli, "phrasings_path", phrasings_path)
    ingested = json.loads(run("ingest")[1])
    assert (ingested["count"], ingested["rows"]) == (61, 61 * 5)  # each entry and 4 phrasings


def test_ask_json_ingests_a_missing_collection_and_honours_flags(run):
    code, out, err = run("ask", "Where does Milvus store data?", "--json", "--k", "2",
                         "--collection", "other")  # fmt: skip
    assert code == 0 and "does not exist yet: ingesting" in err
    answer = json.loads(out)
    assert [hit["title"] for hit in answer["hits"]][0] == "Where does Milvus store data?"
    assert len(answer["hits"]) == 2 and set(answer["hits"][0]) == {
        "text",
        "distance",
        "source",
        "title",
    }
    assert "etcd" in answer["answer"] and answer["answer"].endswith("[1]")


def test_ask_streams_the_answer_then_its_sources(run):
    run("ingest")
    code, out, _ = run("ask", "Where does Milvus store data?")
    answer, sources = out.split("\n\nSources:\n")
    assert code == 0 and "etcd" in answer
    assert sources.splitlines()[0].startswith("[1] product_faq.md · Where does Milvus store data?")
    assert len(sources.strip().splitlines()) == 3


def test_eval_prints_intervals_the_default_and_one_json_line(run, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"q": "How does Milvus flush data?",
                                     "gold": "How does Milvus flush data?"}) + "\n")  # fmt: skip
    output = tmp_path / "hits.jsonl"
    code, out, _ = run("eval", "--questions", str(questions), "--output", str(output))
    assert code == 0
    assert "entry-dense" in out and "95% bootstrap interval" in out and "Default: " in out
    assert json.loads(out.splitlines()[-1])["n"] == 1
    assert len(json.loads(output.read_text())["hits"]) == 10
    code, out, _ = run("eval", "--questions", str(questions), "--only")
    assert code == 0 and "tutorial-dense" not in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ask", "   "], "The question is empty"),
        (["ask", "q", "--k", "0"], "--k must be a whole number of at least 1"),
        (["eval", "--strategy", "nope"], "Unknown retrieval strategy 'nope'"),
        (["ingest", "--docs", "/nonexistent/docs.zip"], "does not exist: set MILVUS_DOCS_ZIP"),
        (["ingest", "--uri", "./no-suffix"], "a Milvus Lite path ends in .db"),
    ],
)
def test_user_errors_are_one_line_and_exit_1(run, argv, message):
    code, out, err = run(*argv)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_the_real_command_prints_one_error_line_and_exits_1(tmp_path):
    """The contract as the shell sees it: no traceback, exit code 1."""
    completed = subprocess.run(
        [sys.executable, "-m", "milvus_rag", "ingest", "--docs", str(tmp_path / "none.zip")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 1 and completed.stdout == ""
    assert (
        completed.stderr.startswith("error: The docs zip") and "Traceback" not in completed.stderr
    )
    assert len(completed.stderr.strip().splitlines()) == 1


def test_ask_answers_from_a_keyless_endpoint_that_is_not_localhost(run, monkeypatch):
    """Ollama at http://ollama:11434/v1 or a vLLM box on the LAN needs no key: 127.0.0.2 plays
    such a host (no LLM_API_KEY is set in the tests)."""
    from milvus_rag.local_answerer import LocalAnswererServer

    with LocalAnswererServer(host="127.0.0.2") as server:
        monkeypatch.setenv("LLM_BASE_URL", server.base_url)
        code, out, err = run("ask", "Where does Milvus store data?", "--json")
    assert code == 0, err
    assert server.base_url.startswith("http://127.0.0.2:") and "etcd" in json.loads(out)["answer"]
