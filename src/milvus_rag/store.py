"""Milvus side of the pipeline: connect, (re)create the collection, embed and insert, search."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm  # a text bar: readable in saved notebooks, terminals and CI logs

from milvus_rag.errors import RagError

METRIC_TYPE = "IP"
"""Inner product, as in the tutorial (the embeddings are unit length, so this is cosine)."""

CONSISTENCY_LEVEL = "Strong"
"""The tutorial uses "Bounded"; "Strong" makes a search right after an insert see every row,
on Milvus Lite and on a Milvus server alike, at a negligible cost for a tutorial."""

EMBED_BATCH_SIZE = 16


def connect(uri: str, token: str = ""):
    """A ``MilvusClient`` for ``uri`` (a Milvus Lite path, or a server URL with ``token``)."""
    from pymilvus import MilvusClient

    try:
        return MilvusClient(uri=uri, token=token) if token else MilvusClient(uri=uri)
    except Exception as err:
        raise RagError(
            f"Cannot open Milvus at {uri!r} ({type(err).__name__}: {str(err).splitlines()[0][:200]}): "
            "for Milvus Lite use a .db path no other process has open; for a server check "
            "MILVUS_URI and MILVUS_TOKEN."
        ) from None


def embed_in_batches(
    embed, texts: list[str], batch_size: int = EMBED_BATCH_SIZE, desc: str = "Embedding"
) -> list:
    """``embed(texts)`` in batches, with a progress bar that advances as batches finish."""
    vectors: list = []
    with tqdm(total=len(texts), desc=desc, unit="piece") as bar:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            vectors.extend(embed(batch))
            bar.update(len(batch))
    return vectors


def rows_for(pieces: list[str], vectors: list) -> list[dict[str, Any]]:
    """One row per piece as in the tutorial: ``id`` by position, ``vector`` and ``text``."""
    return [
        {"id": i, "vector": vector, "text": text}
        for i, (vector, text) in enumerate(zip(vectors, pieces, strict=True))
    ]


def recreate_collection(client, name: str, dim: int) -> None:
    """Drop ``name`` if it exists, then create it with the tutorial's quick-setup form."""
    if client.has_collection(name):
        client.drop_collection(name)
    client.create_collection(
        collection_name=name,
        dimension=dim,
        metric_type=METRIC_TYPE,
        consistency_level=CONSISTENCY_LEVEL,
    )


def search(client, name: str, query_vector, limit: int) -> list[tuple[str, float]]:
    """The ``limit`` nearest pieces to ``query_vector`` as (text, distance) pairs."""
    results = client.search(
        collection_name=name,
        data=[query_vector],
        limit=limit,
        search_params={"metric_type": METRIC_TYPE, "params": {}},
        output_fields=["text"],
    )
    return [(hit["entity"]["text"], hit["distance"]) for hit in results[0]]
