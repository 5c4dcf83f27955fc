"""The Milvus side: connect, the collection schema, content-keyed rows, and keeping them in sync.

The tutorial's own collection is created in the notebook with the quick-setup form. The improved
pipeline's collection (one row per FAQ entry) is defined here, because the command line builds
it too: its row ids are derived from the content, so :func:`sync` embeds and inserts only what
is missing and deletes only what changed. Its default schema needs nothing newer than Milvus
2.4; the BM25 field that full-text and hybrid search need (Milvus 2.5+) is added only on request.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
from collections.abc import Iterator

from milvus_rag.chunking import Entry
from milvus_rag.config import setting
from milvus_rag.errors import RagError, cause

METRIC_TYPE = "IP"
"""Inner product, as in the tutorial (the embeddings are unit length, so this is cosine)."""

CONSISTENCY_LEVEL = "Strong"
"""The tutorial uses "Bounded"; "Strong" makes a search right after an insert see every row on
a Milvus server. (Milvus Lite shows inserted rows at once whatever the level.)"""

TEXT_MAX_LENGTH = 65535
"""VARCHAR limit for the text fields (the longest FAQ entry is about 1 KB)."""

INSERT_BATCH = 64
"""Rows embedded and inserted together: a killed ingest loses at most one batch of work."""

BM25_STOP_WORDS = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with",
]  # fmt: skip
"""Lucene's English stop words, listed so that every engine analyzes the text the same way."""

ANALYZER_PARAMS = {
    "tokenizer": "standard",
    "filter": ["lowercase", {"type": "stop", "stop_words": BM25_STOP_WORDS}],
}

MINIMUM_MILVUS = {"BM25 full-text search": (2, 5)}
"""Features this project uses beyond Milvus 2.4, and the first version that has them."""

FIELDS = ("entry", "view", "text", "search_text", "source", "title", "section", "dense")
"""The fields of an entries collection (``sparse`` too when it has BM25)."""


def is_lite_path(uri: str) -> bool:
    """True for a Milvus Lite path (anything that is not a URL)."""
    return "://" not in uri and not uri.startswith("unix:")


def _held_by_another_process(path: str) -> bool:
    """Whether another process holds Milvus Lite's lock on ``path`` (POSIX only)."""
    lock_file = os.path.join(path, "LOCK")
    try:
        import fcntl

        fd = os.open(lock_file, os.O_RDWR)
    except (ImportError, OSError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def check_uri(uri: str) -> None:
    """Refuse a ``MILVUS_URI`` that is neither a server URL nor a Milvus Lite ``.db`` path."""
    if is_lite_path(uri) and not uri.endswith(".db"):
        raise RagError(
            f"MILVUS_URI={uri!r} is neither a server URL nor a Milvus Lite path: a Milvus Lite "
            "path ends in .db (e.g. ./milvus_demo.db); a server URL starts with http:// or https://."
        )


@contextlib.contextmanager
def _quiet(logger: str, level: int) -> Iterator[None]:
    """Show only ``level`` and above from ``logger`` for a while, then its level as it was."""
    log = logging.getLogger(logger)
    saved = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(saved)


@contextlib.contextmanager
def milvus_errors(uri: str) -> Iterator[None]:
    """Turn a failure to open ``uri`` into one sentence naming its cause and what to do."""
    check_uri(uri)
    try:
        # milvus_lite logs a traceback of its own on a failed start; the sentence below says it
        with _quiet("milvus_lite", logging.CRITICAL):
            yield
    except RagError:
        raise
    except Exception as err:
        if is_lite_path(uri) and _held_by_another_process(uri):
            raise RagError(
                f"The Milvus Lite database {uri!r} is open in another process (a notebook kernel "
                "or a command): shut that kernel down (or run milvus_rag.index.release(MILVUS_URI) "
                "in it), stop that command, or set MILVUS_URI to another path."
            ) from err
        if isinstance(err, ImportError | ModuleNotFoundError):
            advice = "install it: pip install -r requirements.txt"
        elif is_lite_path(uri):
            advice = "check that the folder is writable, or set MILVUS_URI to another .db path"
        else:
            advice = "check MILVUS_URI, that the server is running, and MILVUS_TOKEN"
        raise RagError(f"Cannot open Milvus at {uri!r} ({cause(err)}): {advice}.") from err


def connect(uri: str, token: str = ""):
    """A ``MilvusClient`` for ``uri``: a Milvus Lite path, or a server URL with ``token``."""
    with milvus_errors(uri):
        from pymilvus import MilvusClient

        return MilvusClient(uri=uri, token=token)


def release(uri: str) -> None:
    """Free a Milvus Lite path held by this process, so another process can open it.

    ``MilvusClient.close()`` alone keeps the database open (and locked) until the process ends.
    Clients of this process on that path stop working. Nothing to do for a server URL.
    """
    if is_lite_path(uri):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


def server_version(client) -> tuple[int, int] | None:
    """(major, minor) of the Milvus behind ``client``, or None if it does not say."""
    with contextlib.suppress(Exception):
        reported = str(client.get_server_version())
        if reported.startswith("milvus_lite-"):  # Milvus Lite 3.x: BM25 and hybrid search built in
            return (2, 6)
        match = re.search(r"(\d+)\.(\d+)", reported)
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


def require(client, feature: str) -> None:
    """Refuse, in one sentence, a Milvus too old for ``feature`` (a key of MINIMUM_MILVUS)."""
    needed = MINIMUM_MILVUS[feature]
    found = server_version(client)
    if found is not None and found < needed:
        raise RagError(
            f"{feature} needs Milvus {needed[0]}.{needed[1]} or later, but the server at "
            f"MILVUS_URI runs {found[0]}.{found[1]}: upgrade it, or use the dense strategies only."
        )


def ensure_loaded(client, name: str) -> None:
    """Load collection ``name`` unless it already is (a reopened collection starts released)."""
    from pymilvus.client.types import LoadState

    if client.get_load_state(name).get("state") != LoadState.Loaded:
        client.load_collection(name)


def create_collection(client, name: str, dim: int, bm25: bool = False) -> None:
    """(Re)create ``name`` for FAQ entries: ids, texts and a ``dim``-wide dense vector.

    With ``bm25``, also a sparse vector that Milvus computes from ``search_text`` itself
    (``Function(type=FunctionType.BM25)``), for full-text and hybrid search (Milvus 2.5+).
    """
    from pymilvus import DataType, Function, FunctionType

    if bm25:
        require(client, "BM25 full-text search")
    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("entry", DataType.INT64)  # the entry's id: one hit per entry (group_by)
    schema.add_field("view", DataType.INT64)  # 0: the entry itself; 1..: one of its phrasings
    schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX_LENGTH)
    analyzer = {"enable_analyzer": True, "analyzer_params": ANALYZER_PARAMS} if bm25 else {}
    schema.add_field("search_text", DataType.VARCHAR, max_length=TEXT_MAX_LENGTH, **analyzer)
    schema.add_field("source", DataType.VARCHAR, max_length=512)
    schema.add_field("title", DataType.VARCHAR, max_length=TEXT_MAX_LENGTH)
    schema.add_field("section", DataType.VARCHAR, max_length=TEXT_MAX_LENGTH)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
    index_params = client.prepare_index_params()
    index_params.add_index(field_name="dense", index_type="FLAT", metric_type=METRIC_TYPE)
    if bm25:
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="search_text_bm25",
                function_type=FunctionType.BM25,
                input_field_names=["search_text"],
                output_field_names=["sparse"],
            )
        )
        index_params.add_index(
            field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25"
        )
    client.create_collection(
        collection_name=name,
        schema=schema,
        index_params=index_params,
        consistency_level=CONSISTENCY_LEVEL,
    )


def content_id(*parts: object) -> int:
    """A stable positive int64 id from content (sha256), so re-ingesting finds its own rows."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def entry_rows(entries: list[Entry]) -> list[dict]:
    """One row per entry (view 0) and per phrasing of it (views 1..), no vectors yet.

    Every row carries the entry's whole text; ``search_text`` is what is embedded: the entry
    itself, or one phrasing. Ids derive from the content: the same entry from the same file
    always gets the same ids, a changed one new ids, so its old rows can be found and deleted.
    """
    rows: dict[int, dict] = {}
    for entry in entries:
        entry_id = content_id(entry.source, entry.text)
        for view, search_text in enumerate((entry.search_text, *entry.phrasings)):
            row_id = content_id(entry_id, view, search_text)
            rows[row_id] = {  # a file repeating an entry word for word keeps one set of rows
                "id": row_id,
                "entry": entry_id,
                "view": view,
                "text": entry.text,
                "search_text": search_text,
                "source": entry.source,
                "title": entry.title,
                "section": entry.section,
            }
    return list(rows.values())


def progress(total: int, desc: str):
    """A progress bar over ``total`` pieces: a widget in JupyterLab and Colab, text elsewhere.

    ``RAG_PROGRESS=text`` forces text (headless runs, whose saved outputs hold no widgets).
    """
    if setting("RAG_PROGRESS") == "text":
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="piece", disable=total == 0)


def batches(items: list, show: bool = True, desc: str = "Embedding") -> Iterator[list]:
    """``items`` in slices of ``INSERT_BATCH``, under one progress bar that shows the real work
    (none when ``show`` is false: nothing to wait for)."""
    with progress(len(items) if show else 0, desc) as bar:
        for start in range(0, len(items), INSERT_BATCH):
            batch = items[start : start + INSERT_BATCH]
            yield batch
            bar.update(len(batch))
    sys.stderr.flush()  # the bar's last newline now, not as a stray output after the cell's own


def _work_left(embedding, texts: list[str]) -> bool:
    """False when ``embedding`` has every text embedded already (see ``Embedding.knows``)."""
    knows = getattr(embedding, "knows", None)
    return knows is None or not knows(texts)


def embed_documents(embedding, texts: list[str]) -> list:
    """``embedding.encode_documents(texts)``, batch by batch under a progress bar."""
    show = _work_left(embedding, texts)
    return [v for batch in batches(texts, show) for v in embedding.encode_documents(batch)]


def insert_rows(client, name: str, embedding, rows: list[dict]) -> None:
    """Embed and insert ``rows`` batch by batch (an interrupted run keeps whole batches)."""
    for batch in batches(rows, _work_left(embedding, [row["search_text"] for row in rows])):
        vectors = embedding.encode_documents([row["search_text"] for row in batch])
        data = [{**row, "dense": vector} for row, vector in zip(batch, vectors, strict=True)]
        client.insert(collection_name=name, data=data)


def existing_ids(client, name: str) -> set[int]:
    """Every primary key in collection ``name`` (paged, so large collections are fine)."""
    with _quiet("pymilvus", logging.ERROR):  # it warns about client-side timestamps on Lite
        iterator = client.query_iterator(name, batch_size=1000, filter="", output_fields=["id"])
        try:
            ids: set[int] = set()
            while batch := iterator.next():
                ids.update(int(row["id"]) for row in batch)
            return ids
        finally:
            iterator.close()


def check_collection(client, name: str, embedding, bm25: bool = False) -> None:
    """Refuse, before any insert or search, a collection this pipeline cannot use as it is."""
    fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
    dense = fields.get("dense") or fields.get("vector") or {}
    dim = int((dense.get("params") or {}).get("dim", embedding.dim))
    if dim != embedding.dim:
        raise RagError(
            f"Collection {name!r} holds {dim}-dimensional vectors, but {embedding.name} makes "
            f"{embedding.dim}-dimensional ones: rebuild it (python -m milvus_rag ingest "
            "--rebuild, or run the notebook from the top), or set MILVUS_COLLECTION to another name."
        )
    if not set(FIELDS) <= fields.keys() or (bm25 and "sparse" not in fields):
        raise RagError(
            f"Collection {name!r} was built by another pipeline or version (its fields differ): "
            "rebuild it (python -m milvus_rag ingest --rebuild) or set MILVUS_COLLECTION to "
            "another name."
        )


def sync(
    client,
    name: str,
    embedding,
    entries: list[Entry],
    bm25: bool = False,
    rebuild: bool = False,
) -> dict:
    """Make collection ``name`` hold exactly ``entries``, doing only the work that is missing.

    Rows already there are kept (not embedded again), rows of entries that changed or vanished
    are deleted, new ones are embedded and inserted in batches. Running it twice leaves the
    same rows; after an interrupted run the next run completes it. ``rebuild`` drops the
    collection first. A collection of another schema or dimension is refused in one sentence.
    """
    if rebuild or not client.has_collection(name):
        create_collection(client, name, embedding.dim, bm25=bm25)
    else:
        check_collection(client, name, embedding, bm25=bm25)
        ensure_loaded(client, name)
    wanted = entry_rows(entries)
    present = existing_ids(client, name)
    stale = sorted(present - {row["id"] for row in wanted})
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
