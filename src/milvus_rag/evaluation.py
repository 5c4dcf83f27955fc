"""Measure retrieval: hit@k and MRR of every strategy on labeled questions, with 95% intervals."""

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from milvus_rag import chunking, coverage, index, search
from milvus_rag.config import Collections
from milvus_rag.errors import RagError

HIT_WINDOW = 300  # a piece is a hit when it holds the gold title within this many characters
DEPTH = 10  # hits retrieved per question: hit@k for k = 1..DEPTH; MRR counts ranks up to here
BOOTSTRAP_SAMPLES = 2000  # resamples of the questions per 95% interval (fixed seed)
METRICS = ("hit@1", "hit@3", "mrr")

# May be the default, simplest first (one route before two, entries before entries with
# phrasings); the tutorial's split is the baseline (it cuts answers at sub-headings).
DEFAULT_CANDIDATES = ("entry-dense", "entry-bm25", "entry-phrasings-dense", "entry-hybrid-rrf",
                      "entry-hybrid-weighted")  # fmt: skip


@dataclass(frozen=True)
class Question:
    q: str
    gold: str  # the title of the FAQ entry that answers it


@dataclass
class Result:  # one strategy's run over a question set
    strategy: str
    description: str
    ranks: list[int | None]  # 1-based rank of the first hit per question (None: not in DEPTH)
    hits: list[list[search.Hit]] = field(repr=False)
    seconds: float = 0.0  # searching; the questions are embedded before any strategy runs

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

    def figure(self, metric: str) -> str:  # "0.901 [0.84, 0.95]"
        low, high = self.interval(metric)
        return f"{self.value(metric):.3f} [{low:.2f}, {high:.2f}]"

    @property
    def metrics(self) -> dict:
        return {"n": len(self.ranks), **{m: round(self.value(m), 4) for m in METRICS}}


def bootstrap_interval(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of the mean of ``values`` (questions resampled)."""
    picks = np.random.default_rng(seed).integers(0, len(values), (BOOTSTRAP_SAMPLES, len(values)))
    low, high = np.percentile(values[picks].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def paired_difference(a: Result, b: Result, metric: str) -> tuple[float, float, float]:
    """``a`` minus ``b`` on ``metric``, with its 95% interval (paired: same resampled questions)."""
    difference = a.scores(metric) - b.scores(metric)
    return (float(difference.mean()), *bootstrap_interval(difference))


def compare(a: Result, b: Result) -> str:
    """One line: ``a`` against ``b`` on each metric, the paired interval, and hit@1 in questions."""
    parts = [f"{m} {d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
             for m in METRICS for d, lo, hi in [paired_difference(a, b, m)]]  # fmt: skip
    gained = int(round(paired_difference(a, b, "hit@1")[0] * len(a.ranks)))
    return (f"{a.strategy} vs {b.strategy}: " + ", ".join(parts) +
            f" ({gained:+d} of {len(a.ranks)} questions at rank 1)")  # fmt: skip


def load_questions(path: str | Path) -> list[Question]:
    """Questions from JSON lines of ``{"q": QUESTION, "gold": FAQ TITLE}``; blank lines skipped."""
    records = _records(path, ("q", "gold"), '{"q": ..., "gold": ...}', "the FAQ title it should find")
    return [Question(record["q"].strip(), record["gold"].strip()) for record in records]


def load_unanswerable(path: str | Path) -> list[str]:
    """Questions the documents do not answer, from JSON lines of ``{"q": QUESTION, "nearest":
    TITLE}`` (the nearest-looking FAQ entry, which does not answer it); blank lines skipped."""
    example = '{"q": ..., "nearest": ...}'
    records = _records(path, ("q", "nearest"), example, "the FAQ title that looks nearest")
    return [record["q"].strip() for record in records]


def _records(path: str | Path, keys: tuple[str, str], example: str, meaning: str) -> list[dict]:
    """The JSON objects of a question file, each checked for non-empty strings under ``keys``."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        why = f"is unreadable ({type(err).__name__})"
        why = "does not exist" if isinstance(err, FileNotFoundError) else why
        raise RagError(f"The question file {str(path)!r} {why}: give a UTF-8 JSON-lines file with "
                       f"one {example} per line, e.g. data/eval/test.jsonl.") from err  # fmt: skip
    records: list[dict] = []
    for number, line in [(n, line) for n, line in enumerate(lines, 1) if line.strip()]:
        where = f"Line {number} of {path.name}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise RagError(f"{where} is not valid JSON ({err.msg}): write {example} on it.") from err  # fmt: skip
        if not isinstance(record, dict) or not all(
            isinstance(record.get(key), str) and record[key].strip() for key in keys
        ):
            raise RagError(f'{where} is not a JSON object with non-empty strings "{keys[0]}" (the '
                           f'question) and "{keys[1]}" ({meaning}): write {example} on it.')  # fmt: skip
        records.append(record)
    if not records:
        raise RagError(f"The question file {path.name} has no questions: add {example} lines.")
    return records


def first_hit_rank(texts: list[str], gold: str) -> int | None:
    """The 1-based rank of the first text holding ``gold`` within ``HIT_WINDOW``, or None."""
    return next((rank for rank, text in enumerate(texts, 1) if gold in text[:HIT_WINDOW]), None)


def unknown_golds(questions: list[Question], entries: list[chunking.Entry]) -> list[str]:
    """The gold titles that head no FAQ entry: those questions could never score a hit."""
    texts = [entry.text for entry in entries]
    return sorted({q.gold for q in questions if first_hit_rank(texts, q.gold) is None})


def supported(client, strategies: list[str]) -> tuple[list[str], str]:
    """Those of ``strategies`` the server can run, and one line naming the others and why ("" if
    none is left out): without BM25 (Milvus before 2.5) the dense strategies only."""
    why = index.lacks(client, "bm25")
    skipped = [name for name in strategies if why and search.strategy_named(name).needs_bm25]
    kept = [name for name in strategies if name not in skipped]
    return kept, f"Skipped {', '.join(skipped)}: {why}." if skipped else ""


def build_collections(client, names: Collections, embedding, docs_dir: Path, strategies,
                      phrasings=None) -> None:  # fmt: skip
    """(Re)create the collections ``strategies`` need (BM25: Milvus 2.5+), entries with ``phrasings``."""
    chosen = [search.strategy_named(s) for s in strategies]
    for kind, name in (("tutorial", names.eval_tutorial), ("entry", names.eval_entries)):
        if mine := [s for s in chosen if s.chunking == kind]:
            entries = (chunking.tutorial_pieces(docs_dir) if kind == "tutorial"
                       else chunking.faq_entries(docs_dir, phrasings))  # fmt: skip
            bm25 = any(s.needs_bm25 for s in mine)
            index.sync(client, name, embedding, entries, bm25=bm25, rebuild=True)


def drop_collections(client, names: Collections) -> None:
    for name in filter(client.has_collection, (names.eval_tutorial, names.eval_entries)):
        client.drop_collection(name)


def evaluate(client, names: Collections, embedding, questions: list[Question],
             strategies: list[str]) -> dict[str, Result]:  # fmt: skip
    """Run each strategy on all questions, one search each, in :func:`build_collections`'s."""
    texts = [question.q for question in questions]
    embedding.encode_queries(texts)  # embedded once, up front: the timings are Milvus's
    results: dict[str, Result] = {}
    for name in strategies:
        strategy = search.strategy_named(name)
        collection = names.eval_tutorial if strategy.chunking == "tutorial" else names.eval_entries
        started = time.perf_counter()
        hits = search.search(client, collection, embedding, texts, DEPTH, name)
        seconds = time.perf_counter() - started
        ranks = [first_hit_rank([hit.text for hit in found], question.gold)
                 for found, question in zip(hits, questions, strict=True)]  # fmt: skip
        results[name] = Result(name, strategy.description, ranks, hits, seconds)
    return results


@dataclass
class ModelRun:
    """One embedding model's run of one strategy: its result (named by the model), the seconds
    to build the collection (embedding and inserting) and to answer each question (embedding it
    and searching)."""

    label: str  # as --models names it
    result: Result
    ingest_s: float
    query_ms: float


def evaluate_model(client, names: Collections, embedding, label: str, docs_dir: Path,
                   questions: list[Question], strategy: str, phrasings=None) -> ModelRun:  # fmt: skip
    """Build ``strategy``'s collection with ``embedding`` and run its questions, timed; the
    collection is dropped afterwards (the next model builds its own)."""
    try:
        started = time.perf_counter()
        build_collections(client, names, embedding, docs_dir, [strategy], phrasings)
        ingest_s, started = time.perf_counter() - started, time.perf_counter()
        result = evaluate(client, names, embedding, questions, [strategy])[strategy]
        query_ms = 1000 * (time.perf_counter() - started) / len(questions)
    finally:
        drop_collections(client, names)
    return ModelRun(label, replace(result, strategy=label), ingest_s, query_ms)


def format_models(runs: list[ModelRun], markdown: bool = False) -> str:
    """The models side by side: hit@1, hit@3 and MRR with 95% intervals, ingest seconds and
    ms per question (``markdown``: without the timings, which depend on the machine), then each
    model's paired differences against the first."""
    first = runs[0]
    if markdown:
        lines = ["| model | hit@1 | hit@3 | MRR |", "| --- | --- | --- | --- |"]
        lines += ["| " + " | ".join([f"`{run.label}`", *(run.result.figure(m) for m in METRICS)])
                  + " |" for run in runs]  # fmt: skip  (the label: a URL's port would drift)
    else:
        width = max(len(run.label) for run in runs) + 2
        header = (f"{'model':<{width}}{'n':>5}" + "".join(f"{m:>21}" for m in METRICS) +
                  f"{'ingest s':>10}{'ms/q':>8}")  # fmt: skip
        lines = [header, "-" * len(header)]
        lines += [f"{run.label:<{width}}{len(run.result.ranks):>5}" +
                  "".join(f"{run.result.figure(m):>21}" for m in METRICS) +
                  f"{run.ingest_s:>10.1f}{run.query_ms:>8.1f}" for run in runs]  # fmt: skip
    n = len(first.result.ranks)
    lines += ["", f"n = {n} questions; [low, high]: 95% bootstrap interval ({BOOTSTRAP_SAMPLES:,} "
              "resamples of the questions)" + ("." if markdown else "; ingest s: embedding and "
              "inserting the collection; ms/q: embedding one question and searching.")]  # fmt: skip
    if len(runs) > 1:
        lines += ["", f"Paired differences against {first.label} (95% intervals; one that holds 0 "
                  "shows no difference):", ""]  # fmt: skip
        lines += [("- " if markdown else "  ") + compare(run.result, first.result) for run in runs[1:]]
    return "\n".join(lines)


def choose_default(results: dict[str, Result]) -> tuple[str | None, str]:
    """The simplest candidate whose hit@1, hit@3 and MRR all lie within the 95% interval of the
    best candidate (highest MRR), and why (in words that do not repeat its name)."""
    present = [name for name in DEFAULT_CANDIDATES if name in results]
    if not present:
        return None, "no candidate strategy was run"
    best = max(present, key=lambda name: results[name].value("mrr"))
    bounds = {m: results[best].interval(m) for m in METRICS}
    for name in present[: present.index(best)]:
        if all(bounds[m][0] <= results[name].value(m) <= bounds[m][1] for m in METRICS):
            return name, f"the simplest candidate within all 95% intervals of the best ({best})"
    return best, "the best MRR, and no simpler candidate lies within all its 95% intervals"


def format_table(results: dict[str, Result], default: str | None = None) -> str:
    """A plain-text table: per strategy, n and each metric with its 95% interval, ms/question."""
    header = f"{'strategy':<24}{'n':>5}" + "".join(f"{m:>21}" for m in METRICS) + "   ms/q"
    lines = [header, "-" * len(header)]
    for name, result in results.items():
        figures = "".join(f"{result.figure(m):>21}" for m in METRICS)
        per_question, mark = 1000 * result.seconds / len(result.ranks), "  *" * (name == default)
        lines.append(f"{name:<24}{len(result.ranks):>5}{figures}{per_question:>7.0f}{mark}")
    lines.append("[low, high]: 95% bootstrap interval over questions" +
                 ("; * the default (search.DEFAULT_STRATEGY)" if default in results else ""))  # fmt: skip
    return "\n".join(lines)


def format_markdown(results: dict[str, Result], default: str | None = None, label: str = "") -> str:
    """The README's table: per strategy hit@1, hit@3 and MRR with 95% intervals, then a caption."""
    lines = ["| strategy | hit@1 | hit@3 | MRR |", "| --- | --- | --- | --- |"]
    for name, result in results.items():
        cells = [f"`{name}`: {result.description}", *(result.figure(m) for m in METRICS)]
        if name == default:
            cells = [f"**{cell}**" for cell in [cells[0] + " (the default)", *cells[1:]]]
        lines.append("| " + " | ".join(cells) + " |")
    n = len(next(iter(results.values())).ranks) if results else 0
    lines += ["", f"{label + ': ' if label else ''}n = {n} questions; [low, high]: 95% bootstrap "
              f"interval ({BOOTSTRAP_SAMPLES:,} resamples of the questions)."]  # fmt: skip
    return "\n".join(lines)


def misses(result: Result, questions: list[Question]) -> list[str]:
    """Lines naming the questions without a hit at rank 1, and what came first instead."""
    return [f"  rank {rank or '-'}: {question.q!r} -> got {found[0].title if found else 'nothing'!r}"
            for question, rank, found in zip(questions, result.ranks, result.hits, strict=True)
            if rank != 1]  # fmt: skip


def write_hits(path: str | Path, questions: list[Question], result: Result, k: int) -> None:
    """One JSON line per question: ``{"q", "gold", "hits": [text of rank 1, ...]}`` (top k)."""
    records = [{"q": question.q, "gold": question.gold, "hits": [hit.text for hit in found[:k]]}
               for question, found in zip(questions, result.hits, strict=True)]  # fmt: skip
    try:
        Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                              encoding="utf-8")  # fmt: skip
    except OSError as err:
        raise RagError(f"Cannot write {str(path)!r} ({err.strerror}): give a writable path.") from err  # fmt: skip


def plot(results: dict[str, Result]):
    """A matplotlib Figure: hit@1, hit@3 and MRR per strategy with 95% intervals, legend aside."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4.4))
    axes = figure.subplots()
    names, width = list(results), 0.8 / len(METRICS)
    for offset, metric in enumerate(METRICS):
        values = np.array([results[name].value(metric) for name in names])
        bounds = np.array([results[name].interval(metric) for name in names])
        errors = np.abs(bounds.T - values)  # below and above each value
        axes.bar(np.arange(len(names)) + (offset - 1) * width, values, width, yerr=errors,
                 capsize=3, label=metric)  # fmt: skip
    axes.set_xticks(np.arange(len(names)), names, rotation=25, ha="right", fontsize="small")
    axes.set(ylim=(0, 1.05), ylabel="share of questions (MRR: mean 1/rank)",
             title="Retrieval per strategy, with 95% bootstrap intervals")  # fmt: skip
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    figure.tight_layout()
    return figure


def best_scores(client, names: Collections, embedding, questions: list[str]) -> list[float]:
    """The default strategy's best score for each question, from the entries collection that
    :func:`build_collections` built for it (with phrasings): what ``ask`` judges coverage by."""
    found = search.search(client, names.eval_entries, embedding, questions, 1, search.DEFAULT_STRATEGY)
    return [hits[0].score if hits else float("-inf") for hits in found]


def share_line(label: str, hits: np.ndarray) -> str:
    """``label: 11 of 19, 0.579 [0.37, 0.79]``: how many, the share and its 95% interval."""
    low, high = bootstrap_interval(hits)
    return f"{label}: {int(hits.sum())} of {len(hits)}, {hits.mean():.3f} [{low:.2f}, {high:.2f}]"


def abstention(answerable: list[float], unanswerable: list[float], limit: float) -> list[str]:
    """Two lines: the share of unanswerable questions abstained on (best score below ``limit``)
    and of answerable ones still answered, each with its 95% bootstrap interval."""
    abstained = (np.array(unanswerable) < limit).astype(float)
    answered = (np.array(answerable) >= limit).astype(float)
    return [share_line("unanswerable questions abstained on", abstained),
            share_line("answerable questions still answered", answered)]


def calibration(answerable: list[float], model_name: str) -> str:
    """The rule, the threshold it gives on ``answerable`` (development) scores, and whether
    :data:`coverage.THRESHOLDS` holds it for ``model_name``."""
    found, stored = coverage.calibrate(answerable), coverage.threshold(model_name)
    rule = (f"the highest best-hit score that still answers {coverage.ANSWERED_SHARE:.0%} of the "
            "answerable development questions")  # fmt: skip
    state = ("coverage.THRESHOLDS holds it" if stored == found else
             f"coverage.THRESHOLDS holds {stored}: set it to {found}")  # fmt: skip
    return f"Threshold for {model_name}, by the rule ({rule}): {found:.3f}; {state}."


def coverage_report(client, names: Collections, embedding, answerable_path: str | Path,
                    unanswerable_path: str | Path, calibrate: bool = False) -> str:  # fmt: skip
    """How often the default pipeline abstains: on answerable and unanswerable questions, from the
    entries collection :func:`build_collections` built; with ``calibrate`` (development questions
    only) the threshold is the rule's, and a first line says whether it is the stored one."""
    answerable = [q.q for q in load_questions(answerable_path)]
    unanswerable = load_unanswerable(unanswerable_path)
    limit, lines = coverage.threshold(embedding.name), []
    if limit is None and not calibrate:
        return coverage.judge([], embedding.name).sentence
    scores = (best_scores(client, names, embedding, answerable),
              best_scores(client, names, embedding, unanswerable))  # fmt: skip
    if calibrate:
        lines.append(calibration(scores[0], embedding.name))
        limit = coverage.calibrate(scores[0])
    lines.append(f"Coverage on {'development' if calibrate else 'held-out'} questions "
                 f"({Path(answerable_path).name}: answerable, {Path(unanswerable_path).name}: "
                 f"unanswerable), {search.DEFAULT_STRATEGY}, not covered below a best-hit score "
                 f"of {limit:.3f}:")  # fmt: skip
    lines += [f"- {line}" for line in abstention(*scores, limit)]
    lines.append(f"[low, high]: 95% bootstrap interval ({BOOTSTRAP_SAMPLES:,} resamples of the "
                 "questions).")  # fmt: skip
    return "\n".join(lines)
