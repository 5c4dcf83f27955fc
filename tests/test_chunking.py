"""FAQ-entry chunking: headings kept with their answers, code and includes handled."""

import json
from pathlib import Path

import pytest

from milvus_rag import chunking, docs

REPO = Path(__file__).resolve().parents[1]

PAGE = """---
id: sample_faq.md
summary: A sample.
title: Sample FAQ
---

# Sample FAQ

<!-- TOC -->

<!-- /TOC -->

####  Where does Milvus store data?

Inserted data go to [MinIO](https://min.io/) as incremental logs.

Metadata are stored in etcd.

#### How do I know if my CPU supports Milvus?

{{fragments/cpu.md}}

  ## etcd crash issues

  ### 1. etcd pod pending

  StorageClass needs to be preconfigured.

  ```
  kubectl scale sts <etcd-sts> --replicas=1
  # delete the pvc for etcd-1
  ```

#### Still have questions?

You can:

- Ask on Slack.
"""


@pytest.fixture()
def entries(tmp_path):
    (tmp_path / "fragments").mkdir()
    (tmp_path / "fragments" / "cpu.md").write_text("Your CPU must support AVX2 or SSE4.2.\n")
    return chunking.split_entries(PAGE, "sample_faq.md", docs_root=tmp_path)


def test_one_entry_per_heading_with_text_titles_as_written(entries):
    assert [e.title for e in entries] == [
        "Where does Milvus store data?",
        "How do I know if my CPU supports Milvus?",
        "1. etcd pod pending",
        "Still have questions?",
    ]
    assert all(e.source == "sample_faq.md" for e in entries)


def test_heading_only_sections_are_dropped_but_kept_in_the_path(entries):
    assert not any(e.title in ("Sample FAQ", "etcd crash issues") for e in entries)
    pending = entries[2]
    assert pending.section == "Sample FAQ > etcd crash issues"
    assert pending.text.startswith("Sample FAQ > etcd crash issues > 1. etcd pod pending\n\n")
    assert entries[0].section == "Sample FAQ"


def test_text_is_title_then_answer_without_comments(entries):
    first = entries[0]
    assert first.text == (
        "Sample FAQ > Where does Milvus store data?\n\n"
        "Inserted data go to [MinIO](https://min.io/) as incremental logs.\n\n"
        "Metadata are stored in etcd."
    )
    assert "TOC" not in "".join(e.text for e in entries)
    assert first.search_text.splitlines()[2] == "Inserted data go to MinIO as incremental logs."


def test_hash_inside_code_is_not_a_heading_and_code_is_dedented(entries):
    pending = entries[2]
    assert "# delete the pvc for etcd-1" in pending.text
    assert "\n```\nkubectl scale sts" in pending.text


def test_fragment_includes_are_expanded(entries, tmp_path):
    assert "Your CPU must support AVX2" in entries[1].text
    unresolved = chunking.split_entries(PAGE, "sample_faq.md", docs_root=None)
    assert "{{fragments/cpu.md}}" in unresolved[1].text


def test_link_words_keeps_link_text_and_drops_images():
    assert chunking.link_words('See [Vector Index](index.md) ![chart](a.png "A").') == (
        "See Vector Index ."
    )


def test_paragraphs_join_introductions_and_keep_code_blocks_whole():
    text = "You can:\n\n- Ask on Slack.\n- File an issue.\n\nRun:\n\n```\na\n\nb\n```"
    assert chunking.paragraphs(text) == [
        "You can:\n- Ask on Slack.\n- File an issue.",
        "Run:\n```\na\n\nb\n```",
    ]


def test_search_views_are_the_entry_then_its_headed_paragraphs(entries):
    views = chunking.search_views(entries[0])
    assert views[0] == entries[0].search_text
    assert views[1:] == [
        "Sample FAQ > Where does Milvus store data?\n\n"
        "Inserted data go to MinIO as incremental logs.",
        "Sample FAQ > Where does Milvus store data?\n\nMetadata are stored in etcd.",
    ]
    assert chunking.search_views(entries[3]) == [entries[3].search_text]  # one paragraph


# --------------------------------------------------------------------------- the real docs


@pytest.fixture(scope="module")
def real_docs(docs_zip, tmp_path_factory):
    return docs.extract_docs(docs_zip, tmp_path_factory.mktemp("docs") / "milvus_docs")


def test_real_faq_gives_one_entry_per_answered_heading(real_docs):
    entries = chunking.load_faq_entries(real_docs)
    assert len(entries) == 61
    assert {e.source for e in entries} == {
        "operational_faq.md",
        "performance_faq.md",
        "product_faq.md",
        "troubleshooting.md",
    }
    for entry in entries:
        head, _, answer = entry.text.partition("\n\n")
        assert head.endswith(entry.title) and answer.strip(), entry.title
        assert "{{" not in entry.text and "<!--" not in entry.text
    store = next(e for e in entries if e.title == "Where does Milvus store data?")
    assert store.source == "product_faq.md" and "etcd" in store.text


def test_tutorial_pieces_are_the_tutorials_split(real_docs):
    pieces = chunking.load_tutorial_pieces(real_docs)
    assert [p.text for p in pieces] == docs.load_faq_pieces(real_docs)
    assert len(pieces) == 72


def test_every_gold_title_of_the_question_set_heads_an_entry(real_docs):
    entries = chunking.load_faq_entries(real_docs)
    lines = (REPO / "data/eval/questions.jsonl").read_text().splitlines()
    golds = [json.loads(line)["gold"] for line in lines if line.strip()]
    assert len(golds) >= 40
    sources = set()
    for gold in golds:
        # the entry's title, or a heading above it ("etcd crash issues"), on its first line
        found = [e for e in entries if gold in e.text.partition("\n")[0]]
        assert found, gold
        sources.update(e.source for e in found)
    assert sources == {e.source for e in entries}  # all four files
