"""Measuring retrieval: hits, metrics, bootstrap intervals, the default's rule, question files."""

import json

import numpy as np
import pytest

from milvus_rag import evaluation
from milvus_rag.config import project_root
from milvus_rag.errors import RagError
from milvus_rag.evaluation import Result


def result(name: str, ranks: list) -> Result:
    return Result(name, name, ranks, [[] for _ in ranks])


def test_a_hit_needs_the_gold_title_within_the_first_300_characters():
    assert evaluation.is_hit(
        "Product FAQ > Where does Milvus store data?\n\n...", "Where does Milvus store data?"
    )
    assert not evaluation.is_hit(
        "x" * 300 + "Where does Milvus store data?", "Where does Milvus store data?"
    )
    assert evaluation.first_hit_rank(["a", "b gold", "gold"], "gold") == 2
    assert evaluation.first_hit_rank(["a"], "gold") is None


def test_metrics_on_a_hand_made_case():
    r = result("s", [1, 2, None, 4])
    assert r.metrics == {"n": 4, "hit@1": 0.25, "hit@3": 0.5, "mrr": round((1 + 0.5 + 0.25) / 4, 4)}
    assert result("s", [11]).value("mrr") == 0.0  # deeper than DEPTH counts as none


def test_bootstrap_interval_brackets_the_mean_and_repeats():
    values = np.array([1.0] * 80 + [0.0] * 20)
    low, high = evaluation.bootstrap_interval(values)
    assert low < 0.8 < high and 0.05 < high - low < 0.25
    assert evaluation.bootstrap_interval(values) == (low, high)
    assert evaluation.bootstrap_interval(np.ones(30)) == (1.0, 1.0)


def test_the_default_is_the_simplest_candidate_within_the_best_ones_intervals():
    best = result("entry-hybrid-weighted", [1] * 90 + [2] * 10)
    close = result("entry-dense", [1] * 86 + [2] * 14)
    far = result("entry-bm25", [1] * 50 + [None] * 50)
    chosen, why = evaluation.choose_default({r.strategy: r for r in (far, close, best)})
    assert chosen == "entry-dense" and "entry-hybrid-weighted" in why
    chosen, _ = evaluation.choose_default({r.strategy: r for r in (far, best)})
    assert chosen == "entry-hybrid-weighted"
    assert evaluation.choose_default({"tutorial-dense": result("tutorial-dense", [1])})[0] is None


def test_table_shows_each_figure_with_its_interval_and_marks_the_default():
    results = {"entry-dense": result("entry-dense", [1, 2, None, 1])}
    table = evaluation.format_table(results, default="entry-dense")
    row = table.splitlines()[2]
    assert row.startswith("entry-dense") and row.endswith("*") and row.count("[") == 3
    assert "95% bootstrap interval" in table.splitlines()[-1]


def test_plot_has_a_bar_with_an_error_bar_per_strategy_and_metric():
    figure = evaluation.plot({n: result(n, [1, 2, None]) for n in ("entry-dense", "entry-bm25")})
    axes = figure.axes[0]
    assert len(axes.patches) == 2 * len(evaluation.METRICS)
    assert [t.get_text() for t in axes.get_xticklabels()] == ["entry-dense", "entry-bm25"]


def test_write_hits_keeps_the_top_k_texts(tmp_path):
    from milvus_rag.search import Hit

    r = Result("s", "s", [1], [[Hit(f"t{i}", 1.0, "a.md", "T") for i in range(5)]])
    out = tmp_path / "hits.jsonl"
    evaluation.write_hits(out, [evaluation.Question("q", "g")], r, k=2)
    assert json.loads(out.read_text()) == {"q": "q", "gold": "g", "hits": ["t0", "t1"]}
    with pytest.raises(RagError, match="Cannot write.*writable path"):
        evaluation.write_hits(
            tmp_path / "missing" / "x.jsonl", [evaluation.Question("q", "g")], r, 2
        )


def test_question_files_skip_blank_lines(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('\n{"q": " a ", "gold": "b"}\n\n')
    assert evaluation.load_questions(path) == [evaluation.Question("a", "b")]


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json\n", r"Line 1 of q.jsonl is not valid JSON"),
        ('["q"]\n', r"Line 1 of q.jsonl is not a JSON object"),
        ('{"q": "x"}\n', r'Line 1 of q.jsonl has no non-empty string "gold"'),
        ('{"q": "", "gold": "g"}\n', r'has no non-empty string "q"'),
        ("\n\n", r"has no questions"),
        (b"\xff\xfe", r"Cannot read the question file .*UTF-8"),
    ],
)
def test_bad_question_files_say_which_line_and_what_to_do(tmp_path, content, message):
    path = tmp_path / "q.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(RagError, match=message):
        evaluation.load_questions(path)


def test_a_missing_question_file_names_the_format(tmp_path):
    with pytest.raises(RagError, match=r"does not exist.*JSON-lines") as caught:
        evaluation.load_questions(tmp_path / "nope.jsonl")
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_the_project_question_sets_load_and_the_test_set_has_at_least_100():
    root = project_root()
    dev = evaluation.load_questions(root / "data" / "eval" / "dev.jsonl")
    test = evaluation.load_questions(root / "data" / "eval" / "test.jsonl")
    assert len(dev) == 62 and len(test) >= 100
    assert not {q.q.lower() for q in dev} & {q.q.lower() for q in test}
