"""Milvus Lite embedded (a .db path) vs the same engine behind its gRPC server (``milvus-lite server``).

    python benchmarks/bench_milvus_lite.py                       # 10k, 100k and 1M vectors
    python benchmarks/bench_milvus_lite.py --sizes 10000,100000  # or --skip-1m
    python benchmarks/bench_milvus_lite.py --sizes 1000000 --max-case-s 3600   # give 1M time

Every size and mode runs in fresh child processes (so memory figures do not carry over). The
first ("build") creates the tutorial's collection (quick setup: AUTOINDEX, IP metric,
consistency "Strong") and measures, on seeded random 384-d unit vectors:

- insert rate, batched (``--batch`` rows per ``insert`` call; making the vectors is not timed);
- a ``count(*)`` right after the last insert (it must see every row: consistency "Strong");
- search latency right after the insert (rows still in the memtable or in unindexed segments);
- ``flush``, then the wait until the background index build has written an index file for every
  data file (AUTOINDEX is HNSW when faiss-cpu is installed, brute force otherwise);
- search p50 / p95 over ``--queries`` single-vector top-``--top-k`` searches, recall@k against
  exact numpy results, and the throughput of one call carrying all the queries;
- resident memory of the process that holds the data: this child for embedded (VmRSS after the
  searches minus the baseline right after creating the collection), the server process for gRPC
  (read from /proc/PID/status; its baseline is taken the same way), and the peak (VmHWM);
- the on-disk size of the data folder once closed.

The second ("reopen") opens the same folder again, as every ``python -m milvus_rag ask`` does,
and times opening, ``load_collection`` and the first search, with the RSS once loaded.

The server mode uses ``support.milvus_servers`` (the tests' support code, under ``tests/``):
engine ``lite3``, the same milvus-lite as the embedded mode, run as ``milvus-lite server``.

Figures only: nothing here asserts a timing. A size whose projected time (linear from the
previous size) exceeds ``--max-case-s``, or that runs past it, is skipped with the reason printed;
those are the only skips. Any other failure of a case (a child process that exits non-zero, a
server that does not start or stop cleanly) stops the benchmark with the error and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    dir_size_bytes,
    latency_summary_ms,
    markdown_table,
    mib,
    print_machine,
    proc_status_kib,
)
from support.milvus_servers import start as start_server  # noqa: E402  (tests/, via _common)

COLLECTION = "bench"
MODES = ("embedded", "grpc")
QUERY_STREAM = 10**6  # the seed stream of the query vectors (data batches use 0, 1, 2, ...)
SERVER_ENGINE = "lite3"  # support.milvus_servers' name for `milvus-lite server` of this venv


class CaseFailed(RuntimeError):
    """A case that failed (not one skipped by a --max-case-s limit): the benchmark stops."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def unit_vectors(seed: int, stream: int, n: int, dim: int):
    """``n`` seeded random unit vectors; ``stream`` makes each batch independent and repeatable."""
    import numpy as np

    rng = np.random.default_rng([seed, stream])
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def search_kwargs(args: argparse.Namespace) -> dict:
    """``limit`` and, with ``--ef``, the HNSW search breadth (the server's default is 64)."""
    kwargs = {"collection_name": COLLECTION, "limit": args.top_k}
    if args.ef:
        kwargs["search_params"] = {"params": {"ef": args.ef}}
    return kwargs


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError):
        return None


def unindexed_files(data_dir: Path) -> int:
    """Data files of the collection that have no vector index file beside them yet."""
    missing = 0
    for data_file in data_dir.glob(f"collections/{COLLECTION}/partitions/*/data/data_*.parquet"):
        indexes = data_file.parent.parent / "indexes"
        if not any(indexes.glob(f"{data_file.stem}.vector.*.idx")):
            missing += 1
    return missing


def wait_for_indexes(data_dir: Path, timeout_s: float) -> float:
    """Seconds until every data file has its index file and that holds for a second."""
    start = time.perf_counter()
    stable_since = None
    while time.perf_counter() - start < timeout_s:
        if unindexed_files(data_dir) == 0:
            stable_since = stable_since or time.perf_counter()
            if time.perf_counter() - stable_since >= 1.0:
                return stable_since - start
        else:
            stable_since = None
        time.sleep(0.25)
    raise TimeoutError(f"index files still missing after {timeout_s:.0f} s")


def open_holder(mode: str, workdir: Path):
    """(client, uri, data_dir, pid holding the data, server process or None)."""
    from pymilvus import MilvusClient

    if mode == "embedded":
        data_dir = workdir / "embedded.db"
        client = MilvusClient(uri=str(data_dir))
        return client, str(data_dir), data_dir, os.getpid(), None
    data_dir = workdir / "server-data"
    server = start_server(SERVER_ENGINE, data_dir, workdir / "server.log")
    try:
        client = MilvusClient(uri=server.uri)
    except BaseException:
        server.stop()
        raise
    return client, server.uri, data_dir, server.process.pid, server


def close_holder(client, uri: str, server) -> None:
    client.close()
    if server is not None:
        code = server.stop()
        if code != 0:
            raise CaseFailed(f"the {server.engine} server exited with code {code} on stop")
    else:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


def run_build(mode: str, size: int, args: argparse.Namespace, workdir: Path) -> dict:
    """Create, insert, count, search fresh, flush, wait for indexes, search; in this process."""
    rss_pre = proc_status_kib(os.getpid(), "VmRSS")
    client, uri, data_dir, holder_pid, server = open_holder(mode, workdir)
    try:
        client.create_collection(
            collection_name=COLLECTION,
            dimension=args.dim,
            metric_type="IP",
            consistency_level="Strong",
        )
        rss_base = proc_status_kib(holder_pid, "VmRSS")

        insert_s = 0.0
        starts = range(0, size, args.batch)
        for number, start in enumerate(starts):
            count = min(args.batch, size - start)
            vectors = unit_vectors(args.seed, number, count, args.dim)
            rows = [{"id": start + i, "vector": vectors[i]} for i in range(count)]
            _, seconds = timed(client.insert, collection_name=COLLECTION, data=rows)
            insert_s += seconds
            if number % max(1, len(starts) // 5) == 0 or start + count == size:
                log(f"  {mode} {size:,}: inserted {start + count:,} in {insert_s:.1f} s")

        result, count_s = timed(
            client.query, collection_name=COLLECTION, output_fields=["count(*)"]
        )
        counted = result[0]["count(*)"]

        queries = unit_vectors(args.seed, QUERY_STREAM, args.queries, args.dim)
        fresh = []
        for query in queries[: args.fresh_queries]:
            _, seconds = timed(client.search, data=[query], **search_kwargs(args))
            fresh.append(seconds)

        _, flush_s = timed(client.flush, COLLECTION)
        log(f"  {mode} {size:,}: flushed in {flush_s:.1f} s; waiting for the index build")
        index_s = wait_for_indexes(data_dir, args.max_case_s)
        log(f"  {mode} {size:,}: indexes written {index_s:.1f} s after the flush")

        for query in queries[:5]:  # warm-up
            client.search(data=[query], **search_kwargs(args))
        latencies, hit_ids = [], []
        for query in queries:
            hits, seconds = timed(client.search, data=[query], **search_kwargs(args))
            latencies.append(seconds)
            hit_ids.append([hit["id"] for hit in hits[0]])
        _, batch_s = timed(client.search, data=list(queries), **search_kwargs(args))
        rss_after = proc_status_kib(holder_pid, "VmRSS")
        rss_peak = proc_status_kib(holder_pid, "VmHWM")
        client_rss = proc_status_kib(os.getpid(), "VmRSS") if server else None
    finally:
        close_holder(client, uri, server)

    return {
        "insert_s": round(insert_s, 3),
        "insert_per_s": round(size / insert_s, 1),
        "count_after_insert": counted,
        "count_s": round(count_s, 3),
        "fresh_search": latency_summary_ms(fresh),
        "flush_s": round(flush_s, 3),
        "index_wait_s": round(index_s, 1),
        "search": latency_summary_ms(latencies),
        "hit_ids": hit_ids,
        "batch_search_s": round(batch_s, 3),
        "batch_qps": round(len(queries) / batch_s, 1),
        "holder": "this process" if server is None else "server process",
        "rss_pre_open_mib": mib(rss_pre) if server is None else None,
        "rss_base_mib": mib(rss_base),
        "rss_after_mib": mib(rss_after),
        "rss_delta_mib": mib(rss_after - rss_base) if rss_after and rss_base else None,
        "rss_peak_delta_mib": mib(rss_peak - rss_base) if rss_peak and rss_base else None,
        "client_rss_mib": mib(client_rss),
        "disk_mib": round(dir_size_bytes(data_dir) / 2**20, 1),
    }


def run_reopen(mode: str, size: int, args: argparse.Namespace, workdir: Path) -> dict:
    """Open the folder again (as each CLI run does), load, search; in this process."""
    rss_pre = proc_status_kib(os.getpid(), "VmRSS")
    (client, uri, _, holder_pid, server), open_s = timed(open_holder, mode, workdir)
    try:
        _, load_s = timed(client.load_collection, COLLECTION)
        queries = unit_vectors(args.seed, QUERY_STREAM, args.queries, args.dim)
        _, first_s = timed(client.search, data=[queries[0]], **search_kwargs(args))
        later = [timed(client.search, data=[q], **search_kwargs(args))[1] for q in queries[1:51]]
        rss = proc_status_kib(holder_pid, "VmRSS")
        peak = proc_status_kib(holder_pid, "VmHWM")
    finally:
        close_holder(client, uri, server)
    return {
        "open_s": round(open_s, 2),
        "load_s": round(load_s, 2),
        "first_search_ms": round(first_s * 1000, 1),
        "search": latency_summary_ms(later),
        "rss_mib": mib(rss),
        "rss_delta_mib": mib(rss - rss_pre) if server is None and rss and rss_pre else None,
        "rss_peak_mib": mib(peak),
    }


def exact_top_k(size: int, args: argparse.Namespace):
    """The true top-k ids (inner product) of the queries, streamed over the data batches."""
    import numpy as np

    queries = unit_vectors(args.seed, QUERY_STREAM, args.queries, args.dim)
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    for number, start in enumerate(range(0, size, args.batch)):
        count = min(args.batch, size - start)
        scores = queries @ unit_vectors(args.seed, number, count, args.dim).T
        ids = np.broadcast_to(np.arange(start, start + count), scores.shape)
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_ids = np.concatenate([best_ids, ids], axis=1)
        keep = np.argsort(-all_scores, axis=1)[:, : args.top_k]
        best_scores = np.take_along_axis(all_scores, keep, axis=1)
        best_ids = np.take_along_axis(all_ids, keep, axis=1)
    return best_ids


def recall(hit_ids: list[list[int]], truth) -> float:
    found = sum(
        len(set(hits) & set(true.tolist())) for hits, true in zip(hit_ids, truth, strict=True)
    )
    return found / (len(truth) * truth.shape[1])


def run_child(phase: str, mode: str, size: int, args, workdir: Path, timeout_s: float) -> dict:
    """One phase in a fresh interpreter (own process group, so a timeout kills its server too)."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--case",
        mode,
        "--phase",
        phase,
        "--sizes",
        str(size),
        "--case-dir",
        str(workdir),
    ]
    for option in ("dim", "batch", "queries", "fresh_queries", "top_k", "seed", "ef", "max_case_s"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return {"skipped": f"{phase} did not finish within {timeout_s:.0f} s (killed)"}
    if child.returncode != 0 or not out.strip():
        raise CaseFailed(
            f"{phase} of {mode} {size:,} failed (exit code {child.returncode}; its error is "
            "printed above)"
        )
    return json.loads(out.strip().splitlines()[-1])


def run_size_mode(mode: str, size: int, args, truth) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{mode}-{size}-", dir=args.workdir))
    started = time.perf_counter()
    try:
        result = {"mode": mode, "size": size}
        build = run_child("build", mode, size, args, workdir, args.max_case_s)
        result.update(build)
        if "skipped" in build:
            return result
        remaining = args.max_case_s - (time.perf_counter() - started)
        reopen = run_child("reopen", mode, size, args, workdir, max(remaining, 60))
        result["reopen"] = reopen
        result["recall"] = round(recall(result.pop("hit_ids"), truth), 3)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        result["load_average"] = load_average()
        return result
    finally:
        if not args.keep_data:
            shutil.rmtree(workdir, ignore_errors=True)


def report(results: list[dict], args) -> None:
    done = [r for r in results if "skipped" not in r]
    k = args.top_k
    print(f"\n## Write path ({args.dim}-d unit vectors, batches of {args.batch:,})\n")
    print(
        markdown_table(
            [
                "mode",
                "vectors",
                "insert (vec/s)",
                "count(*) right after insert",
                "search right after insert, p50 (ms)",
                "flush (s)",
                "index build after flush (s)",
            ],
            [
                [
                    r["mode"],
                    r["size"],
                    r["insert_per_s"],
                    r["count_after_insert"],
                    r["fresh_search"]["p50_ms"],
                    r["flush_s"],
                    r["index_wait_s"],
                ]
                for r in done
            ],
        )
    )
    ef = args.ef or "64 (default)"
    print(f"\n## Read path ({args.queries} single-vector top-{k} searches once indexed, ef {ef})\n")
    print(
        markdown_table(
            [
                "mode",
                "vectors",
                "search p50 (ms)",
                "search p95 (ms)",
                f"recall@{k}",
                f"{args.queries} queries in one call (QPS)",
                "reopen: open (s)",
                "reopen: load (s)",
                "reopen: first search (ms)",
            ],
            [
                [
                    r["mode"],
                    r["size"],
                    r["search"]["p50_ms"],
                    r["search"]["p95_ms"],
                    r["recall"],
                    r["batch_qps"],
                    r["reopen"].get("open_s"),
                    r["reopen"].get("load_s"),
                    r["reopen"].get("first_search_ms"),
                ]
                for r in done
            ],
        )
    )
    print("\n## Memory and disk\n")
    print(
        markdown_table(
            [
                "mode",
                "vectors",
                "process holding the data",
                "RSS after searches (MiB)",
                "RSS delta (MiB)",
                "peak RSS delta (MiB)",
                "RSS after reopen + load (MiB)",
                "on disk (MiB)",
                "wall (s)",
                "load avg at end",
            ],
            [
                [
                    r["mode"],
                    r["size"],
                    r["holder"],
                    r["rss_after_mib"],
                    r["rss_delta_mib"],
                    r["rss_peak_delta_mib"],
                    r["reopen"].get("rss_mib"),
                    r["disk_mib"],
                    r["wall_s"],
                    r["load_average"],
                ]
                for r in done
            ],
        )
    )
    skipped = [(r, r["skipped"]) for r in results if "skipped" in r]
    skipped += [(r, f"reopen: {r['reopen']['skipped']}") for r in done if "skipped" in r["reopen"]]
    if skipped:
        print("\n## Skipped (over --max-case-s)\n")
        for r, reason in skipped:
            print(f"- {r['mode']} {r['size']:,}: {reason}")
    for r in done:
        if r["count_after_insert"] != r["size"]:
            print(
                f"\nNOTE {r['mode']} {r['size']:,}: count(*) right after the insert saw "
                f"{r['count_after_insert']:,} of {r['size']:,} rows"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated counts")
    parser.add_argument("--skip-1m", action="store_true", help="leave out sizes of 1,000,000+")
    parser.add_argument("--modes", default=",".join(MODES), help="embedded,grpc")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=5000, help="rows per insert call")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--fresh-queries", type=int, default=10, help="searches before flush")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--ef", type=int, default=0, help="HNSW search ef (0: server default)")
    parser.add_argument(
        "--max-case-s",
        type=float,
        default=1200,
        help="skip a size/mode projected to take longer (s), kill one that does",
    )
    parser.add_argument("--workdir", default=None, help="where data folders go (default: tmp)")
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--json", dest="json_out", default=None, help="also write results here")
    parser.add_argument("--case", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=("build", "reopen"), help=argparse.SUPPRESS)
    parser.add_argument("--case-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})

    if args.case:  # child: one phase, one JSON line on stdout
        run = run_build if args.phase == "build" else run_reopen
        print(json.dumps(run(args.case, sizes[0], args, Path(args.case_dir))))
        return 0

    info = print_machine()
    if args.skip_1m:
        for size in [s for s in sizes if s >= 1_000_000]:
            print(f"SKIP {size:,}: --skip-1m", flush=True)
        sizes = [s for s in sizes if s < 1_000_000]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    results: list[dict] = []
    last_wall: dict[str, tuple[int, float]] = {}
    for size in sizes:
        truth = None
        for mode in modes:
            previous = last_wall.get(mode)
            if previous and previous[1] * size / previous[0] > args.max_case_s:
                projected = previous[1] * size / previous[0]
                reason = (
                    f"projected {projected:.0f} s (linear from {previous[0]:,} vectors in "
                    f"{previous[1]:.0f} s), over --max-case-s={args.max_case_s:.0f}"
                )
                print(f"SKIP {mode} {size:,}: {reason}", flush=True)
                results.append({"mode": mode, "size": size, "skipped": reason})
                continue
            if truth is None:
                truth = exact_top_k(size, args)
            log(f"{mode} {size:,} ...")
            result = run_size_mode(mode, size, args, truth)
            results.append(result)
            if "skipped" in result:
                print(f"SKIP {mode} {size:,}: {result['skipped']}", flush=True)
                continue
            last_wall[mode] = (size, result["wall_s"])
            print(
                f"{mode:8} {size:>9,}: insert {result['insert_per_s']:,.0f} vec/s, index "
                f"{result['index_wait_s']} s, search p50 {result['search']['p50_ms']} ms "
                f"p95 {result['search']['p95_ms']} ms, recall {result['recall']}, RSS delta "
                f"{result['rss_delta_mib']} MiB, disk {result['disk_mib']} MiB "
                f"({result['wall_s']} s)",
                flush=True,
            )
    report(results, args)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"machine": info, "args": vars(args), "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
