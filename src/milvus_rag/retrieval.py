"""Retrieval strategies over the FAQ, all served by Milvus from the same collection data.

One collection holds the FAQ entries (:mod:`milvus_rag.chunking`), one row per *view* of an
entry: view 0 is the whole entry, views 1.. are its paragraphs (each headed by the entry's
heading path). Every row carries the entry's number and stored text, its source file, title
and heading path, a dense vector of the view, and a sparse BM25 vector that Milvus computes
itself from the view's text (``Function(type=FunctionType.BM25)``). A second collection,
``<name>_tutorial``, holds the tutorial's 72 pieces (one view each) with the same schema, so
the baseline is measured the same way.

Strategies (``STRATEGIES``):

``tutorial-dense``         the tutorial: its split, dense search.
``tutorial-bm25``          the tutorial's split, BM25 full-text search.
``tutorial-hybrid-rrf``    the tutorial's split, dense + BM25 fused with RRF.
``entry-dense``            one piece per FAQ entry (title kept with its answer), dense.
``entry-views-dense``      the entries, dense over every view, best view per entry
                           (``group_by_field="entry"``): one hit per entry.
``entry-bm25``             the entries, BM25 full-text search.
``entry-hybrid-rrf``       the entries, dense + BM25 fused with ``RRFRanker(60)``.
``entry-hybrid-weighted``  the entries, dense + BM25 fused with ``WeightedRanker``.

All but ``entry-views-dense`` search view 0 only (``filter="view == 0"``), i.e. whole entries.

``DEFAULT_STRATEGY`` is the best of them on ``data/eval/questions.jsonl`` (see
``data/eval/README.md``); ``search`` uses it unless told otherwise.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from milvus_rag import chunking, store
from milvus_rag.errors import RagError

TUTORIAL_SUFFIX = "_tutorial"
"""The tutorial-split collection is named ``<collection>_tutorial``."""

TEXT_MAX_LENGTH = 65535
"""VARCHAR limit for the text fields (the longest FAQ entry is about 1 KB)."""

BM25_STOP_WORDS = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with",
]  # fmt: skip
"""Lucene's (and Elasticsearch's ``_english_``) stop words, listed so that Milvus Lite and a
Milvus server analyze the text the same way."""

ANALYZER_PARAMS = {
    "tokenizer": "standard",
    "filter": ["lowercase", {"type": "stop", "stop_words": BM25_STOP_WORDS}],
}
"""BM25 analyzer: standard tokenizer, lower case, English stop words."""

RRF_K = 60
"""RRF's smoothing constant: the usual value (Cormack et al. 2009; Milvus's default)."""

CANDIDATES = 20
"""How many hits each route of a hybrid search contributes before fusion (at least k)."""

DENSE_WEIGHT = 0.7
"""``entry-hybrid-weighted``: weight of the dense route; BM25 gets ``1 - DENSE_WEIGHT``.

``WeightedRanker`` first maps each route's scores into [0, 1] (Milvus: ``0.5 + atan(ip)/pi``
for inner product, ``2 * atan(score)/pi`` for BM25). Over a route's candidates the dense scores
then spread about 0.13 and the BM25 scores about 0.31 (mean of max - min over the top 20, with
the 61 FAQ titles as queries: no labels involved), so equal weights would let BM25 decide
most rankings. Weights inversely proportional to those spreads, 0.31 : 0.13, give each route
the same pull: 0.7 dense, 0.3 BM25."""


@dataclass(frozen=True)
class Strategy:
    name: str
    chunking: str  # "entry" or "tutorial"
    kind: str  # "dense", "views", "bm25", "rrf" or "weighted"
    description: str


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("tutorial-dense", "tutorial", "dense", "tutorial split, dense (the tutorial)"),
        Strategy("tutorial-bm25", "tutorial", "bm25", "tutorial split, BM25"),
        Strategy("tutorial-hybrid-rrf", "tutorial", "rrf", "tutorial split, dense + BM25, RRF"),
        Strategy("entry-dense", "entry", "dense", "one piece per FAQ entry, dense"),
        Strategy(
            "entry-views-dense", "entry", "views", "FAQ entries, dense, entry + paragraph views"
        ),
        Strategy("entry-bm25", "entry", "bm25", "one piece per FAQ entry, BM25"),
        Strategy("entry-hybrid-rrf", "entry", "rrf", "FAQ entries, dense + BM25, RRF"),
        Strategy(
            "entry-hybrid-weighted", "entry", "weighted", "FAQ entries, dense + BM25, weighted"
        ),
    )
}

DEFAULT_STRATEGY = "entry-views-dense"
"""The strategy ``search`` uses by default: the best on the project's question set."""


@dataclass(frozen=True)
class Hit:
    """One retrieved piece; ``distance`` is the strategy's score (higher is better).

    Also readable like the pipeline's hit dicts: ``hit["text"]``, ``hit["distance"]``.
    """

    text: str
    distance: float
    source: str
    title: str

    def __getitem__(self, key: str):
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "distance": self.distance,
            "source": self.source,
            "title": self.title,
        }


def strategy_named(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise RagError(
            f"Unknown retrieval strategy {name!r}: use one of {', '.join(STRATEGIES)}."
        ) from None


def collection_for(collection: str, strategy: str) -> str:
    """The collection that ``strategy`` searches, given the base ``collection`` name."""
    if strategy_named(strategy).chunking == "tutorial":
        return collection + TUTORIAL_SUFFIX
    return collection


def create_collection(client, name: str, dim: int) -> None:
    """(Re)create ``name``: text, source, title, section, a dense vector and a BM25 vector."""
    from pymilvus import DataType, Function, FunctionType

    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("entry", DataType.INT64)
    schema.add_field("view", DataType.INT64)
    schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX_LENGTH)
    schema.add_field(
        "search_text",
        DataType.VARCHAR,
        max_length=TEXT_MAX_LENGTH,
        enable_analyzer=True,
        analyzer_params=ANALYZER_PARAMS,
    )
    schema.add_field("source", DataType.VARCHAR, max_length=512)
    schema.add_field("title", DataType.VARCHAR, max_length=TEXT_MAX_LENGTH)
    schema.add_field("section", DataType.VARCHAR, max_length=TEXT_MAX_LENGTH)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="search_text_bm25",
            function_type=FunctionType.BM25,
            input_field_names=["search_text"],
            output_field_names=["sparse"],
        )
    )
    index_params = client.prepare_index_params()
    index_params.add_index(field_name="dense", index_type="FLAT", metric_type=store.METRIC_TYPE)
    index_params.add_index(
        field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25"
    )
    client.create_collection(
        collection_name=name,
        schema=schema,
        index_params=index_params,
        consistency_level=store.CONSISTENCY_LEVEL,
    )


INSERT_BATCH = 64
"""Rows embedded and inserted together: a killed ingest loses at most one batch of work."""


def content_id(*parts: object) -> int:
    """A stable positive int64 id from content (sha256), so re-ingesting finds its own rows."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def entry_rows(entries: list[chunking.Entry], views: bool = True) -> list[dict]:
    """One row per view of each entry (no vectors yet), with ids derived from the content.

    The same entry text from the same file always gets the same ids; a changed entry gets new
    ones, so its old rows can be found and deleted.
    """
    rows = []
    for entry in entries:
        entry_id = content_id(entry.source, entry.text)
        texts = chunking.search_views(entry) if views else [entry.search_text]
        for view, search_text in enumerate(texts):
            rows.append(
                {
                    "id": content_id(entry_id, view, search_text),
                    "entry": entry_id,
                    "view": view,
                    "text": entry.text,
                    "search_text": search_text,
                    "source": entry.source,
                    "title": entry.title,
                    "section": entry.section,
                }
            )
    unique = {row["id"]: row for row in rows}  # a file repeating an entry word for word
    return list(unique.values())


def existing_ids(client, name: str) -> set[int]:
    """Every primary key in collection ``name`` (paged, so large collections are fine)."""
    quiet = logging.getLogger("pymilvus")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the iterator warns about client-side timestamps on Lite
    try:
        iterator = client.query_iterator(name, batch_size=1000, filter="", output_fields=["id"])
        ids: set[int] = set()
        while batch := iterator.next():
            ids.update(int(row["id"]) for row in batch)
        iterator.close()
    finally:
        quiet.setLevel(level)
    return ids


def insert_rows(client, name: str, embedding, rows: list[dict], desc: str = "Embedding") -> None:
    """Embed and insert ``rows`` batch by batch, under one progress bar over the real work."""
    with store.progress(len(rows), desc) as bar:
        for start in range(0, len(rows), INSERT_BATCH):
            batch = rows[start : start + INSERT_BATCH]
            vectors = embedding.encode_documents([row["search_text"] for row in batch])
            client.insert(
                collection_name=name,
                data=[{**row, "dense": vector} for row, vector in zip(batch, vectors, strict=True)],
            )
            bar.update(len(batch))


def insert_entries(
    client, name: str, embedding, entries: list[chunking.Entry], views: bool = True
) -> int:
    """Embed and insert ``entries`` into ``name``, one row per view; returns the entry count.

    With ``views`` every entry gets its :func:`chunking.search_views`, else its whole text only.
    """
    insert_rows(client, name, embedding, entry_rows(entries, views))
    return len(entries)


def sync_entries(
    client,
    name: str,
    embedding,
    entries: list[chunking.Entry],
    views: bool = True,
    rebuild: bool = False,
) -> dict:
    """Make collection ``name`` hold exactly ``entries``, doing only the work that is missing.

    Rows are keyed by content: rows already there are kept (not embedded again), rows of
    entries that changed or vanished are deleted, new ones are embedded and inserted in
    batches. Running it twice leaves the same rows; after an interrupted run, the next run
    completes it. ``rebuild`` drops the collection first. A collection of another schema or
    vector dimension is refused (one clear sentence) unless ``rebuild`` is given.
    """
    if rebuild or not client.has_collection(name):
        create_collection(client, name, embedding.dim)
    else:
        check_collection(client, name, embedding)
        store.ensure_loaded(client, name)
    wanted = entry_rows(entries, views)
    wanted_ids = {row["id"] for row in wanted}
    present = existing_ids(client, name)
    stale = sorted(present - wanted_ids)
    if stale:
        client.delete(collection_name=name, ids=stale)
    missing = [row for row in wanted if row["id"] not in present]
    insert_rows(client, name, embedding, missing)
    return {
        "collection": name,
        "count": len({row["entry"] for row in wanted}),
        "rows": len(wanted),
        "added": len(missing),
        "removed": len(stale),
    }


def ingest(
    client, collection: str, embedding, docs_dir: Path, tutorial: bool = False
) -> dict[str, int]:
    """(Re)create and fill ``collection`` with the FAQ entries (and its tutorial twin if asked).

    Returns the number of entries (pieces) per collection name.
    """
    counts: dict[str, int] = {}
    plans = [(collection, chunking.load_faq_entries(docs_dir), True)]
    if tutorial:
        pieces = chunking.load_tutorial_pieces(docs_dir)
        plans.append((collection + TUTORIAL_SUFFIX, pieces, False))
    for name, entries, views in plans:
        create_collection(client, name, embedding.dim)
        counts[name] = insert_entries(client, name, embedding, entries, views=views)
    return counts


def has_current_schema(client, name: str, dim: int) -> bool:
    """Whether ``name`` exists with this module's fields and a ``dim``-wide dense vector."""
    if not client.has_collection(name):
        return False
    fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
    needed = {"entry", "view", "text", "search_text", "source", "title", "dense", "sparse"}
    if not needed <= fields.keys():
        return False
    return int(fields["dense"].get("params", {}).get("dim", -1)) == dim


def check_collection(client, name: str, embedding) -> None:
    """Refuse, before any insert or search, a collection this pipeline cannot use as it is:
    vectors of another dimension (another embedding model), or another schema."""
    if has_current_schema(client, name, embedding.dim):
        return
    store.check_dimension(client, name, embedding.dim, embedding.name, field="dense")
    raise RagError(
        f"Collection {name!r} was built by another pipeline or version (its fields differ): "
        "rebuild it (python -m milvus_rag ingest --rebuild) or set MILVUS_COLLECTION to "
        "another name."
    )


OUTPUT_FIELDS = ["text", "source", "title"]

WHOLE_ENTRY = "view == 0"
"""Filter for the row holding an entry's whole text (its other rows are paragraph views)."""


def _hits(results, bm25: bool = False) -> list[Hit]:
    """Hits from a search result; BM25 scores are made positive (Milvus Lite negates them)."""
    return [
        Hit(
            text=hit["entity"]["text"],
            distance=abs(float(hit["distance"])) if bm25 else float(hit["distance"]),
            source=hit["entity"]["source"],
            title=hit["entity"]["title"],
        )
        for hit in results[0]
    ]


def search(
    client,
    collection: str,
    embedding,
    question: str,
    k: int,
    strategy: str = DEFAULT_STRATEGY,
) -> list[Hit]:
    """The ``k`` best pieces for ``question`` by ``strategy``, best first.

    ``collection`` is the base name given to :func:`ingest`; tutorial-split strategies search
    ``<collection>_tutorial``.
    """
    from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

    chosen = strategy_named(strategy)
    if not question.strip():
        raise RagError('The question is empty: ask something, e.g. "How is data stored?".')
    if k < 1:
        raise RagError(f"k must be at least 1, not {k}.")
    name = collection_for(collection, strategy)
    if chosen.kind == "bm25":
        return _hits(
            client.search(
                collection_name=name,
                data=[question],
                filter=WHOLE_ENTRY,
                anns_field="sparse",
                limit=k,
                search_params={"metric_type": "BM25", "params": {}},
                output_fields=OUTPUT_FIELDS,
            ),
            bm25=True,
        )
    query_vector = embedding.encode_queries([question])[0]
    dense_params = {"metric_type": store.METRIC_TYPE, "params": {}}
    if chosen.kind in ("dense", "views"):
        # "dense" searches whole entries only; "views" searches every view, best one per entry
        scope = {"group_by_field": "entry"} if chosen.kind == "views" else {"filter": WHOLE_ENTRY}
        return _hits(
            client.search(
                collection_name=name,
                data=[query_vector],
                anns_field="dense",
                limit=k,
                search_params=dense_params,
                output_fields=OUTPUT_FIELDS,
                **scope,
            )
        )
    candidates = max(k, CANDIDATES)
    requests = [
        AnnSearchRequest(
            data=[query_vector],
            anns_field="dense",
            param=dense_params,
            limit=candidates,
            expr=WHOLE_ENTRY,
        ),
        AnnSearchRequest(
            data=[question],
            anns_field="sparse",
            param={"metric_type": "BM25", "params": {}},
            limit=candidates,
            expr=WHOLE_ENTRY,
        ),
    ]
    ranker = (
        RRFRanker(RRF_K) if chosen.kind == "rrf" else WeightedRanker(DENSE_WEIGHT, 1 - DENSE_WEIGHT)
    )
    return _hits(
        client.hybrid_search(
            collection_name=name,
            reqs=requests,
            ranker=ranker,
            limit=k,
            output_fields=OUTPUT_FIELDS,
        )
    )
