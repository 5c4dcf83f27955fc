"""``python -m milvus_rag`` end to end on the real docs, offline, in a subprocess."""

import json
import re

import pytest
from helpers import run_cli

QUESTION = "How is data stored in milvus?"


@pytest.fixture()
def cli_env(tmp_path, docs_zip):
    return {
        "MILVUS_DOCS_ZIP": str(docs_zip),
        "MILVUS_URI": str(tmp_path / "cli.db"),
        "EMBEDDING_MODEL": "minilm",
    }


def test_ingest_then_ask_json(cli_env):
    ingest = run_cli("ingest", env=cli_env)
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout.strip().splitlines()[-1]) == {
        "collection": "my_rag_collection_faq",
        "count": 61,
        "rows": 124,
        "added": 124,
        "removed": 0,
    }

    ask = run_cli("ask", "--json", QUESTION, env=cli_env)
    assert ask.returncode == 0, ask.stderr
    result = json.loads(ask.stdout.strip().splitlines()[-1])
    assert result["question"] == QUESTION
    assert len(result["hits"]) == 3
    top = result["hits"][0]
    assert top["title"] == "Where does Milvus store data?" and top["source"] == "product_faq.md"
    assert "Where does Milvus store data?" in top["text"][:300]
    distances = [hit["distance"] for hit in result["hits"]]
    assert distances == sorted(distances, reverse=True)
    assert "incremental log" in result["answer"] and "etcd" in result["answer"]


def test_ask_ingests_a_missing_collection_and_honours_flags(tmp_path, cli_env):
    uri = str(tmp_path / "other.db")
    ask = run_cli(
        "ask",
        "--json",
        "--k",
        "5",
        "--uri",
        uri,
        "--collection",
        "faq_test",
        "Is Docker the only way to install Milvus?",
        env=cli_env,
    )
    assert ask.returncode == 0, ask.stderr
    result = json.loads(ask.stdout.strip().splitlines()[-1])
    assert len(result["hits"]) == 5
    assert result["hits"][0]["title"] == "Is Docker the only way to install and run Milvus?"
    assert "Embedding model: minilm" in ask.stderr


def test_ask_streams_the_answer_then_its_sources(cli_env):
    ask = run_cli("ask", QUESTION, env=cli_env)
    assert ask.returncode == 0, ask.stderr
    answer, sources = ask.stdout.split("\n\nSources:\n")
    assert "etcd" in answer and answer.rstrip().endswith("[1]")
    lines = sources.strip().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(
        r"\[1\] product_faq\.md · Where does Milvus store data\? \(distance 0\.\d{3}\)", lines[0]
    )


def test_bad_docs_path_is_one_line_without_traceback(cli_env, tmp_path):
    result = run_cli("ingest", "--docs", str(tmp_path / "missing.zip"), env=cli_env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: The docs zip")
    assert "MILVUS_DOCS_ZIP" in result.stderr


def test_empty_question_is_refused(cli_env):
    result = run_cli("ask", "   ", env=cli_env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "The question is empty" in result.stderr
