"""Ingestion is idempotent: ids come from content, so re-running, changing the docs, or
resuming after a kill -9 all end with exactly the rows of a clean run."""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from helpers import run_cli

from milvus_rag import chunking, retrieval, store


def last_json(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def rows_in(uri: str, name: str = "my_rag_collection_faq") -> tuple[int, int]:
    """(rows, distinct ids) actually stored in the collection."""
    client = store.connect(uri)
    try:
        client.load_collection(name)
        ids = retrieval.existing_ids(client, name)
        count = client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"]
        return count, len(ids)
    finally:
        store.close(client, uri)


@pytest.fixture()
def env(tmp_path, docs_zip):
    return {
        "MILVUS_URI": str(tmp_path / "ingest.db"),
        "MILVUS_DOCS_ZIP": str(docs_zip),
        "EMBEDDING_MODEL": "minilm",
    }


def edited_zip(source: Path, target: Path, edit) -> Path:
    """A copy of the docs zip with ``edit(name, text) -> text`` applied to FAQ files."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("en/faq/") and info.filename.endswith(".md"):
                data = edit(info.filename, data.decode("utf-8")).encode("utf-8")
            out.writestr(info, data)
    return target


def test_ingest_twice_changes_nothing(env):
    first = last_json(run_cli("ingest", env=env))
    second = last_json(run_cli("ingest", env=env))
    assert first["count"] == second["count"] == 61
    assert (second["added"], second["removed"]) == (0, 0)
    assert rows_in(env["MILVUS_URI"]) == (first["rows"], first["rows"])


def test_changed_file_replaces_its_old_pieces(env, tmp_path, docs_zip):
    first = last_json(run_cli("ingest", env=env))
    old = "Each Milvus module has its own metadata that are stored in etcd."
    new = "Each Milvus module keeps its metadata in etcd (edited)."

    def edit(name, text):
        if name.endswith("product_faq.md"):
            assert old in text
            text = text.replace(old, new)
            start = text.index("### Is Milvus available for concurrent search?")
            end = text.index("###", start + 3)
            text = text[:start] + text[end:]  # this entry vanishes
        return text

    changed = edited_zip(docs_zip, tmp_path / "changed.zip", edit)
    second = last_json(run_cli("ingest", "--docs", str(changed), env=env))
    assert second["count"] == first["count"] - 1
    assert second["added"] >= 1 and second["removed"] >= 2  # the edited entry's rows, the gone one
    assert rows_in(env["MILVUS_URI"]) == (second["rows"], second["rows"])
    ask = run_cli("ask", "--json", "--docs", str(changed), "How is data stored in milvus?", env=env)
    top = last_json(ask)["hits"][0]["text"]
    assert new in top and old not in top


def test_rebuild_drops_and_recreates(env):
    last_json(run_cli("ingest", env=env))
    rebuilt = last_json(run_cli("ingest", "--rebuild", env=env))
    assert rebuilt["added"] == rebuilt["rows"] and rebuilt["removed"] == 0


def test_7_kill_9_midway_then_ingest_again(env, tmp_path):
    """kill -9 during the inserts; the next ingest ends with a clean run's rows, no duplicates."""
    clean = last_json(run_cli("ingest", env={**env, "MILVUS_URI": str(tmp_path / "clean.db")}))
    process = subprocess.Popen(
        [sys.executable, "-m", "milvus_rag", "ingest"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    seen = ""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait for the first batch to be inserted
        seen += process.stderr.read(1)
        if f"{retrieval.INSERT_BATCH}/{clean['rows']}" in seen:
            break
    assert process.poll() is None, "ingest ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    partial, _ = rows_in(env["MILVUS_URI"])
    assert 0 < partial < clean["rows"]
    resumed = last_json(run_cli("ingest", env=env))
    assert resumed["added"] == clean["rows"] - partial
    assert resumed["rows"] == clean["rows"] and resumed["count"] == clean["count"]
    assert rows_in(env["MILVUS_URI"]) == (clean["rows"], clean["rows"])


def test_5_collection_of_another_dimension_is_refused_before_any_search(env, docs_zip):
    client = store.connect(env["MILVUS_URI"])
    retrieval.create_collection(client, "my_rag_collection_faq", 768)  # as the 768-d model would
    store.close(client, env["MILVUS_URI"])
    for args in (["ask", "How is data stored in milvus?"], ["ingest"]):
        result = run_cli(*args, env=env)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert "holds 768-dimensional vectors, but minilm" in line
        assert "--rebuild" in line and "MILVUS_COLLECTION" in line
    assert rows_in(env["MILVUS_URI"]) == (0, 0)  # nothing was inserted
    assert last_json(run_cli("ingest", "--rebuild", env=env))["count"] == 61


def test_entry_rows_have_stable_content_ids(docs_zip, tmp_path):
    from milvus_rag.docs import prepare_docs

    entries = chunking.load_faq_entries(prepare_docs(str(docs_zip), tmp_path))
    first, again = retrieval.entry_rows(entries), retrieval.entry_rows(list(entries))
    assert [r["id"] for r in first] == [r["id"] for r in again]
    assert len({r["id"] for r in first}) == len(first)
    assert len({r["entry"] for r in first}) == len(entries) == 61


def test_all_docs_ingests_every_page_by_section(env, tmp_path):
    """--all-docs: every page under en/ (fragments excluded), one piece per section."""
    small = tmp_path / "small_docs.zip"
    with zipfile.ZipFile(small, "w") as archive:
        archive.writestr(
            "en/faq/product_faq.md",
            "---\ntitle: Product FAQ\n---\n\n"
            "# Product FAQ\n\n### Where does Milvus store data?\n\nIn object storage.\n",
        )
        archive.writestr(
            "en/about/overview.md",
            "---\ntitle: Overview\n---\n\n# What is Milvus\n\n"
            "Milvus is a vector database.\n\n## Why Milvus\n\nIt scales.\n\n"
            "```bash\n# not a heading\n```\n",
        )
        archive.writestr("en/fragments/note.md", "A fragment that pages include.\n")
    result = last_json(run_cli("ingest", "--all-docs", "--docs", str(small), env=env))
    assert result["count"] == 3  # the FAQ entry and the two sections of the overview page
    ask = last_json(
        run_cli("ask", "--json", "--docs", str(small), "--k", "3", "why milvus", env=env)
    )
    sources = {(hit["source"], hit["title"]) for hit in ask["hits"]}
    assert sources == {
        ("faq/product_faq.md", "Where does Milvus store data?"),
        ("about/overview.md", "What is Milvus"),
        ("about/overview.md", "Why Milvus"),
    }
    again = last_json(run_cli("ingest", "--docs", str(small), env=env))  # back to the FAQ only
    assert again["count"] == 1 and again["removed"] >= 2
