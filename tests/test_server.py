"""The CLI and the notebook against a real Milvus gRPC server, not an in-process Milvus Lite file.

A ``milvus-lite server`` (the pure-Python Milvus Lite behind the same gRPC protocol as a Milvus
server) is started once for this module on 127.0.0.1 and a free port, with its data in a
temporary folder, and stopped at the end. ``MILVUS_URI=http://127.0.0.1:PORT`` then takes the
code paths a Milvus standalone or Zilliz Cloud would: network client, server-side collections,
consistency levels.
"""

import json
import subprocess

import nbformat
import numpy as np
import pytest
from helpers import execute_notebook, run_cli, source_cell, stdout_of

QUESTION = "How is data stored in milvus?"
FIRST_HIT = "Where does Milvus store data?"


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """``http://127.0.0.1:PORT`` of a ``milvus-lite server`` that runs for this module."""
    from milvus_rag.errors import RagError
    from milvus_rag.lite_server import start, stop

    root = tmp_path_factory.mktemp("milvus-server")
    try:
        process, uri = start(root / "data", root / "server.log")
    except RagError as err:
        pytest.fail(str(err))
    try:
        # The port is open: check the gRPC service itself answers before handing it out.
        from milvus_rag.store import connect

        client = connect(uri)
        client.list_collections()
        client.close()
        yield uri
    finally:
        stop(process)
        assert process.poll() is not None, f"milvus-lite server (pid {process.pid}) still runs"


@pytest.fixture()
def server_client(milvus_server):
    from milvus_rag.store import connect

    client = connect(milvus_server)
    yield client
    client.close()


def row_count(client, collection: str) -> int:
    return client.query(collection_name=collection, output_fields=["count(*)"])[0]["count(*)"]


def test_server_is_a_real_separate_process(milvus_server, server_client):
    """The URI is a network address, and collections made through it live in the server."""
    assert milvus_server.startswith("http://127.0.0.1:")
    server_client.create_collection("probe", dimension=4, consistency_level="Strong")
    try:
        assert "probe" in server_client.list_collections()
    finally:
        server_client.drop_collection("probe")


def last_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_cli_ingest_and_ask_against_the_server(milvus_server, server_client, docs_zip, tmp_path):
    """The CLI gives the same results with MILVUS_URI=http://... as with a Milvus Lite path."""
    common = {"MILVUS_DOCS_ZIP": str(docs_zip), "EMBEDDING_MODEL": "minilm"}
    server = {**common, "MILVUS_URI": milvus_server, "MILVUS_COLLECTION": "cli_server"}
    lite = {**common, "MILVUS_URI": str(tmp_path / "parity.db"), "MILVUS_COLLECTION": "cli_server"}

    ingested = last_json(run_cli("ingest", env=server))
    assert ingested == last_json(run_cli("ingest", env=lite))
    assert ingested["collection"].startswith("cli_server") and ingested["count"] > 0
    # The rows are on the server, seen from another client, and the collection is Strong.
    name = ingested["collection"]
    assert row_count(server_client, name) == ingested.get("rows", ingested["count"])
    assert server_client.describe_collection(name)["consistency_level_name"] == "Strong"

    answer = last_json(run_cli("ask", "--json", QUESTION, env=server))
    assert len(answer["hits"]) == 3
    assert FIRST_HIT in answer["hits"][0]["text"][:300]
    distances = [hit["distance"] for hit in answer["hits"]]
    assert distances == sorted(distances, reverse=True)
    assert "etcd" in answer["answer"]
    parity = last_json(run_cli("ask", "--json", QUESTION, env=lite))
    assert [hit["text"] for hit in answer["hits"]] == [hit["text"] for hit in parity["hits"]]
    assert distances == pytest.approx([hit["distance"] for hit in parity["hits"]], abs=1e-4)


def test_cli_ask_ingests_a_missing_collection_on_the_server(milvus_server, server_client, docs_zip):
    env = {
        "MILVUS_DOCS_ZIP": str(docs_zip),
        "MILVUS_URI": milvus_server,
        "EMBEDDING_MODEL": "minilm",
    }
    assert not any(c.startswith("cli_fresh") for c in server_client.list_collections())
    answer = last_json(run_cli("ask", "--json", "--collection", "cli_fresh", QUESTION, env=env))
    assert FIRST_HIT in answer["hits"][0]["text"][:300]
    made = [c for c in server_client.list_collections() if c.startswith("cli_fresh")]
    assert made and all(row_count(server_client, c) > 0 for c in made)


def test_search_right_after_insert_sees_every_row(server_client):
    """consistency_level="Strong": a count and a search issued right after each insert see it.

    The collection is made by the package (store.recreate_collection, as ingest does); rows and
    searches go through the client directly so that only the server's behaviour is tested.
    """
    from milvus_rag.store import recreate_collection

    name, dim = "strong_check", 384
    recreate_collection(server_client, name, dim)
    assert server_client.describe_collection(name)["consistency_level_name"] == "Strong"
    rng = np.random.default_rng(6)
    total = 0
    for round_ in range(5):
        vectors = rng.standard_normal((500, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = [
            {"id": total + i, "vector": vector.tolist(), "text": f"row {total + i}"}
            for i, vector in enumerate(vectors)
        ]
        result = server_client.insert(collection_name=name, data=rows)
        assert result["insert_count"] == len(rows)
        total += len(rows)
        assert row_count(server_client, name) == total, f"round {round_}"
        # The newest row is its own nearest neighbour (inner product 1 with itself).
        hits = server_client.search(
            collection_name=name,
            data=[vectors[-1].tolist()],
            limit=1,
            search_params={"metric_type": "IP", "params": {}},
            output_fields=["text"],
        )[0]
        assert hits[0]["id"] == total - 1, f"round {round_}: {hits}"
        assert hits[0]["entity"]["text"] == f"row {total - 1}"
        assert hits[0]["distance"] == pytest.approx(1.0, abs=1e-4)
    server_client.drop_collection(name)


def test_notebook_against_the_server(milvus_server, server_client, docs_zip, tmp_path):
    output = tmp_path / "executed.ipynb"
    execute_notebook(
        output,
        DOCS_SOURCE=str(docs_zip),
        MILVUS_URI=milvus_server,
        COLLECTION_NAME="papermill_server",
        EMBEDDING_MODEL="minilm",
        TOP_K=3,
    )
    executed = nbformat.read(output, as_version=4)
    assert stdout_of(source_cell(executed, "faq_pieces(docs_dir)")).strip() == "72"
    assert stdout_of(source_cell(executed, "milvus_client.insert(")).strip() == "72"
    hits = json.loads(stdout_of(source_cell(executed, "milvus_client.search(")))
    assert len(hits) == 3
    assert hits[0][0].strip().startswith(FIRST_HIT)
    answer = stdout_of(source_cell(executed, "chat.completions.create(")).strip()
    assert "etcd" in answer
    assert row_count(server_client, "papermill_server") == 72
