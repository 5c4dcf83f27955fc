"""Metrics on hand-made cases, question-file errors, and the eval command on a few questions."""

import argparse
import json
import zipfile

import pytest

from milvus_rag import evaluation, pipeline, retrieval
from milvus_rag.errors import RagError
from milvus_rag.evaluation import Question

# --------------------------------------------------------------------------- metrics


def test_hit_needs_the_gold_title_within_the_first_300_characters():
    gold = "Where does Milvus store data?"
    assert evaluation.is_hit(f"Product FAQ > {gold}\n\nIn MinIO.", gold)
    assert evaluation.is_hit("x" * (300 - len(gold)) + gold, gold)
    assert not evaluation.is_hit("x" * (301 - len(gold)) + gold, gold)
    assert not evaluation.is_hit("where does milvus store data?", gold)  # exact text


def test_first_hit_rank():
    texts = ["Boot issues\n...", "Where does Milvus store data?\n...", "Gold\n..."]
    assert evaluation.first_hit_rank(texts, "Where does Milvus store data?") == 2
    assert evaluation.first_hit_rank(texts, "Gold") == 3
    assert evaluation.first_hit_rank(texts, "Missing") is None
    assert evaluation.first_hit_rank([], "Gold") is None


def test_metrics_on_a_hand_made_case():
    ranks = [1, 2, None, 4, 1, 11]  # 11: found, but below the MRR depth of 10
    assert evaluation.hit_at(ranks, 1) == pytest.approx(2 / 6)
    assert evaluation.hit_at(ranks, 3) == pytest.approx(3 / 6)
    assert evaluation.mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 4 + 1) / 6)
    assert evaluation.summary(ranks) == {"n": 6, "hit@1": 0.3333, "hit@3": 0.5, "mrr": 0.4583}
    curve = evaluation.hit_curve(ranks)
    assert len(curve) == 10
    assert curve[0] == pytest.approx(2 / 6) and curve[3] == pytest.approx(4 / 6)
    assert curve == sorted(curve)
    assert evaluation.summary([]) == {"n": 0, "hit@1": 0.0, "hit@3": 0.0, "mrr": 0.0}


def _result(ranks, texts_per_question):
    hits = [[retrieval.Hit(t, 1.0, "f.md", t) for t in texts] for texts in texts_per_question]
    return evaluation.StrategyResult("entry-dense", "about", ranks, hits)


def test_write_output_keeps_the_top_k_texts(tmp_path):
    questions = [Question("q1", "A"), Question("q2", "B")]
    result = _result([1, None], [["A text", "B text", "C text"], ["C text"]])
    out = tmp_path / "out.jsonl"
    evaluation.write_output(out, questions, result, k=2)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [
        {"q": "q1", "gold": "A", "hits": ["A text", "B text"]},
        {"q": "q2", "gold": "B", "hits": ["C text"]},
    ]


def test_table_and_plot():
    results = {"entry-dense": _result([1, 2], [["A"], ["B"]])}
    table = evaluation.format_table(results, default="entry-dense")
    assert "entry-dense" in table and "0.500" in table and "*" in table
    figure = evaluation.plot_hit_at_k(evaluation.hit_curves(results))
    (line,) = figure.axes[0].get_lines()
    assert list(line.get_xdata()) == list(range(1, 11))
    assert list(line.get_ydata())[:2] == [0.5, 1.0]


# --------------------------------------------------------------------------- question files


def test_load_questions_skips_blank_lines(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"q": " is milvus free ", "gold": "How much does Milvus cost?"}\n\n')
    assert evaluation.load_questions(path) == [
        Question("is milvus free", "How much does Milvus cost?")
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"q": "a", "gold": "b"}\n{"q": "a",\n', r"Line 2 of q\.jsonl is not valid JSON"),
        ('["a", "b"]\n', r"Line 1 of q\.jsonl is not a JSON object"),
        ('{"q": "a"}\n', r'Line 1 of q\.jsonl has no non-empty string "gold"'),
        ('{"q": "  ", "gold": "b"}\n', r'has no non-empty string "q"'),
        ('{"q": 3, "gold": "b"}\n', r'has no non-empty string "q"'),
        ("\n\n", r"has no questions"),
    ],
)
def test_bad_question_files_say_which_line_and_what_to_do(tmp_path, content, message):
    path = tmp_path / "q.jsonl"
    path.write_text(content)
    with pytest.raises(RagError, match=message):
        evaluation.load_questions(path)


def test_missing_question_file(tmp_path):
    with pytest.raises(RagError, match="does not exist: give --questions"):
        evaluation.load_questions(tmp_path / "nope.jsonl")


def test_project_question_set_loads():
    from pathlib import Path

    questions = evaluation.load_questions(
        Path(__file__).resolve().parents[1] / "data/eval/questions.jsonl"
    )
    assert len(questions) >= 40
    assert len({q.q for q in questions}) == len(questions)


# --------------------------------------------------------------------------- the eval command

FEW = [
    {"q": "wher does milvus keep its metadata and the inserted data", "gold": "Where does Milvus store data?"},
    {"q": "is milvus free", "gold": "How much does Milvus cost?"},
    {"q": "etcd pod stuck in Pending state on k8s", "gold": "1. etcd pod pending"},
]  # fmt: skip


def _args(argv):
    parser = argparse.ArgumentParser()
    evaluation.add_eval_arguments(parser)
    return parser.parse_args(argv)


def test_eval_command_on_a_few_questions(tmp_path, docs_zip, minilm, capsys):
    questions = tmp_path / "few.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in FEW))
    out = tmp_path / "out.jsonl"
    config = pipeline.Config(
        docs_source=str(docs_zip), uri=str(tmp_path / "x.db"), collection="evaltest"
    )
    args = _args(["--questions", str(questions), "--k", "2", "--output", str(out)])
    assert evaluation.run_eval(args, minilm, config) == 0

    printed = capsys.readouterr().out.strip().splitlines()
    for name in retrieval.STRATEGIES:
        assert any(line.startswith(name + " ") for line in printed), name
    final = json.loads(printed[-1])
    assert set(final) == {"n", "hit@1", "hit@3", "mrr"}
    assert final["n"] == 3 and final["hit@3"] == 1.0

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["q"] for line in lines] == [q["q"] for q in FEW]
    assert all(len(line["hits"]) == 2 for line in lines)
    assert lines[0]["hits"][0].startswith("Product FAQ > Where does Milvus store data?")


MINI_FAQ = """# Mini FAQ

#### Where does Milvus store data?

Inserted data go to object storage; metadata go to etcd.

#### How much does Milvus cost?

Milvus is free and open source.
"""


def test_eval_only_one_strategy_and_bad_arguments(tmp_path, minilm, capsys):
    docs_zip = tmp_path / "mini.zip"
    with zipfile.ZipFile(docs_zip, "w") as archive:
        archive.writestr("en/faq/mini_faq.md", MINI_FAQ)
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps(FEW[0]) + "\n" + json.dumps({"q": "price?", "gold": "Not a title"}) + "\n"
    )
    config = pipeline.Config(
        docs_source=str(docs_zip), uri=str(tmp_path / "x.db"), collection="evaltest"
    )
    args = _args(["--questions", str(questions), "--strategy", "entry-bm25", "--only"])
    assert evaluation.run_eval(args, minilm, config) == 0
    captured = capsys.readouterr()
    assert "entry-bm25" in captured.out and "tutorial-dense" not in captured.out
    assert json.loads(captured.out.splitlines()[-1])["n"] == 2
    assert "1 gold title(s) occur in no FAQ entry" in captured.err

    with pytest.raises(RagError, match="folder of --output .* does not exist"):
        evaluation.run_eval(
            _args(["--questions", str(questions), "--output", str(tmp_path / "no/o.jsonl")]),
            minilm,
            config,
        )
    with pytest.raises(RagError, match="--k must be at least 1"):
        evaluation.run_eval(_args(["--questions", str(questions), "--k", "0"]), minilm, config)
    with pytest.raises(RagError, match="Unknown retrieval strategy 'nope'"):
        evaluation.run_eval(
            _args(["--questions", str(questions), "--strategy", "nope"]), minilm, config
        )
