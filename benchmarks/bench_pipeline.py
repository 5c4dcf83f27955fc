"""The tutorial's pipeline, timed: ingest the FAQ with the packaged model, then 200 questions.

    python benchmarks/bench_pipeline.py                  # Milvus Lite in a temporary .db folder
    python benchmarks/bench_pipeline.py --server         # ... or a `milvus-lite server` it starts
    python benchmarks/bench_pipeline.py --uri http://127.0.0.1:19530   # ... or a server you run
    python benchmarks/bench_pipeline.py --whole-corpus   # also every en/**/*.md, split on "# "

Uses the helper package's own functions, as ``python -m milvus_rag ingest`` does:
``docs.prepare_docs`` / ``load_faq_pieces``, ``embedding.load_embedding("minilm")``,
``store.connect`` / ``embed_in_batches`` / ``recreate_collection`` / ``rows_for`` / ``search``.

Ingest (``--runs`` times, median reported): pieces per second end to end, split into embedding
(``embed_in_batches``) and Milvus (``recreate_collection`` + ``insert``) time. The model's own
work is measured by timing every ``SentenceTransformer.encode`` call (tokenizing, the forward
pass, pooling) and, inside it, the torch forward pass alone (a forward hook); everything else is
overhead. Query: p50 / p95 of embed + search and of search alone over ``--questions`` questions
made from the FAQ titles (repeated with small perturbations), on the FAQ collection.

Then (unless ``--skip-cli-pipeline``) the command line's own pipeline, which has moved on from
the tutorial's split: ``pipeline.load_entries`` / ``pipeline.ingest`` (FAQ entries and their
paragraphs, idempotent) timed once with ``rebuild`` and once with nothing to do, and
``pipeline.retrieve`` (the package's default retrieval strategy) over the same questions.

Figures only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")  # embed_in_batches' progress bar
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import (  # noqa: E402
    latency_summary_ms,
    markdown_table,
    mib,
    print_machine,
    proc_status_kib,
)

import milvus_rag  # noqa: E402, F401  (before pymilvus: it copes with MILVUS_URI set to a path)

REPO = Path(__file__).resolve().parents[1]
SHARED_ZIP = REPO.parent / "shared" / "data" / "milvus_docs_2.4.x_en.zip"
PREFIXES = ("", "", "Quick question: ", "In Milvus, ", "Please tell me: ", "FAQ: ")


class ModelClock:
    """Accumulates time spent in ``SentenceTransformer.encode`` and in its torch forward pass."""

    def __init__(self, sentence_transformer):
        self.encode_s = 0.0
        self.forward_s = 0.0
        self.encode_calls = 0
        self._started: list[float] = []
        self._model = sentence_transformer
        original = sentence_transformer.encode

        def encode(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.encode_s += time.perf_counter() - start
                self.encode_calls += 1

        sentence_transformer.encode = encode
        sentence_transformer.register_forward_pre_hook(
            lambda *_: self._started.append(time.perf_counter())
        )
        sentence_transformer.register_forward_hook(self._forward_done)

    def _forward_done(self, *_):
        self.forward_s += time.perf_counter() - self._started.pop()

    def reset(self) -> None:
        self.encode_s = self.forward_s = 0.0
        self.encode_calls = 0


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def faq_entries(docs_dir: Path) -> list[tuple[str, str]]:
    """(source file, piece) for every FAQ piece, as ``pipeline.load_pieces`` returns them."""
    from milvus_rag import docs

    if hasattr(docs, "faq_pieces"):
        return docs.faq_pieces(docs_dir)
    return [("", piece) for piece in docs.load_faq_pieces(docs_dir)]


def hit_text(hit) -> str:
    """The text of a ``store.search`` hit (a dict; a (text, distance) pair in older versions)."""
    return hit["text"] if isinstance(hit, dict) else hit[0]


def ingest_once(client, embedding, clock: ModelClock, pieces, collection: str, insert_batch: int):
    """The CLI's ingest (``pipeline.ingest``) step by step, timed; returns the figures.

    ``pieces`` are (source, text) pairs, as ``pipeline.ingest`` passes them to ``rows_for``.
    """
    from milvus_rag import store

    clock.reset()
    texts = [text for _, text in pieces]
    vectors, embed_s = timed(store.embed_in_batches, embedding.encode_documents, texts)
    _, recreate_s = timed(store.recreate_collection, client, collection, embedding.dim)
    start = time.perf_counter()
    rows = store.rows_for(pieces, vectors)
    inserted = 0
    for offset in range(0, len(rows), insert_batch):
        inserted += client.insert(
            collection_name=collection, data=rows[offset : offset + insert_batch]
        )["insert_count"]
    insert_s = time.perf_counter() - start
    milvus_s = recreate_s + insert_s
    total = embed_s + milvus_s
    return {
        "pieces": len(pieces),
        "inserted": inserted,
        "embed_s": embed_s,
        "milvus_s": milvus_s,
        "recreate_s": recreate_s,
        "insert_s": insert_s,
        "total_s": total,
        "pieces_per_s": len(pieces) / total,
        "encode_s": clock.encode_s,
        "forward_s": clock.forward_s,
        "outside_encode_share": (total - clock.encode_s) / total,
        "outside_forward_share": (total - clock.forward_s) / total,
    }


def median_run(runs: list[dict]) -> dict:
    """The run with the median total time (its figures stay consistent with each other)."""
    ordered = sorted(runs, key=lambda r: r["total_s"])
    return ordered[len(ordered) // 2]


def faq_questions(pieces: list[tuple[str, str]], count: int, seed: int) -> list[tuple[str, int]]:
    """``count`` (question, id of the piece it came from): FAQ titles, cycled and perturbed."""
    titles = []
    for index, (_, piece) in enumerate(pieces):
        first = piece.strip().splitlines()[0].strip() if piece.strip() else ""
        if first.endswith("?"):
            titles.append((first, index))
    rng = random.Random(seed)
    questions = []
    for n in range(count):
        title, index = titles[n % len(titles)]
        if n >= len(titles):  # the first pass asks the titles as they are
            variant = rng.choice(PREFIXES) + title
            variant = variant.lower() if rng.random() < 0.3 else variant
            variant = variant.rstrip("?") if rng.random() < 0.3 else variant
            title = variant
        questions.append((title, index))
    return questions


def corpus_pieces(docs_dir: Path) -> tuple[int, list[tuple[str, str]]]:
    """Every markdown file of the docs (en/), split on "# " as the tutorial splits the FAQ."""
    from milvus_rag.docs import split_like_tutorial

    files = sorted((docs_dir / "en").rglob("*.md"))
    pieces: list[tuple[str, str]] = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        source = str(path.relative_to(docs_dir))
        pieces.extend((source, piece) for piece in split_like_tutorial(text))
    return len(files), pieces


def cli_pipeline(
    client, uri: str, docs_source: str, embedding, clock: ModelClock, questions, pieces, k: int
) -> dict:
    """The command line's own pipeline (``pipeline.load_entries`` / ``ingest`` / ``retrieve``).

    ``python -m milvus_rag ingest`` stores FAQ *entries* (and their paragraphs) rather than the
    tutorial's 72 pieces, and ``ask`` searches them with the package's default strategy; this
    times both through the same public functions, with the same client.
    """
    from milvus_rag import pipeline

    config = pipeline.Config()
    config.docs_source, config.uri, config.collection = docs_source, uri, "bench_cli"
    entries, entries_s = timed(pipeline.load_entries, config)
    clock.reset()
    first, ingest_s = timed(
        pipeline.ingest, config, embedding, entries, rebuild=True, client=client
    )
    encode_s, forward_s = clock.encode_s, clock.forward_s
    _, again_s = timed(pipeline.ingest, config, embedding, entries, client=client)
    for question, _ in questions[:5]:  # warm-up
        pipeline.retrieve(config, embedding, question, k, client=client)
    clock.reset()
    latencies, top1 = [], 0
    for question, index in questions:
        hits, seconds = timed(pipeline.retrieve, config, embedding, question, k, client=client)
        latencies.append(seconds)
        title = pieces[index][1].strip().splitlines()[0]
        top1 += title in hits[0]["text"][:300]
    return {
        "entries": len(entries),
        "ingest": first,
        "load_entries_s": entries_s,
        "ingest_s": ingest_s,
        "ingest_encode_s": encode_s,
        "ingest_forward_s": forward_s,
        "ingest_again_s": again_s,
        "retrieve": latency_summary_ms(latencies),
        "retrieve_forward_share": clock.forward_s / sum(latencies),
        "top1_has_title": top1 / len(questions),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", default=None, help="docs zip (default: MILVUS_DOCS_ZIP, shared)")
    parser.add_argument("--uri", default=None, help="Milvus URI (default: a temporary .db)")
    parser.add_argument("--server", action="store_true", help="start a milvus-lite server")
    parser.add_argument("--runs", type=int, default=3, help="FAQ ingest repetitions (median)")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--whole-corpus", action="store_true", help="also ingest every en/*.md")
    parser.add_argument("--insert-batch", type=int, default=1000, help="rows per insert call")
    parser.add_argument(
        "--skip-cli-pipeline", action="store_true", help="leave out the CLI's own pipeline"
    )
    parser.add_argument("--json", dest="json_out", default=None, help="also write results here")
    args = parser.parse_args(argv)

    from milvus_rag import docs, store
    from milvus_rag.embedding import load_embedding
    from milvus_rag.settings import milvus_token

    info = print_machine()
    docs_source = args.docs or os.environ.get("MILVUS_DOCS_ZIP") or str(SHARED_ZIP)
    scratch = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    os.environ["MILVUS_RAG_DATA_DIR"] = str(scratch / "data")  # the package's docs cache
    server = None
    if args.server:
        from milvus_rag.lite_server import start as start_server

        server, uri = start_server(scratch / "server-data", scratch / "server.log")
    else:
        uri = args.uri or str(scratch / "bench.db")
    backend = "milvus-lite server (gRPC)" if "://" in uri else "Milvus Lite embedded"
    print(f"Milvus: {backend}\n", flush=True)

    results: dict = {"machine": info, "backend": backend}
    try:
        (docs_dir, docs_s) = timed(docs.prepare_docs, docs_source, scratch / "data")
        pieces, split_s = timed(faq_entries, docs_dir)
        embedding, model_load_s = timed(load_embedding, "minilm")
        clock = ModelClock(embedding.function.model)
        client, connect_s = timed(store.connect, uri, milvus_token())
        rss_before = proc_status_kib(os.getpid(), "VmRSS")
        print(
            f"set-up: docs unzip {docs_s:.2f} s, FAQ split {split_s * 1000:.1f} ms, model load "
            f"{model_load_s:.2f} s (incl. sha256 check), connect {connect_s:.2f} s",
            flush=True,
        )
        results["setup_s"] = {
            "docs": docs_s,
            "split": split_s,
            "model_load": model_load_s,
            "connect": connect_s,
        }

        # Warm-up (the first forward pass pays one-off costs), then the measured runs.
        ingest_once(client, embedding, clock, pieces, "bench_faq", args.insert_batch)
        runs = [
            ingest_once(client, embedding, clock, pieces, "bench_faq", args.insert_batch)
            for _ in range(args.runs)
        ]
        faq = median_run(runs)
        results["ingest_faq"] = {"median": faq, "runs": runs}
        print(
            f"FAQ ingest: {faq['pieces']} pieces in {faq['total_s']:.2f} s "
            f"({faq['pieces_per_s']:.1f} pieces/s)",
            flush=True,
        )

        questions = faq_questions(pieces, args.questions, args.seed)
        for question, _ in questions[:5]:  # warm-up
            store.search(client, "bench_faq", embedding.encode_queries([question])[0], args.top_k)
        clock.reset()
        both, search_only, embed_only, top1 = [], [], [], 0
        for question, source in questions:
            start = time.perf_counter()
            vector = embedding.encode_queries([question])[0]
            middle = time.perf_counter()
            hits = store.search(client, "bench_faq", vector, args.top_k)
            end = time.perf_counter()
            both.append(end - start)
            embed_only.append(middle - start)
            search_only.append(end - middle)
            top1 += hit_text(hits[0]) == pieces[source][1]
        query_forward_share = clock.forward_s / sum(both)
        results["query"] = {
            "questions": len(questions),
            "distinct_titles": len({index for _, index in questions}),
            "top_k": args.top_k,
            "embed_and_search": latency_summary_ms(both),
            "embed": latency_summary_ms(embed_only),
            "search": latency_summary_ms(search_only),
            "top1_is_source_piece": top1 / len(questions),
            "forward_share": query_forward_share,
        }

        if not args.skip_cli_pipeline:
            try:
                results["cli"] = cli_pipeline(
                    client, uri, docs_source, embedding, clock, questions, pieces, args.top_k
                )
            except Exception as err:  # the package's pipeline API moves; say so, keep the rest
                results["cli"] = {"skipped": f"{type(err).__name__}: {err}"}

        if args.whole_corpus:
            file_count, corpus = corpus_pieces(docs_dir)
            print(f"whole corpus: {file_count} files, {len(corpus)} pieces ...", flush=True)
            result = ingest_once(
                client, embedding, clock, corpus, "bench_corpus", args.insert_batch
            )
            result["files"] = file_count
            result["chars"] = sum(len(text) for _, text in corpus)
            results["ingest_corpus"] = result
        results["rss_mib"] = {
            "before_ingest": mib(rss_before),
            "end": mib(proc_status_kib(os.getpid(), "VmRSS")),
            "peak": mib(proc_status_kib(os.getpid(), "VmHWM")),
        }
        client.close()
        if "://" not in uri:  # stop Milvus Lite's in-process server before its folder goes
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(uri)
    finally:
        if server is not None:
            from milvus_rag.lite_server import stop as stop_server

            stop_server(server)
        shutil.rmtree(scratch, ignore_errors=True)

    report(results)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=str))
    return 0


def ingest_row(label: str, r: dict) -> list:
    return [
        label,
        r["pieces"],
        r["pieces_per_s"],
        r["total_s"],
        r["embed_s"],
        r["milvus_s"],
        r["recreate_s"],
        r["insert_s"],
        r["encode_s"],
        r["forward_s"],
        f"{r['outside_encode_share']:.0%}",
        f"{r['outside_forward_share']:.0%}",
    ]


def report(results: dict) -> None:
    print(f"\n## Ingest ({results['backend']}, model all-MiniLM-L6-v2 on CPU)\n")
    rows = [ingest_row("FAQ (en/faq/*.md), median run", results["ingest_faq"]["median"])]
    if "ingest_corpus" in results:
        corpus = results["ingest_corpus"]
        rows.append(ingest_row(f"whole corpus ({corpus['files']} files)", corpus))
    print(
        markdown_table(
            [
                "what",
                "pieces",
                "pieces/s",
                "total (s)",
                "embedding (s)",
                "Milvus (s)",
                "of which drop + create (s)",
                "of which insert (s)",
                "in model.encode (s)",
                "in forward pass (s)",
                "outside model.encode",
                "outside forward pass",
            ],
            rows,
        )
    )
    q = results["query"]
    print(
        f"\n## Query ({q['questions']} questions from {q['distinct_titles']} FAQ titles, "
        f"top-{q['top_k']})\n"
    )
    print(
        markdown_table(
            ["step", "p50 (ms)", "p95 (ms)", "mean (ms)", "max (ms)"],
            [
                [name, s["p50_ms"], s["p95_ms"], s["mean_ms"], s["max_ms"]]
                for name, s in (
                    ("embed + search", q["embed_and_search"]),
                    ("embed (encode_queries)", q["embed"]),
                    ("search alone (store.search)", q["search"]),
                )
            ],
        )
    )
    print(
        f"\nTop-1 hit is the FAQ piece the question came from: {q['top1_is_source_piece']:.0%}. "
        f"Forward pass share of query time: {q['forward_share']:.0%}."
    )
    cli = results.get("cli")
    if cli and "skipped" in cli:
        print(f"\nCLI pipeline: skipped ({cli['skipped']})")
    elif cli:
        ingest = cli["ingest"]
        print("\n## The command line's pipeline (pipeline.ingest / pipeline.retrieve)\n")
        print(
            markdown_table(
                ["step", "figure"],
                [
                    ["FAQ entries", cli["entries"]],
                    ["rows written (entries + paragraph views)", ingest.get("rows")],
                    ["first ingest, rebuild (s)", cli["ingest_s"]],
                    ["  of which in model.encode (s)", cli["ingest_encode_s"]],
                    ["  of which in the forward pass (s)", cli["ingest_forward_s"]],
                    ["second ingest, nothing to do (s)", cli["ingest_again_s"]],
                    ["retrieve p50 (ms)", cli["retrieve"]["p50_ms"]],
                    ["retrieve p95 (ms)", cli["retrieve"]["p95_ms"]],
                    ["forward pass share of retrieve", f"{cli['retrieve_forward_share']:.0%}"],
                    ["top-1 hit is the question's FAQ entry", f"{cli['top1_has_title']:.0%}"],
                ],
            )
        )
    rss = results["rss_mib"]
    print(
        f"Process RSS: {rss['before_ingest']} MiB after loading the model, {rss['end']} MiB at "
        f"the end, peak {rss['peak']} MiB."
    )
    runs = results["ingest_faq"]["runs"]
    print(
        "FAQ ingest runs (s): "
        + ", ".join(f"{r['total_s']:.2f}" for r in runs)
        + f" (spread {statistics.pstdev([r['total_s'] for r in runs]):.2f} s)"
    )


if __name__ == "__main__":
    sys.exit(main())
