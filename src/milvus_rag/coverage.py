"""Whether the documents answer a question: a threshold on the best hit's score, per embedding model.

Scores of different models are not comparable, so each model has its own threshold, calibrated on
development questions only (``python -m milvus_rag eval --calibrate``: real users' questions the FAQ
answers, ``data/eval/real_dev.jsonl``, and ones it does not, ``data/eval/unanswerable_dev.jsonl``).
A model without one is never judged: every question goes to the LLM, and a line says so."""

import math
from dataclasses import dataclass

ANSWERED_SHARE = 0.95  # the rule: the highest threshold that still answers this share of the
# answerable development questions (answering nearly all of them comes first: a wrong abstention
# hides an answer the documents hold, a wrong answer is still shown with its sources).
THRESHOLDS = {  # model name (as ``Embedding.name`` reports it) -> best-hit score below which a
    # question is not covered; each the output of `python -m milvus_rag eval --calibrate`
    "minilm (all-MiniLM-L6-v2, packaged)": 0.513,
    "minilm-int8 (all-MiniLM-L6-v2, packaged, int8 weights)": 0.481,
}
NOT_COVERED = "The documents do not seem to cover this question"


@dataclass(frozen=True)
class Verdict:
    covered: bool  # True also where no threshold is calibrated (the question is answered)
    calibrated: bool
    sentence: str  # what to tell the reader: why not covered, or that nothing was judged; "" else


def threshold(model_name: str) -> float | None:
    return THRESHOLDS.get(model_name)


def judge(hits: list, model_name: str, hint: str = "") -> Verdict:
    """Whether ``hits`` (best first) cover their question, by the best score and ``model_name``'s
    threshold; ``hint`` ends the sentence of a question not covered (how to answer it anyway)."""
    limit = threshold(model_name)
    if limit is None:
        known = ", ".join(THRESHOLDS)
        return Verdict(True, False, f"No coverage threshold is calibrated for {model_name} (only "
                       f"for {known}): every question goes to the LLM; run `python -m milvus_rag "
                       "eval --calibrate` with this model to calibrate one.")  # fmt: skip
    best = hits[0].score if hits else -math.inf
    if best >= limit:
        return Verdict(True, True, "")
    found = f"its best match scores {best:.3f}" if hits else "nothing matched"
    return Verdict(False, True, f"{NOT_COVERED} ({found}, below the {limit:.3f} calibrated for "
                   f"{model_name}), so it was not sent to the LLM{hint}.")  # fmt: skip


def calibrate(answerable_scores: list[float], share: float = ANSWERED_SHARE) -> float:
    """The rule: the highest threshold (rounded down to 3 decimals) at which at least ``share`` of
    the answerable questions' best scores still reach it."""
    ordered = sorted(answerable_scores)
    allowed = math.floor(len(ordered) * (1 - share) + 1e-9)  # questions that may fall below
    return math.floor(ordered[allowed] * 1000) / 1000
