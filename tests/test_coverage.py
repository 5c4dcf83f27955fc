"""Whether the documents cover a question: the threshold per embedding model, its rule, the
question sets it is calibrated and measured on."""

import json
import math

import numpy as np
import pytest

from milvus_rag import coverage, evaluation
from milvus_rag.config import EVAL_SETS, project_root
from milvus_rag.search import Hit

MINILM = "minilm (all-MiniLM-L6-v2, packaged)"


def hits(*scores):
    return [Hit(f"text {n}", score, "faq.md", f"title {n}") for n, score in enumerate(scores)]


def test_a_best_score_at_the_threshold_is_covered_and_one_below_is_not():
    limit = coverage.threshold(MINILM)
    assert coverage.judge(hits(limit, 0.1), MINILM) == coverage.Verdict(True, True, "")
    below = coverage.judge(hits(limit - 0.001, 0.9 * limit), MINILM, hint=" (HINT)")
    assert (below.covered, below.calibrated) == (False, True)
    assert below.sentence.startswith(coverage.NOT_COVERED + " (its best match scores ")
    assert f"below the {limit:.3f} calibrated for {MINILM}" in below.sentence
    assert below.sentence.endswith("not sent to the LLM (HINT).")


def test_only_the_best_hit_counts_and_no_hit_is_not_covered():
    limit = coverage.threshold(MINILM)
    assert coverage.judge(hits(limit + 0.1, 0.0, 0.0), MINILM).covered
    nothing = coverage.judge([], MINILM)
    assert not nothing.covered and "nothing matched" in nothing.sentence


def test_a_model_without_a_calibration_answers_everything_and_says_so():
    verdict = coverage.judge(hits(-5.0), "some other model")
    assert (verdict.covered, verdict.calibrated) == (True, False)
    assert "No coverage threshold is calibrated for some other model" in verdict.sentence
    assert "eval --calibrate" in verdict.sentence and MINILM in verdict.sentence


def test_the_rule_keeps_the_share_of_answerable_questions_answered():
    scores = [0.47, 0.51, 0.52, *np.linspace(0.55, 0.9, 30)]  # n = 33: one may fall below
    assert coverage.calibrate(scores) == 0.51
    assert sum(s >= coverage.calibrate(scores) for s in scores) / len(scores) >= 0.95
    assert coverage.calibrate([0.3, 0.8]) == 0.3  # n = 2: none may fall below
    assert coverage.calibrate([0.51299, *[0.9] * 18]) == 0.512  # n = 19: rounded down, still answered
    assert coverage.calibrate(list(range(40)), share=0.9) == 4


def test_abstention_counts_shares_with_intervals():
    first, second = evaluation.abstention([0.6, 0.4, 0.7, 0.9], [0.1, 0.55, 0.2], 0.5)
    assert first.startswith("unanswerable questions abstained on: 2 of 3, 0.667 [")
    assert second.startswith("answerable questions still answered: 3 of 4, 0.750 [")


def test_the_calibration_line_says_whether_the_stored_threshold_is_the_rules():
    scores = [0.4, *[0.9] * 30]
    assert "0.900; coverage.THRESHOLDS holds 0.513: set it to 0.9." in evaluation.calibration(
        scores, MINILM)  # fmt: skip
    assert evaluation.calibration([0.513, 0.8], MINILM).endswith("coverage.THRESHOLDS holds it.")


# --------------------------------------------------------------------------- the question sets


def rows(name):
    path = project_root() / "data" / "eval" / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.mark.parametrize("name", ["unanswerable_dev.jsonl", "unanswerable_test.jsonl"])
def test_unanswerable_questions_carry_their_source_nearest_entry_and_why(name):
    loaded = evaluation.load_unanswerable(project_root() / "data" / "eval" / name)
    records = rows(name)
    assert len(loaded) == len(records) >= 18
    for record in records:
        assert set(record) == {"q", "nearest", "source", "why"}
        assert record["source"].startswith("https://github.com/") and len(record["why"]) > 20


def test_the_unanswerable_split_shares_no_thread_and_no_question_with_the_answerable_sets():
    dev, test = rows(EVAL_SETS["unanswerable, dev"]), rows(EVAL_SETS["unanswerable"])
    assert not {r["source"] for r in dev} & {r["source"] for r in test}
    answerable = {r["q"].lower() for name in ("real_dev.jsonl", "real_test.jsonl")
                  for r in rows(name)}  # fmt: skip
    assert not {r["q"].lower() for r in dev + test} & answerable
    assert math.isclose(len(dev) / (len(dev) + len(test)), 0.5, abs_tol=0.05)


def test_each_nearest_entry_is_a_heading_of_the_faq(docs_dir):
    from milvus_rag.chunking import faq_entries

    texts = [entry.text for entry in faq_entries(docs_dir)]
    for name in ("unanswerable_dev.jsonl", "unanswerable_test.jsonl"):
        nearest = [evaluation.Question(r["q"], r["nearest"]) for r in rows(name)]
        assert not [q.gold for q in nearest
                    if evaluation.first_hit_rank(texts, q.gold) is None], name  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("choice", ["minilm", "minilm-int8"])
def test_each_stored_threshold_is_what_calibrating_its_model_gives_now(choice, docs_zip, lite_uri,
                                                                       monkeypatch, capsys):  # fmt: skip
    from milvus_rag import cli

    monkeypatch.setenv("EMBEDDING_MODEL", choice)
    monkeypatch.setenv("MILVUS_LITE_PATH", lite_uri)
    monkeypatch.setenv("MILVUS_DOCS_ZIP", str(docs_zip))
    assert cli.main(["eval", "--calibrate"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Threshold"))
    assert line.endswith("coverage.THRESHOLDS holds it."), line
