"""Every strategy on Milvus Lite, with a stand-in embedding: shapes, order, one hit type."""

import pytest

from milvus_rag import evaluation, index, search
from milvus_rag.config import collections
from milvus_rag.errors import RagError

NAMES = collections("t")


@pytest.fixture(scope="module")
def built(docs_dir, tmp_path_factory):
    from support.fakes import FakeEmbedding

    uri = str(tmp_path_factory.mktemp("search") / "search.db")
    client = index.connect(uri)
    embedding = FakeEmbedding()
    evaluation.build_collections(client, NAMES, embedding, docs_dir, list(search.STRATEGIES))
    yield client, embedding
    index.release(uri)


@pytest.mark.parametrize("strategy", list(search.STRATEGIES))
def test_every_strategy_returns_k_hits_best_first(built, strategy):
    client, embedding = built
    chunking = search.strategy_named(strategy).chunking
    name = NAMES.eval_tutorial if chunking == "tutorial" else NAMES.eval_entries
    hits = search.search(client, name, embedding, "Where does Milvus store data?", 5, strategy)
    assert len(hits) == 5 and all(isinstance(hit, search.Hit) for hit in hits)
    scores = [hit.distance for hit in hits]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert all(hit.source.endswith(".md") and hit.title for hit in hits)


@pytest.mark.parametrize("strategy", ["entry-dense", "entry-bm25", "entry-hybrid-rrf"])
def test_a_question_quoting_a_title_finds_that_entry_first(built, strategy):
    client, embedding = built
    question = "How does Milvus flush data?"
    hits = search.search(client, NAMES.eval_entries, embedding, question, 3, strategy)
    assert hits[0].title == question
    assert hits[0].text.startswith("Product FAQ > How does Milvus flush data?")


def test_bad_questions_k_and_strategies_are_refused(built):
    client, embedding = built
    with pytest.raises(RagError, match="question is empty"):
        search.search(client, NAMES.eval_entries, embedding, "  ", 3, "entry-dense")
    with pytest.raises(RagError, match="k must be at least 1"):
        search.search(client, NAMES.eval_entries, embedding, "q", 0, "entry-dense")
    with pytest.raises(RagError, match="Unknown retrieval strategy 'views'.*entry-dense"):
        search.strategy_named("views")


def test_to_hits_reads_the_tutorials_rows_and_makes_bm25_scores_positive():
    raw = [
        {"distance": 0.66, "entity": {"text": " Where does Milvus store data?\n\nIn MinIO."}},
        {"distance": -2.0, "entity": {"text": "x", "source": "a.md", "title": "T"}},
    ]
    dense = search.to_hits(raw)
    assert dense[0] == search.Hit(" Where does Milvus store data?\n\nIn MinIO.", 0.66, "?",
                                  "Where does Milvus store data?")  # fmt: skip
    assert dense[1].distance == -2.0  # a dense score keeps its sign
    assert search.to_hits(raw, bm25=True)[1].distance == 2.0


def test_format_hits_numbers_file_title_and_distance():
    hits = [search.Hit("t", 0.6571, "product_faq.md", "Where does Milvus store data?")]
    assert search.format_hits(hits) == (
        "[1] product_faq.md · Where does Milvus store data? (distance 0.657)"
    )


def test_the_default_is_dense_over_entries_and_their_phrasings():
    default = search.strategy_named(search.DEFAULT_STRATEGY)
    assert (default.chunking, default.kind, default.needs_bm25) == ("entry", "phrasings", False)


def test_phrasings_find_their_entry_and_one_hit_per_entry(tmp_path, docs_dir, fake_embedding):
    """A question worded as a phrasing finds the entry; every hit is a different entry, the
    entry's whole text (not the phrasing); the other strategies search entries only."""
    from milvus_rag import chunking

    table = {("product_faq.md", "How much does Milvus cost?"): ("zz licence fee qq",)}
    names = collections("p")
    client = index.connect(str(tmp_path / "p.db"))
    evaluation.build_collections(client, names, fake_embedding, docs_dir, ["entry-dense",
                                 "entry-phrasings-dense"], table)  # fmt: skip
    found = search.search(client, names.eval_entries, fake_embedding, "zz licence fee qq", 5,
                          "entry-phrasings-dense")  # fmt: skip
    assert found[0].title == "How much does Milvus cost?" and "zz" not in found[0].text
    assert len({hit.title for hit in found}) == 5
    plain = search.search(client, names.eval_entries, fake_embedding, "zz licence fee qq", 61,
                          "entry-dense")  # fmt: skip
    assert len(plain) == 61 == len(chunking.faq_entries(docs_dir))
    index.release(str(tmp_path / "p.db"))
