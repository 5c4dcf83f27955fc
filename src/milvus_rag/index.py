"""The Milvus side: connect, the collections' schema, content-keyed rows kept in sync.

The tutorial's own collection is created in the notebook (quick setup); the improved
pipeline's, one per corpus, are made here, for the command line builds them too. Row ids derive
from the content, so :func:`sync` does only the missing work; each collection records what built
it (model, chunking, a fingerprint of its rows, whether the last sync completed), so no question
is answered from an index that does not match. The server is asked what it can do (:func:`lacks`)
before grouping or BM25 is relied on; row counts are ``count(*)`` under Strong consistency."""

import contextlib
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator

from milvus_rag.chunking import Entry
from milvus_rag.config import setting
from milvus_rag.errors import RagError, cause, quiet
from milvus_rag.locks import held_elsewhere

METRIC_TYPE = "IP"  # as in the tutorial; the embeddings are unit length, so this is cosine
CONSISTENCY_LEVEL = "Strong"  # not "Bounded": on a server, a search sees rows just inserted
TEXT_MAX_LENGTH = 65535
INSERT_BATCH = 64  # rows per embedding call and per insert (a killed insert keeps whole batches)

# Lucene's English stop words, listed so that every engine analyzes the text the same way
BM25_STOP_WORDS = ("a an and are as at be but by for if in into is it no not of on or such that "
                   "the their then there these they this to was will with").split()

FIELDS = ("entry", "view", "text", "search_text", "source", "title", "section", "dense")
BUILT_BY = "milvus_rag.built_by"  # the collection property that records what built it (JSON)


def is_lite_path(uri: str) -> bool:
    """True for a Milvus Lite path: anything but a URL (``C:\\`` is a drive, not a scheme)."""
    return "://" not in uri and not uri.startswith("unix:")


def check_uri(uri: str) -> None:
    """Refuse a URI that is neither a server URL nor a Milvus Lite ``.db`` path."""
    if (is_lite_path(uri) and not uri.endswith(".db")) or uri.lower().startswith("file:"):
        raise RagError(f"{uri!r} is neither a server URL nor a Milvus Lite path: a Milvus Lite "
                       "path (MILVUS_LITE_PATH) is a plain path ending in .db (no file: URL), a server "
                       "URL (MILVUS_URI) starts with http(s)://.")


@contextlib.contextmanager
def milvus_errors(uri: str) -> Iterator[None]:
    """Turn a failure to open ``uri`` into one sentence naming its cause and what to do."""
    check_uri(uri)
    try:
        with quiet("milvus_lite"):  # it logs a traceback of its own on a failed start
            yield
    except RagError:
        raise
    except Exception as err:
        if is_lite_path(uri) and held_elsewhere(os.path.join(uri, "LOCK")):  # Milvus Lite's
            raise RagError(f"The Milvus Lite database {uri!r} is open in another process (a "
                           "notebook kernel or a command): in that notebook run `from milvus_rag"
                           ".index import release; release(MILVUS_URI)` (or shut its kernel down), "
                           "stop that command, or use another MILVUS_LITE_PATH.") from err
        if isinstance(err, ImportError):
            advice = "install it: pip install -r requirements.txt"
        elif is_lite_path(uri):
            advice = "check that the folder is writable, or set MILVUS_LITE_PATH to another .db path"
        else:
            advice = "check MILVUS_URI, that the server is running, and MILVUS_TOKEN"
        raise RagError(f"Cannot open Milvus at {uri!r} ({cause(err)}): {advice}.") from err


def connect(uri: str, token: str = ""):
    """A ``MilvusClient`` for ``uri``: a Milvus Lite path, or a server URL with ``token``."""
    with milvus_errors(uri):
        from pymilvus import MilvusClient
        return MilvusClient(uri=uri, token=token)


def release(uri: str) -> None:
    """Free a Milvus Lite path held by this process, so another process can open it
    (``MilvusClient.close()`` keeps it locked until the process ends); connect again to go on."""
    if is_lite_path(uri):
        from milvus_lite.server_manager import server_manager_instance
        server_manager_instance.release_server(uri)


# What the project relies on that older servers lack, and the Milvus version that brought it.
# (Milvus 2.3 ignores group_by_field without an error; search.py also checks its answers.)
FEATURES = {"grouping": ("Grouped search (group_by_field)", (2, 4)),
            "bm25": ("BM25 full-text search", (2, 5))}  # fmt: skip


def server_version(client) -> tuple[int, int] | None:
    """The (major, minor) Milvus version the server reports; Milvus Lite 3 says 3.x and has every
    feature. None for an engine that does not say (the C++ milvus-lite 2.5: UNIMPLEMENTED)."""
    try:
        return tuple(map(int, re.search(r"(\d+)\.(\d+)", client.get_server_version()).groups()))
    except Exception:
        return None


def lacks(client, feature: str) -> str:
    """Why the server lacks ``feature`` (a key of ``FEATURES``), as the start of a sentence; ""
    if it has it or does not say its version."""
    what, needed = FEATURES[feature]
    found = server_version(client)
    if found is None or found >= needed:
        return ""
    return (f"{what} needs Milvus {needed[0]}.{needed[1]} or later, but the server at MILVUS_URI "
            f"runs {found[0]}.{found[1]}")  # fmt: skip


def require_bm25(client) -> None:
    """Refuse, in one sentence, a Milvus older than 2.5 (no BM25 full-text search)."""
    if why := lacks(client, "bm25"):
        raise RagError(f"{why}: upgrade it, or use the dense strategies only.")


def count(client, name: str) -> int:
    """The rows in collection ``name`` now: ``count(*)`` under Strong consistency (a server's
    collection statistics count only flushed rows, and a Bounded read may miss the newest)."""
    found = client.query(name, output_fields=["count(*)"], consistency_level=CONSISTENCY_LEVEL)
    return int(found[0]["count(*)"])


def built_by(client, name: str) -> dict:
    """What built collection ``name``, as recorded by :func:`sync` ({} if nothing was)."""
    recorded = (client.describe_collection(name).get("properties") or {}).get(BUILT_BY)
    return json.loads(recorded) if recorded else {}


def _record(client, name: str, built: dict) -> None:
    """Record what built ``name`` in its properties; an engine that cannot alter them (the
    deprecated milvus-lite 2.5) keeps no record, and only the dimension is checked there.
    Written twice: a Milvus 2.3 server makes a properties write durable only with the next one
    (killed, it comes back with the one before, flushed or not), so the second keeps the first."""
    try:
        for _ in range(2):
            client.alter_collection_properties(name, {BUILT_BY: json.dumps(built)})
    except Exception as err:
        if "UNIMPLEMENTED" not in str(err):
            raise


def mismatch(client, name: str, embedding) -> str:
    """Why the vectors in ``name`` cannot be searched with ``embedding`` ("" if they can)."""
    fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
    dim = int(((fields.get("dense") or fields.get("vector") or {}).get("params") or {})["dim"])
    model = built_by(client, name).get("model", embedding.name)
    if model != embedding.name:
        return f"was built with {model}, but this run embeds with {embedding.name}"
    if dim != embedding.dim:
        return f"holds {dim}-d vectors, but {embedding.name} makes {embedding.dim}-d ones"
    return ""


def open_existing(client, names: list[str], embedding) -> str:
    """Load those of ``names`` that exist (from an earlier run) and say what was found."""
    found = []
    for name in names:
        if client.has_collection(name):
            client.load_collection(name)  # a reopened collection starts released
            rows = count(client, name)
            why = mismatch(client, name, embedding)
            found.append(f"{name} ({rows} rows" + (f"; it {why}: rebuilt below)" if why else ")"))
    if not found:
        return "No collection from an earlier run: the cells below create them."
    return "From an earlier run, loaded for search: " + ", ".join(found) + "."


def create_collection(client, name: str, dim: int, bm25: bool = False) -> None:
    """(Re)create ``name`` for entries: ids, texts and a ``dim``-wide dense vector; with
    ``bm25``, a sparse vector too that Milvus computes from ``search_text`` (Milvus 2.5+)."""
    from pymilvus import DataType, Function, FunctionType
    if bm25:
        require_bm25(client)
    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("entry", DataType.INT64)  # the entry's id: one hit per entry (group_by)
    schema.add_field("view", DataType.INT64)  # 0: the entry itself; 1..: one of its phrasings
    schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX_LENGTH)
    analyzer = {"tokenizer": "standard",
                "filter": ["lowercase", {"type": "stop", "stop_words": BM25_STOP_WORDS}]}  # fmt: skip
    bm25_text = {"enable_analyzer": True, "analyzer_params": analyzer} if bm25 else {}
    schema.add_field("search_text", DataType.VARCHAR, max_length=TEXT_MAX_LENGTH, **bm25_text)
    schema.add_field("source", DataType.VARCHAR, max_length=1024)
    schema.add_field("title", DataType.VARCHAR, max_length=TEXT_MAX_LENGTH)
    schema.add_field("section", DataType.VARCHAR, max_length=TEXT_MAX_LENGTH)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
    index_params = client.prepare_index_params()
    index_params.add_index(field_name="dense", index_type="FLAT", metric_type=METRIC_TYPE)
    if bm25:
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="search_text_bm25", function_type=FunctionType.BM25,
                                     input_field_names=["search_text"],
                                     output_field_names=["sparse"]))  # fmt: skip
        index_params.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX",
                               metric_type="BM25")  # fmt: skip
    client.create_collection(collection_name=name, schema=schema, consistency_level=CONSISTENCY_LEVEL)
    client.create_index(name, index_params, sync=False)  # empty: no need to poll every 0.5 s
    client.load_collection(name)


def content_id(*parts: object) -> int:
    """A stable positive int64 id from content (sha256), so re-ingesting finds its own rows."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def entry_rows(entries: list[Entry]) -> list[dict]:
    """One row per entry (view 0) and per phrasing of it (views 1..), no vectors yet. Each
    carries the entry's text; ``search_text`` is what is embedded. Ids derive from the file and
    the content, so an entry changed (or moved) gets new ids and its old rows can be deleted."""
    rows: dict[int, dict] = {}
    for entry in entries:
        entry_id = content_id(entry.source, entry.text)
        for view, search_text in enumerate((entry.search_text, *entry.phrasings)):
            row_id = content_id(entry_id, view, search_text)
            rows[row_id] = {  # a file repeating an entry word for word keeps one set of rows
                "id": row_id, "entry": entry_id, "view": view, "text": entry.text,
                "search_text": search_text, "source": entry.source, "title": entry.title,
                "section": entry.section,
            }  # fmt: skip
    return list(rows.values())


@contextlib.contextmanager
def progress(total: int, desc: str) -> Iterator:
    """A progress bar over ``total`` pieces (none for no work). In a notebook: a widget while it
    runs, then its last line as text, so a saved notebook needs no widget state; text on stdout
    with ``RAG_PROGRESS=text`` (headless). In a terminal: text on stderr, clear of the output."""
    from tqdm import tqdm
    ipython = sys.modules.get("IPython")
    kernel = getattr(ipython.get_ipython() if ipython else None, "kernel", None) is not None
    stream = sys.stdout if kernel else sys.stderr
    widget = None
    if total and kernel and setting("RAG_PROGRESS") != "text":
        with contextlib.suppress(ImportError):
            from IPython.display import Pretty, display
            from tqdm.notebook import tqdm as widget_tqdm
            widget = widget_tqdm(total=total, desc=desc, unit="piece", display=False)
    if widget is None:
        with tqdm(total=total, desc=desc, unit="piece", disable=not total, file=stream) as bar:
            yield bar
        stream.flush()  # the bar's last newline now, not after the cell's own output
        return
    shown = display(widget.container, display_id=True)
    try:
        yield widget
    finally:
        widget.close()
        shown.update(Pretty(tqdm.format_meter(**{**widget.format_dict, "ncols": 80})))


@contextlib.contextmanager
def batches(items: list, show: bool = True) -> Iterator[Iterator[list]]:
    """``items`` in slices of ``INSERT_BATCH`` under one progress bar (if ``show``). A context
    manager, not a generator: when the work on a slice stops (Kernel > Interrupt, an error), the
    bar is closed and its widget replaced by text at once, not whenever the suspended generator
    is collected (never, while the traceback keeps it alive): a run interrupted and saved
    reopens without a widget its notebook cannot show."""
    with progress(len(items) if show else 0, "Embedding") as bar:
        def slices() -> Iterator[list]:
            for start in range(0, len(items), INSERT_BATCH):
                batch = items[start : start + INSERT_BATCH]
                yield batch
                bar.update(len(batch))

        yield slices()


def embed_documents(embedding, texts: list[str]) -> list:
    """``embedding.encode_documents(texts)``, batch by batch under a progress bar (closed before
    an error goes on, so the error's line starts a line of its own)."""
    show = not embedding.knows(texts)  # no bar over texts it has embedded already
    with batches(texts, show) as slices:
        return [v for batch in slices for v in embedding.encode_documents(batch)]


def insert_rows(client, name: str, rows: list[dict], vectors: list) -> None:
    """Insert ``rows`` with their ``vectors`` batch by batch (an interrupted run keeps whole
    batches, and the next :func:`sync` completes it)."""
    for start in range(0, len(rows), INSERT_BATCH):
        data = [{**row, "dense": vector} for row, vector in zip(
            rows[start : start + INSERT_BATCH], vectors[start : start + INSERT_BATCH], strict=True)]
        client.insert(collection_name=name, data=data)


def existing_ids(client, name: str) -> set[int]:
    """Every primary key in collection ``name`` (paged, so large collections are fine)."""
    with quiet("pymilvus", logging.ERROR):  # it warns about client-side timestamps on Lite
        iterator = client.query_iterator(name, batch_size=1000, filter="", output_fields=["id"])
        try:
            ids: set[int] = set()
            while batch := iterator.next():
                ids.update(int(row["id"]) for row in batch)
            return ids
        finally:
            iterator.close()


def check_fields(client, name: str, bm25: bool = False) -> None:
    """Refuse a collection of another schema (the tutorial's, or an older version's)."""
    fields = {f["name"] for f in client.describe_collection(name)["fields"]}
    if not set(FIELDS) <= fields or (bm25 and "sparse" not in fields):
        raise RagError(f"Collection {name!r} was built by another pipeline or version (its "
                       "fields differ): rebuild it (python -m milvus_rag ingest --rebuild) or set "
                       "MILVUS_COLLECTION to another name.")


def check_collection(client, name: str, embedding) -> None:
    """Refuse, before a search, a collection that cannot answer ``embedding``'s questions."""
    check_fields(client, name)
    if why := mismatch(client, name, embedding):
        raise RagError(f"Collection {name!r} {why}: re-embed it with python -m milvus_rag ingest "
                       "(same EMBEDDING_MODEL), or set EMBEDDING_MODEL to the model that built it.")


def sync(client, name: str, embedding, entries: list[Entry], bm25: bool = False,
         rebuild: bool = False, chunking: str = "sections") -> dict:  # fmt: skip
    """Make collection ``name`` hold exactly ``entries``, doing only the missing work: rows of
    changed or vanished entries deleted, new ones embedded and inserted in batches, so a second
    run does nothing and an interrupted one is completed by the next. Built with another model:
    re-embedded (``"rebuilt"`` says why); ``rebuild`` drops it first. The missing rows are all
    embedded before anything is written, so a failing model changes nothing. What built it is
    recorded, marked complete once every row is in."""
    wanted = entry_rows(entries)
    ids = sorted(row["id"] for row in wanted)
    fingerprint = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]
    report: dict = {"collection": name}
    exists = client.has_collection(name)
    if exists and not rebuild:
        check_fields(client, name, bm25)
        if why := mismatch(client, name, embedding):
            rebuild, report["rebuilt"] = True, why
    if exists and not rebuild:
        client.load_collection(name)
    present = existing_ids(client, name) if exists and not rebuild else set()
    stale = sorted(present - set(ids))
    missing = [row for row in wanted if row["id"] not in present]
    # Every vector first, before anything is written: a model or endpoint that fails midway
    # (a bad key, a rate limit, a wrong answer) leaves the collection as it was.
    vectors = embed_documents(embedding, [row["search_text"] for row in missing])
    if rebuild or not exists:
        create_collection(client, name, embedding.dim, bm25=bm25)
    built = {"model": embedding.name, "dim": embedding.dim, "chunking": chunking,
             "rows": len(wanted), "fingerprint": fingerprint}  # fmt: skip
    if stale or missing or built_by(client, name) != {**built, "complete": True}:
        _record(client, name, {**built, "complete": False})
        if stale:
            client.delete(collection_name=name, ids=stale)
        insert_rows(client, name, missing, vectors)
        _record(client, name, {**built, "complete": True})
    report.update(count=len({row["entry"] for row in wanted}), rows=count(client, name),
                  added=len(missing), removed=len(stale))  # fmt: skip
    return report
