"""Every figure the README states in its generated blocks is what its command prints now."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import readme_figures  # noqa: E402


def test_the_readme_leads_with_real_users_and_keeps_the_ai_written_set():
    commands = [m["args"] for m in readme_figures.blocks(readme_figures.README.read_text())]
    real = commands.index("eval --markdown --questions data/eval/real_test.jsonl")
    assert real < commands.index("eval --markdown --questions data/eval/test.jsonl")


def test_a_drifted_block_is_found(tmp_path, monkeypatch):
    stale = "x\n<!-- output of: python -m milvus_rag A -->\nold\n<!-- end of output -->\ny\n"
    monkeypatch.setattr(readme_figures, "run", lambda args, docs, scratch: f"{args} now\n")
    assert readme_figures.refreshed(stale, tmp_path) == stale.replace("old", "A now")


@pytest.mark.slow
def test_every_generated_block_matches_its_command(docs_zip):
    text = readme_figures.README.read_text(encoding="utf-8")
    fresh = readme_figures.refreshed(text, docs_zip)
    for old, new in zip(readme_figures.blocks(text), readme_figures.blocks(fresh), strict=True):
        assert old["body"] == new["body"], (
            f"`python -m milvus_rag {old['args']}` now prints something else than the README "
            "says: run python scripts/readme_figures.py, and read the diff"
        )
