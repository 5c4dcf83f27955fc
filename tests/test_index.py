"""The Milvus side on Milvus Lite: connect, schema, content-keyed sync, clear refusals."""

import json
import re
import subprocess
import sys
import textwrap
import time

import pytest
from support.fakes import FakeEmbedding
from support.milvus_rows import count

from milvus_rag import index
from milvus_rag.chunking import Entry, faq_entries
from milvus_rag.errors import RagError


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


def test_an_interrupted_insert_is_completed_by_the_next_sync_with_no_duplicates(
    client, docs_dir, fake_embedding, monkeypatch
):
    entries = faq_entries(docs_dir)
    monkeypatch.setattr(index, "INSERT_BATCH", 10)
    real, calls = client.insert, []

    def dies_on_the_third_batch(**kwargs):
        calls.append(kwargs)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(**kwargs)

    monkeypatch.setattr(client, "insert", dies_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        index.sync(client, "faq", fake_embedding, entries)
    assert count(client, "faq") == 20  # two whole batches were kept
    monkeypatch.setattr(client, "insert", real)
    result = index.sync(client, "faq", fake_embedding, entries)
    assert (result["added"], count(client, "faq")) == (41, 61)


def test_a_model_failing_midway_writes_nothing(client, docs_dir, fake_embedding, monkeypatch):
    """Every vector is made before the first write: a new collection is not even created, and
    an existing one keeps its rows and its record when the edited entries cannot be embedded."""
    entries = faq_entries(docs_dir)
    monkeypatch.setattr(index, "INSERT_BATCH", 10)
    real, calls = fake_embedding.encode_documents, []

    def fails_on_the_third_batch(texts):
        calls.append(texts)
        if len(calls) == 3:
            raise RagError("The embedding endpoint is rate limiting requests.")
        return real(texts)

    monkeypatch.setattr(fake_embedding, "encode_documents", fails_on_the_third_batch)
    with pytest.raises(RagError):
        index.sync(client, "faq", fake_embedding, entries)
    assert not client.has_collection("faq")
    monkeypatch.setattr(fake_embedding, "encode_documents", real)
    index.sync(client, "faq", fake_embedding, entries)
    before = (sorted(index.existing_ids(client, "faq")), built(client, "faq"))
    edited = [Entry(f"{e.text} (edited)", e.source, e.title) for e in entries]
    calls.clear()
    monkeypatch.setattr(fake_embedding, "encode_documents", fails_on_the_third_batch)
    with pytest.raises(RagError):
        index.sync(client, "faq", fake_embedding, edited)
    assert (sorted(index.existing_ids(client, "faq")), built(client, "faq")) == before


def test_rebuild_drops_and_refills(client, fake_embedding):
    entries = [Entry("T\n\nanswer", "a.md", "T")]
    index.sync(client, "c", fake_embedding, entries)
    assert index.sync(client, "c", fake_embedding, entries, rebuild=True)["added"] == 1


def built(client, name) -> dict:
    return index.built_by(client, name)


def test_sync_records_what_built_the_collection(client, fake_embedding):
    entries = [Entry(f"T{i}\n\nanswer {i}", "a.md", f"T{i}") for i in range(3)]
    index.sync(client, "c", fake_embedding, entries, chunking="test chunks")
    record = built(client, "c")
    assert record["model"] == fake_embedding.name and record["dim"] == fake_embedding.dim
    assert (record["chunking"], record["rows"], record["complete"]) == ("test chunks", 3, True)
    first = record["fingerprint"]
    index.sync(client, "c", fake_embedding, entries[:2])
    assert built(client, "c")["fingerprint"] != first and built(client, "c")["rows"] == 2


def test_an_interrupted_sync_is_recorded_incomplete_until_completed(
    client, docs_dir, fake_embedding, monkeypatch
):
    entries = faq_entries(docs_dir)
    monkeypatch.setattr(index, "INSERT_BATCH", 10)
    monkeypatch.setattr(index, "insert_rows", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        index.sync(client, "faq", fake_embedding, entries)
    assert built(client, "faq")["complete"] is False
    monkeypatch.undo()
    assert index.sync(client, "faq", fake_embedding, entries)["added"] == 61
    assert built(client, "faq")["complete"] is True


def test_deleted_rows_are_put_back_by_the_next_sync(client, docs_dir, fake_embedding):
    entries = faq_entries(docs_dir)
    index.sync(client, "faq", fake_embedding, entries)
    gone = sorted(index.existing_ids(client, "faq"))[:5]
    client.delete(collection_name="faq", ids=gone)
    result = index.sync(client, "faq", fake_embedding, entries)
    assert (result["added"], result["removed"], count(client, "faq")) == (5, 0, 61)


class OtherModel(FakeEmbedding):
    name = "another model (same dimension)"


def test_another_model_of_the_same_dimension_is_re_embedded_by_sync(client, fake_embedding):
    entries = [Entry("T\n\nanswer", "a.md", "T")]
    index.sync(client, "c", fake_embedding, entries)
    other = OtherModel()
    result = index.sync(client, "c", other, entries)
    assert result["rebuilt"] == f"was built with {fake_embedding.name}, but this run embeds with {other.name}"
    assert result["added"] == 1 and other.embedded == ["T\n\nanswer"]
    assert built(client, "c")["model"] == other.name


def test_check_collection_refuses_another_model_naming_both(client, fake_embedding):
    index.sync(client, "c", fake_embedding, [Entry("T\n\nanswer", "a.md", "T")])
    index.check_collection(client, "c", fake_embedding)  # the same model: fine
    with pytest.raises(RagError) as caught:
        index.check_collection(client, "c", OtherModel())
    assert fake_embedding.name in str(caught.value) and OtherModel.name in str(caught.value)
    assert str(caught.value).endswith(
        ": re-embed it with python -m milvus_rag ingest (same EMBEDDING_MODEL), or set "
        "EMBEDDING_MODEL to the model that built it."
    )


def test_a_collection_of_another_dimension_is_refused_by_check_and_rebuilt_by_sync(
    client, fake_embedding
):
    index.create_collection(client, "c", 8)
    with pytest.raises(RagError, match=r"holds 8-d vectors.*makes 256-d ones"):
        index.check_collection(client, "c", fake_embedding)
    result = index.sync(client, "c", fake_embedding, [Entry("T\n\nx", "a.md", "T")])
    assert "holds 8-d vectors" in result["rebuilt"] and count(client, "c") == 1


def test_open_existing_loads_what_an_earlier_session_left(lite_uri, fake_embedding):
    first = index.connect(lite_uri)
    index.sync(first, "c", fake_embedding, [Entry("T\n\nanswer", "a.md", "T")])
    index.sync(first, "d", fake_embedding, [Entry("U\n\nother", "b.md", "U")])
    index.release(lite_uri)  # a new session: the collection starts released
    client = index.connect(lite_uri)
    said = index.open_existing(client, ["c", "absent", "d"], fake_embedding)
    assert said == "From an earlier run, loaded for search: c (1 rows), d (1 rows)."
    hits = client.search("c", data=fake_embedding.encode_queries(["answer"]), anns_field="dense",
                         limit=1, output_fields=["title"])  # fmt: skip
    assert hits[0][0]["entity"]["title"] == "T"
    assert "built with" in index.open_existing(client, ["c"], OtherModel())
    assert index.open_existing(client, ["absent"], fake_embedding).startswith("No collection")


def test_a_collection_of_another_schema_is_refused(client, fake_embedding):
    client.create_collection("c", dimension=fake_embedding.dim)  # the tutorial's quick setup
    with pytest.raises(RagError, match="another pipeline or version.*--rebuild"):
        index.sync(client, "c", fake_embedding, [Entry("T\n\nx", "a.md", "T")])


def test_the_schema_is_the_one_the_readme_describes(client):
    """Ids given (content ids), no dynamic fields, Strong consistency, text fields as long as
    Milvus allows (file paths 1,024), a FLAT inner-product index; with BM25 only on request, the
    analyzer (standard tokens, lower case, Lucene's stop words) and the function feeding
    ``sparse``."""
    index.create_collection(client, "dense_only", 8)
    index.create_collection(client, "with_bm25", 8, bm25=True)
    described = client.describe_collection("with_bm25")
    assert (described["auto_id"], described["enable_dynamic_field"]) == (False, False)
    assert described["consistency_level_name"] == "Strong"
    params = {f["name"]: f["params"] for f in described["fields"]}
    assert {name: p.get("max_length") for name, p in params.items() if "max_length" in p} == {
        "text": 65535, "search_text": 65535, "source": 1024, "title": 65535, "section": 65535}
    assert json.loads(params["search_text"]["analyzer_params"]) == {
        "tokenizer": "standard",
        "filter": ["lowercase", {"type": "stop", "stop_words": index.BM25_STOP_WORDS}]}
    assert params["search_text"]["enable_analyzer"] in (True, "true")
    [function] = described["functions"]
    assert function["name"] == "search_text_bm25" and "search_text" in function["input_field_names"]
    indexes = {i: client.describe_index("with_bm25", i) for i in client.list_indexes("with_bm25")}
    assert {i: (d["index_type"], d["metric_type"]) for i, d in indexes.items()} == {
        "dense": ("FLAT", "IP"), "sparse": ("SPARSE_INVERTED_INDEX", "BM25")}
    assert "sparse" in params
    dense_only = client.describe_collection("dense_only")
    plain = {f["name"]: f["params"] for f in dense_only["fields"]}
    assert "sparse" not in plain and not dense_only.get("functions")
    assert plain["search_text"] == {"max_length": 65535}  # no analyzer without BM25


def test_collections_are_created_with_strong_consistency_which_lite_does_not_show(client):
    """Milvus Lite reports Strong for every collection, but a server's default is Bounded, where
    a search right after an insert may miss the new rows: the level must be asked for."""
    asked = []

    class Recording:
        def __getattr__(self, name):
            return getattr(client, name)

        def create_collection(self, **kwargs):
            asked.append(kwargs.get("consistency_level"))
            return client.create_collection(**kwargs)

    index.create_collection(Recording(), "c", 8)
    assert asked == ["Strong"]


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
            index.require_bm25(_Server(reported))
    else:
        index.require_bm25(_Server(reported))


def test_a_bm25_collection_is_refused_on_milvus_2_4_before_anything_is_changed():
    with pytest.raises(RagError, match=r"BM25 full-text search needs Milvus 2\.5"):
        index.create_collection(_Server("v2.4.9"), "c", 8, bm25=True)  # no other call made


def test_the_same_entry_in_two_files_is_two_entries():
    rows = index.entry_rows([Entry("T\n\nsame", "a.md", "T"), Entry("T\n\nsame", "b.md", "T")])
    assert len({row["entry"] for row in rows}) == 2 and len({row["id"] for row in rows}) == 2
    assert all(0 <= row["id"] < 2**63 for row in rows)


def test_each_phrasing_is_a_row_of_its_entry():
    entry = Entry("T\n\nanswer", "a.md", "T", phrasings=("p1", "p2"))
    rows = index.entry_rows([entry])
    assert [(row["view"], row["search_text"]) for row in rows] == [(0, "T\n\nanswer"), (1, "p1"), (2, "p2")]
    assert len({row["entry"] for row in rows}) == 1 and all(r["text"] == entry.text for r in rows)


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
    MILVUS_URI, go = sys.argv[1], Path(sys.argv[2])  # as the notebook's parameters cell names it
    index.connect(MILVUS_URI)
    print("open", flush=True)
    while not go.exists():
        time.sleep(0.05)
    exec(go.read_text())  # the advice of the message, verbatim
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
        with pytest.raises(RagError, match="open in another process") as caught:
            index.connect(uri)
        assert caught.value.__cause__ is not None
        advice = re.search(r"run `([^`]+)`", str(caught.value)).group(1)
        go.write_text(advice)
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


def test_progress_goes_to_stderr_outside_a_notebook(capfd, fake_embedding):
    index.embed_documents(fake_embedding, ["a", "b"])
    out, err = capfd.readouterr()
    assert out == "" and "Embedding: 100%" in err and "2/2" in err


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


@pytest.mark.parametrize("lock_file", [False, True])
def test_a_lite_failure_is_blamed_on_another_process_only_when_one_holds_the_lock(tmp_path, lock_file):
    """No lock file, or one that nobody holds: the failure's own cause and advice, not
    "open in another process" (which the held-lock test above covers)."""
    uri = tmp_path / "free.db"
    if lock_file:
        uri.mkdir()
        (uri / "LOCK").write_text("")
    with pytest.raises(RagError) as caught:
        with index.milvus_errors(str(uri)):
            raise RuntimeError("no space left")
    assert str(caught.value) == (
        f"Cannot open Milvus at {str(uri)!r} (RuntimeError: no space left): check that the "
        "folder is writable, or set MILVUS_LITE_PATH to another .db path."
    )


def test_bm25_is_refused_on_a_collection_built_without_it_and_kept_on_one_built_with_it(
    client, fake_embedding
):
    entries = [Entry("T\n\nanswer", "a.md", "T")]
    index.sync(client, "with", fake_embedding, entries, bm25=True)
    assert index.sync(client, "with", fake_embedding, entries, bm25=True)["added"] == 0
    index.sync(client, "without", fake_embedding, entries)
    with pytest.raises(RagError) as caught:
        index.sync(client, "without", fake_embedding, entries, bm25=True)
    assert str(caught.value) == (
        "Collection 'without' was built by another pipeline or version (its fields differ): "
        "rebuild it (python -m milvus_rag ingest --rebuild) or set MILVUS_COLLECTION to another "
        "name."
    )


class _NoProperties:
    """A client whose engine cannot alter collection properties (as the deprecated
    milvus-lite 2.5, which answers UNIMPLEMENTED), or fails to with ``error``."""

    def __init__(self, client, error: Exception):
        self._client, self._error = client, error

    def __getattr__(self, name):
        return getattr(self._client, name)

    def alter_collection_properties(self, *args, **kwargs):
        raise self._error


def test_an_engine_that_cannot_record_what_built_a_collection_still_syncs(client, fake_embedding):
    entries = [Entry("T\n\nanswer", "a.md", "T")]
    # the words the C++ milvus-lite answers with (test_milvus_engines.py checks them there)
    old = _NoProperties(client, Exception("<_InactiveRpcError: StatusCode.UNIMPLEMENTED>"))
    assert index.sync(old, "c", fake_embedding, entries)["added"] == 1
    assert index.built_by(client, "c") == {}
    index.check_collection(old, "c", fake_embedding)  # only the dimension is checked there
    failing = _NoProperties(client, RuntimeError("disk full"))
    with pytest.raises(RuntimeError, match="disk full"):
        index.sync(failing, "d", fake_embedding, entries)


def test_the_tutorials_own_collection_is_checked_by_the_dimension_of_its_vector_field(
    client, fake_embedding
):
    client.create_collection("t8", dimension=8)  # quick setup: the vectors are in "vector"
    assert index.mismatch(client, "t8", fake_embedding) == (
        f"holds 8-d vectors, but {fake_embedding.name} makes 256-d ones"
    )


def test_sync_shows_a_bar_only_for_rows_the_model_has_not_embedded_yet(client, capfd, fake_embedding):
    from milvus_rag.embedding import Embedding

    model = Embedding(fake_embedding, "fake", fake_embedding.dim)
    entries = [Entry("T\n\nanswer", "a.md", "T")]
    index.sync(client, "c", model, entries)
    assert "1/1" in capfd.readouterr().err
    index.sync(client, "c", model, entries, rebuild=True)  # the same text again: cached
    assert capfd.readouterr().err == ""


def test_a_record_left_incomplete_is_completed_even_when_no_row_is_missing(client, fake_embedding):
    """An ingest stopped after its last insert but before its last record: the next sync has
    no row to add, and still marks the collection complete (with the default chunking named)."""
    entries = [Entry("T\n\nanswer", "a.md", "T")]
    index.sync(client, "c", fake_embedding, entries)
    recorded = index.built_by(client, "c")
    assert recorded["chunking"] == "sections" and recorded["complete"] is True
    client.alter_collection_properties("c", {index.BUILT_BY: json.dumps({**recorded, "complete": False})})
    assert index.sync(client, "c", fake_embedding, entries)["added"] == 0
    assert index.built_by(client, "c") == recorded


def test_a_changed_phrasing_is_embedded_again(client, fake_embedding):
    """A phrasing is a row of its own, keyed by its text: edited, its old vector goes."""
    index.sync(client, "c", fake_embedding, [Entry("T\n\nanswer", "a.md", "T", phrasings=("old words",))])
    fake_embedding.embedded.clear()
    report = index.sync(client, "c", fake_embedding, [Entry("T\n\nanswer", "a.md", "T", phrasings=("new words",))])
    assert (report["added"], report["removed"], fake_embedding.embedded) == (1, 1, ["new words"])
    rows = client.query("c", filter="view == 1", output_fields=["search_text"])
    assert [row["search_text"] for row in rows] == ["new words"]


@pytest.mark.parametrize(
    ("uri", "lite"),
    [("./milvus_demo.db", True), ("/data/my milvus.db", True), ("http://localhost:19530", False),
     ("https://in03.example.zillizcloud.com", False), ("unix:/tmp/milvus.sock", False)],
)  # fmt: skip
def test_a_lite_path_is_anything_but_a_url_or_a_unix_socket(uri, lite):
    assert index.is_lite_path(uri) is lite


def test_the_uri_and_version_refusals_say_what_to_do():
    with pytest.raises(RagError) as caught:
        index.check_uri("milvus")
    assert str(caught.value) == (
        "'milvus' is neither a server URL nor a Milvus Lite path: a Milvus Lite path "
        "(MILVUS_LITE_PATH) is a plain path ending in .db (no file: URL), a server URL "
        "(MILVUS_URI) starts with http(s)://."
    )
    with pytest.raises(RagError) as caught:
        index.require_bm25(_Server("v2.4.9"))
    assert str(caught.value) == (
        "BM25 full-text search needs Milvus 2.5 or later, but the server at MILVUS_URI runs 2.4: "
        "upgrade it, or use the dense strategies only."
    )


def test_connect_gives_a_server_its_token(monkeypatch):
    import pymilvus

    made = []
    monkeypatch.setattr(pymilvus, "MilvusClient", lambda **kwargs: made.append(kwargs) or "client")
    assert index.connect("https://milvus.example.com:19530", "user:secret") == "client"
    assert made == [{"uri": "https://milvus.example.com:19530", "token": "user:secret"}]


@pytest.mark.parametrize(
    "reported, grouping, bm25",
    [("v2.3.5-lite", False, False), ("v2.4.9", True, False), ("2.5.4", True, True),
     ("milvus_lite-3.2.2", True, True), (RuntimeError("UNIMPLEMENTED"), True, True)],
)  # fmt: skip
def test_the_server_is_asked_what_it_can_do(reported, grouping, bm25):
    assert (index.lacks(_Server(reported), "grouping") == "") is grouping
    assert (index.lacks(_Server(reported), "bm25") == "") is bm25
    if reported == "v2.3.5-lite":
        assert index.lacks(_Server(reported), "grouping") == (
            "Grouped search (group_by_field) needs Milvus 2.4 or later, but the server at "
            "MILVUS_URI runs 2.3"
        )


def test_counts_are_count_star_under_strong_consistency(client, fake_embedding):
    """Not collection statistics (a server counts only flushed rows there), and not Bounded."""
    entries = [Entry("T\n\nanswer", "a.md", "T"), Entry("U\n\nother", "a.md", "U")]
    index.sync(client, "c", fake_embedding, entries)
    asked = []

    class Recording:
        def __getattr__(self, name):
            return getattr(client, name)

        def query(self, *args, **kwargs):
            asked.append(kwargs)
            return client.query(*args, **kwargs)

        def get_collection_stats(self, name):
            return {"row_count": 0}  # as a server answers before a flush

    assert index.count(Recording(), "c") == 2
    assert asked == [{"output_fields": ["count(*)"], "consistency_level": "Strong"}]
    assert "c (2 rows)" in index.open_existing(Recording(), ["c"], fake_embedding)
    assert index.sync(Recording(), "c", fake_embedding, entries)["rows"] == 2
