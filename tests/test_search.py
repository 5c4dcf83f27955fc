"""Every strategy on Milvus Lite: batched as one by one, the fusions' parameters, one hit type."""

import hashlib

import numpy as np
import pytest
from support.fakes import FakeEmbedding

from milvus_rag import evaluation, index, search
from milvus_rag.chunking import Entry
from milvus_rag.config import collections, project_root
from milvus_rag.errors import RagError

NAMES = collections("t")


class UntiedEmbedding(FakeEmbedding):
    """The fake embedding plus a small fixed component per text. Bags of words often tie
    exactly, and Milvus Lite computes a batch of queries in float32 with another summation order
    than a single one (numpy's matrix-matrix product against its matrix-vector product), so an
    exact tie may break either way; without ties, only the last bit of a score may differ."""

    def _vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
        noise = np.random.default_rng(seed).standard_normal(self.dim)
        vector = super()._vector(text) + 0.01 * noise
        return (vector / np.linalg.norm(vector)).astype(np.float32)


@pytest.fixture(scope="module")
def built(docs_dir, tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("search") / "search.db")
    client, embedding = index.connect(uri), UntiedEmbedding()
    evaluation.build_collections(client, NAMES, embedding, docs_dir, list(search.STRATEGIES))
    yield client, embedding
    index.release(uri)


def collection_of(strategy: str) -> str:
    tutorial = search.strategy_named(strategy).chunking == "tutorial"
    return NAMES.eval_tutorial if tutorial else NAMES.eval_entries


@pytest.mark.parametrize("strategy", list(search.STRATEGIES))
def test_a_batch_finds_what_each_question_finds_alone(built, strategy):
    """One search for many questions: the same hits in the same order for each question, and
    the same scores up to float32 rounding (dense scores of a batch may differ in the last bit)."""
    client, embedding = built
    test_set = evaluation.load_questions(project_root() / "data" / "eval" / "test.jsonl")
    questions = [question.q for question in test_set[::10]]
    batch = search.search(client, collection_of(strategy), embedding, questions, 10, strategy)
    assert len(batch) == len(questions)
    for question, found in zip(questions, batch, strict=True):
        alone = search.search(client, collection_of(strategy), embedding, [question], 10, strategy)
        assert [hit.text for hit in found] == [hit.text for hit in alone[0]], question
        assert [hit.score for hit in found] == pytest.approx([h.score for h in alone[0]], abs=1e-6)
        scores = [hit.score for hit in found]
        assert 0 < len(found) <= 10 and scores == sorted(scores, reverse=True) and scores[-1] > 0
        assert all(hit.source.endswith(".md") and hit.title for hit in found)


@pytest.mark.parametrize("strategy", ["entry-dense", "entry-bm25", "entry-hybrid-rrf"])
def test_a_question_quoting_a_title_finds_that_entry_first(built, strategy):
    client, embedding = built
    question = "How does Milvus flush data?"
    hits = search.search(client, NAMES.eval_entries, embedding, [question], 3, strategy)[0]
    assert hits[0].title == question
    assert hits[0].text.startswith("Product FAQ > How does Milvus flush data?")


def test_rrf_scores_are_reciprocal_ranks_with_k_60(built):
    """First on both routes: 1/(60 + 1) from each."""
    client, embedding = built
    question = ["How does Milvus flush data?"]
    top = search.search(client, NAMES.eval_entries, embedding, question, 3, "entry-hybrid-rrf")
    assert top[0][0].score == pytest.approx(2 / 61)


def test_the_weights_give_the_dense_route_the_larger_pull(lite_uri, fake_embedding, monkeypatch):
    """Dense search ranks one entry first, BM25 another; the weighted fusion follows the dense
    route (weight 0.7), and would follow BM25 with the weights swapped."""
    entries = [Entry("Dense\n\nalpha beta", "faq.md", "Dense"),
               Entry("Sparse\n\ngamma delta epsilon", "faq.md", "Sparse"),
               *(Entry(f"F{i}\n\nalpha beta filler{i}", "faq.md", f"F{i}") for i in range(2))]  # fmt: skip
    client = index.connect(lite_uri)
    index.sync(client, "weights", fake_embedding, entries, bm25=True, rebuild=True)

    def first(strategy: str) -> str:
        hits = search.search(client, "weights", fake_embedding, ["alpha beta gamma"], 2, strategy)
        return hits[0][0].title

    assert (first("entry-dense"), first("entry-bm25")) == ("Dense", "Sparse")
    assert first("entry-hybrid-weighted") == "Dense"
    monkeypatch.setattr(search, "DENSE_WEIGHT", 1 - search.DENSE_WEIGHT)
    assert first("entry-hybrid-weighted") == "Sparse"  # the weights decide


def test_bad_questions_k_and_strategies_are_refused(built):
    client, embedding = built
    with pytest.raises(RagError, match="question is empty"):
        search.search(client, NAMES.eval_entries, embedding, ["q", "  "], 3, "entry-dense")
    with pytest.raises(RagError, match="k must be at least 1"):
        search.search(client, NAMES.eval_entries, embedding, ["q"], 0, "entry-dense")
    names = ", ".join(search.STRATEGIES)  # the user is told every name, in a readable list
    with pytest.raises(RagError, match=f"Unknown retrieval strategy 'views': use one of {names}."):
        search.search(client, NAMES.eval_entries, embedding, ["q"], 3, "views")
    with pytest.raises(TypeError, match=r"^questions is a list of questions: pass \[question\]"):
        search.search(client, NAMES.eval_entries, embedding, "q", 3, "entry-dense")


def test_to_hits_titles_untitled_pieces_and_makes_bm25_scores_positive():
    raw = [
        {"distance": 0.66, "entity": {"text": "\n ## Where does Milvus store data?\n\nIn MinIO."}},
        {"distance": -2.0, "entity": {"text": "x", "source": "a.md", "title": "T"}},
        {"distance": 0.1, "entity": {"text": " \n"}},
    ]
    dense = search.to_hits(raw)
    assert dense[0] == search.Hit(raw[0]["entity"]["text"], 0.66, "?",
                                  "Where does Milvus store data?")  # fmt: skip
    assert dense[1].score == -2.0  # a dense score keeps its sign
    assert dense[2].title == "(empty piece)"
    assert search.to_hits(raw, bm25=True)[1].score == 2.0


def test_format_hits_numbers_file_title_and_score():
    hits = [search.Hit("t", 0.6571, "product_faq.md", "Where does Milvus store data?"),
            search.Hit("u", 0.5, "faq.md", "T")]  # fmt: skip
    assert search.format_hits(hits) == (
        "[1] product_faq.md · Where does Milvus store data? (score 0.657)\n[2] faq.md · T (score 0.500)"
    )


def test_phrasings_find_their_entry_and_one_hit_per_entry(lite_uri, docs_dir, fake_embedding):
    """A question worded as a phrasing finds the entry; every hit is a different entry, the
    entry's whole text (not the phrasing); the other strategies search entries only."""
    from milvus_rag import chunking

    table = {("product_faq.md", "How much does Milvus cost?"): ("zz licence fee qq",)}
    names = collections("p")
    client = index.connect(lite_uri)
    evaluation.build_collections(client, names, fake_embedding, docs_dir, ["entry-dense",
                                 "entry-phrasings-dense"], table)  # fmt: skip
    found = search.search(client, names.eval_entries, fake_embedding, ["zz licence fee qq"], 5,
                          "entry-phrasings-dense")[0]  # fmt: skip
    assert found[0].title == "How much does Milvus cost?" and "zz" not in found[0].text
    assert len({hit.title for hit in found}) == 5
    plain = search.search(client, names.eval_entries, fake_embedding, ["zz licence fee qq"], 61,
                          "entry-dense")[0]  # fmt: skip
    assert len(plain) == 61 == len(chunking.faq_entries(docs_dir))


@pytest.fixture(scope="module")
def phrased(tmp_path_factory):
    """Three entries, one with a phrasing of its question, BM25 on: a collection shared by the
    tests of which rows each strategy searches."""
    uri = str(tmp_path_factory.mktemp("phrased") / "phrased.db")
    entries = [Entry("Licence\n\nThe licence fee is zero.", "faq.md", "Licence",
                     phrasings=("zz licence fee qq",)),
               Entry("Storage\n\nData lives in MinIO.", "faq.md", "Storage"),
               Entry("Speed\n\nA search takes milliseconds.", "faq.md", "Speed")]  # fmt: skip
    client, embedding = index.connect(uri), FakeEmbedding()
    index.sync(client, "phrased", embedding, entries, bm25=True)
    yield client, embedding
    index.release(uri)


@pytest.mark.parametrize("strategy", ["entry-dense", "entry-bm25", "entry-hybrid-rrf",
                                      "entry-hybrid-weighted", "entry-phrasings-dense"])  # fmt: skip
def test_each_entry_is_one_hit_and_only_phrasings_match_phrasings(phrased, strategy):
    """A question worded as an entry's phrasing: only ``phrasings`` matches the phrasing itself
    (an exact match, score 1); the others see the entries' own rows, so BM25 finds only the entry
    holding its words and dense scores no exact match. No entry is ever listed twice."""
    client, embedding = phrased
    hits = search.search(client, "phrased", embedding, ["zz licence fee qq"], 4, strategy)[0]
    assert hits[0].title == "Licence" and hits[0].text == "Licence\n\nThe licence fee is zero."
    assert len({hit.text for hit in hits}) == len(hits), "an entry listed twice"
    assert len(hits) == {"entry-bm25": 1}.get(strategy, 3)
    if strategy == "entry-phrasings-dense":
        assert hits[0].score == pytest.approx(1.0)
    elif strategy == "entry-dense":
        assert hits[0].score < 0.9


def test_to_hits_takes_a_missing_text_as_empty_and_strips_only_heading_marks():
    raw = [{"distance": 0.5, "entity": {}},
           {"distance": 0.4, "entity": {"text": "XML # and JSON\n\nBoth."}}]  # fmt: skip
    assert search.to_hits(raw) == [search.Hit("", 0.5, "?", "(empty piece)"),
                                   search.Hit(raw[1]["entity"]["text"], 0.4, "?", "XML # and JSON")]  # fmt: skip


def test_the_tutorial_strategies_search_the_tutorials_own_pieces(built, docs_dir):
    from milvus_rag.chunking import tutorial_pieces

    client, embedding = built
    pieces = {piece.text for piece in tutorial_pieces(docs_dir)}
    for strategy in ("tutorial-dense", "tutorial-bm25"):
        hits = search.search(client, NAMES.eval_tutorial, embedding, ["How does Milvus flush data?"],
                             5, strategy)[0]  # fmt: skip
        assert len(hits) == 5 and all(hit.text in pieces for hit in hits), strategy



@pytest.fixture(scope="module")
def with_phrasings(docs_dir, tmp_path_factory):
    """The FAQ entries with the project's phrasings (five rows per entry), on Milvus Lite."""
    from milvus_rag.chunking import load_phrasings
    from milvus_rag.config import phrasings_path

    uri = str(tmp_path_factory.mktemp("phrasings") / "phrasings.db")
    client, embedding = index.connect(uri), UntiedEmbedding()
    evaluation.build_collections(client, NAMES, embedding, docs_dir, ["entry-phrasings-dense"],
                                 load_phrasings(phrasings_path()))  # fmt: skip
    yield client, embedding
    index.release(uri)


@pytest.mark.parametrize("version", ["v2.3.5-lite", None])
def test_without_grouping_each_entry_is_one_hit_and_the_hits_are_the_grouped_ones(
    with_phrasings, version
):
    """On a server that ignores group_by_field (Milvus 2.3; one that does not say its version
    is caught by its answers), each entry's best row is kept from more rows: the same hits as a
    grouped search, never an entry twice."""
    from support.fakes import Milvus23

    client, embedding = with_phrasings
    questions = ["Where does Milvus store data?", "How much does Milvus cost?", "index types"]
    for k in (1, 3, 10):
        grouped = search.search(client, NAMES.eval_entries, embedding, questions, k,
                                "entry-phrasings-dense")  # fmt: skip
        old = Milvus23(client, version)
        alone = search.search(old, NAMES.eval_entries, embedding, questions, k,
                              "entry-phrasings-dense")  # fmt: skip
        assert alone == grouped and all(len(hits) == k for hits in alone)
        if version:  # the version says: grouping is never asked for
            assert all(call["group_by_field"] is None for call in old.searches)


def test_without_grouping_more_rows_are_fetched_until_k_entries_are_found(with_phrasings, monkeypatch):
    from support.fakes import Milvus23

    client, embedding = with_phrasings
    monkeypatch.setattr(search, "ROWS_FIRST", 1)  # k rows first: too few distinct entries
    old = Milvus23(client)
    question = ["when does IVF_FLAT become faster than FLAT"]  # 2 entries in the top 5 rows
    found = search.search(old, NAMES.eval_entries, embedding, question, 5,
                          "entry-phrasings-dense")[0]  # fmt: skip
    assert found == search.search(client, NAMES.eval_entries, embedding, question, 5,
                                  "entry-phrasings-dense")[0]  # fmt: skip
    assert [call["limit"] for call in old.searches] == [5, 20]
