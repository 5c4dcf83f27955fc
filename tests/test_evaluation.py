"""Measuring retrieval: hits, metrics, 95% intervals, the default's rule, the tables, the plot."""

import json
import math
import re
import time

import numpy as np
import pytest
from support.fakes import FakeEmbedding
from support.milvus_rows import count

from milvus_rag import evaluation, index
from milvus_rag.chunking import Entry
from milvus_rag.config import collections, project_root
from milvus_rag.errors import RagError
from milvus_rag.evaluation import DEPTH, HIT_WINDOW, METRICS, Question, Result
from milvus_rag.search import STRATEGIES, Hit


def result(name: str, ranks: list, description: str = "") -> Result:
    return Result(name, description or name, ranks, [[] for _ in ranks])


def test_a_hit_holds_the_gold_title_within_its_first_300_characters():
    gold = "Where does Milvus store data?"
    inside = "x" * (HIT_WINDOW - len(gold)) + gold  # ends on the window's last character
    assert evaluation.first_hit_rank(["a", inside, gold], gold) == 2
    assert evaluation.first_hit_rank(["y" + inside], gold) is None
    assert evaluation.first_hit_rank(["x" * 300 + gold], gold) is None  # deep in an answer


def test_the_rank_is_the_first_hits_counted_from_one():
    assert evaluation.first_hit_rank(["a", "b gold", "gold"], "gold") == 2
    assert evaluation.first_hit_rank(["gold"], "gold") == 1
    assert evaluation.first_hit_rank(["a"], "gold") is None


def test_metrics_on_a_hand_made_case():
    r = result("s", [1, 2, None, 4, 3])
    assert r.metrics == {"n": 5, "hit@1": 0.2, "hit@3": 0.6,
                         "mrr": round((1 + 1 / 2 + 1 / 4 + 1 / 3) / 5, 4)}  # fmt: skip


def test_mrr_counts_a_first_hit_at_the_last_rank_retrieved_and_none_deeper():
    assert result("s", [DEPTH]).value("mrr") == pytest.approx(1 / DEPTH)
    assert result("s", [DEPTH + 1]).value("mrr") == 0.0


def binomial_quantile(n: int, p: float, q: float) -> int:
    """The smallest j with P(Binomial(n, p) <= j) >= q."""
    cdf = 0.0
    for j in range(n + 1):
        cdf += math.comb(n, j) * p**j * (1 - p) ** (n - j)
        if cdf >= q:
            return j
    return n


def test_the_bootstrap_interval_is_the_95_percent_one():
    """Resampling 400 values of which 200 are 1 gives means distributed as Binomial(400, 0.5)
    / 400, whose 2.5% and 97.5% quantiles are known exactly (a 90% interval is 8 counts narrower)."""
    n = 400
    low, high = evaluation.bootstrap_interval(np.array([1.0, 0.0] * (n // 2)))
    assert abs(low * n - binomial_quantile(n, 0.5, 0.025)) <= 2
    assert abs(high * n - binomial_quantile(n, 0.5, 0.975)) <= 2
    assert evaluation.bootstrap_interval(np.ones(30)) == (1.0, 1.0)


def test_a_paired_difference_is_a_minus_b_on_the_same_questions():
    """``a`` finds 5 of 100 questions more than ``b`` and loses none: paired, the interval
    excludes 0; resampling the two apart (or pairing the wrong questions) would not."""
    a = result("a", [1] * 60 + [None] * 40)
    b = result("b", [1] * 55 + [None] * 45)
    difference, low, high = evaluation.paired_difference(a, b, "hit@1")
    assert difference == pytest.approx(0.05)
    assert 0 < low < difference < high <= 0.1
    assert evaluation.compare(a, b).startswith("a vs b: hit@1 +0.050 [+0.0")
    assert evaluation.compare(a, b).endswith("(+5 of 100 questions at rank 1)")
    assert evaluation.compare(b, a).endswith("(-5 of 100 questions at rank 1)")


def test_unknown_golds_are_the_titles_no_entry_starts_with():
    entries = [Entry("FAQ > Alpha?\n\n" + "x" * HIT_WINDOW + " Beta?", "faq.md", "Alpha?")]
    questions = [Question(q, gold) for q, gold in
                 [("1", "Zeta?"), ("2", "Alpha?"), ("3", "Beta?"), ("4", "Zeta?")]]  # fmt: skip
    assert evaluation.unknown_golds(questions, entries) == ["Beta?", "Zeta?"]


def test_the_default_is_the_simplest_candidate_within_the_best_ones_intervals():
    best = result("entry-hybrid-weighted", [1] * 90 + [2] * 10)
    close = result("entry-dense", [1] * 86 + [2] * 14)
    also_close = result("entry-bm25", [1] * 87 + [2] * 13)
    far = result("entry-bm25", [1] * 50 + [None] * 50)
    chosen, why = evaluation.choose_default({r.strategy: r for r in (far, close, best)})
    assert chosen == "entry-dense" and "(entry-hybrid-weighted)" in why
    assert evaluation.choose_default({r.strategy: r for r in (also_close, close, best)})[0] == (
        "entry-dense"  # both lie within: the simpler one
    )
    chosen, why = evaluation.choose_default({r.strategy: r for r in (far, best)})
    assert chosen == "entry-hybrid-weighted"
    assert why == "the best MRR, and no simpler candidate lies within all its 95% intervals"
    assert evaluation.choose_default({"tutorial-dense": result("tutorial-dense", [1])}) == (
        None, "no candidate strategy was run"
    )  # fmt: skip


def test_the_default_must_lie_within_every_interval_not_just_one():
    """Same hit@1 as the best, but far behind on hit@3 and MRR: not chosen."""
    best = result("entry-hybrid-weighted", [1] * 60 + [2] * 40)
    uneven = result("entry-dense", [1] * 60 + [None] * 40)
    assert best.interval("hit@1")[0] <= uneven.value("hit@1") <= best.interval("hit@1")[1]
    chosen, _ = evaluation.choose_default({r.strategy: r for r in (uneven, best)})
    assert chosen == "entry-hybrid-weighted"


def test_evaluate_ranks_each_questions_gold_in_one_search_per_strategy(
    docs_dir, lite_uri, fake_embedding
):
    names = collections("e")
    client = index.connect(lite_uri)
    strategies = ["entry-dense", "entry-bm25"]
    evaluation.build_collections(client, names, fake_embedding, docs_dir, strategies)
    titles = ["How does Milvus flush data?", "Where does Milvus store data?",
              "How much does Milvus cost?"]  # fmt: skip
    questions = [Question(title, title) for title in titles]
    questions.append(Question("How does Milvus flush data?", "Not a title?"))
    results = evaluation.evaluate(client, names, fake_embedding, questions, strategies)
    assert list(results) == strategies
    for found in results.values():
        assert found.ranks == [1, 1, 1, None]
        assert [hits[0].title for hits in found.hits] == [*titles, titles[0]]


def test_the_markdown_table_bolds_the_default_and_gives_n_below():
    results = {
        "entry-dense": result("entry-dense", [2, 2], "entries, dense"),
        "entry-phrasings-dense": result("entry-phrasings-dense", [1, 1], "with phrasings"),
    }
    table = evaluation.format_markdown(results, default="entry-phrasings-dense", label="test.jsonl")
    assert table.splitlines() == [
        "| strategy | hit@1 | hit@3 | MRR |",
        "| --- | --- | --- | --- |",
        "| `entry-dense`: entries, dense | 0.000 [0.00, 0.00] | 1.000 [1.00, 1.00] "
        "| 0.500 [0.50, 0.50] |",
        "| **`entry-phrasings-dense`: with phrasings (the default)** | **1.000 [1.00, 1.00]** "
        "| **1.000 [1.00, 1.00]** | **1.000 [1.00, 1.00]** |",
        "",
        "test.jsonl: n = 2 questions; [low, high]: 95% bootstrap interval (2,000 resamples of the "
        "questions).",
    ]


def test_table_shows_each_figure_with_its_interval_and_marks_the_default():
    results = {"entry-dense": result("entry-dense", [2, 2]), "entry-bm25": result("bm25", [1])}
    lines = evaluation.format_table(results, default="entry-dense").splitlines()
    assert lines[2].split() == ["entry-dense", "2", "0.000", "[0.00,", "0.00]", "1.000",
                                "[1.00,", "1.00]", "0.500", "[0.50,", "0.50]", "0", "*"]  # fmt: skip
    assert not lines[3].endswith("*")
    assert "95% bootstrap interval" in lines[-1]


def test_the_plots_legend_covers_no_bar():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    names = ["tutorial-dense", "entry-dense", "entry-phrasings-dense", "entry-hybrid-weighted"]
    figure = evaluation.plot({n: result(n, [1] * 9 + [2]) for n in names})
    FigureCanvasAgg(figure).draw()
    axes = figure.axes[0]
    legend = axes.get_legend().get_window_extent()
    assert len(axes.patches) == len(names) * len(evaluation.METRICS)
    assert not any(legend.overlaps(bar.get_window_extent()) for bar in axes.patches)
    assert figure.bbox.contains(legend.x0, legend.y0) and figure.bbox.contains(legend.x1, legend.y1)
    assert [t.get_text() for t in axes.get_xticklabels()] == names


def test_write_hits_keeps_the_top_k_texts(tmp_path):
    r = Result("s", "s", [1], [[Hit(f"t{i}", 1.0, "a.md", "T") for i in range(5)]])
    out = tmp_path / "hits.jsonl"
    evaluation.write_hits(out, [Question("q", "g")], r, k=2)
    assert json.loads(out.read_text()) == {"q": "q", "gold": "g", "hits": ["t0", "t1"]}
    with pytest.raises(RagError, match="Cannot write.*writable path"):
        evaluation.write_hits(tmp_path / "missing" / "x.jsonl", [Question("q", "g")], r, 2)


def test_misses_name_the_questions_not_found_first_and_what_was():
    r = Result("s", "s", [1, 3, None], [[Hit("t", 1.0, "a.md", "T")]] * 2 + [[]])
    questions = [Question(q, "g") for q in ("one", "two", "three")]
    assert evaluation.misses(r, questions) == ["  rank 3: 'two' -> got 'T'",
                                               "  rank -: 'three' -> got 'nothing'"]  # fmt: skip


def test_question_files_skip_blank_lines(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('\n{"q": " a ", "gold": "b"}\n\n{"q": "c", "gold": "d"}\n')
    assert evaluation.load_questions(path) == [Question("a", "b"), Question("c", "d")]


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json\n", r"Line 1 of q.jsonl is not valid JSON"),
        ('\n["q"]\n', r"Line 2 of q.jsonl is not a JSON object with non-empty strings"),
        ('{"q": "x"}\n', r'Line 1 of q.jsonl is not a JSON object with .*"gold"'),
        ('{"q": " ", "gold": "g"}\n', r"Line 1 of q.jsonl is not a JSON object with"),
        ('{"q": 1, "gold": "g"}\n', r"Line 1 of q.jsonl is not a JSON object with"),
        ("\n\n", r"has no questions"),
        (b"\xff\xfe", r"is unreadable \(UnicodeDecodeError\).*UTF-8"),
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


def test_the_project_question_sets_load_and_do_not_overlap():
    root = project_root()
    dev = evaluation.load_questions(root / "data" / "eval" / "dev.jsonl")
    test = evaluation.load_questions(root / "data" / "eval" / "test.jsonl")
    assert (len(dev), len(test)) == (62, 121)  # the n of the README's figures
    assert not {q.q.lower() for q in dev} & {q.q.lower() for q in test}


def test_compare_lists_each_metric_then_the_questions_gained():
    a = result("a", [1] * 60 + [None] * 40)
    b = result("b", [1] * 55 + [None] * 45)
    figure = r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]"
    line = evaluation.compare(a, b)
    assert re.fullmatch(rf"a vs b: hit@1 {figure}, hit@3 {figure}, mrr {figure} "
                        r"\(\+5 of 100 questions at rank 1\)", line), line  # fmt: skip


def test_evaluate_searches_each_strategys_collection_and_times_it(monkeypatch):
    """Without Milvus: the tutorial's strategies search the tutorial's collection, the others
    the entries'; each gets DEPTH hits per question, its description, and its searching time."""
    names = collections("fake")
    calls = []

    def fake_search(client, collection, embedding, questions, k, strategy):
        calls.append((collection, k, strategy))
        time.sleep(0.01)
        return [[Hit(f"{q} gold", 1.0, "a.md", "T")] for q in questions]

    monkeypatch.setattr(evaluation.search, "search", fake_search)
    questions = [Question("q1", "gold"), Question("q2", "nope")]
    strategies = ["tutorial-dense", "entry-bm25"]
    results = evaluation.evaluate(None, names, FakeEmbedding(), questions, strategies)
    assert calls == [(names.eval_tutorial, DEPTH, "tutorial-dense"),
                     (names.eval_entries, DEPTH, "entry-bm25")]  # fmt: skip
    for name in strategies:
        found = results[name]
        assert (found.strategy, found.description) == (name, STRATEGIES[name].description)
        assert found.ranks == [1, None] and 0.01 <= found.seconds < 5


def test_the_default_is_the_best_by_mrr_not_the_last_by_name():
    best = result("entry-hybrid-rrf", [1] * 90 + [2] * 10)
    far = result("entry-hybrid-weighted", [1] * 40 + [None] * 60)
    assert evaluation.choose_default({r.strategy: r for r in (best, far)})[0] == "entry-hybrid-rrf"


def test_the_text_table_has_a_header_timings_and_a_legend():
    slow = Result("entry-dense", "d", [2, 2], [[], []], seconds=3.0)  # 1,500 ms per question
    results = {"entry-dense": slow, "entry-bm25": result("entry-bm25", [1])}
    lines = evaluation.format_table(results, default="entry-dense").splitlines()
    assert lines[0].split() == ["strategy", "n", "hit@1", "hit@3", "mrr", "ms/q"]
    assert lines[1] == "-" * len(lines[0])
    assert lines[2].split()[-2:] == ["1500", "*"]
    assert lines[-1] == ("[low, high]: 95% bootstrap interval over questions; "
                         "* the default (search.DEFAULT_STRATEGY)")  # fmt: skip
    without = evaluation.format_table(results, default="entry-phrasings-dense").splitlines()
    assert without[-1] == "[low, high]: 95% bootstrap interval over questions"
    assert not any(line.endswith("*") for line in without)


def test_the_markdown_caption_without_a_label_and_without_results():
    results = {"entry-dense": result("entry-dense", [2, 2])}
    assert evaluation.format_markdown(results).splitlines()[-1].startswith("n = 2 questions; ")
    assert evaluation.format_markdown({}).splitlines()[-1].startswith("n = 0 questions; ")


def test_write_hits_writes_one_utf8_json_line_per_question(tmp_path):
    r = Result("s", "s", [1, 2], [[Hit("café", 1.0, "a.md", "T")], [Hit("b", 1.0, "a.md", "U")]])
    out = tmp_path / "hits.jsonl"
    questions = [Question("q1", "g"), Question("q2", "g")]
    evaluation.write_hits(out, questions, r, k=1)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["hits"] for line in lines] == [["café"], ["b"]]
    assert '"café"' in lines[0]  # readable as written, not \u escapes
    missing = tmp_path / "missing" / "x.jsonl"
    with pytest.raises(RagError, match=f"Cannot write '{re.escape(str(missing))}'"):
        evaluation.write_hits(missing, questions, r, 2)


def test_a_result_with_another_question_set_is_refused_not_misaligned(tmp_path):
    r = Result("s", "s", [1, 3], [[Hit("t", 1.0, "a.md", "T")]] * 2)
    three = [Question(q, "g") for q in ("one", "two", "three")]
    with pytest.raises(ValueError):
        evaluation.misses(r, three)
    with pytest.raises(ValueError):
        evaluation.write_hits(tmp_path / "hits.jsonl", three, r, 1)


def test_the_plot_draws_each_figure_as_a_bar_with_its_interval_grouped_by_strategy():
    from matplotlib.container import BarContainer

    results = {"entry-dense": result("entry-dense", [1] * 6 + [2] * 2 + [None] * 2),
               "entry-bm25": result("entry-bm25", [1] * 3 + [3] * 5 + [None] * 2)}  # fmt: skip
    axes = evaluation.plot(results).axes[0]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == list(METRICS)
    bottom, top = axes.get_ylim()
    assert bottom == 0 and 1 <= top <= 1.1  # shares, from 0 to 1 (MRR too)
    groups = [c for c in axes.containers if isinstance(c, BarContainer)]
    assert len(groups) == len(METRICS)
    for n, name in enumerate(results):
        bars = [group.patches[n] for group in groups]  # the strategy's bars, metric by metric
        assert [bar.get_height() for bar in bars] == [results[name].value(m) for m in METRICS]
        edges = [(bar.get_x(), bar.get_x() + bar.get_width()) for bar in bars]
        assert n - 0.45 < edges[0][0] and edges[-1][1] < n + 0.45  # around the strategy's tick
        assert all(
            right <= left + 1e-9 for (_, right), (left, _) in zip(edges, edges[1:], strict=False)
        )
        for group, metric in zip(groups, METRICS, strict=True):
            (_, low), (_, high) = group.errorbar.lines[2][0].get_segments()[n]
            assert (low, high) == pytest.approx(results[name].interval(metric))


def test_an_empty_result_scores_zero():
    assert result("s", []).metrics == {"n": 0, "hit@1": 0.0, "hit@3": 0.0, "mrr": 0.0}


def test_building_for_other_strategies_recreates_the_collection_and_drop_removes_it(
    tmp_path, lite_uri, fake_embedding
):
    """A dense-only collection, then a run that needs BM25 on the same names: rebuilt with its
    BM25 field (not refused as another pipeline's); dropping leaves no evaluation collection."""
    faq = tmp_path / "docs" / "en" / "faq"
    faq.mkdir(parents=True)
    (faq / "a.md").write_text("# A FAQ\n\n## Why?\n\nBecause.\n\n## How?\n\nLike this.\n")
    names, client = collections("r"), index.connect(lite_uri)
    evaluation.build_collections(client, names, fake_embedding, tmp_path / "docs", ["entry-dense"])
    evaluation.build_collections(client, names, fake_embedding, tmp_path / "docs", ["entry-bm25"])
    assert "sparse" in {f["name"] for f in client.describe_collection(names.eval_entries)["fields"]}
    evaluation.drop_collections(client, names)
    assert not client.has_collection(names.eval_entries)


def test_bad_question_files_show_the_line_to_write(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("not json\n")
    with pytest.raises(RagError) as caught:
        evaluation.load_questions(path)
    assert str(caught.value) == (
        'Line 1 of q.jsonl is not valid JSON (Expecting value): write {"q": ..., "gold": ...} on it.'
    )
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(RagError, match=f"^The question file '{re.escape(str(missing))}' does not "):
        evaluation.load_questions(missing)


def test_the_same_values_give_the_same_interval_every_time():
    """The README's intervals can be regenerated exactly: the resampling has a fixed seed."""
    values = np.array([1.0, 0.0, 0.0, 1.0, 1.0] * 20)
    assert evaluation.bootstrap_interval(values) == evaluation.bootstrap_interval(values.copy())


def test_each_collection_holds_the_chunking_its_strategies_search(docs_dir, lite_uri, fake_embedding):
    """The tutorial's strategies get the tutorial's pieces (72 here, empty ones included), the
    entries' strategies one row per FAQ entry (no phrasings given)."""
    from milvus_rag.chunking import faq_entries, tutorial_pieces

    names = collections("k")
    client = index.connect(lite_uri)
    evaluation.build_collections(client, names, fake_embedding, docs_dir, ["tutorial-dense", "entry-dense"])
    rows = {name: count(client, name) for name in (names.eval_tutorial, names.eval_entries)}
    assert rows == {names.eval_tutorial: len({(p.source, p.text) for p in tutorial_pieces(docs_dir)}),
                    names.eval_entries: len(faq_entries(docs_dir))}  # fmt: skip
    assert rows[names.eval_tutorial] != rows[names.eval_entries]
