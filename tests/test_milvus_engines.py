"""What the Milvus engines of the tests do, through plain pymilvus calls on a real server.

``lite3`` (Milvus Lite 3.x, pure Python) and ``lite25`` (milvus-lite 2.5.1, Milvus's C++
engine) both serve Milvus's gRPC protocol (see tests/support/milvus_servers.py); so does
``standalone`` (Milvus 2.3.5 standalone), run by tests/standalone/rehearse.py in a private
network. Each test runs against each engine of ``ENGINES`` and pins what the project relies
on, and where the engines differ, what each one does (tests/support/ENGINES.md has the
table). A server is started once per engine for this module; the first lite25 run builds its
virtual environment (pip, about 200 MB).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from support.milvus_rows import count
from support.milvus_servers import (
    ENGINES,
    ServerError,
    group_pids,
    listening_ports,
    running,
    start,
)

pytestmark = pytest.mark.slow


import pymilvus  # noqa: E402
from pymilvus import (  # noqa: E402
    AnnSearchRequest,
    DataType,
    Function,
    FunctionType,
    MilvusClient,
    MilvusException,
    RRFRanker,
    WeightedRanker,
)

STOP_WORDS = ["the", "is", "a", "of"]
ANALYZER = {
    "tokenizer": "standard",
    "filter": ["lowercase", {"type": "stop", "stop_words": STOP_WORDS}],
}
DIM = 8


def unit(*values: float) -> list[float]:
    return [float(v) for v in values] + [0.0] * (DIM - len(values))


ROWS = [
    {"id": 1, "doc": 10, "text": "The Milvus vector database stores data", "dense": unit(1)},
    {"id": 2, "doc": 10, "text": "Milvus is a database of vectors", "dense": unit(0.9, 0.1)},
    {"id": 3, "doc": 20, "text": "Bananas are yellow fruit", "dense": unit(0, 1)},
    {
        "id": 4,
        "doc": 30,
        "text": "Data storage in object storage like MinIO",
        "dense": unit(0.7, 0, 0.7),
    },
]
QUERY = ROWS[0]["dense"]  # inner products: id 1 -> 1.0, 2 -> 0.9, 4 -> 0.7, 3 -> 0.0
IP = {"metric_type": "IP"}
BM25 = {"metric_type": "BM25"}


def schema(client: MilvusClient, bm25: bool):
    """id, doc (INT64, for group_by), text (analyzed), dense; with ``bm25`` a sparse BM25 field."""
    s = client.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("doc", DataType.INT64)
    s.add_field(
        "text", DataType.VARCHAR, max_length=1000, enable_analyzer=True, analyzer_params=ANALYZER
    )
    s.add_field("dense", DataType.FLOAT_VECTOR, dim=DIM)
    if bm25:
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=["sparse"],
            )
        )
    return s


def index_params(client: MilvusClient, dense_index: str = "FLAT", bm25: bool = False):
    params = client.prepare_index_params()
    extra = {"params": {"M": 8, "efConstruction": 64}} if dense_index == "HNSW" else {}
    params.add_index(field_name="dense", index_type=dense_index, metric_type="IP", **extra)
    if bm25:
        params.add_index(
            field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25"
        )
    return params


def make(client: MilvusClient, name: str, bm25: bool = False, dense_index: str = "FLAT") -> str:
    """A collection of ROWS, made afresh (Strong consistency)."""
    client.drop_collection(name)
    client.create_collection(
        name,
        schema=schema(client, bm25),
        index_params=index_params(client, dense_index, bm25),
        consistency_level="Strong",
    )
    client.insert(name, ROWS)
    return name


def ids(results) -> list[int]:
    return [hit["id"] for hit in results[0]]


def scores(results) -> list[float]:
    return [hit["distance"] for hit in results[0]]


@pytest.fixture(scope="module", params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    yield from running(engine, tmp_path_factory.mktemp(engine))


@pytest.fixture(scope="module")
def client(server):
    client = MilvusClient(uri=server.uri)
    yield client
    client.close()


ONE_AT_A_TIME = (  # the standalone's embedded etcd always takes 127.0.0.1:2380
    "one standalone at a time per network: the module's server holds its etcd port 2380 "
    "(test_server.py restarts and kills a standalone)"
)
NO_BM25 = "Milvus 2.3 has no BM25 (test_a_bm25_collection_on_milvus_2_3 pins the refusal)"


def skip_on_standalone(engine: str, why: str) -> None:
    if engine == "standalone":
        pytest.skip(why)


@pytest.fixture(scope="module")
def docs(engine, client) -> str:
    """ROWS with a BM25 function on text (none on Milvus 2.3); tests must not change it."""
    return make(client, "docs", bm25=engine != "standalone")


def hybrid(client: MilvusClient, name: str, ranker, text: str = "storage data"):
    requests = [
        AnnSearchRequest(data=[QUERY], anns_field="dense", param=IP, limit=4),
        AnnSearchRequest(data=[text], anns_field="sparse", param=BM25, limit=4),
    ]
    return client.hybrid_search(name, requests, ranker=ranker, limit=4)


# --- the servers themselves -----------------------------------------------------------------


def test_the_started_process_listens_on_the_uri_port(server):
    assert server.uri == f"http://127.0.0.1:{server.port}"
    if server.engine == "standalone":  # its Go server, a child of the launcher, has many
        ports = {p for pid in group_pids(server.process.pid) for p in listening_ports(pid)}
        assert server.port in ports and {2379, 2380} <= ports
    else:
        assert listening_ports(server.process.pid) == [server.port]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5):
        pass


def test_server_version(engine, client):
    if engine == "lite3":
        assert client.get_server_version().startswith("milvus_lite-3.")
    elif engine == "standalone":
        assert client.get_server_version() == "v2.3.5-lite"
    else:  # the C++ milvus-lite does not implement GetVersion: a bare gRPC error
        with pytest.raises(grpc.RpcError) as raised:
            client.get_server_version()
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_failed_start_raises_with_the_end_of_the_log(engine, server, tmp_path):
    """A second server on a data folder in use does not start, and says why."""
    skip_on_standalone(engine, ONE_AT_A_TIME)
    expected = {"lite3": "DataDirLockedError", "lite25": "in use by another lite25 server"}
    with pytest.raises(ServerError, match=expected[engine]):
        start(engine, server.data_dir, tmp_path / "second.log", timeout_s=60)
    if engine == "lite25":  # the C++ server's own complaint reaches the message too
        (tmp_path / "bad" / "milvus.db").mkdir(parents=True)  # a folder where the file goes
        with pytest.raises(ServerError, match="(?s)exited with code .*Open storage failed"):
            start(engine, tmp_path / "bad", tmp_path / "bad.log", timeout_s=60)


def test_data_survives_a_restart_and_stop_is_clean(engine, tmp_path):
    skip_on_standalone(engine, ONE_AT_A_TIME)
    with start(engine, tmp_path / "data", tmp_path / "1.log") as first:
        c = MilvusClient(uri=first.uri)
        c.create_collection("kept", dimension=DIM, metric_type="IP", consistency_level="Strong")
        c.insert("kept", [{"id": 7, "vector": QUERY}])
        c.close()
    assert first.process.returncode == 0  # the lifeline's release is a clean shut-down
    with start(engine, tmp_path / "data", tmp_path / "2.log") as second:
        c = MilvusClient(uri=second.uri)
        assert c.has_collection("kept") and count(c, "kept") == 1
        c.close()
    assert second.stop() == 0  # a second stop is harmless


def test_a_server_ends_when_the_process_that_started_it_dies(engine, tmp_path):
    """Even after SIGKILL, which runs no clean-up: the kernel closes the lifeline. (The
    standalone has none: it dies with the PID namespace that rehearse.py makes.)"""
    skip_on_standalone(engine, ONE_AT_A_TIME)
    code = (
        "import sys, time\n"
        "from support.milvus_servers import start\n"
        f"server = start({engine!r}, {str(tmp_path / 'data')!r}, {str(tmp_path / 'log')!r})\n"
        "print(server.process.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        pid = int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 15
    while running_pid(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running_pid(pid), f"{engine} server {pid} outlived its parent"


def running_pid(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- collections, indexes, search -----------------------------------------------------------


@pytest.mark.parametrize("index_type", ["FLAT", "IVF_FLAT", "AUTOINDEX", "HNSW"])
def test_dense_index_types(engine, client, index_type):
    accepted = {
        "lite3": {"FLAT", "IVF_FLAT", "AUTOINDEX", "HNSW"},
        "lite25": {"FLAT", "IVF_FLAT", "AUTOINDEX"},
        "standalone": {"FLAT", "AUTOINDEX", "HNSW"},  # IVF_FLAT: "nlist out of range" (no nlist)
    }
    name = f"index_{index_type.lower()}"
    try:
        if index_type in accepted[engine]:
            make(client, name, dense_index=index_type)
            assert ids(client.search(name, data=[QUERY], anns_field="dense", limit=2)) == [1, 2]
            assert client.describe_index(name, "dense")["index_type"] == index_type
        else:
            refusal = {"lite25": "local mode only support FLAT IVF_FLAT AUTOINDEX",
                       "standalone": r"nlist out of range: \[1, 65536\]"}[engine]  # fmt: skip
            with pytest.raises(MilvusException, match=refusal):
                make(client, name, dense_index=index_type)
            # A trap: the collection was made before its index failed, and stays.
            assert client.has_collection(name)
    finally:
        client.drop_collection(name)


def test_dense_only_collection(client):
    """No function, no sparse field: what the project's default collection looks like."""
    name = make(client, "dense_only")
    assert ids(client.search(name, data=[QUERY], anns_field="dense", limit=3)) == [1, 2, 4]
    assert scores(client.search(name, data=[QUERY], anns_field="dense", limit=3)) == pytest.approx(
        [1.0, 0.9, 0.7]
    )
    filtered = client.search(name, data=[QUERY], anns_field="dense", limit=3, filter="doc >= 20")
    assert ids(filtered) == [4, 3]
    hit = client.search(
        name, data=[QUERY], anns_field="dense", limit=1, output_fields=["text", "doc"]
    )[0][0]
    assert hit["entity"] == {"text": ROWS[0]["text"], "doc": 10}
    client.drop_collection(name)
    assert not client.has_collection(name)


def test_group_by_an_int64_field(engine, client, docs):
    grouped = client.search(
        docs, data=[QUERY], anns_field="dense", limit=3, group_by_field="doc", search_params=IP
    )
    if engine == "standalone":  # Milvus 2.3 ignores group_by_field, without an error
        assert ids(grouped) == [1, 2, 4]
    else:
        assert ids(grouped) == [1, 4, 3]  # one hit per doc
    two = client.search(
        docs,
        data=[QUERY],
        anns_field="dense",
        limit=3,
        group_by_field="doc",
        group_size=2,
        search_params=IP,
    )
    expected = {"lite3": [1, 2, 4, 3], "lite25": [1, 4, 3], "standalone": [1, 2, 4]}
    assert ids(two) == expected[engine]


def test_bm25_search_and_its_score_sign(engine, client, docs):
    """Same ranking and nearly the same magnitudes, opposite signs: lite3's are negative."""
    skip_on_standalone(engine, NO_BM25)
    results = client.search(
        docs, data=["storage data"], anns_field="sparse", limit=4, search_params=BM25
    )
    assert ids(results) == [4, 1]  # best first in both; only rows with a query term
    sign = {"lite3": -1, "lite25": 1}[engine]
    assert [sign * s for s in scores(results)] == pytest.approx([2.05, 0.68], rel=0.03)


def test_bm25_analyzer_lowercases_and_drops_stop_words(engine, client, docs):
    skip_on_standalone(engine, NO_BM25)
    assert ids(
        client.search(docs, data=["MILVUS"], anns_field="sparse", limit=4, search_params=BM25)
    ) == [2, 1]
    assert (
        ids(
            client.search(docs, data=["the is a"], anns_field="sparse", limit=4, search_params=BM25)
        )
        == []
    )


def test_hybrid_search_with_rrf_is_the_same_on_both(engine, client, docs):
    if engine == "standalone":  # Milvus 2.3 has no hybrid_search: a bare gRPC error
        with pytest.raises(grpc.RpcError) as raised:
            client.hybrid_search(docs, [AnnSearchRequest([QUERY], "dense", IP, 4)], RRFRanker(60))
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        return
    results = hybrid(client, docs, RRFRanker(60))
    assert ids(results) == [1, 4, 2, 3]
    # dense ranks 1, 2, 3, 4 = ids 1, 2, 4, 3; BM25 ranks 1, 2 = ids 4, 1
    expected = [1 / 61 + 1 / 62, 1 / 63 + 1 / 61, 1 / 62, 1 / 64]
    assert scores(results) == pytest.approx(expected, rel=1e-5)
    with_fields = client.hybrid_search(
        docs,
        [AnnSearchRequest(data=[QUERY], anns_field="dense", param=IP, limit=4, expr="doc == 30")],
        ranker=RRFRanker(60),
        limit=4,
        output_fields=["text"],
    )
    assert [(hit["id"], hit["entity"]["text"]) for hit in with_fields[0]] == [(4, ROWS[3]["text"])]


def test_hybrid_search_with_weighted_ranker(engine, client, docs):
    """lite3 scales BM25 scores with 2/pi*atan(s); lite25 with 1 - 2/pi*atan(s), which
    puts the best BM25 match last, and it also ignores norm_score=False."""
    skip_on_standalone(engine, NO_BM25)
    bm25 = {4: 2.05, 1: 0.68}  # raw BM25 scores (about; see the test above)

    def scaled(s: float) -> float:
        normal = 2 / math.pi * math.atan(s)
        return normal if engine == "lite3" else 1 - normal

    bm25_only = hybrid(client, docs, WeightedRanker(0.0, 1.0))
    assert ids(bm25_only)[:2] == {"lite3": [4, 1], "lite25": [1, 4]}[engine]
    assert scores(bm25_only)[:2] == pytest.approx(
        [scaled(bm25[i]) for i in ids(bm25_only)[:2]], abs=0.01
    )
    dense_only = hybrid(client, docs, WeightedRanker(1.0, 0.0))  # IP: 0.5 + atan(s)/pi on both
    assert scores(dense_only) == pytest.approx(
        [0.5 + math.atan(s) / math.pi for s in (1.0, 0.9, 0.7, 0.0)], abs=1e-4
    )
    raw = hybrid(client, docs, WeightedRanker(1.0, 0.0, norm_score=False))
    expected_raw = {"lite3": [1.0, 0.9, 0.7, 0.0], "lite25": scores(dense_only)}
    assert scores(raw) == pytest.approx(expected_raw[engine], abs=1e-4)


def test_query_iterator(client, docs):
    iterator = client.query_iterator(docs, batch_size=2, filter="id >= 0", output_fields=["id"])
    batches = []
    while batch := iterator.next():
        batches.append(sorted(row["id"] for row in batch))
    iterator.close()
    assert batches == [[1, 2], [3, 4]]


def test_bm25_output_field_in_query_results(engine, client, docs):
    skip_on_standalone(engine, NO_BM25)
    row = client.query(docs, filter="id == 1", output_fields=["sparse"])[0]
    if engine == "lite3":
        assert len(row["sparse"]) == 5  # milvus vector database stores data
    else:  # lite25 leaves the function's output out, without an error
        assert row == {"id": 1}


def test_describe_collection(engine, client, docs):
    described = client.describe_collection(docs)
    fields = {f["name"]: f for f in described["fields"]}
    assert list(fields)[:4] == ["id", "doc", "text", "dense"]
    assert (
        fields["dense"]["type"] == DataType.FLOAT_VECTOR and fields["dense"]["params"]["dim"] == DIM
    )
    assert fields["text"]["params"]["enable_analyzer"] == "true"  # a string, on every engine
    assert json.loads(fields["text"]["params"]["analyzer_params"]) == ANALYZER  # spacing differs
    functions = [f["name"] for f in described["functions"]]
    assert functions == {"lite3": ["bm25"], "lite25": [], "standalone": []}[engine]
    if engine == "standalone":  # 2.3 keeps the analyzer's parameters, but has no BM25 field
        assert "sparse" not in fields
        return
    assert fields["sparse"]["type"] == DataType.SPARSE_FLOAT_VECTOR
    assert fields["sparse"].get("is_function_output") is True


def test_describe_index_row_counts(engine, client, docs):
    described = client.describe_index(docs, "dense")
    assert (described["index_type"], described["metric_type"]) == ("FLAT", "IP")
    assert described["indexed_rows"] == {"lite3": len(ROWS), "lite25": 0, "standalone": 0}[engine]


def test_search_with_another_metric_than_the_index(engine, client, docs):
    l2 = {"metric_type": "L2"}
    if engine == "lite3":  # computes L2 on the fly
        results = client.search(docs, data=[QUERY], anns_field="dense", limit=2, search_params=l2)
        assert scores(results) == pytest.approx([0.0, 0.02])
    else:
        with pytest.raises(MilvusException, match="metric type not match"):
            client.search(docs, data=[QUERY], anns_field="dense", limit=2, search_params=l2)
    if engine == "standalone":
        return  # no BM25 field
    refusal = {"lite3": "requires metric BM25", "lite25": "metric type not match"}[engine]
    with pytest.raises(MilvusException, match=refusal):
        client.search(docs, data=["milvus"], anns_field="sparse", limit=2, search_params=IP)


# --- writes, consistency, load state ---------------------------------------------------------


def test_inserted_rows_show_at_once_even_with_bounded_consistency(engine, client):
    """Not on a real server: there a Bounded read right after an insert misses the rows, a
    Strong one sees them, and collection statistics count only flushed rows (index.count's
    reasons)."""
    client.drop_collection("bounded")
    client.create_collection("bounded", dimension=DIM, consistency_level="Bounded")
    client.insert("bounded", [{"id": i, "vector": QUERY} for i in range(5)])
    seen = 0 if engine == "standalone" else 5
    assert count(client, "bounded") == seen
    assert len(client.search("bounded", data=[QUERY], limit=10)[0]) == seen
    assert count(client, "bounded", consistency_level="Strong") == 5
    stats = client.get_collection_stats("bounded")["row_count"]
    assert stats == (0 if engine == "standalone" else 5)
    client.drop_collection("bounded")


def bm25_ids(client: MilvusClient, name: str, text: str) -> list[int]:
    return ids(client.search(name, data=[text], anns_field="sparse", limit=4, search_params=BM25))


def test_delete_upsert_and_empty_text(engine, client):
    bm25 = engine != "standalone"
    name = make(client, "writes", bm25=bm25)
    client.delete(name, ids=[1, 2])
    assert count(client, name) == 2
    assert not bm25 or bm25_ids(client, name, "milvus") == []
    client.upsert(name, [ROWS[0]])
    assert count(client, name) == 3 and (not bm25 or bm25_ids(client, name, "milvus") == [1])
    client.insert(name, [{"id": 9, "doc": 90, "text": "", "dense": unit(0, 0, 0, 1)}])
    assert count(client, name) == 4
    client.drop_collection(name)


def test_load_state_and_search_of_a_released_collection(engine, client):
    name = make(client, "released")
    assert client.get_load_state(name)["state"] == pymilvus.client.types.LoadState.Loaded
    client.release_collection(name)
    assert client.get_load_state(name)["state"] == pymilvus.client.types.LoadState.NotLoad
    if engine != "lite25":
        with pytest.raises(MilvusException, match="call load|collection not loaded"):
            client.search(name, data=[QUERY], anns_field="dense", limit=1)
    else:  # lite25 searches it anyway
        assert ids(client.search(name, data=[QUERY], anns_field="dense", limit=1)) == [1]
    client.load_collection(name)
    client.drop_collection(name)
    assert client.get_load_state(name)["state"] == pymilvus.client.types.LoadState.NotExist


def test_quick_setup_collection(client):
    client.drop_collection("quick")
    client.create_collection("quick", dimension=DIM, metric_type="IP", consistency_level="Strong")
    described = client.describe_collection("quick")
    fields = [(f["name"], f["type"], f["params"]) for f in described["fields"]]
    assert fields == [("id", DataType.INT64, {}), ("vector", DataType.FLOAT_VECTOR, {"dim": DIM})]
    assert described["enable_dynamic_field"] is True and described["auto_id"] is False
    index = client.describe_index("quick", client.list_indexes("quick")[0])
    assert (index["index_type"], index["metric_type"]) == ("AUTOINDEX", "IP")
    client.insert("quick", [{"id": 1, "vector": QUERY, "extra": "kept in the dynamic field"}])
    hit = client.search("quick", data=[QUERY], limit=1, output_fields=["extra"])[0][0]
    assert (hit["id"], hit["distance"], hit["entity"]) == (
        1,
        1.0,
        {"extra": "kept in the dynamic field"},
    )
    client.drop_collection("quick")


def test_collection_properties_are_kept_or_refused_as_index_expects(engine, client):
    """What index._record relies on, and what the fast tests' stand-in (test_index.py's
    _NoProperties) copies: lite3 keeps a property; the C++ milvus-lite refuses to alter one
    with an error whose text names UNIMPLEMENTED."""
    name = make(client, "props")
    if engine in ("lite3", "standalone"):  # (on the standalone, until a crash: test_server.py)
        client.alter_collection_properties(name, {"milvus_rag.test": "kept"})
        assert client.describe_collection(name)["properties"]["milvus_rag.test"] == "kept"
    else:
        with pytest.raises(Exception) as raised:
            client.alter_collection_properties(name, {"milvus_rag.test": "kept"})
        assert "UNIMPLEMENTED" in str(raised.value)


def test_a_bm25_collection_on_milvus_2_3(engine, client):
    """Milvus 2.3 refuses the BM25 field's index (type 104, the sparse vector), after making
    the collection, which stays: the project asks the version first (index.capabilities)."""
    if engine != "standalone":
        pytest.skip("Milvus 2.3 only")
    with pytest.raises(MilvusException, match="create index on 104 field is not supported"):
        make(client, "bm25_on_23", bm25=True)
    assert client.has_collection("bm25_on_23")
    client.drop_collection("bm25_on_23")
