"""Every retrieval strategy against Milvus Lite on the real FAQ, with the packaged model."""

import pytest

from milvus_rag import chunking, docs, retrieval, store
from milvus_rag.errors import RagError

QUESTION = "where are my vectors and metadata saved?"
GOLD = "Where does Milvus store data?"


def test_unknown_strategy_names_the_choices():
    with pytest.raises(RagError, match="Unknown retrieval strategy 'nope': use one of tutorial"):
        retrieval.strategy_named("nope")


def test_collection_for_each_chunking():
    assert retrieval.collection_for("c", "entry-dense") == "c"
    assert retrieval.collection_for("c", "tutorial-dense") == "c_tutorial"
    assert retrieval.DEFAULT_STRATEGY in retrieval.STRATEGIES


@pytest.fixture(scope="module")
def real_docs(docs_zip, tmp_path_factory):
    return docs.extract_docs(docs_zip, tmp_path_factory.mktemp("docs") / "milvus_docs")


@pytest.fixture(scope="module")
def ingested(real_docs, minilm, tmp_path_factory):
    """One Milvus Lite database for the module, with both collections filled."""
    client = store.connect(str(tmp_path_factory.mktemp("milvus") / "x.db"))
    counts = retrieval.ingest(client, "faq", minilm, real_docs, tutorial=True)
    assert counts == {"faq": 61, "faq_tutorial": 72}
    yield client
    client.close()


@pytest.mark.parametrize("strategy", list(retrieval.STRATEGIES))
def test_every_strategy_returns_k_hits_best_first(ingested, minilm, strategy):
    hits = retrieval.search(ingested, "faq", minilm, QUESTION, 5, strategy=strategy)
    assert len(hits) == 5
    assert all(hit.text and hit.source.endswith(".md") for hit in hits)
    scores = [hit.distance for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(score > 0 for score in scores)  # BM25 too, although Milvus Lite negates it
    assert len({hit.text for hit in hits}) == 5  # one hit per entry, views included


def test_default_strategy_finds_the_entry_first(ingested, minilm):
    (hit,) = retrieval.search(ingested, "faq", minilm, QUESTION, 1)
    assert hit.title == GOLD and hit.source == "product_faq.md"
    assert hit.text.startswith(f"Product FAQ > {GOLD}\n\n")
    assert hit["text"] == hit.text and hit.as_dict()["distance"] == hit.distance
    with pytest.raises(KeyError):
        hit["entity"]


def test_entry_strategies_return_whole_entries(ingested, minilm):
    for strategy in ("entry-dense", "entry-views-dense", "entry-bm25"):
        hits = retrieval.search(ingested, "faq", minilm, "Is Milvus scalable?", 3, strategy)
        assert hits[0].title == "Is Milvus scalable?", strategy
        assert hits[0].text.startswith("Product FAQ > Is Milvus scalable?\n\nYes.")


def test_bad_questions_and_k(ingested, minilm):
    with pytest.raises(RagError, match="The question is empty"):
        retrieval.search(ingested, "faq", minilm, "  ", 3)
    with pytest.raises(RagError, match="k must be at least 1"):
        retrieval.search(ingested, "faq", minilm, QUESTION, 0)


MINI_FAQ = """---
title: Mini FAQ
---
# Mini FAQ

#### Where does Milvus store data?

Inserted data go to object storage.

Metadata go to etcd.

#### Is Milvus scalable?

Yes.
"""


def test_sync_refuses_another_schema_then_rebuilds_and_reuses(minilm, tmp_path):
    (tmp_path / "docs/en/faq").mkdir(parents=True)
    (tmp_path / "docs/en/faq/mini_faq.md").write_text(MINI_FAQ)
    entries = chunking.load_faq_entries(tmp_path / "docs")
    client = store.connect(str(tmp_path / "x.db"))
    try:
        client.create_collection("faq", dimension=minilm.dim)  # the tutorial's schema
        with pytest.raises(RagError, match="another pipeline or version"):
            retrieval.sync_entries(client, "faq", minilm, entries)
        built = retrieval.sync_entries(client, "faq", minilm, entries, rebuild=True)
        assert built == {"collection": "faq", "count": 2, "rows": 4, "added": 4, "removed": 0}
        assert retrieval.has_current_schema(client, "faq", minilm.dim)
        rows = client.query("faq", filter="view >= 0", output_fields=["entry", "view"])
        assert {row["id"] for row in rows} == {row["id"] for row in retrieval.entry_rows(entries)}
        views = sorted(
            sorted(r["view"] for r in rows if r["entry"] == e) for e in {r["entry"] for r in rows}
        )
        assert views == [[0], [0, 1, 2]]
        client.release_collection("faq")
        again = retrieval.sync_entries(client, "faq", minilm, entries)
        assert (again["added"], again["removed"], again["rows"]) == (0, 0, 4)
        hits = retrieval.search(client, "faq", minilm, QUESTION, 5)
        assert [hit.title for hit in hits] == [GOLD, "Is Milvus scalable?"]  # one per entry
        assert not retrieval.has_current_schema(client, "faq", minilm.dim + 1)
    finally:
        store.close(client, str(tmp_path / "x.db"))
