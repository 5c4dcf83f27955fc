"""Every figure the README states in its generated blocks is what its command prints now."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import readme_figures  # noqa: E402


def test_the_readmes_lead_with_real_users_and_keep_the_ai_written_set():
    for path in readme_figures.READMES:
        commands = [m["args"] for m in readme_figures.blocks(path.read_text(encoding="utf-8"))]
        real = commands.index("eval --markdown --questions data/eval/real_test.jsonl")
        assert real < commands.index("eval --markdown --questions data/eval/test.jsonl"), path


def test_each_command_runs_once_and_its_blocks_get_its_output(tmp_path, monkeypatch):
    block = "<!-- output of: python -m milvus_rag {} -->\n{}\n<!-- end of output -->"
    texts = [f"a\n{block.format('A', 'old')}\nb\n{block.format('B', 'x')}", block.format("A", "")]
    calls = []
    monkeypatch.setattr(readme_figures, "run",
                        lambda args, docs, scratch: calls.append(args) or f"{args} now\n")  # fmt: skip
    printed = readme_figures.outputs(texts, tmp_path)
    assert calls == ["A", "B"]
    expected = f"a\n{block.format('A', 'A now')}\nb\n{block.format('B', 'B now')}"
    assert readme_figures.refreshed(texts[0], printed) == expected


@pytest.mark.slow
def test_every_generated_block_matches_its_command(docs_zip):
    texts = [path.read_text(encoding="utf-8") for path in readme_figures.READMES]
    printed = readme_figures.outputs(texts, docs_zip)
    for path, text in zip(readme_figures.READMES, texts, strict=True):
        for block in readme_figures.blocks(text):
            assert block["body"] == printed[block["args"]], (
                f"{path.name}: `python -m milvus_rag {block['args']}` now prints something else: "
                "run python scripts/readme_figures.py, and read the diff")  # fmt: skip


def test_the_benchmark_blocks_are_what_the_benchmarks_recorded():
    kinds = set()
    for path in readme_figures.BENCHMARK_READMES:
        for block in readme_figures.TABLE.finditer(path.read_text(encoding="utf-8")):
            kinds.add(block["kind"])
            assert block["body"] == readme_figures.benchmark_block(block["kind"], block["target"]), (
                f"{path.name}: the benchmark {block['kind']} is not what {block['target']} holds: "
                "run python scripts/readme_figures.py, and read the diff")  # fmt: skip
    assert kinds == {"table", "report"}


def test_a_recorded_benchmark_becomes_its_row(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import _common

    monkeypatch.setattr(readme_figures, "REPO", tmp_path)
    folder = tmp_path / "results"
    runs = [{"wall_s": wall, "load_before": "0.50/0.9/1.0", "load_after": "0.6/0.9/1.0",
             "split": f"model {wall} s"} for wall in (1.3, 1.1, 1.2)]  # fmt: skip
    _common.record(folder / "ask.json", "bench_ask.py", {
        "model": "m", "question": "q", "runs": runs, "best_s": 1.1, "median_s": 1.2,
        "tutorial_model": False, "torch": True})  # fmt: skip
    table = readme_figures.benchmark_table(folder)
    assert "median **1.20 s**, best 1.10 s (3 runs)" in table
    assert "a median run: model 1.2 s" in table  # the split of the run whose wall is the median
    assert "the JSON in `results/`" in table
