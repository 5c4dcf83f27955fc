"""Tests for milvus_rag.chunking: the tutorial's split, one entry per answered FAQ heading
(headings kept with their answers, code and includes handled), any document by headings or
paragraphs, and sections longer than the model reads cut into parts."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from milvus_rag.chunking import (
    MAX_PART_CHARS,
    PATH_SEPARATOR,
    TITLE_CHARS,
    Entry,
    doc_entries,
    document_entries,
    expand_includes,
    faq_entries,
    faq_files,
    front_matter_title,
    link_words,
    load_phrasings,
    split_entries,
    tutorial_pieces,
)
from milvus_rag.corpus import Document, documents, open_corpus
from milvus_rag.errors import RagError
from milvus_rag.evaluation import Question, load_questions, unknown_golds

REPO = Path(__file__).resolve().parents[1]
FAQ_FILES = ["operational_faq.md", "performance_faq.md", "product_faq.md", "troubleshooting.md"]

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


def write_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


@pytest.fixture()
def entries(tmp_path):
    write_tree(tmp_path, {"fragments/cpu.md": "Your CPU must support AVX2 or SSE4.2.\n"})
    return split_entries(PAGE, "sample_faq.md", docs_root=tmp_path)


# --------------------------------------------------------------------------- split_entries


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


def test_text_is_the_heading_path_then_the_answer_without_comments(entries):
    first = entries[0]
    assert first.text == (
        "Sample FAQ > Where does Milvus store data?\n\n"
        "Inserted data go to [MinIO](https://min.io/) as incremental logs.\n\n"
        "Metadata are stored in etcd."
    )
    assert "TOC" not in "".join(e.text for e in entries)
    assert "<!--" not in "".join(e.text for e in entries)


def test_search_text_keeps_only_the_words_of_links(entries):
    first = entries[0]
    assert first.search_text.splitlines()[2] == "Inserted data go to MinIO as incremental logs."
    assert first.search_text == link_words(first.text)


def test_hash_inside_code_is_not_a_heading_and_code_is_dedented(entries):
    pending = entries[2]
    assert "# delete the pvc for etcd-1" in pending.text
    assert "\n```\nkubectl scale sts" in pending.text
    assert not any(e.title.startswith("delete the pvc") for e in entries)


def test_fragment_includes_are_expanded(entries):
    assert entries[1].text.endswith("\n\nYour CPU must support AVX2 or SSE4.2.")
    unresolved = split_entries(PAGE, "sample_faq.md", docs_root=None)
    assert "{{fragments/cpu.md}}" in unresolved[1].text


def test_a_missing_fragment_is_left_as_written(tmp_path):
    text = "A {{fragments/cpu.md}} and {{ fragments/gone.md }}."
    write_tree(tmp_path, {"fragments/cpu.md": "  CPU text \n"})
    assert expand_includes(text, tmp_path) == "A CPU text and {{ fragments/gone.md }}."


def test_tilde_fences_closing_hashes_and_crlf():
    text = "# Q? ##\r\nA.\r\n~~~\r\n# not a heading\r\n~~~\r\n#no-space is text\r\n"
    [entry] = split_entries(text, "x.md")
    assert entry.title == "Q?"
    assert entry.text == "Q?\n\nA.\n~~~\n# not a heading\n~~~\n#no-space is text"
    assert "\r" not in entry.text


def test_text_before_the_first_heading_is_the_pages_introduction():
    with_title = split_entries("---\ntitle: 'My Page'\n---\nIntro.\n\n## Q?\nA.\n", "p.md")
    assert [(e.title, e.section, e.text) for e in with_title] == [
        ("My Page", "", "My Page\n\nIntro."),
        ("Q?", "My Page", "My Page > Q?\n\nA."),
    ]
    [intro] = split_entries("Intro without a title.\n", "p.md")
    assert (intro.title, intro.text) == ("p.md", "p.md\n\nIntro without a title.")


def test_a_page_of_headings_only_has_no_entries():
    assert split_entries("# A\n\n## B\n<!-- TOC -->\n<br/>\n", "p.md") == []


def test_front_matter_title():
    assert front_matter_title('---\nid: a.md\ntitle: "Product FAQ"\n---\n# x') == "Product FAQ"
    assert front_matter_title("---\nid: a.md\n---\n") == ""
    assert front_matter_title("# title: not front matter\n") == ""


def test_link_words_keeps_link_text_and_drops_images():
    text = 'See [Vector Index](index.md) ![chart](a.png "A").'
    assert link_words(text) == "See Vector Index ."


def test_entry_search_text_defaults_to_its_text():
    assert Entry(text="T\n\nA [b](c)", source="s.md", title="T").search_text == "T\n\nA [b](c)"


# --------------------------------------------------------------------------- files


def test_tutorial_pieces_split_like_the_tutorial(tmp_path):
    texts = {
        "en/faq/b_second.md": "# Second FAQ\n\n#### Why?\n\nBecause.\n#not-a-split\n",
        "en/faq/a_first.md": "---\nid: a.md\n---\n\n# First\n\n## Sub # heading\n\ntext",
        "en/faq/c_third.md": "no heading at all, ünïcödé",
    }
    root = write_tree(
        tmp_path / "docs",
        {
            **texts,
            "en/faq/notes.txt": "# ignored (not markdown)",
            "en/faq/sub/nested.md": "# ignored (not directly in en/faq)",
            "en/other.md": "# ignored (not in en/faq)",
        },
    )
    expected = [(name, piece) for name in sorted(texts) for piece in texts[name].split("# ")]
    pieces = tutorial_pieces(root)
    assert [(p.source, p.text) for p in pieces] == [(Path(n).name, t) for n, t in expected]
    assert pieces[0].text == "---\nid: a.md\n---\n\n"
    assert [p.title for p in pieces[:5]] == ["---", "First", "Sub", "heading", ""]
    assert pieces[-1].title == "no heading at all, ünïcödé"


def test_faq_files_are_sorted_and_only_en_faq_markdown(tmp_path):
    root = write_tree(
        tmp_path / "docs",
        {"en/faq/b.md": "", "en/faq/a.md": "", "en/faq/x.txt": "", "en/faq/sub/c.md": ""},
    )
    assert [p.name for p in faq_files(root)] == ["a.md", "b.md"]


def test_faq_entries_resolve_fragments_under_en(tmp_path):
    root = write_tree(
        tmp_path / "docs",
        {
            "en/faq/a.md": "# A?\n{{fragments/note.md}}\n",
            "en/fragments/note.md": "Shared note.\n",
        },
    )
    [entry] = faq_entries(root)
    assert (entry.title, entry.source, entry.text) == ("A?", "a.md", "A?\n\nShared note.")


def test_doc_entries_cover_every_page_but_fragments(tmp_path):
    root = write_tree(
        tmp_path / "docs",
        {
            "en/faq/a.md": "# A?\nYes.\n",
            "en/about/overview.md": "# Overview\nMilvus is a database.\n{{fragments/n.md}}\n",
            "en/fragments/n.md": "Shared note.\n",
        },
    )
    found = [(e.source, e.title, e.text) for e in doc_entries(root)]
    assert found == [
        ("about/overview.md", "Overview", "Overview\n\nMilvus is a database.\nShared note."),
        ("faq/a.md", "A?", "A?\n\nYes."),
    ]


def test_doc_entries_without_pages(tmp_path):
    root = write_tree(tmp_path / "docs", {"README.md": "# not under en/"})
    with pytest.raises(RagError) as info:
        doc_entries(root)
    assert str(info.value).startswith(f"No markdown pages under {root / 'en'}")
    assert "MILVUS_DOCS_ZIP must point at the Milvus docs zip" in str(info.value)


# --------------------------------------------------------------------------- the real docs


def test_real_tutorial_split_gives_72_pieces(docs_dir):
    pieces = tutorial_pieces(docs_dir)
    assert len(pieces) == 72
    raw = [
        piece
        for name in FAQ_FILES
        for piece in (docs_dir / "en" / "faq" / name).read_text(encoding="utf-8").split("# ")
    ]
    assert [p.text for p in pieces] == raw
    assert any("Where does Milvus store data?" in p.text for p in pieces)


def test_real_faq_gives_one_entry_per_answered_heading(docs_dir):
    entries = faq_entries(docs_dir)
    assert len(entries) == 61
    assert sorted({e.source for e in entries}) == FAQ_FILES
    for entry in entries:
        head, _, answer = entry.text.partition("\n\n")
        assert head.endswith(entry.title) and answer.strip(), entry.title
        assert "{{" not in entry.text and "<!--" not in entry.text, entry.title
    store = next(e for e in entries if e.title == "Where does Milvus store data?")
    assert store.source == "product_faq.md" and "etcd" in store.text
    assert store.section == "Product FAQ"


def test_real_entry_titles_are_headings_as_written(docs_dir):
    """Each title is the text of a heading line of its file, character for character."""
    for entry in faq_entries(docs_dir):
        lines = (docs_dir / "en" / "faq" / entry.source).read_text(encoding="utf-8").splitlines()
        headings = {re.sub(r"^\s*#+\s+", "", line).strip() for line in lines if "#" in line}
        assert entry.title in headings, (entry.source, entry.title)


@pytest.mark.parametrize("question_set", ["dev.jsonl", "test.jsonl"])
def test_every_gold_title_heads_an_entry(docs_dir, question_set):
    entries = faq_entries(docs_dir)
    questions = load_questions(REPO / "data" / "eval" / question_set)
    assert len(questions) >= 40
    assert unknown_golds(questions, entries) == []
    # the questions cover all four FAQ files
    sources = {e.source for q in questions for e in entries if q.gold in e.text.partition("\n")[0]}
    assert sorted(sources) == FAQ_FILES


def test_unknown_golds_catches_a_title_that_heads_no_entry(docs_dir):
    """The check above can fail: a gold title that is not in the docs is reported."""
    questions = [Question("q", "Where does Milvus store data?"), Question("q", "Not a title?")]
    assert unknown_golds(questions, faq_entries(docs_dir)) == ["Not a title?"]


def test_the_projects_phrasings_cover_every_faq_entry(docs_dir):
    from milvus_rag.chunking import faq_entries, load_phrasings
    from milvus_rag.config import phrasings_path

    table = load_phrasings(phrasings_path())
    entries = faq_entries(docs_dir, table)
    assert len(table) == len(entries) == 61
    assert all(len(entry.phrasings) == 4 for entry in entries)


@pytest.mark.parametrize(
    "content, cause",
    [("not json\n", "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
     ('{"source": "a.md"}\n', "KeyError: 'phrasings'")],
)  # fmt: skip
def test_bad_phrasing_files_say_which_line(tmp_path, content, cause):
    from milvus_rag.chunking import load_phrasings

    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(RagError) as caught:
        load_phrasings(path)
    assert str(caught.value) == (f"Line 1 of p.jsonl is not a phrasing record ({cause}): write "
                                 '{"source": ..., "title": ..., "phrasings": [...]} on it.')  # fmt: skip
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(RagError) as caught:
        load_phrasings(missing)
    assert str(caught.value).startswith(
        f"Cannot read the phrasings {str(missing)!r} (FileNotFoundError"
    )
    assert str(caught.value).endswith(
        "): check the file (the FAQ's, data/faq_phrasings.jsonl, is in this project's checkout)."
    )


# --------------------------------------------------------------------------- any document


def paragraph(n: int, words: int = 30) -> str:
    return " ".join(f"w{n}.{i}" for i in range(words)) + "."


def body_of(entry: Entry) -> str:
    return entry.text.partition("\n\n")[2]


def test_a_long_section_is_cut_at_paragraphs_into_titled_parts():
    paragraphs = [paragraph(n) for n in range(12)]  # about 3,000 characters under one heading
    page = "---\ntitle: Guide\n---\n# Setup\n\n" + "\n\n".join(paragraphs) + "\n\n## Short\nOK.\n"
    entries = split_entries(page, "guide/setup.md")
    parts = entries[:-1]
    assert len(parts) >= 3
    assert [e.title for e in parts] == [f"Setup (part {n})" for n in range(1, len(parts) + 1)]
    assert all(e.section == "Guide" and e.source == "guide/setup.md" for e in parts)
    assert all(len(e.text) <= MAX_PART_CHARS for e in entries)
    assert parts[1].text.startswith(f"Guide{PATH_SEPARATOR}Setup (part 2)\n\n")
    assert "\n\n".join(body_of(e) for e in parts) == "\n\n".join(paragraphs), "nothing is lost"
    assert all(len(body_of(e)) > MAX_PART_CHARS // 2 for e in parts[:-1]), "parts are filled"
    assert (entries[-1].title, entries[-1].text) == ("Short", "Guide > Setup > Short\n\nOK.")
    assert split_entries(page, "guide/setup.md", limit=None)[0].title == "Setup"


def test_a_code_fence_with_blank_lines_is_not_cut():
    code = "```python\n" + "\n\n".join(f"x{n} = {n}  # {'c' * 40}" for n in range(10)) + "\n```"
    page = "# Code\n\n" + paragraph(0, 100) + "\n\n" + code + "\n\n" + paragraph(1, 100)
    parts = split_entries(page, "c.md")
    assert [body_of(e) for e in parts if "```" in e.text] == [code]


def test_a_paragraph_longer_than_a_part_is_wrapped_at_spaces():
    long = paragraph(0, 600)  # one paragraph of about 4,600 characters
    parts = split_entries("# Long\n" + long, "l.md")
    assert len(parts) >= 5 and all(len(e.text) <= MAX_PART_CHARS for e in parts)
    assert " ".join(body_of(e) for e in parts).split() == long.split()


def test_plain_text_is_split_by_paragraphs_titled_by_their_first_line():
    paragraphs = ["Opening line of the notes\nand its second line."] + [
        paragraph(n) for n in range(1, 8)
    ]
    text = "\r\n\r\n\r\n".join(paragraphs).replace("\n", "\r\n")
    entries = document_entries([Document("notes/plain.txt", text)])
    assert len(entries) >= 2 and all(len(e.text) <= MAX_PART_CHARS for e in entries)
    first = entries[0]
    assert (first.source, first.section, first.title) == (
        "notes/plain.txt", "plain.txt", "Opening line of the notes",
    )  # fmt: skip
    assert first.text.startswith("plain.txt > Opening line of the notes\n\nOpening line of")
    assert entries[1].title == paragraph(len(body_of(first).split("\n\n")))[: TITLE_CHARS - 1] + "…"
    assert "\n\n".join(body_of(e) for e in entries) == "\n\n".join(paragraphs)


def test_document_entries_split_by_kind_and_attach_phrasings():
    docs = [Document("a.md", "# Q?\nA.\n"), Document("b.markdown", "# R?\nB.\n"),
            Document("c.TXT", "# not a heading\nC.\n")]  # fmt: skip
    table = {("a.md", "Q?"): ("question",), ("c.TXT", "Q?"): ("wrong file",)}
    entries = document_entries(docs, table)
    assert [(e.source, e.title, e.phrasings) for e in entries] == [
        ("a.md", "Q?", ("question",)), ("b.markdown", "R?", ()), ("c.TXT", "# not a heading", ()),
    ]  # fmt: skip


def test_the_sample_documents_and_their_phrasings():
    root = REPO / "data" / "sample_docs"
    docs, _ = documents(open_corpus(str(root)))
    table = load_phrasings(root / "phrasings.jsonl")
    entries = document_entries(docs, table)
    assert table and all(len(e.text) <= MAX_PART_CHARS for e in entries)
    assert {(e.source, e.title) for e in entries if e.phrasings} == set(table)
    assert any(e.source.endswith(".txt") for e in entries)
    assert any("```python" in e.text and e.section for e in entries)


# --------------------------------------------------------------------------- the real docs, pinned

FAQ_SHA256 = "e592731b52d81a674b7e5b24a414dd60015f1d4196b2f2558b7553653625be7a"
"""The FAQ entries every figure of the README was measured on (before documents were cut into
parts): any change to them must be deliberate, and re-measured."""


def test_real_faq_entries_are_exactly_those_measured(docs_dir):
    entries = faq_entries(docs_dir)
    dump = json.dumps([asdict(e) for e in entries], ensure_ascii=False).encode()
    assert hashlib.sha256(dump).hexdigest() == FAQ_SHA256


def test_real_doc_entries_fit_the_model_and_lose_nothing(docs_dir):
    entries = doc_entries(docs_dir)
    assert all(len(e.text) <= MAX_PART_CHARS for e in entries)
    assert len(entries) > 1757, "more entries than whole sections (1,757)"
    source = next(e.source for e in entries if e.title.endswith(" (part 2)"))
    parts = [e for e in entries if e.source == source]
    page = (docs_dir / "en" / source).read_text(encoding="utf-8")
    whole = split_entries(page, source, docs_dir / "en", limit=None)
    assert len(parts) > len(whole)
    words = lambda found: [w for e in found for w in body_of(e).split()]  # noqa: E731
    assert words(parts) == words(whole)


def test_a_tutorial_pieces_title_is_its_whole_first_line(tmp_path):
    """However long: ``errors.first_line`` cuts at 300 characters by default; a title is not cut."""
    long_line = "Why " + "very " * 80 + "long?"
    root = write_tree(tmp_path / "docs", {"en/faq/a.md": f"# {long_line}\n\nBecause."})
    assert [piece.title for piece in tutorial_pieces(root)] == ["", long_line]


def test_plain_text_blocks_fill_up_to_the_limit_and_keep_paragraphs_as_written():
    """Blocks of a.txt hold at most limit - 70 characters (room for the heading path): here 100.
    Paragraphs fill a block up to exactly that; a paragraph that fits is kept as written (tabs
    too); a longer one is cut at spaces, keeping its own line breaks."""
    filled = ["a" * 49 + "\n\n" + "b" * 49, "c" * 10]
    exact = "x\t" + "y" * 98  # 100 characters with a tab
    lines = "\n".join(f"line {n:02d} " + "w" * 20 for n in range(10))  # 289 characters
    text = "\n\n".join([*filled, exact, lines])
    entries = document_entries([Document("a.txt", text)], limit=170)
    assert [body_of(e) for e in entries[:3]] == [*filled, exact]
    cut = [body_of(e) for e in entries[3:]]
    assert all(len(b) <= 100 for b in cut) and cut[0].count("\n") == 3
    assert " ".join(cut).split() == lines.split()
    over = "z" * 50 + " " + "z" * 50  # 101 characters: cut
    assert [body_of(e) for e in document_entries([Document("b.txt", over)], limit=170)] == [
        "z" * 50, "z" * 50
    ]  # fmt: skip


def test_what_a_corpus_indexes_the_faq_by_default_and_a_folders_own_phrasings(tmp_path):
    from milvus_rag.chunking import corpus_entries

    milvus = write_tree(tmp_path / "milvus", {"en/faq/a.md": "# FAQ\n\n## Why?\n\nBecause.\n"})
    suffix, entries, skipped, chunking = corpus_entries(open_corpus(str(milvus)))
    assert (suffix, [e.title for e in entries], skipped) == ("faq", ["Why?"], [])
    assert chunking == "FAQ entries, with phrasings"
    phrasings = json.dumps({"source": "a.md", "title": "Q?", "phrasings": ["other words"]})
    own = write_tree(tmp_path / "own", {"a.md": "# Q?\n\nA.\n", "phrasings.jsonl": phrasings})
    _, entries, _, _ = corpus_entries(open_corpus(str(own)))
    assert [(e.title, e.phrasings) for e in entries] == [("Q?", ("other words",))]


def test_an_entry_exactly_at_the_limit_is_whole_and_a_long_heading_leaves_half_for_text():
    text = "# Q?\n\n" + "word " * 30
    whole = split_entries(text, "a.md", limit=len("Q?\n\n" + ("word " * 30).strip()))
    assert [e.title for e in whole] == ["Q?"]
    heading = "H" * 120  # the path takes 122 of the 200: each part still gets 100 for its text
    paragraphs = [f"{n} " + "p" * 88 for n in range(3)]
    parts = split_entries(f"# {heading}\n\n" + "\n\n".join(paragraphs), "a.md", limit=200)
    assert [body_of(e) for e in parts] == paragraphs
    assert parts[0].title == f"{heading} (part 1)"


def test_a_front_matter_title_loses_only_its_quotes():
    assert front_matter_title('---\ntitle: "XML and X"\n---\n# Body\n') == "XML and X"
