"""Measure retrieval: labeled questions, hit@k and MRR with bootstrap intervals, every strategy.

A question set is JSON lines, one ``{"q": QUESTION, "gold": TITLE}`` per line, TITLE being the
FAQ entry's heading as written in the docs. A retrieved piece is a *hit* when its text holds the
gold title within its first ``HIT_WINDOW`` characters, so the measure works for any chunking
(the tutorial's pieces and the FAQ entries both start with their heading). ``data/eval/README.md``
says how the development and test sets were written and what each is for.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from milvus_rag import chunking, index, search
from milvus_rag.config import Collections
from milvus_rag.errors import RagError

HIT_WINDOW = 300
"""A piece is a hit when the gold title occurs within its first this many characters."""

DEPTH = 10
"""Hits retrieved per question: hit@k for k = 1..DEPTH, and MRR counts ranks up to here."""

BOOTSTRAP_SAMPLES = 2000
"""Resamples of the questions for the 95% intervals (fixed seed: the same table every run)."""

METRICS = ("hit@1", "hit@3", "mrr")

CANDIDATES = ("entry-dense", "entry-bm25", "entry-phrasings-dense", "entry-hybrid-rrf",
              "entry-hybrid-weighted")  # fmt: skip
"""Strategies that may be the default, simplest first (one route before two; plain entries
before entries with phrasings). The tutorial's split is the baseline: its pieces cut answers at
sub-headings, so the LLM would see fragments."""


@dataclass(frozen=True)
class Question:
    q: str
    gold: str


@dataclass
class Result:
    """One strategy's run over a question set."""

    strategy: str
    description: str
    ranks: list[int | None]
    """1-based rank of the first hit per question (None: none in the top ``DEPTH``)."""
    hits: list[list[search.Hit]] = field(repr=False)
    seconds: float = 0.0
    """Time spent searching (questions are embedded once, before any strategy runs)."""

    def scores(self, metric: str) -> np.ndarray:
        """Per-question values of ``metric``: 1/0 for hit@k, 1/rank for MRR."""
        ranks = np.array([r if r is not None else np.inf for r in self.ranks], dtype=float)
        if metric == "mrr":
            return np.where(ranks <= DEPTH, 1 / ranks, 0.0)
        return (ranks <= int(metric.removeprefix("hit@"))).astype(float)

    def value(self, metric: str) -> float:
        return float(self.scores(metric).mean()) if self.ranks else 0.0

    def interval(self, metric: str) -> tuple[float, float]:
        return bootstrap_interval(self.scores(metric))

    @property
    def metrics(self) -> dict:
        return {"n": len(self.ranks), **{m: round(self.value(m), 4) for m in METRICS}}


def bootstrap_interval(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of the mean of ``values`` (questions resampled)."""
    if len(values) == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(BOOTSTRAP_SAMPLES, len(values)))
    means = values[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def paired_difference(a: Result, b: Result, metric: str) -> tuple[float, float, float]:
    """``a`` minus ``b`` on ``metric`` over the same questions, with its 95% interval from
    resampling the questions (paired: both strategies see the same resample)."""
    difference = a.scores(metric) - b.scores(metric)
    low, high = bootstrap_interval(difference)
    return float(difference.mean()), low, high


def compare(a: Result, b: Result) -> str:
    """One line: ``a`` against ``b`` on each metric, the paired interval, and hit@1 in questions."""
    parts = []
    for metric in METRICS:
        diff, low, high = paired_difference(a, b, metric)
        parts.append(f"{metric} {diff:+.3f} [{low:+.3f}, {high:+.3f}]")
    gained = int(round(paired_difference(a, b, "hit@1")[0] * len(a.ranks)))
    return (f"{a.strategy} vs {b.strategy}: " + ", ".join(parts) +
            f" ({gained:+d} of {len(a.ranks)} questions at rank 1)")  # fmt: skip


def load_questions(path: str | Path) -> list[Question]:
    """The questions of a JSON-lines file; blank lines are skipped, anything else must parse."""
    path = Path(path)
    example = '{"q": ..., "gold": ...}'
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as err:
        raise RagError(
            f"The question file {str(path)!r} does not exist: give a JSON-lines file with one "
            f"{example} per line, e.g. data/eval/test.jsonl."
        ) from err
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as err:
        raise RagError(
            f"Cannot read the question file {str(path)!r} ({type(err).__name__}): give a "
            "readable UTF-8 JSON-lines file."
        ) from err
    questions: list[Question] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"Line {number} of {path.name}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise RagError(
                f"{where} is not valid JSON ({err.msg}): write {example} on it."
            ) from err
        if not isinstance(record, dict):
            raise RagError(f"{where} is not a JSON object: write {example} on it.")
        for key in ("q", "gold"):
            value = record.get(key)
            if not isinstance(value, str) or not value.strip():
                raise RagError(
                    f'{where} has no non-empty string "{key}": give it the question ("q") and '
                    'the FAQ title it should find ("gold").'
                )
        questions.append(Question(record["q"].strip(), record["gold"].strip()))
    if not questions:
        raise RagError(f"The question file {path.name} has no questions: add {example} lines.")
    return questions


def is_hit(text: str, gold: str) -> bool:
    return gold in text[:HIT_WINDOW]


def first_hit_rank(texts: list[str], gold: str) -> int | None:
    """The 1-based rank of the first text that is a hit for ``gold``, or None."""
    return next((rank for rank, text in enumerate(texts, 1) if is_hit(text, gold)), None)


def unknown_golds(questions: list[Question], entries: list[chunking.Entry]) -> list[str]:
    """The gold titles that head no FAQ entry: those questions could never score a hit."""
    return sorted({q.gold for q in questions if not any(is_hit(e.text, q.gold) for e in entries)})


def build_collections(
    client, names: Collections, embedding, docs_dir: Path, strategies, phrasings=None
) -> None:
    """(Re)create the evaluation collections the ``strategies`` need, with a BM25 field where
    any of them searches by BM25 (Milvus 2.5+); entries carry their ``phrasings`` (see
    :func:`milvus_rag.chunking.load_phrasings`) for the strategy that searches them."""
    plans = {
        "tutorial": (names.eval_tutorial, chunking.tutorial_pieces),
        "entry": (names.eval_entries, lambda folder: chunking.faq_entries(folder, phrasings)),
    }
    for kind, (name, load) in plans.items():
        chosen = [search.strategy_named(s) for s in strategies]
        chosen = [s for s in chosen if s.chunking == kind]
        if chosen:
            index.sync(
                client, name, embedding, load(docs_dir),
                bm25=any(s.needs_bm25 for s in chosen), rebuild=True,
            )  # fmt: skip


def drop_collections(client, names: Collections) -> None:
    for name in (names.eval_tutorial, names.eval_entries):
        if client.has_collection(name):
            client.drop_collection(name)


def evaluate(
    client, names: Collections, embedding, questions: list[Question], strategies: list[str]
) -> dict[str, Result]:
    """Run each strategy on each question against the collections of :func:`build_collections`."""
    embedding.encode_queries([question.q for question in questions])  # embedded once, up front
    results: dict[str, Result] = {}
    for name in strategies:
        strategy = search.strategy_named(name)
        collection = names.eval_tutorial if strategy.chunking == "tutorial" else names.eval_entries
        started = time.perf_counter()
        hits = [
            search.search(client, collection, embedding, question.q, DEPTH, name)
            for question in questions
        ]
        seconds = time.perf_counter() - started
        ranks = [
            first_hit_rank([hit.text for hit in found], question.gold)
            for found, question in zip(hits, questions, strict=True)
        ]
        results[name] = Result(name, strategy.description, ranks, hits, seconds)
    return results


def choose_default(results: dict[str, Result]) -> tuple[str | None, str]:
    """The simplest candidate whose hit@1, hit@3 and MRR all lie within the 95% interval of the
    best candidate (highest MRR), and a sentence saying why."""
    present = [name for name in CANDIDATES if name in results]
    if not present:
        return None, "no candidate strategy was run"
    best = max(present, key=lambda name: results[name].value("mrr"))
    bounds = {m: results[best].interval(m) for m in METRICS}
    for name in present:
        if name == best:
            return name, (
                f"{name} has the best MRR of the candidates, and no simpler one has hit@1, hit@3 "
                "and MRR all within its 95% intervals"
            )
        if all(bounds[m][0] <= results[name].value(m) <= bounds[m][1] for m in METRICS):
            why = (
                f"{name} is the simplest strategy whose hit@1, hit@3 and MRR all lie within the "
                f"95% intervals of the best ({best})"
            )
            return name, why
    return best, f"{best} is the best, and no simpler strategy lies within its intervals"


def format_table(results: dict[str, Result], default: str | None = None) -> str:
    """A plain-text table: per strategy, n and each metric with its 95% interval, ms/question."""
    cell = 21
    header = f"{'strategy':<24}{'n':>5}" + "".join(f"{m:>{cell}}" for m in METRICS) + "   ms/q"
    lines = [header, "-" * len(header)]
    for name, result in results.items():
        figures = ""
        for metric in METRICS:
            low, high = result.interval(metric)
            figures += f"{result.value(metric):>8.3f} [{low:.2f}, {high:.2f}]"
        per_question = 1000 * result.seconds / max(len(result.ranks), 1)
        mark = "  *" if name == default else ""
        lines.append(f"{name:<24}{len(result.ranks):>5}{figures}{per_question:>7.0f}{mark}")
    lines.append("[low, high]: 95% bootstrap interval over questions" +
                 ("; * the default (search.DEFAULT_STRATEGY)" if default in results else ""))  # fmt: skip
    return "\n".join(lines)


def misses(result: Result, questions: list[Question]) -> list[str]:
    """Lines naming the questions without a hit at rank 1, and what came first instead."""
    lines = []
    for question, rank, found in zip(questions, result.ranks, result.hits, strict=True):
        if rank != 1:
            top = found[0].title if found else "nothing"
            lines.append(f"  rank {rank or '-'}: {question.q!r} -> got {top!r}")
    return lines


def write_hits(path: str | Path, questions: list[Question], result: Result, k: int) -> None:
    """One JSON line per question: ``{"q", "gold", "hits": [text of rank 1, ...]}`` (top k)."""
    try:
        with open(path, "w", encoding="utf-8") as out:
            for question, found in zip(questions, result.hits, strict=True):
                hits = [hit.text for hit in found[:k]]
                record = {"q": question.q, "gold": question.gold, "hits": hits}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    except OSError as err:
        raise RagError(
            f"Cannot write {str(path)!r} ({err.strerror}): give a writable path."
        ) from err


def plot(results: dict[str, Result]):
    """A matplotlib Figure: hit@1, hit@3 and MRR per strategy with their 95% intervals."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.4))
    axes = figure.subplots()
    names = list(results)
    width = 0.8 / len(METRICS)
    for offset, metric in enumerate(METRICS):
        values = np.array([results[name].value(metric) for name in names])
        bounds = np.array([results[name].interval(metric) for name in names])
        errors = np.vstack([values - bounds[:, 0], bounds[:, 1] - values])
        positions = np.arange(len(names)) + (offset - 1) * width
        axes.bar(positions, values, width, yerr=errors, capsize=3, label=metric)
    axes.set_xticks(np.arange(len(names)), names, rotation=25, ha="right", fontsize="small")
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("share of questions (MRR: mean 1/rank)")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    axes.set_title("Retrieval per strategy, with 95% bootstrap intervals")
    figure.tight_layout()
    return figure
