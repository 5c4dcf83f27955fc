"""The tutorial's pipeline, timed: ingest the FAQ with the packaged model, then 200 questions.

    python benchmarks/bench_pipeline.py                  # Milvus Lite in a temporary .db folder
    python benchmarks/bench_pipeline.py --server         # ... or a `milvus-lite server` it starts
    python benchmarks/bench_pipeline.py --server lite25  # ... or Milvus's C++ engine (2.5.1)
    python benchmarks/bench_pipeline.py --uri http://127.0.0.1:19530   # ... or a server you run
    python benchmarks/bench_pipeline.py --whole-corpus   # also every en/**/*.md, split on "# "

Part 1, the tutorial's path, with the calls the notebook's cells make: ``corpus.prepare_docs``;
every ``en/faq/*.md`` split on ``"# "`` (72 pieces); ``embedding.load_embedding("minilm")``;
``index.connect``; ``client.create_collection(name, dimension, metric_type="IP",
consistency_level="Strong")`` after dropping it; ``index.embed_documents``; ``client.insert``
of ``{"id", "vector", "text", "source"}`` rows; ``client.search`` with ``encode_queries``.

Ingest (``--runs`` times after a warm-up, median reported): pieces per second end to end, split
into embedding (``index.embed_documents``) and Milvus (drop + create, then ``insert``) time. The
model's own work is measured by timing every call of its batched ONNX function
(``BatchedOnnxFunction.encode_documents``: tokenizing, the forward pass, pooling) and, inside it,
the ONNX session's forward pass alone (``session.run``); everything else is overhead. Query: p50 / p95 of embed + search and of search alone over
``--questions`` questions made from the FAQ titles (repeated with small perturbations).
``Embedding`` keeps the vectors of the texts it has embedded, so every measured ingest and
question uses a fresh ``Embedding`` around the same loaded model (nothing cached); the script
fails if the model did not run where it should have.

Part 2 (unless ``--skip-cli-pipeline``), the command line's own pipeline, run in this process
through ``milvus_rag.cli.main`` exactly as ``python -m milvus_rag`` runs it (each call loads the
model, connects, and closes its client): ``ingest --rebuild`` (61 FAQ entries and 4 phrasings of each, 305 rows),
``ingest`` again with nothing to do, and ``ask --json`` for the first ``--ask-questions``
questions (retrieval, then the local answerer). Every call must exit 0. Then the retrieval that
``ask`` runs (``search.search`` with ``search.DEFAULT_STRATEGY``) over all the questions, with
this process's model and client, for p50 / p95 without the per-call model load.

Figures only: nothing here asserts a timing. Any failure exits non-zero with the error; nothing
is skipped except what ``--skip-cli-pipeline`` leaves out.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from glob import glob
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAG_PROGRESS", "text")  # plain tqdm bars on stderr, not widgets
os.environ["EMBEDDING_MODEL"] = "minilm"  # the CLI part loads the same packaged model

from _common import (  # noqa: E402
    SHARED_ZIP,
    latency_summary_ms,
    markdown_table,
    mib,
    print_machine,
    proc_status_kib,
)

PREFIXES = ("", "", "Quick question: ", "In Milvus, ", "Please tell me: ", "FAQ: ")
BASE_COLLECTION = "bench_rag"  # the tutorial's collection; the CLI's is "<base>_faq"
CORPUS_COLLECTION = "bench_rag_corpus"
SERVER_ENGINES = ("lite3", "lite25")


class CliFailed(RuntimeError):
    """``python -m milvus_rag ...`` (``cli.main``) returned a non-zero exit code."""


class ModelClock:
    """Accumulates time spent in the model's batched encode and in its ONNX forward pass.

    ``attach`` instruments one loaded model (its ``BatchedOnnxFunction``); the command line
    loads its own on every call, so ``load_embedding`` is wrapped too (:meth:`watch_loads`) to
    attach to those as well and to time the loads themselves. It only measures: it calls the
    originals.
    """

    def __init__(self):
        self.encode_s = self.forward_s = self.load_s = 0.0
        self.encode_calls = 0

    def _timed(self, original, counter: str, calls: bool = False):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                setattr(self, counter, getattr(self, counter) + time.perf_counter() - start)
                self.encode_calls += calls

        return wrapper

    def attach(self, function) -> None:
        encode = self._timed(function.encode_documents, "encode_s", calls=True)
        function.encode_documents = function.encode_queries = encode
        session = function.session

        class Timed:  # onnxruntime's session does not take new attributes
            def __getattr__(inner, name):
                return getattr(session, name)

        Timed.run = lambda inner, *a, **k: self._timed(session.run, "forward_s")(*a, **k)
        function.session = Timed()

    def watch_loads(self) -> None:
        """Time every ``embedding.load_embedding`` (as the CLI calls it) and attach to its model."""
        from milvus_rag import embedding

        original = embedding.load_embedding

        def load_embedding(*args, **kwargs):
            start = time.perf_counter()
            try:
                loaded = original(*args, **kwargs)
            finally:
                self.load_s += time.perf_counter() - start
            self.attach(loaded.function)
            return loaded

        embedding.load_embedding = load_embedding

    def reset(self) -> None:
        self.encode_s = self.forward_s = self.load_s = 0.0
        self.encode_calls = 0


def uncached(embedding):
    """A new ``Embedding`` around the same loaded model, with nothing embedded yet.

    ``Embedding`` keeps the vectors of the texts it has embedded (per object), so a second
    ingest of the same pieces, or a repeated question, would cost nothing and time nothing:
    every measured ingest and question gets a fresh one (made outside the timed part).
    """
    from milvus_rag.embedding import Embedding

    return Embedding(embedding.function, embedding.name, embedding.dim, embedding.reason)


def require_encoded(clock: ModelClock, calls: int | None, what: str) -> None:
    """Fail if the model did not run for ``what`` (``calls`` encode calls, or at least one)."""
    ran = clock.encode_calls >= 1 and clock.forward_s > 0
    if not ran or (calls is not None and clock.encode_calls != calls):
        raise RuntimeError(
            f"{what}: the model ran {clock.encode_calls} times, expected "
            f"{calls if calls is not None else 'at least once'}; vectors cached somewhere would "
            "make these figures wrong"
        )


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


FAQ_PATTERN = "en/faq/*.md"
CORPUS_PATTERN = "en/**/*.md"


def tutorial_pieces(docs_dir: Path, pattern: str = FAQ_PATTERN) -> tuple[int, list, list]:
    """(files, text_lines, sources), as the notebook's cell builds them: each file split on "# ".

    The source is the file's name, as in the notebook (its path under the docs for the corpus).
    """
    text_lines, sources = [], []
    files = sorted(glob(f"{docs_dir}/{pattern}", recursive=True))
    for file_path in files:
        with open(file_path, encoding="utf-8") as file:
            file_text = file.read()
        pieces = file_text.split("# ")
        text_lines += pieces
        source = (
            os.path.basename(file_path)
            if pattern == FAQ_PATTERN
            else os.path.relpath(file_path, docs_dir)
        )
        sources += [source] * len(pieces)
    return len(files), text_lines, sources


def ingest_once(client, embedding, clock: ModelClock, text_lines, sources, collection, batch):
    """The notebook's ingest cells, timed: embed, drop + create (quick setup), insert."""
    from milvus_rag.index import CONSISTENCY_LEVEL, METRIC_TYPE, embed_documents

    embedding = uncached(embedding)
    clock.reset()
    vectors, embed_s = timed(embed_documents, embedding, text_lines)
    require_encoded(clock, None, f"embedding the {len(text_lines)} pieces")
    start = time.perf_counter()
    if client.has_collection(collection):
        client.drop_collection(collection)
    client.create_collection(
        collection_name=collection,
        dimension=embedding.dim,
        metric_type=METRIC_TYPE,
        consistency_level=CONSISTENCY_LEVEL,
    )
    recreate_s = time.perf_counter() - start
    start = time.perf_counter()
    data = [
        {"id": i, "vector": vectors[i], "text": line, "source": sources[i]}
        for i, line in enumerate(text_lines)
    ]
    inserted = 0
    for offset in range(0, len(data), batch):
        inserted += client.insert(collection_name=collection, data=data[offset : offset + batch])[
            "insert_count"
        ]
    insert_s = time.perf_counter() - start
    if inserted != len(text_lines):
        raise RuntimeError(f"inserted {inserted} rows into {collection}, not {len(text_lines)}")
    milvus_s = recreate_s + insert_s
    total = embed_s + milvus_s
    return {
        "pieces": len(text_lines),
        "inserted": inserted,
        "embed_s": embed_s,
        "milvus_s": milvus_s,
        "recreate_s": recreate_s,
        "insert_s": insert_s,
        "total_s": total,
        "pieces_per_s": len(text_lines) / total,
        "encode_s": clock.encode_s,
        "forward_s": clock.forward_s,
        "outside_encode_share": (total - clock.encode_s) / total,
        "outside_forward_share": (total - clock.forward_s) / total,
    }


def median_run(runs: list[dict]) -> dict:
    """The run with the median total time (its figures stay consistent with each other)."""
    ordered = sorted(runs, key=lambda r: r["total_s"])
    return ordered[len(ordered) // 2]


def faq_questions(text_lines: list[str], count: int, seed: int) -> list[tuple[str, int]]:
    """``count`` (question, index of the piece it came from): FAQ titles, cycled and perturbed."""
    titles = []
    for index, piece in enumerate(text_lines):
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


def tutorial_search(client, collection: str, embedding, question: str, k: int):
    """The notebook's search cell: the question's vector, top-k by inner product."""
    from milvus_rag.index import METRIC_TYPE

    return client.search(
        collection_name=collection,
        data=embedding.encode_queries([question]),
        limit=k,
        search_params={"metric_type": METRIC_TYPE, "params": {}},
        output_fields=["text", "source"],
    )[0]


def run_cli(argv: list[str]) -> tuple[str, float]:
    """``python -m milvus_rag ARGV`` in this process: (its stdout, seconds); raises on exit != 0."""
    from milvus_rag import cli

    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    seconds = time.perf_counter() - start
    if code != 0:
        raise CliFailed(
            f"python -m milvus_rag {' '.join(argv[:2])} ... exited with code {code}:\n"
            + err.getvalue()[-3000:]
        )
    return out.getvalue(), seconds


def cli_pipeline(client, uri, docs_source, embedding, clock, questions, text_lines, args) -> dict:
    """The command line's ingest / re-ingest / ask through ``cli.main``, then its retrieval.

    ``ingest`` stores the FAQ *entries* (one row per heading with text under it), not the
    tutorial's 72 pieces, in ``<base>_faq``; ``ask`` searches them with the default strategy.
    """
    from milvus_rag import search
    from milvus_rag.config import collections

    names = collections(BASE_COLLECTION)
    common = ["--docs", docs_source, "--uri", uri, "--collection", BASE_COLLECTION]
    clock.reset()
    out, ingest_s = run_cli(["ingest", "--rebuild", *common])
    first = json.loads(out.strip().splitlines()[-1])
    require_encoded(clock, None, "ingest --rebuild")
    ingest_load_s, ingest_forward_s = clock.load_s, clock.forward_s
    clock.reset()
    out, again_s = run_cli(["ingest", *common])
    again = json.loads(out.strip().splitlines()[-1])
    again_load_s = clock.load_s
    if first["added"] != first["rows"] or again["added"] or again["removed"]:
        raise RuntimeError(f"unexpected ingest results: first {first}, second {again}")

    asks, ask_loads, ask_top1 = [], [], 0
    for question, index in questions[: args.ask_questions]:
        clock.reset()
        out, seconds = run_cli(["ask", question, "--json", "--k", str(args.top_k), *common])
        reply = json.loads(out.strip().splitlines()[-1])
        if not reply["hits"] or not reply["answer"].strip():
            raise RuntimeError(f"ask {question!r} returned no hits or no answer: {reply}")
        asks.append(seconds)
        ask_loads.append(clock.load_s)
        ask_top1 += title_of(text_lines[index]) in reply["hits"][0]["text"][:300]

    def retrieve(model, question: str):
        return search.search(
            client, names.faq, model, [question], args.top_k, search.DEFAULT_STRATEGY
        )[0]

    for question, _ in questions[:5]:  # warm-up
        retrieve(uncached(embedding), question)
    clock.reset()
    latencies, top1 = [], 0
    for question, index in questions:
        hits, seconds = timed(retrieve, uncached(embedding), question)
        latencies.append(seconds)
        top1 += title_of(text_lines[index]) in hits[0].text[:300]
    require_encoded(clock, len(questions), "retrieve")
    return {
        "collection": names.faq,
        "strategy": search.DEFAULT_STRATEGY,
        "ingest": first,
        "ingest_s": ingest_s,
        "ingest_model_load_s": ingest_load_s,
        "ingest_forward_s": ingest_forward_s,
        "ingest_again": again,
        "ingest_again_s": again_s,
        "ingest_again_model_load_s": again_load_s,
        "ask": latency_summary_ms(asks) if asks else None,
        "ask_model_load_mean_s": statistics.fmean(ask_loads) if ask_loads else None,
        "ask_top1_has_title": ask_top1 / len(asks) if asks else None,
        "retrieve": latency_summary_ms(latencies),
        "retrieve_forward_share": clock.forward_s / sum(latencies),
        "top1_has_title": top1 / len(questions),
    }


def title_of(piece: str) -> str:
    return piece.strip().splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", default=None, help="docs zip (default: MILVUS_DOCS_ZIP, shared)")
    parser.add_argument("--uri", default=None, help="Milvus URI (default: a temporary .db)")
    parser.add_argument(
        "--server",
        nargs="?",
        const="lite3",
        choices=SERVER_ENGINES,
        default=None,
        help="start a server (support.milvus_servers): lite3 (default, `milvus-lite server`) "
        "or lite25 (milvus-lite 2.5.1's C++ engine, in .cache/)",
    )
    parser.add_argument("--runs", type=int, default=3, help="FAQ ingest repetitions (median)")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument(
        "--ask-questions", type=int, default=3, help="`ask` commands run through cli.main"
    )
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--whole-corpus", action="store_true", help="also ingest every en/*.md")
    parser.add_argument("--insert-batch", type=int, default=1000, help="rows per insert call")
    parser.add_argument(
        "--skip-cli-pipeline", action="store_true", help="leave out the CLI's own pipeline"
    )
    parser.add_argument("--json", dest="json_out", default=None, help="also write results here")
    args = parser.parse_args(argv)
    if args.server and args.uri:
        parser.error("--server and --uri exclude each other")
    if args.runs < 1 or args.questions < 1 or args.ask_questions < 0:
        parser.error("--runs and --questions must be at least 1, --ask-questions at least 0")

    from milvus_rag import corpus, index
    from milvus_rag.config import milvus_token
    from milvus_rag.embedding import load_embedding

    info = print_machine()
    docs_source = args.docs or os.environ.get("MILVUS_DOCS_ZIP") or str(SHARED_ZIP)
    scratch = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    os.environ["MILVUS_RAG_DATA_DIR"] = str(scratch / "data")  # the package's docs cache
    server = None
    if args.server:
        from support.milvus_servers import start

        server = start(args.server, scratch / "server-data", scratch / "server.log")
        uri = server.uri
        backend = f"{args.server} server (gRPC)"
    else:
        uri = args.uri or str(scratch / "bench.db")
        backend = "Milvus server at " + uri if "://" in uri else "Milvus Lite embedded"
    print(f"Milvus: {backend}\n", flush=True)

    results: dict = {"machine": info, "backend": backend, "load_average_start": load_average()}
    client = None
    try:
        docs_dir, docs_s = timed(corpus.prepare_docs, docs_source, scratch / "data")
        (_, text_lines, sources), split_s = timed(tutorial_pieces, docs_dir)
        # Cold: the sha256 check and the conversion to ONNX into this run's empty model cache
        # (MILVUS_RAG_DATA_DIR/models); warm: the same load from the converted file.
        _, model_cold_s = timed(load_embedding, "minilm")
        embedding, model_load_s = timed(load_embedding, "minilm")
        clock = ModelClock()
        clock.attach(embedding.function)
        clock.watch_loads()
        client, connect_s = timed(index.connect, uri, milvus_token())
        rss_before = proc_status_kib(os.getpid(), "VmRSS")
        print(
            f"set-up: docs unzip {docs_s:.2f} s, FAQ split {split_s * 1000:.1f} ms, model load "
            f"cold {model_cold_s:.2f} s (sha256 check + conversion to ONNX), warm "
            f"{model_load_s:.2f} s (from the converted file), connect {connect_s:.2f} s",
            flush=True,
        )
        results["setup_s"] = {
            "docs": docs_s,
            "split": split_s,
            "model_load_cold": model_cold_s,
            "model_load": model_load_s,
            "connect": connect_s,
        }

        # Warm-up (the first forward pass pays one-off costs), then the measured runs.
        tutorial = BASE_COLLECTION
        batch = args.insert_batch
        ingest_once(client, embedding, clock, text_lines, sources, tutorial, batch)
        runs = [
            ingest_once(client, embedding, clock, text_lines, sources, tutorial, batch)
            for _ in range(args.runs)
        ]
        faq = median_run(runs)
        results["ingest_faq"] = {"median": faq, "runs": runs}
        print(
            f"FAQ ingest: {faq['pieces']} pieces in {faq['total_s']:.2f} s "
            f"({faq['pieces_per_s']:.1f} pieces/s)",
            flush=True,
        )

        questions = faq_questions(text_lines, args.questions, args.seed)
        for question, _ in questions[:5]:  # warm-up
            tutorial_search(client, tutorial, uncached(embedding), question, args.top_k)
        clock.reset()
        both, search_only, embed_only, top1 = [], [], [], 0
        for question, source in questions:
            model = uncached(embedding)
            start = time.perf_counter()
            vectors = model.encode_queries([question])
            middle = time.perf_counter()
            hits = client.search(
                collection_name=tutorial,
                data=vectors,
                limit=args.top_k,
                search_params={"metric_type": index.METRIC_TYPE, "params": {}},
                output_fields=["text", "source"],
            )[0]
            end = time.perf_counter()
            both.append(end - start)
            embed_only.append(middle - start)
            search_only.append(end - middle)
            top1 += hits[0]["entity"]["text"] == text_lines[source]
        require_encoded(clock, len(questions), "the questions")
        results["query"] = {
            "questions": len(questions),
            "distinct_titles": len({piece for _, piece in questions}),
            "top_k": args.top_k,
            "embed_and_search": latency_summary_ms(both),
            "embed": latency_summary_ms(embed_only),
            "search": latency_summary_ms(search_only),
            "top1_is_source_piece": top1 / len(questions),
            "forward_share": clock.forward_s / sum(both),
        }

        if not args.skip_cli_pipeline:
            print("CLI pipeline: ingest, ingest again, ask ...", flush=True)
            results["cli"] = cli_pipeline(
                client, uri, docs_source, embedding, clock, questions, text_lines, args
            )

        if args.whole_corpus:
            file_count, corpus_lines, corpus_sources = tutorial_pieces(docs_dir, CORPUS_PATTERN)
            print(f"whole corpus: {file_count} files, {len(corpus_lines)} pieces ...", flush=True)
            result = ingest_once(
                client, embedding, clock, corpus_lines, corpus_sources, CORPUS_COLLECTION, batch
            )
            result["files"] = file_count
            result["chars"] = sum(len(text) for text in corpus_lines)
            results["ingest_corpus"] = result
        results["rss_mib"] = {
            "before_ingest": mib(rss_before),
            "end": mib(proc_status_kib(os.getpid(), "VmRSS")),
            "peak": mib(proc_status_kib(os.getpid(), "VmHWM")),
        }
        results["load_average_end"] = load_average()
        client.close()
        index.release(uri)  # stop Milvus Lite's in-process server before its folder goes
        client = None
    finally:
        if client is not None:  # failed half-way: clean up as far as possible, keep the error
            with contextlib.suppress(Exception):
                client.close()
                index.release(uri)
        if server is not None:
            code = server.stop()
            if client is None and code != 0:
                raise RuntimeError(f"the {args.server} server exited with code {code} on stop")
        shutil.rmtree(scratch, ignore_errors=True)

    report(results)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=str))
    return 0


def load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError):
        return None


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
                "in the batched ONNX encode (s)",
                "of which session.run (s)",
                "outside the ONNX encode",
                "outside session.run",
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
                    ("search alone (client.search)", q["search"]),
                )
            ],
        )
    )
    print(
        f"\nTop-1 hit is the FAQ piece the question came from: {q['top1_is_source_piece']:.0%}. "
        f"ONNX forward pass (session.run) share of query time: {q['forward_share']:.0%}."
    )
    cli = results.get("cli")
    if cli:
        ask = cli["ask"]
        print(
            "\n## The command line's pipeline (milvus_rag.cli.main: ingest, ingest, ask; then "
            f"search.search with {cli['strategy']})\n"
        )
        print(
            markdown_table(
                ["step", "figure"],
                [
                    ["FAQ entries", cli["ingest"]["count"]],
                    ["rows written (entries and their phrasings)", cli["ingest"]["rows"]],
                    ["`ingest --rebuild` (s)", cli["ingest_s"]],
                    ["  of which loading the model (s)", cli["ingest_model_load_s"]],
                    ["  of which in session.run (s)", cli["ingest_forward_s"]],
                    ["`ingest` again, nothing to do (s)", cli["ingest_again_s"]],
                    ["  of which loading the model (s)", cli["ingest_again_model_load_s"]],
                    ["`ask --json` (local answerer), calls", ask["n"] if ask else 0],
                    ["  p50 (ms)", ask["p50_ms"] if ask else None],
                    ["  max (ms)", ask["max_ms"] if ask else None],
                    ["  of which loading the model, mean (s)", cli["ask_model_load_mean_s"]],
                    ["retrieve (search.search) p50 (ms)", cli["retrieve"]["p50_ms"]],
                    ["retrieve (search.search) p95 (ms)", cli["retrieve"]["p95_ms"]],
                    ["session.run share of retrieve", f"{cli['retrieve_forward_share']:.0%}"],
                    ["top-1 hit is the question's FAQ entry", f"{cli['top1_has_title']:.0%}"],
                ],
            )
        )
    rss = results["rss_mib"]
    print(
        f"\nProcess RSS: {rss['before_ingest']} MiB after loading the model, {rss['end']} MiB at "
        f"the end, peak {rss['peak']} MiB."
    )
    runs = results["ingest_faq"]["runs"]
    print(
        "FAQ ingest runs (s): "
        + ", ".join(f"{r['total_s']:.2f}" for r in runs)
        + f" (spread {statistics.pstdev([r['total_s'] for r in runs]):.2f} s)"
    )
    print(
        f"Load average (1 min): {results['load_average_start']} at the start, "
        f"{results['load_average_end']} at the end."
    )


if __name__ == "__main__":
    sys.exit(main())
