"""Milvus Lite embedded (a .db path) vs the same engine behind its gRPC server (``milvus-lite server``).

    python benchmarks/bench_milvus_lite.py                       # 10k, 100k and 1M vectors
    python benchmarks/bench_milvus_lite.py --sizes 10000,100000  # or --skip-1m

For every size and mode, a fresh child process (so memory figures do not carry over) creates the
tutorial's collection (quick setup, IP metric, consistency "Strong") and measures, on seeded
random 384-d unit vectors:

- insert rate, batched (``--batch`` rows per ``insert`` call; vector generation not timed);
- a ``count(*)`` right after the last insert (must see every row: consistency "Strong");
- search latency right after the insert (data still in the memtable / unindexed segments);
- ``flush`` and ``release`` + ``load`` (builds or loads the per-segment index) times;
- search p50 / p95 over ``--queries`` single-vector top-``--top-k`` searches once loaded, and the
  throughput of one call with all of them;
- resident memory of the process that holds the data: this child for embedded (its VmRSS after
  the runs minus the baseline right after creating the collection), the server process for gRPC
  (read from /proc/PID/status), plus its peak (VmHWM);
- the on-disk size of the data folder once closed.

Figures only: nothing here asserts a timing. A size whose projected time (from the previous size)
exceeds ``--max-case-s``, or that runs past it, is skipped with the reason printed.
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
    free_port,
    hide_lite_path_uri,
    latency_summary_ms,
    markdown_table,
    mib,
    print_machine,
    proc_status_kib,
    wait_for_port,
)

hide_lite_path_uri()

COLLECTION = "bench"
MODES = ("embedded", "grpc")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def unit_vectors(seed: int, stream: int, n: int, dim: int):
    """``n`` seeded random unit vectors; ``stream`` makes each batch independent and repeatable."""
    import numpy as np

    rng = np.random.default_rng([seed, stream])
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def run_case(mode: str, size: int, args: argparse.Namespace, workdir: Path) -> dict:
    """One measurement in this (fresh) process; returns the figures as a dict."""
    from pymilvus import MilvusClient

    server = None
    if mode == "embedded":
        data_dir = workdir / "embedded.db"
        uri, holder_pid = str(data_dir), os.getpid()
    else:
        data_dir = workdir / "server-data"
        server, uri = start_server(data_dir, workdir / "server.log")
        holder_pid = server.pid
    try:
        client = MilvusClient(uri=uri)
        client.create_collection(
            collection_name=COLLECTION,
            dimension=args.dim,
            metric_type="IP",
            consistency_level="Strong",
        )
        rss_base = proc_status_kib(holder_pid, "VmRSS")

        insert_s = 0.0
        batches = range(0, size, args.batch)
        for number, start in enumerate(batches):
            count = min(args.batch, size - start)
            vectors = unit_vectors(args.seed, number, count, args.dim)
            rows = [{"id": start + i, "vector": vectors[i]} for i in range(count)]
            _, seconds = timed(client.insert, collection_name=COLLECTION, data=rows)
            insert_s += seconds
            if number % max(1, len(batches) // 10) == 0:
                log(f"  {mode} {size:,}: inserted {start + count:,} ({insert_s:.1f} s)")

        result, count_s = timed(
            client.query, collection_name=COLLECTION, output_fields=["count(*)"]
        )
        counted = result[0]["count(*)"]

        queries = unit_vectors(args.seed, 10**6, args.queries, args.dim)
        fresh = []
        for query in queries[: args.fresh_queries]:
            _, seconds = timed(client.search, collection_name=COLLECTION, data=[query], limit=10)
            fresh.append(seconds)
        log(f"  {mode} {size:,}: {len(fresh)} searches right after insert done")

        _, flush_s = timed(client.flush, COLLECTION)
        start = time.perf_counter()
        client.release_collection(COLLECTION)
        client.load_collection(COLLECTION)
        load_s = time.perf_counter() - start
        log(f"  {mode} {size:,}: flushed in {flush_s:.1f} s, loaded in {load_s:.1f} s")

        # Exact search (no faiss: AUTOINDEX is brute force): a stored vector finds itself first.
        own = unit_vectors(args.seed, 0, 1, args.dim)[0]
        self_hit = client.search(collection_name=COLLECTION, data=[own], limit=1)[0][0]["id"]
        for query in queries[:5]:  # warm-up
            client.search(collection_name=COLLECTION, data=[query], limit=args.top_k)
        latencies = []
        for query in queries:
            _, seconds = timed(
                client.search, collection_name=COLLECTION, data=[query], limit=args.top_k
            )
            latencies.append(seconds)
        _, batch_s = timed(
            client.search, collection_name=COLLECTION, data=list(queries), limit=args.top_k
        )
        rss_after = proc_status_kib(holder_pid, "VmRSS")
        rss_peak = proc_status_kib(holder_pid, "VmHWM")
        client_rss = proc_status_kib(os.getpid(), "VmRSS") if server else None
        client.close()
    finally:
        if server is not None:
            stop_server(server)
        else:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(uri)

    return {
        "mode": mode,
        "size": size,
        "dim": args.dim,
        "batch": args.batch,
        "insert_s": round(insert_s, 3),
        "insert_per_s": round(size / insert_s, 1),
        "count_after_insert": counted,
        "count_s": round(count_s, 3),
        "fresh_search": latency_summary_ms(fresh),
        "flush_s": round(flush_s, 3),
        "load_s": round(load_s, 3),
        "self_hit_ok": self_hit == 0,
        "search": latency_summary_ms(latencies),
        "batch_search_s": round(batch_s, 3),
        "batch_qps": round(len(queries) / batch_s, 1),
        "holder": "this process" if server is None else "server process",
        "rss_base_mib": mib(rss_base),
        "rss_after_mib": mib(rss_after),
        "rss_delta_mib": mib(rss_after - rss_base) if rss_after and rss_base else None,
        "rss_peak_delta_mib": mib(rss_peak - rss_base) if rss_peak and rss_base else None,
        "client_rss_mib": mib(client_rss),
        "disk_mib": round(dir_size_bytes(data_dir) / 2**20, 1),
    }


def run_child(mode: str, size: int, args: argparse.Namespace, timeout_s: float) -> dict:
    """Run one case in a fresh interpreter (own process group, so a timeout kills its server)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{mode}-{size}-", dir=args.workdir))
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--case",
        mode,
        "--sizes",
        str(size),
        "--case-dir",
        str(workdir),
        "--dim",
        str(args.dim),
        "--batch",
        str(args.batch),
        "--queries",
        str(args.queries),
        "--fresh-queries",
        str(args.fresh_queries),
        "--top-k",
        str(args.top_k),
        "--seed",
        str(args.seed),
    ]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return {
            "mode": mode,
            "size": size,
            "skipped": f"did not finish within --max-case-s={timeout_s:.0f} s (killed)",
        }
    finally:
        if not args.keep_data:
            shutil.rmtree(workdir, ignore_errors=True)
    wall = time.perf_counter() - started
    if child.returncode != 0 or not out.strip():
        return {"mode": mode, "size": size, "skipped": f"failed (exit code {child.returncode})"}
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_s"] = round(wall, 1)
    return result


def report(results: list[dict]) -> None:
    done = [r for r in results if "skipped" not in r]
    print("\n## Insert and search (384-d unit vectors, IP, consistency Strong)\n")
    print(
        markdown_table(
            [
                "mode",
                "vectors",
                "insert (vec/s)",
                "count(*) right after insert",
                "search right after insert p50 (ms)",
                "flush (s)",
                "release+load (s)",
                "search p50 (ms)",
                "search p95 (ms)",
                "200 queries in one call (QPS)",
            ],
            [
                [
                    r["mode"],
                    r["size"],
                    r["insert_per_s"],
                    r["count_after_insert"],
                    r["fresh_search"]["p50_ms"],
                    r["flush_s"],
                    r["load_s"],
                    r["search"]["p50_ms"],
                    r["search"]["p95_ms"],
                    r["batch_qps"],
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
                "RSS after (MiB)",
                "RSS delta (MiB)",
                "peak RSS delta (MiB)",
                "on disk (MiB)",
                "case wall time (s)",
            ],
            [
                [
                    r["mode"],
                    r["size"],
                    r["holder"],
                    r["rss_after_mib"],
                    r["rss_delta_mib"],
                    r["rss_peak_delta_mib"],
                    r["disk_mib"],
                    r.get("wall_s"),
                ]
                for r in done
            ],
        )
    )
    skipped = [r for r in results if "skipped" in r]
    if skipped:
        print("\n## Skipped\n")
        for r in skipped:
            print(f"- {r['mode']} {r['size']:,}: {r['skipped']}")
    bad = [r for r in done if r["count_after_insert"] != r["size"] or not r["self_hit_ok"]]
    for r in bad:
        print(
            f"\nNOTE {r['mode']} {r['size']:,}: count right after insert {r['count_after_insert']:,}, "
            f"self-hit {'ok' if r['self_hit_ok'] else 'WRONG'}"
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
    parser.add_argument(
        "--max-case-s", type=float, default=900, help="skip/kill a case projected/running longer"
    )
    parser.add_argument("--workdir", default=None, help="where data folders go (default: tmp)")
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--json", dest="json_out", default=None, help="also write results here")
    parser.add_argument("--case", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--case-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]

    if args.case:  # child: one measurement, one JSON line on stdout
        print(json.dumps(run_case(args.case, sizes[0], args, Path(args.case_dir))))
        return 0

    info = print_machine()
    if args.skip_1m:
        sizes = [s for s in sizes if s < 1_000_000]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    results: list[dict] = []
    last_wall: dict[str, tuple[int, float]] = {}
    for size in sorted(sizes):
        for mode in modes:
            previous = last_wall.get(mode)
            if previous:
                projected = previous[1] * size / previous[0]
                if projected > args.max_case_s:
                    reason = (
                        f"projected {projected:.0f} s from {previous[0]:,} vectors "
                        f"({previous[1]:.0f} s), over --max-case-s={args.max_case_s:.0f}"
                    )
                    print(f"SKIP {mode} {size:,}: {reason}", flush=True)
                    results.append({"mode": mode, "size": size, "skipped": reason})
                    continue
            log(f"{mode} {size:,} ...")
            result = run_child(mode, size, args, args.max_case_s)
            results.append(result)
            if "skipped" in result:
                print(f"SKIP {mode} {size:,}: {result['skipped']}", flush=True)
            else:
                last_wall[mode] = (size, result["wall_s"])
                print(
                    f"{mode:8} {size:>9,}: insert {result['insert_per_s']:,.0f} vec/s, "
                    f"search p50 {result['search']['p50_ms']} ms p95 "
                    f"{result['search']['p95_ms']} ms, RSS delta {result['rss_delta_mib']} MiB, "
                    f"disk {result['disk_mib']} MiB ({result['wall_s']} s)",
                    flush=True,
                )
    report(results)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": info, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
