"""Measure retrieval: a labeled question set, hit@k and MRR, every strategy side by side.

A question set is JSON lines, one ``{"q": QUESTION, "gold": TITLE}`` per line, where TITLE is
the FAQ entry's heading exactly as written in the docs. A retrieved piece is a *hit* when its
text contains the gold title within its first ``HIT_WINDOW`` characters, so the measure works
for any chunking (the tutorial's pieces and the FAQ entries both start with their heading).

``python -m milvus_rag eval --questions FILE [--k K] [--output OUT.jsonl]`` ingests the FAQ
into evaluation collections, runs every strategy of :mod:`milvus_rag.retrieval` on every
question, prints a table per strategy, and ends with one JSON line for the default pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from milvus_rag import chunking, docs, retrieval, store
from milvus_rag.errors import RagError
from milvus_rag.settings import data_dir, milvus_token

HIT_WINDOW = 300
"""A piece is a hit when the gold title occurs within its first this many characters."""

CURVE_MAX_K = 10
"""hit@k curves run k = 1..CURVE_MAX_K; MRR counts ranks up to this depth."""

EVAL_SUFFIX = "_eval"
"""Evaluation collections are ``<collection>_eval`` (and ``..._eval_tutorial``), dropped after."""


@dataclass(frozen=True)
class Question:
    q: str
    gold: str


@dataclass
class StrategyResult:
    """One strategy's run over a question set."""

    strategy: str
    description: str
    ranks: list[int | None]
    """1-based rank of the first hit per question (None: no hit in the retrieved pieces)."""
    hits: list[list[retrieval.Hit]] = field(repr=False)
    """The retrieved pieces per question, best first."""
    seconds: float = 0.0
    """Time spent searching (the questions are embedded once, beforehand, for all strategies)."""

    @property
    def metrics(self) -> dict:
        return summary(self.ranks)

    @property
    def curve(self) -> list[float]:
        return hit_curve(self.ranks, CURVE_MAX_K)


def load_questions(path: str | Path) -> list[Question]:
    """The questions of a JSON-lines file; blank lines are skipped, anything else must parse."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise RagError(
            f"The question file {str(path)!r} does not exist: give --questions a JSON-lines "
            'file with one {"q": ..., "gold": ...} per line.'
        ) from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as err:
        raise RagError(
            f"Cannot read the question file {str(path)!r} ({type(err).__name__}): give a "
            "readable UTF-8 JSON-lines file."
        ) from None
    questions: list[Question] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"Line {number} of {path.name}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise RagError(
                f'{where} is not valid JSON ({err.msg}): write {{"q": ..., "gold": ...}} on it.'
            ) from None
        if not isinstance(record, dict):
            raise RagError(f'{where} is not a JSON object: write {{"q": ..., "gold": ...}} on it.')
        for key in ("q", "gold"):
            value = record.get(key)
            if not isinstance(value, str) or not value.strip():
                raise RagError(
                    f'{where} has no non-empty string "{key}": give it the question ("q") '
                    'and the FAQ title it should find ("gold").'
                )
        questions.append(Question(record["q"].strip(), record["gold"].strip()))
    if not questions:
        raise RagError(
            f'The question file {path.name} has no questions: add {{"q": ..., "gold": ...}} lines.'
        )
    return questions


def is_hit(text: str, gold: str) -> bool:
    """Whether ``text`` contains ``gold`` within its first ``HIT_WINDOW`` characters."""
    return gold in text[:HIT_WINDOW]


def first_hit_rank(texts: list[str], gold: str) -> int | None:
    """The 1-based rank of the first text that is a hit for ``gold``, or None."""
    for rank, text in enumerate(texts, 1):
        if is_hit(text, gold):
            return rank
    return None


def hit_at(ranks: list[int | None], k: int) -> float:
    """Share of questions with a hit among the first ``k`` pieces."""
    if not ranks:
        return 0.0
    return sum(1 for rank in ranks if rank is not None and rank <= k) / len(ranks)


def mrr(ranks: list[int | None], depth: int = CURVE_MAX_K) -> float:
    """Mean reciprocal rank of the first hit (0 for none within ``depth``)."""
    if not ranks:
        return 0.0
    return sum(1 / rank for rank in ranks if rank is not None and rank <= depth) / len(ranks)


def hit_curve(ranks: list[int | None], max_k: int = CURVE_MAX_K) -> list[float]:
    """hit@k for k = 1..max_k."""
    return [hit_at(ranks, k) for k in range(1, max_k + 1)]


def summary(ranks: list[int | None]) -> dict:
    """``{"n", "hit@1", "hit@3", "mrr"}``, rounded to 4 places."""
    return {
        "n": len(ranks),
        "hit@1": round(hit_at(ranks, 1), 4),
        "hit@3": round(hit_at(ranks, 3), 4),
        "mrr": round(mrr(ranks), 4),
    }


class _QueryCache:
    """An embedding wrapper that encodes each distinct question once per run."""

    def __init__(self, embedding):
        self._embedding = embedding
        self._cache: dict[str, object] = {}
        self.dim = embedding.dim

    def encode_documents(self, texts):
        return self._embedding.encode_documents(texts)

    def encode_queries(self, texts):
        missing = [text for text in dict.fromkeys(texts) if text not in self._cache]
        if missing:
            self._cache.update(zip(missing, self._embedding.encode_queries(missing), strict=True))
        return [self._cache[text] for text in texts]


def evaluate_strategies(
    client,
    collection: str,
    embedding,
    questions: list[Question],
    strategies: list[str] | None = None,
    depth: int = CURVE_MAX_K,
) -> dict[str, StrategyResult]:
    """Run each strategy (default: all) on each question against collections from ``ingest``."""
    cached = _QueryCache(embedding)
    cached.encode_queries([question.q for question in questions])  # once, outside the timings
    results: dict[str, StrategyResult] = {}
    for name in strategies or list(retrieval.STRATEGIES):
        strategy = retrieval.strategy_named(name)
        started = time.perf_counter()
        hits = [
            retrieval.search(client, collection, cached, question.q, depth, strategy=name)
            for question in questions
        ]
        ranks = [
            first_hit_rank([hit.text for hit in found], question.gold)
            for found, question in zip(hits, questions, strict=True)
        ]
        results[name] = StrategyResult(
            name, strategy.description, ranks, hits, time.perf_counter() - started
        )
    return results


def hit_curves(results: dict[str, StrategyResult]) -> dict[str, list[float]]:
    """hit@k for k = 1..10 per strategy, for :func:`plot_hit_at_k`."""
    return {name: result.curve for name, result in results.items()}


def unknown_golds(questions: list[Question], texts: list[str]) -> list[str]:
    """The gold titles that no text contains within its first ``HIT_WINDOW`` characters."""
    return sorted({q.gold for q in questions if not any(is_hit(text, q.gold) for text in texts)})


def format_table(results: dict[str, StrategyResult], default: str | None = None) -> str:
    """A plain-text table: a row per strategy with n, hit@1, hit@3, hit@10, MRR, ms/question."""
    header = (
        f"{'strategy':<24}{'n':>5}{'hit@1':>8}{'hit@3':>8}{'hit@10':>8}{'MRR':>8}{'ms/q':>7}  about"
    )
    lines = [header, "-" * len(header)]
    for name, result in results.items():
        m = result.metrics
        per_question = 1000 * result.seconds / max(m["n"], 1)
        mark = " *" if name == default else ""
        lines.append(
            f"{name:<24}{m['n']:>5}{m['hit@1']:>8.3f}{m['hit@3']:>8.3f}"
            f"{hit_at(result.ranks, CURVE_MAX_K):>8.3f}{m['mrr']:>8.3f}{per_question:>7.0f}  "
            f"{result.description}{mark}"
        )
    if default in results:
        lines.append("* the default pipeline (retrieval.DEFAULT_STRATEGY)")
    return "\n".join(lines)


def misses(result: StrategyResult, questions: list[Question], k: int = 1) -> list[str]:
    """Lines naming the questions without a hit in the first ``k``, and what came first."""
    lines = []
    for question, rank, found in zip(questions, result.ranks, result.hits, strict=True):
        if rank is None or rank > k:
            top = found[0].title if found else "nothing"
            lines.append(f"  rank {rank or '-'}: {question.q!r} -> got {top!r}")
    return lines


def write_output(
    path: str | Path, questions: list[Question], result: StrategyResult, k: int
) -> None:
    """One JSON line per question: ``{"q", "gold", "hits": [text of rank 1, ...]}`` (top k)."""
    with open(path, "w", encoding="utf-8") as out:
        for question, found in zip(questions, result.hits, strict=True):
            record = {"q": question.q, "gold": question.gold, "hits": [h.text for h in found[:k]]}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def plot_hit_at_k(curves: dict[str, list[float]]):
    """A matplotlib Figure of hit@k against k, one line per strategy."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2))
    axes = figure.subplots()
    for name, curve in curves.items():
        axes.plot(range(1, len(curve) + 1), curve, marker="o", label=name)
    longest = max((len(curve) for curve in curves.values()), default=CURVE_MAX_K)
    axes.set_xticks(range(1, longest + 1))
    axes.set_xlabel("k (pieces retrieved)")
    axes.set_ylabel("hit@k (share of questions)")
    axes.set_ylim(0, 1.02)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    axes.set_title("Right FAQ entry among the first k pieces")
    figure.tight_layout()
    return figure


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``eval`` subcommand's own options (the caller adds --docs, --uri, --collection)."""
    parser.add_argument(
        "--questions",
        required=True,
        help='JSON-lines file of {"q": QUESTION, "gold": FAQ TITLE}, e.g. data/eval/questions.jsonl',
    )
    parser.add_argument(
        "--k", type=int, default=CURVE_MAX_K, help="hits per question in --output (default 10)"
    )
    parser.add_argument(
        "--output", default=None, help="write one JSON line per question with its top-k texts"
    )
    parser.add_argument(
        "--strategy",
        default=retrieval.DEFAULT_STRATEGY,
        help=f"the pipeline for the last JSON line and --output (default {retrieval.DEFAULT_STRATEGY})",
    )
    parser.add_argument(
        "--only", action="store_true", help="evaluate --strategy alone, not every strategy"
    )


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_eval(args: argparse.Namespace, embedding, config) -> int:
    """``python -m milvus_rag eval``: prints the table, then one JSON line; returns 0."""
    started = time.perf_counter()
    if args.k < 1:
        raise RagError(f"--k must be at least 1, not {args.k}.")
    retrieval.strategy_named(args.strategy)
    questions = load_questions(args.questions)
    if args.output and not Path(args.output).resolve().parent.is_dir():
        raise RagError(
            f"The folder of --output {args.output!r} does not exist: create it or give another path."
        )
    strategies = [args.strategy] if args.only else list(retrieval.STRATEGIES)
    depth = max(args.k, CURVE_MAX_K)
    docs_dir = docs.prepare_docs(config.docs_source, data_dir())
    unknown = unknown_golds(questions, [e.text for e in chunking.load_faq_entries(docs_dir)])
    if unknown:
        _status(
            f"Warning: {len(unknown)} gold title(s) occur in no FAQ entry, so those questions "
            f"can never score a hit (check the spelling): {unknown[:3]}"
        )
    client = store.connect(config.uri, milvus_token())
    collection = config.collection + EVAL_SUFFIX
    tutorial = any(retrieval.strategy_named(s).chunking == "tutorial" for s in strategies)
    try:
        counts = retrieval.ingest(client, collection, embedding, docs_dir, tutorial=tutorial)
        _status("Ingested " + ", ".join(f"{name}: {n} pieces" for name, n in counts.items()) + ".")
        results = evaluate_strategies(client, collection, embedding, questions, strategies, depth)
    finally:
        for name in (collection, collection + retrieval.TUTORIAL_SUFFIX):
            try:
                if client.has_collection(name):
                    client.drop_collection(name)
            except Exception:  # cleaning up must not hide the real error
                pass
        client.close()
    print(f"Retrieval on {args.questions} (n={len(questions)}), embedding {embedding.name}:")
    print(format_table(results, default=args.strategy))
    chosen = results[args.strategy]
    missed = misses(chosen, questions)
    if missed:
        print(f"\n{args.strategy}: first hit not at rank 1 for")
        print("\n".join(missed))
    if args.output:
        try:
            write_output(args.output, questions, chosen, args.k)
        except OSError as err:
            raise RagError(
                f"Cannot write --output {args.output!r} ({err.strerror}): give a writable path."
            ) from None
        _status(f"Wrote {len(questions)} lines to {args.output}.")
    _status(f"Eval took {time.perf_counter() - started:.1f} s.")
    print(json.dumps(chosen.metrics))
    return 0
