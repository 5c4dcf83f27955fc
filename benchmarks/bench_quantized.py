"""The packaged MiniLM's forward pass, as converted (float32) and cut down: int8 dynamic
quantization (onnxruntime's quantizer, as ``EMBEDDING_MODEL=minilm-int8`` makes it) and one
intra-op thread. For each variant: retrieval on
the real users' development questions (hit@1, hit@3, MRR with intervals, and the paired
differences against float32, as ``eval --models`` prints them), then ``ingest --all-docs``'s work (``index.sync`` of every page
of the docs into a fresh collection) timed, with the share of the forward pass.

A variant ships only if its paired differences hold 0 (quality within the intervals) and its
all-docs ingest is at least 2x faster (issue 28). This script measures; it asserts nothing.

    python benchmarks/bench_quantized.py                 # all variants, the whole docs (~6 min)
    python benchmarks/bench_quantized.py --rows 500      # the first 500 all-docs rows only
    python benchmarks/bench_quantized.py --only float32 --only int8 --profile --record benchmarks/results/ingest-all-docs-int8.json

``--profile`` adds each variant's kernel time per operator type (onnxruntime's profiler);
``--record FILE`` writes the figures and the report as JSON, from which
``scripts/readme_figures.py`` writes the READMEs' benchmark blocks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, SHARED_ZIP, load_average, print_machine, record

SEED_QUESTIONS = REPO / "data" / "eval" / "real_dev.jsonl"


def variants(fp32_path: Path, work: Path) -> dict[str, tuple[Path, int]]:
    """label -> (ONNX file, intra-op threads; 0 = onnxruntime's default, -1: its default
    without spinning, i.e. idle threads sleep instead of spinning on a shared CPU)."""
    from milvus_rag.embedding import quantize_int8

    int8 = work / "minilm-int8.onnx"
    quantize_int8(fp32_path, int8)  # as EMBEDDING_MODEL=minilm-int8 makes it
    return {"float32": (fp32_path, 0), "float32, 1 thread": (fp32_path, 1),
            "float32, no spinning": (fp32_path, -1), "int8": (int8, 0), "int8, 1 thread": (int8, 1),
            "int8, no spinning": (int8, -1)}


def make_session(path: Path, threads: int, profile_prefix: str = ""):
    """An onnxruntime session on ``path`` with the thread setting of :func:`variants` (and the
    profiler on, writing to ``profile_prefix``, if given)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
    if threads < 0:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def make_embedding(base, path: Path, threads: int, label: str):
    from milvus_rag.embedding import BatchedOnnxFunction, Embedding

    function = BatchedOnnxFunction(make_session(path, threads), base.function.tokenizer, base.dim)
    return Embedding(function, f"{base.name}, {label}", base.dim)


def op_split(path: Path, threads: int, base, texts: list[str]) -> tuple[float, list[tuple[str, float]]]:
    """onnxruntime's profiler on one pass over ``texts``: the kernels' total seconds and each
    operator type's seconds, largest first."""
    import collections
    import json

    from milvus_rag.embedding import BatchedOnnxFunction

    session = make_session(path, threads, str(path.parent / f"profile-{path.stem}"))
    BatchedOnnxFunction(session, base.function.tokenizer, base.dim).encode_documents(texts)
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"] / 1e6
    return sum(by_op.values()), by_op.most_common()


class TimedSession:
    """Wraps an ONNX session: the seconds spent in ``run`` (the forward pass)."""

    def __init__(self, session):
        self.session, self.seconds = session, 0.0

    def get_inputs(self):
        return self.session.get_inputs()

    def run(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.session.run(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", default=os.environ.get("MILVUS_DOCS_ZIP") or str(SHARED_ZIP))
    parser.add_argument("--questions", default=str(SEED_QUESTIONS))
    parser.add_argument("--rows", type=int, default=0, help="all-docs rows to ingest (0: all)")
    parser.add_argument("--only", action="append", default=[],
                        help="a variant to run, as its label (repeat for more; default all)")
    parser.add_argument("--alternate", type=int, default=128,
                        help="all-docs texts encoded by each variant in turn, best of --rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-ingest", action="store_true", help="only quality and --alternate")
    parser.add_argument("--profile", action="store_true",
                        help="also each variant's time per operator type (onnxruntime's profiler)")
    parser.add_argument("--record", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    print_machine()
    work = Path(tempfile.mkdtemp(prefix="bench-quantized-"))
    os.environ["MILVUS_RAG_DATA_DIR"] = str(work / "data")
    from milvus_rag import chunking, config, corpus, evaluation, index, search
    from milvus_rag.embedding import load_embedding, minilm_onnx

    print(f"\nload average at the start: {load_average()}")
    base = load_embedding("minilm")  # converts into work/data/models once
    fp32 = minilm_onnx()
    chosen = variants(fp32, work)
    if args.only:
        unknown = [label for label in args.only if label not in chosen]
        if unknown:
            parser.error(f"unknown variant {unknown[0]!r}: choose from {', '.join(chosen)}")
        chosen = {label: chosen[label] for label in args.only}
    for label, (path, _) in chosen.items():
        print(f"  {label}: {path.stat().st_size / 2**20:.1f} MiB")
    docs = corpus.open_corpus(args.docs)
    questions = evaluation.load_questions(args.questions)
    phrasings = chunking.load_phrasings(config.phrasings_path())
    _, entries, _, how = chunking.corpus_entries(docs, all_docs=True)
    names = config.collections("bench_quantized")
    client = index.connect(str(work / "milvus.db"))
    runs, timings, best = [], {}, {}
    texts = [row["search_text"] for row in index.entry_rows(entries)][: args.alternate]
    models = {label: make_embedding(base, path, threads, label)
              for label, (path, threads) in chosen.items()}  # fmt: skip
    print(f"\nforward pass, alternating, {len(texts)} all-docs texts, best of {args.rounds}:")
    for round_ in range(args.rounds):
        for label, model in models.items():
            before = load_average()
            started = time.perf_counter()
            model.function.encode_documents(texts)  # the function: no cache
            seconds = time.perf_counter() - started
            best[label] = min(best.get(label, seconds), seconds)
            print(f"  round {round_ + 1}, {label}: {seconds:.2f} s (load {before})", flush=True)
    profiles = {label: op_split(path, threads, base, texts)
                for label, (path, threads) in chosen.items()} if args.profile else {}  # fmt: skip
    try:
        for label, (path, threads) in chosen.items():
            model = make_embedding(base, path, threads, label)
            run = evaluation.evaluate_model(client, names, model, label, docs.root, questions,
                                            search.DEFAULT_STRATEGY, phrasings)  # fmt: skip
            runs.append(run)
            if args.skip_ingest:
                continue
            model = make_embedding(base, path, threads, label)  # nothing embedded yet
            model.function.session = timed = TimedSession(model.function.session)
            cut = entries if not args.rows else _entries_for(entries, args.rows)
            before = load_average()
            started = time.perf_counter()
            synced = index.sync(client, names.docs, model, cut, chunking=how, rebuild=True)
            seconds = time.perf_counter() - started
            timings[label] = (synced["rows"], seconds, timed.seconds, before, load_average())
            client.drop_collection(names.docs)
            print(f"  {label}: ingest {seconds:.1f} s (load {before} -> {load_average()})",
                  flush=True)  # fmt: skip
    finally:
        client.close()
    shown = Path(args.questions).resolve()
    shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown
    report = [f"### Retrieval on {shown} (n={len(questions)}), {search.DEFAULT_STRATEGY}\n",
              "```text", evaluation.format_models(runs), "```",
              f"\n### Forward pass on {len(texts)} all-docs texts, variants in turn, best of {args.rounds}\n",
              "| variant | best s | texts/s | speed-up |", "| --- | --- | --- | --- |"]  # fmt: skip
    first = next(iter(best.values()))
    for label, seconds in best.items():
        report.append(f"| {label} | {seconds:.2f} | {len(texts) / seconds:.1f} | {first / seconds:.2f}x |")
    if profiles:
        report += [f"\n### Where the forward pass goes: onnxruntime's profiler, {len(texts)} texts once\n",
                   "| variant | kernels s | the operator types, seconds (share) |", "| --- | --- | --- |"]
        for label, (total, ops) in profiles.items():
            shares = ", ".join(f"{op} {seconds:.2f} ({100 * seconds / total:.0f}%)"
                               for op, seconds in ops if seconds >= 0.02 * total)  # fmt: skip
            report.append(f"| {label} | {total:.2f} | {shares} |")
    if timings:
        report += ["\n### ingest --all-docs (index.sync of every page into a fresh collection)\n",
                   "| variant | rows | ingest s | of which forward pass s | rows/s | speed-up | load before -> after |",
                   "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        reference = next(iter(timings.values()))[1]
        for label, (count, seconds, forward, before, after) in timings.items():
            report.append(f"| {label} | {count} | {seconds:.1f} | {forward:.1f} | {count / seconds:.1f} | "
                          f"{reference / seconds:.2f}x | {before} -> {after} |")  # fmt: skip
    print("\n" + "\n".join(report))
    shutil.rmtree(work, ignore_errors=True)
    if args.record:
        record(args.record, "bench_quantized.py", {
            "questions": str(shown), "report": "\n".join(report),
            "forward_pass": {"texts": len(texts), "rounds": args.rounds,
                             "best_s": {label: round(s, 2) for label, s in best.items()}},
            "ingest": {label: {"rows": count, "seconds": round(seconds, 1),
                               "forward_pass_s": round(forward, 1), "load": f"{before} -> {after}"}
                       for label, (count, seconds, forward, before, after) in timings.items()}})  # fmt: skip
    return 0


def _entries_for(entries, limit):
    """The first entries whose rows number at most ``limit``."""
    from milvus_rag import index

    kept, count = [], 0
    for entry in entries:
        count += len(index.entry_rows([entry]))
        if count > limit:
            break
        kept.append(entry)
    return kept


if __name__ == "__main__":
    sys.exit(main())
