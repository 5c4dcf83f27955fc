"""Milvus side of the pipeline: connect, (re)create the collection, embed and insert, search."""

from __future__ import annotations

import logging
import os
from typing import Any

from tqdm import tqdm  # a text bar: readable in saved notebooks, terminals and CI logs

from milvus_rag.errors import RagError

METRIC_TYPE = "IP"
"""Inner product, as in the tutorial (the embeddings are unit length, so this is cosine)."""

CONSISTENCY_LEVEL = "Strong"
"""The tutorial uses "Bounded"; "Strong" makes a search right after an insert see every row,
on Milvus Lite and on a Milvus server alike, at a negligible cost for a tutorial."""

EMBED_BATCH_SIZE = 16


def is_lite_path(uri: str) -> bool:
    """True for a Milvus Lite path (anything that is not an http(s)/tcp/unix URL)."""
    return "://" not in uri and not uri.startswith("unix:")


def _check_not_locked(path: str) -> None:
    """Milvus Lite allows one process per path: find a holder out before pymilvus does.

    pymilvus reports a held lock only as a generic connection error, after logging a long
    traceback; this asks for the same lock (and releases it at once) to say it plainly.
    """
    lock_file = os.path.join(path, "LOCK")
    if not os.path.exists(lock_file):
        return
    fd = os.open(lock_file, os.O_RDWR)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except ImportError:  # Windows: let Milvus Lite decide
        pass
    except OSError:
        raise RagError(
            f"The Milvus Lite database {path!r} is open in another process (a notebook kernel "
            "or another command): close that (milvus_client.close(), or stop its kernel) or "
            "set MILVUS_URI to another path."
        ) from None
    finally:
        os.close(fd)


def connect(uri: str, token: str = ""):
    """A ``MilvusClient`` for ``uri`` (a Milvus Lite path, or a server URL with ``token``)."""
    from pymilvus import MilvusClient

    if is_lite_path(uri):
        if not uri.endswith(".db"):
            raise RagError(
                f"MILVUS_URI={uri!r} is neither a server URL nor a Milvus Lite path: a Milvus "
                "Lite path must end in .db (e.g. ./milvus_demo.db); a server URL starts with "
                "http:// or https://."
            )
        _check_not_locked(uri)
    quiet = logging.getLogger("milvus_lite")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its start-up failures are reported below, in one line
    try:
        return MilvusClient(uri=uri, token=token) if token else MilvusClient(uri=uri)
    except Exception as err:
        first_line = (str(err).splitlines() or [""])[0][:200]
        raise RagError(
            f"Cannot open Milvus at {uri!r} ({type(err).__name__}: {first_line}): for Milvus "
            "Lite use a .db path no other process has open; for a server check MILVUS_URI, "
            "that the server is running, and MILVUS_TOKEN."
        ) from None
    finally:
        quiet.setLevel(level)


def close(client, uri: str) -> None:
    """Close ``client``; for Milvus Lite also stop its in-process server and free the path.

    ``MilvusClient.close()`` alone leaves the Lite database open (and locked) until the
    process ends, so another process (the command line, another kernel) could not open it.
    """
    client.close()
    if is_lite_path(uri):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


def ensure_loaded(client, name: str) -> None:
    """Load collection ``name`` unless it already is (a reopened collection starts released;
    loading an already loaded one can take seconds on a large collection)."""
    from pymilvus.client.types import LoadState

    if client.get_load_state(name).get("state") != LoadState.Loaded:
        client.load_collection(name)


def vector_dim(client, name: str, field: str = "vector") -> int | None:
    """The dimension of vector ``field`` of collection ``name`` (None if it has none)."""
    for info in client.describe_collection(name).get("fields", []):
        params = info.get("params") or {}
        if info.get("name") == field and "dim" in params:
            return int(params["dim"])
    return None


def check_dimension(
    client, name: str, dim: int, model_name: str = "the embedding model", field: str = "vector"
) -> None:
    """Refuse to use an existing collection whose vectors do not fit the current model.

    Run before any insert or search: Milvus would otherwise fail deep inside the call.
    """
    existing = vector_dim(client, name, field)
    if existing is not None and existing != dim:
        raise RagError(
            f"Collection {name!r} holds {existing}-dimensional vectors, but {model_name} makes "
            f"{dim}-dimensional ones: rebuild it (python -m milvus_rag ingest --rebuild, or run "
            "the notebook from the top), or set MILVUS_COLLECTION to another name."
        )


def progress(total: int, desc: str):
    """A text progress bar over ``total`` pieces (readable in notebooks, terminals and logs)."""
    return tqdm(total=total, desc=desc, unit="piece")


def embed_in_batches(
    embed, texts: list[str], batch_size: int = EMBED_BATCH_SIZE, desc: str = "Embedding"
) -> list:
    """``embed(texts)`` in batches, with a progress bar that advances as batches finish."""
    vectors: list = []
    with progress(len(texts), desc) as bar:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            vectors.extend(embed(batch))
            bar.update(len(batch))
    return vectors


def rows_for(pieces: list[tuple[str, str]], vectors: list) -> list[dict[str, Any]]:
    """One row per (source, text) piece as in the tutorial: ``id`` by position, ``vector``,
    ``text``, plus the ``source`` file name (kept in the dynamic field, for citing)."""
    return [
        {"id": i, "vector": vector, "text": text, "source": source}
        for i, (vector, (source, text)) in enumerate(zip(vectors, pieces, strict=True))
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


def search(client, name: str, query_vector, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` nearest pieces to ``query_vector``: dicts of text, source and distance."""
    results = client.search(
        collection_name=name,
        data=[query_vector],
        limit=limit,
        search_params={"metric_type": METRIC_TYPE, "params": {}},
        output_fields=["text", "source"],
    )
    return [
        {
            "text": hit["entity"]["text"],
            "source": hit["entity"].get("source"),
            "distance": hit["distance"],
        }
        for hit in results[0]
    ]
