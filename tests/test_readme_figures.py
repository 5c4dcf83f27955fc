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
