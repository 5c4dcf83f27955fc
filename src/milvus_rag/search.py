"""Search strategies over the FAQ, all served by Milvus, all returning one hit type.

``tutorial-*`` strategies search the tutorial's pieces, ``entry-*`` the FAQ entries
(:mod:`milvus_rag.chunking`), each in a collection built by :mod:`milvus_rag.index`:

``dense``      the question's vector against each piece's vector (inner product).
``bm25``       Milvus's full-text search over the text (needs a collection with BM25).
``rrf``        dense and BM25 results fused by reciprocal rank (``RRFRanker(60)``).
``weighted``   dense and BM25 scores fused by weight (``WeightedRanker``).
``phrasings``  dense over each entry and each phrasing of its question (other ways users ask
               it, ``data/faq_phrasings.jsonl``), best one per entry (``group_by_field``).

All but ``phrasings`` search the entries themselves (``filter="view == 0"``).

``DEFAULT_STRATEGY`` is the one the command line and the improved pipeline use; see the
README's "How good is the retrieval?" for how it was chosen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from milvus_rag.embedding import require_question
from milvus_rag.errors import RagError
from milvus_rag.index import METRIC_TYPE

RRF_K = 60
"""RRF's smoothing constant: the usual value (Cormack et al. 2009; Milvus's default)."""

CANDIDATES = 20
"""How many hits each route of a hybrid search contributes before fusion (at least k)."""

DENSE_WEIGHT = 0.7
"""``weighted``: the dense route's weight; BM25 gets the rest.

``WeightedRanker`` first maps each route's scores into [0, 1]. Over a route's candidates the
dense scores then spread about 0.13 and the BM25 scores about 0.31 (max - min over the top 20,
with the 61 FAQ titles as queries: no labels involved), so equal weights would let BM25 decide
most rankings; weights inversely proportional to the spreads give each route the same pull."""

OUTPUT_FIELDS = ["text", "source", "title"]

WHOLE_ENTRY = "view == 0"
"""Filter for the row of an entry itself (its other rows are phrasings of its question)."""


@dataclass(frozen=True)
class Strategy:
    name: str
    chunking: str  # "tutorial" or "entry"
    kind: str  # "dense", "phrasings", "bm25", "rrf" or "weighted"
    description: str

    @property
    def needs_bm25(self) -> bool:
        return self.kind in ("bm25", "rrf", "weighted")


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("tutorial-dense", "tutorial", "dense", "tutorial split, dense (the tutorial)"),
        Strategy("tutorial-bm25", "tutorial", "bm25", "tutorial split, BM25"),
        Strategy("tutorial-hybrid-rrf", "tutorial", "rrf", "tutorial split, dense + BM25, RRF"),
        Strategy("entry-dense", "entry", "dense", "one piece per FAQ entry, dense"),
        Strategy(
            "entry-phrasings-dense",
            "entry",
            "phrasings",
            "FAQ entries + phrasings of their questions, dense, best per entry",
        ),  # fmt: skip
        Strategy("entry-bm25", "entry", "bm25", "one piece per FAQ entry, BM25"),
        Strategy("entry-hybrid-rrf", "entry", "rrf", "FAQ entries, dense + BM25, RRF"),
        Strategy(
            "entry-hybrid-weighted", "entry", "weighted", "FAQ entries, dense + BM25, weighted"
        ),
    )
}

DEFAULT_STRATEGY = "entry-phrasings-dense"
"""The strategy of the command line and the improved pipeline."""


@dataclass(frozen=True)
class Hit:
    """One retrieved piece; ``distance`` is the strategy's score (higher is closer)."""

    text: str
    distance: float
    source: str
    title: str

    def as_dict(self) -> dict:
        return asdict(self)


def strategy_named(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise RagError(
            f"Unknown retrieval strategy {name!r}: use one of {', '.join(STRATEGIES)}."
        ) from None


def first_line(text: str) -> str:
    """A piece's first non-empty line without heading marks: its FAQ title, usually."""
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line
    return "(empty piece)"


def to_hits(results: list, bm25: bool = False) -> list[Hit]:
    """``Hit``s from one query's Milvus results (``search_res[0]``), best first.

    ``bm25``: scores are made positive (Milvus Lite 3 reports BM25 scores negated, the C++
    engine does not).
    """
    hits = []
    for result in results:
        entity = result["entity"]
        text = entity.get("text", "")
        hits.append(
            Hit(
                text=text,
                distance=abs(float(result["distance"])) if bm25 else float(result["distance"]),
                source=entity.get("source") or "?",
                title=entity.get("title") or first_line(text),
            )
        )
    return hits


def format_hits(hits: list[Hit]) -> str:
    """One line per hit, numbered as in the prompt: ``[1] file · FAQ title (distance 0.657)``."""
    return "\n".join(
        f"[{n}] {hit.source} · {hit.title} (distance {hit.distance:.3f})"
        for n, hit in enumerate(hits, 1)
    )


def search(client, collection: str, embedding, question: str, k: int, strategy: str) -> list[Hit]:
    """The ``k`` best pieces of ``collection`` for ``question`` by ``strategy``, best first.

    ``collection`` must hold the strategy's chunking (and a BM25 field where it needs one).
    """
    from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

    chosen = strategy_named(strategy)
    require_question(question)
    if k < 1:
        raise RagError(f"k must be at least 1, not {k}.")
    common = {"collection_name": collection, "limit": k, "output_fields": OUTPUT_FIELDS}
    bm25_params = {"metric_type": "BM25", "params": {}}
    if chosen.kind == "bm25":
        return to_hits(
            client.search(
                data=[question], anns_field="sparse", search_params=bm25_params,
                filter=WHOLE_ENTRY, **common,
            )[0],
            bm25=True,
        )  # fmt: skip
    query_vector = embedding.encode_queries([question])[0]
    dense_params = {"metric_type": METRIC_TYPE, "params": {}}
    if chosen.kind in ("dense", "phrasings"):
        scope = (
            {"group_by_field": "entry"} if chosen.kind == "phrasings" else {"filter": WHOLE_ENTRY}
        )
        return to_hits(
            client.search(
                data=[query_vector], anns_field="dense", search_params=dense_params,
                **scope, **common,
            )[0]
        )  # fmt: skip
    candidates = max(k, CANDIDATES)
    routes = [
        AnnSearchRequest([query_vector], "dense", dense_params, candidates, expr=WHOLE_ENTRY),
        AnnSearchRequest([question], "sparse", bm25_params, candidates, expr=WHOLE_ENTRY),
    ]
    ranker = (
        RRFRanker(RRF_K) if chosen.kind == "rrf" else WeightedRanker(DENSE_WEIGHT, 1 - DENSE_WEIGHT)
    )
    return to_hits(client.hybrid_search(reqs=routes, ranker=ranker, **common)[0])
