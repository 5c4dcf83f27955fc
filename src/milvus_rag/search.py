"""Search the FAQ by one of several strategies, one Milvus call per batch of questions.

``tutorial-*`` strategies search the tutorial's pieces, ``entry-*`` the FAQ entries (collections of
:mod:`milvus_rag.index`): by dense vectors, by BM25, by both fused, or (``phrasings``) by dense
vectors over each entry and other ways users ask its question, the best row per entry."""

from dataclasses import dataclass

from milvus_rag import index
from milvus_rag.embedding import require_question
from milvus_rag.errors import RagError
from milvus_rag.index import METRIC_TYPE

RRF_K = 60  # RRF's smoothing constant: the usual value (Cormack et al. 2009; Milvus's default)
ROUTE_CANDIDATES = 20  # hits each route of a hybrid search contributes before fusion (at least k)
DENSE_WEIGHT = 0.7  # ``weighted``: the dense route's weight, BM25 gets the rest. WeightedRanker
# maps each route's scores into [0, 1], where dense scores spread about 0.13 and BM25 scores about
# 0.31 (top 20, the 61 FAQ titles as queries: no labels involved): weights inverse to the spreads.
OUTPUT_FIELDS = ["text", "source", "title"]
WHOLE_ENTRY = "view == 0"  # an entry's own row (its other rows are phrasings of its question)
ROWS_FIRST = 8  # without grouping: rows fetched per hit wanted, multiplied by 4 while too few
MAX_LIMIT = 16384  # the most rows Milvus returns for one query


@dataclass(frozen=True)
class Strategy:
    name: str
    chunking: str  # "tutorial" or "entry"
    kind: str  # "dense", "phrasings", "bm25", "rrf" or "weighted"
    description: str

    @property
    def needs_bm25(self) -> bool:
        return self.kind in ("bm25", "rrf", "weighted")


_RRF = f"RRF (k = {RRF_K})"
_WEIGHTS = f"dense {DENSE_WEIGHT:g} + BM25 {1 - DENSE_WEIGHT:.1g}"
STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("tutorial-dense", "tutorial", "dense", "the tutorial's split, dense"),
    Strategy("tutorial-bm25", "tutorial", "bm25", "the tutorial's split, BM25"),
    Strategy("tutorial-hybrid-rrf", "tutorial", "rrf",
             f"the tutorial's split, dense + BM25, {_RRF}"),
    Strategy("entry-dense", "entry", "dense", "one piece per FAQ entry, dense"),
    Strategy("entry-phrasings-dense", "entry", "phrasings",
             "entries + phrasings of each question, dense, best per entry"),
    Strategy("entry-bm25", "entry", "bm25", "entries, BM25"),
    Strategy("entry-hybrid-rrf", "entry", "rrf", f"entries, dense + BM25, {_RRF}"),
    Strategy("entry-hybrid-weighted", "entry", "weighted", f"entries, {_WEIGHTS}"),
)}  # fmt: skip

DEFAULT_STRATEGY = "entry-phrasings-dense"  # of the command line and the improved pipeline


@dataclass(frozen=True)
class Hit:
    """One retrieved piece and the strategy's score for it (higher is closer)."""

    text: str
    score: float
    source: str
    title: str


def strategy_named(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise RagError(f"Unknown retrieval strategy {name!r}: use one of {', '.join(STRATEGIES)}.")
    return STRATEGIES[name]


def to_hits(results: list, bm25: bool = False) -> list[Hit]:
    """``Hit``s from one query's Milvus results, best first, untitled ones by their first line;
    ``bm25``: scores made positive (Milvus Lite 3 reports them negated, the C++ engine does not)."""
    hits = []
    for result in results:
        entity, score = result["entity"], float(result["distance"])
        text = entity.get("text", "")
        lines = (line.strip().lstrip("#").strip() for line in text.splitlines())
        title = entity.get("title") or next(filter(None, lines), "(empty piece)")
        hits.append(Hit(text, abs(score) if bm25 else score, entity.get("source") or "?", title))
    return hits


def format_hits(hits: list[Hit]) -> str:
    """One line per hit, numbered as in the prompt: ``[1] file · FAQ title (score 0.657)``."""
    return "\n".join(f"[{n}] {hit.source} · {hit.title} (score {hit.score:.3f})"
                     for n, hit in enumerate(hits, 1))  # fmt: skip


def search(client, collection: str, embedding, questions: list[str], k: int,
           strategy: str) -> list[list[Hit]]:  # fmt: skip
    """The ``k`` best pieces of ``collection`` for each of ``questions`` by ``strategy``, from one
    Milvus call; ``collection`` holds the strategy's chunking (and BM25 field, if it needs one)."""
    from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker
    if isinstance(questions, str):
        raise TypeError("questions is a list of questions: pass [question] for one")
    chosen = strategy_named(strategy)
    for question in questions:
        require_question(question)
    if k < 1:
        raise RagError(f"k must be at least 1, not {k}.")
    common = {"collection_name": collection, "limit": k, "output_fields": OUTPUT_FIELDS}
    bm25_params = {"metric_type": "BM25", "params": {}}
    if chosen.kind == "bm25":
        found = client.search(data=questions, anns_field="sparse", search_params=bm25_params,
                              filter=WHOLE_ENTRY, **common)  # fmt: skip
        return [to_hits(one, bm25=True) for one in found]
    vectors = embedding.encode_queries(questions)
    dense_params = {"metric_type": METRIC_TYPE, "params": {}}
    if chosen.kind == "phrasings":
        found = best_per_entry(client, {**common, "data": vectors, "anns_field": "dense",
                                        "search_params": dense_params})  # fmt: skip
    elif chosen.kind == "dense":
        found = client.search(data=vectors, anns_field="dense", search_params=dense_params,
                              filter=WHOLE_ENTRY, **common)  # fmt: skip
    else:
        per_route = max(k, ROUTE_CANDIDATES)
        routes = [AnnSearchRequest(vectors, "dense", dense_params, per_route, expr=WHOLE_ENTRY),
                  AnnSearchRequest(questions, "sparse", bm25_params, per_route, expr=WHOLE_ENTRY)]  # fmt: skip
        ranker = (RRFRanker(RRF_K) if chosen.kind == "rrf"
                  else WeightedRanker(DENSE_WEIGHT, 1 - DENSE_WEIGHT))  # fmt: skip
        found = client.hybrid_search(reqs=routes, ranker=ranker, **common)
    return [to_hits(one) for one in found]


def best_per_entry(client, request: dict) -> list[list[dict]]:
    """``client.search(**request)`` with one hit per entry, its best row: grouped by Milvus
    where the server has grouping and honours it; else (Milvus 2.3 ignores ``group_by_field``
    silently) more rows, each entry's best kept, as many as a grouped search gives."""
    fields = [*request.get("output_fields", []), "entry"]  # the entry of each row, to keep one
    k, request = request["limit"], {**request, "output_fields": list(dict.fromkeys(fields))}
    if not index.lacks(client, "grouping"):
        found = client.search(group_by_field="entry", **request)
        if all(len(one) == len(_firsts(one)) for one in found):  # grouped indeed
            return found
    limit = k * ROWS_FIRST
    while True:
        found = client.search(**{**request, "limit": min(limit, MAX_LIMIT)})
        kept = [_firsts(one)[:k] for one in found]
        if limit >= MAX_LIMIT or all(len(few) == k or len(one) < limit
                                     for few, one in zip(kept, found, strict=True)):  # fmt: skip
            return kept
        limit *= 4


def _firsts(results: list) -> list:
    """The first (best) result of each entry, in order."""
    best: dict[int, dict] = {}
    for result in results:
        best.setdefault(result["entity"]["entry"], result)
    return list(best.values())
