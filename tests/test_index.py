"""The Milvus side on Milvus Lite: connect, schema, content-keyed sync, clear refusals."""

import subprocess
import sys
import textwrap
import time

import pytest

from milvus_rag import index
from milvus_rag.chunking import Entry, faq_entries
from milvus_rag.errors import RagError


def count(client, name: str) -> int:
    return client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"]


@pytest.fixture()
def client(lite_uri):
    return index.connect(lite_uri)


def test_sync_twice_embeds_and_adds_nothing_the_second_time(client, docs_dir, fake_embedding):
    entries = faq_entries(docs_dir)
    first = index.sync(client, "faq", fake_embedding, entries)
    assert first == {"collection": "faq", "count": 61, "rows": 61, "added": 61, "removed": 0}
    fake_embedding.embedded.clear()
    second = index.sync(client, "faq", fake_embedding, entries)
    assert second == {"collection": "faq", "count": 61, "rows": 61, "added": 0, "removed": 0}
    assert fake_embedding.embedded == [] and count(client, "faq") == 61


def test_a_changed_entry_replaces_only_its_own_row(client, fake_embedding):
    entries = [Entry(f"T{i}\n\nanswer {i}", "a.md", f"T{i}") for i in range(5)]
    index.sync(client, "c", fake_embedding, entries)
    edited = [*entries[:4], Entry("T4\n\nanswer four, edited", "a.md", "T4")]
    fake_embedding.embedded.clear()
    result = index.sync(client, "c", fake_embedding, edited)
    assert (result["added"], result["removed"], count(client, "c")) == (1, 1, 5)
    assert fake_embedding.embedded == ["T4\n\nanswer four, edited"]


def test_an_interrupted_sync_is_completed_by_the_next_with_no_duplicates(
    client, docs_dir, fake_embedding, monkeypatch
):
    entries = faq_entries(docs_dir)
    monkeypatch.setattr(index, "INSERT_BATCH", 10)
    real = fake_embedding.encode_documents
    calls = []

    def dies_on_the_third_batch(texts):
        calls.append(texts)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(texts)

    monkeypatch.setattr(fake_embedding, "encode_documents", dies_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        index.sync(client, "faq", fake_embedding, entries)
    assert count(client, "faq") == 20  # two whole batches were kept
    monkeypatch.setattr(fake_embedding, "encode_documents", real)
    result = index.sync(client, "faq", fake_embedding, entries)
    assert (result["added"], count(client, "faq")) == (41, 61)


def test_rebuild_drops_and_refills(client, fake_embedding):
    entries = [Entry("T\n\nanswer", "a.md", "T")]
    index.sync(client, "c", fake_embedding, entries)
    assert index.sync(client, "c", fake_embedding, entries, rebuild=True)["added"] == 1


def test_a_collection_of_another_dimension_is_refused_before_any_insert(client, fake_embedding):
    client.create_collection("c", dimension=8)
    with pytest.raises(
        RagError, match=r"holds 8-dimensional vectors.*makes 256-dimensional.*--rebuild"
    ):
        index.sync(client, "c", fake_embedding, [Entry("T\n\nx", "a.md", "T")])
    assert fake_embedding.embedded == []


def test_a_collection_of_another_schema_is_refused(client, fake_embedding):
    client.create_collection("c", dimension=fake_embedding.dim)  # the tutorial's quick setup
    with pytest.raises(RagError, match="another pipeline or version.*--rebuild"):
        index.sync(client, "c", fake_embedding, [Entry("T\n\nx", "a.md", "T")])


def test_the_default_schema_has_no_bm25_and_bm25_is_added_on_request(client):
    index.create_collection(client, "dense_only", 8)
    index.create_collection(client, "with_bm25", 8, bm25=True)
    dense_only = client.describe_collection("dense_only")
    with_bm25 = client.describe_collection("with_bm25")
    assert "sparse" not in {f["name"] for f in dense_only["fields"]}
    assert not dense_only.get("functions")
    assert "sparse" in {f["name"] for f in with_bm25["fields"]}


class _Server:
    def __init__(self, version):
        self.version = version

    def get_server_version(self):
        if isinstance(self.version, Exception):
            raise self.version
        return self.version


@pytest.mark.parametrize(
    "reported, refused",
    [("v2.4.9", True), ("2.5.4", False), ("milvus_lite-3.2.2", False), (RuntimeError("no"), False)],
)
def test_bm25_needs_milvus_2_5(reported, refused):
    if refused:
        with pytest.raises(RagError, match=r"BM25 full-text search needs Milvus 2\.5.*runs 2\.4"):
            index.require(_Server(reported), "BM25 full-text search")
    else:
        index.require(_Server(reported), "BM25 full-text search")


def test_content_ids_are_stable_and_positive():
    assert index.content_id("a.md", "text") == index.content_id("a.md", "text")
    assert index.content_id("a.md", "text") != index.content_id("b.md", "text")
    assert 0 <= index.content_id("x") < 2**63


def test_a_lite_path_must_end_in_db(tmp_path):
    with pytest.raises(RagError, match=r"must|ends in \.db"):
        index.connect(str(tmp_path / "milvus"))


def test_the_same_process_can_reopen_its_own_path_and_after_a_release(lite_uri):
    """Run All twice in one kernel: the connect cell runs again on a path this process holds."""
    first = index.connect(lite_uri)
    first.create_collection("c", dimension=4)
    again = index.connect(lite_uri)
    assert again.has_collection("c")
    index.release(lite_uri)
    assert index.connect(lite_uri).has_collection("c")


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from milvus_rag import index
    uri, go = sys.argv[1], Path(sys.argv[2])
    index.connect(uri)
    print("open", flush=True)
    while not go.exists():
        time.sleep(0.05)
    index.release(uri)  # the advice of the message
    print("released", flush=True)
    time.sleep(30)
    """
)


def test_another_process_gets_one_sentence_and_its_advice_works(tmp_path):
    uri, go = str(tmp_path / "held.db"), tmp_path / "go"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, uri, str(go)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(RagError, match="open in another process.*index.release") as caught:
            index.connect(uri)
        assert caught.value.__cause__ is not None
        go.touch()
        assert holder.stdout.readline().strip() == "released"
        deadline = time.monotonic() + 10
        while True:
            try:
                reopened = index.connect(uri)
                break
            except RagError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert reopened.list_collections() == []
        index.release(uri)
    finally:
        holder.kill()
        holder.wait()


def test_no_progress_bar_when_nothing_needs_embedding(capfd, fake_embedding):
    assert index.embed_documents(fake_embedding, []) == []
    assert capfd.readouterr().err == ""
    index.embed_documents(fake_embedding, ["a", "b"])
    assert "2/2" in capfd.readouterr().err


def test_no_progress_bar_for_texts_the_model_has_already_embedded(capfd, fake_embedding):
    from milvus_rag.embedding import Embedding

    model = Embedding(fake_embedding, "fake", fake_embedding.dim)
    index.embed_documents(model, ["a", "b"])
    assert "2/2" in capfd.readouterr().err
    again = index.embed_documents(model, ["b", "a"])
    assert capfd.readouterr().err == "" and len(again) == 2
    assert fake_embedding.embedded == ["a", "b"]  # each text embedded once
