"""Split the docs into pieces: the tutorial's split, and one piece per FAQ entry.

Pure functions of the unzipped docs folder (see :mod:`milvus_rag.corpus`). The tutorial splits the FAQ files on every ``"# "``, which cuts inside code blocks, keeps the
files' front matter and table-of-contents stubs as pieces of their own, and loses which file
and which parent heading a piece came from. This module splits on Markdown headings instead:

- every heading with text under it becomes one :class:`Entry`: its title (as written in the
  docs), the source file, the headings above it, and the stored text;
- headings with nothing under them (``# Product FAQ`` followed only by a TOC comment, or
  ``## etcd crash issues`` followed at once by its sub-headings) are not entries of their own,
  but stay in the heading path of the entries below them;
- ``#`` inside fenced code blocks is code, not a heading;
- ``{{fragments/NAME.md}}`` includes are replaced by that fragment, as the docs site does.

An entry's stored ``text`` starts with its heading path (``Product FAQ > Where does Milvus
store data?``), so the title is in its first line and the parent heading gives context.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

from milvus_rag.errors import RagError

FAQ_GLOB = "en/faq/*.md"
"""The files the tutorial reads, relative to the unzipped docs folder."""

PATH_SEPARATOR = " > "
"""Joins the heading path in an entry's first line."""

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_BREAK = re.compile(r"<br\s*/?>", re.I)
_INCLUDE = re.compile(r"\{\{\s*(fragments/[\w.-]+\.md)\s*\}\}")
_LINK = re.compile(r"(!?)\[([^\]]*)\]\([^)\s]*(?:\s+\"[^\"]*\")?\)")
_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")


@dataclass(frozen=True)
class Entry:
    """One FAQ entry: a heading and the answer under it."""

    text: str
    """Stored text: the heading path on the first line, a blank line, then the answer."""
    source: str
    """The FAQ file it comes from, e.g. ``product_faq.md``."""
    title: str
    """The heading as written in the docs, e.g. ``Where does Milvus store data?``."""
    section: str = ""
    """The headings above it, joined by ``PATH_SEPARATOR``, e.g. ``Product FAQ``."""
    search_text: str = ""
    """What is embedded and indexed for BM25; "" means ``text`` (see :func:`link_words`)."""
    phrasings: tuple[str, ...] = ()
    """Other ways users ask for this entry (``data/faq_phrasings.jsonl``), each indexed too."""

    def __post_init__(self) -> None:
        if not self.search_text:
            object.__setattr__(self, "search_text", self.text)


def link_words(markdown: str) -> str:
    """``markdown`` with ``[words](url)`` reduced to ``words`` and images removed.

    URLs say nothing a user would type and eat into the embedding model's input limit
    (256 tokens for all-MiniLM-L6-v2), so the searchable text of an entry keeps only the
    words of its links.
    """
    return _LINK.sub(lambda m: "" if m.group(1) else m.group(2), markdown)


def front_matter_title(text: str) -> str:
    """The ``title:`` of a docs page's front matter, or "" when there is none."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return ""
    for line in match.group(1).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "title":
            return value.strip().strip("\"'")
    return ""


def expand_includes(text: str, docs_root: Path | None) -> str:
    """Replace ``{{fragments/NAME.md}}`` by that file under ``docs_root`` (left as is if absent)."""
    if docs_root is None:
        return text

    def include(match: re.Match) -> str:
        path = Path(docs_root) / match.group(1)
        if not path.is_file():
            return match.group(0)
        return path.read_text(encoding="utf-8").strip()

    return _INCLUDE.sub(include, text)


def _clean_body(lines: list[str]) -> str:
    body = _BREAK.sub("", _COMMENT.sub("", "\n".join(lines)))
    body = textwrap.dedent("\n".join(line.rstrip() for line in body.splitlines()))
    body = _BLANK_RUNS.sub("\n\n", "\n".join(line.rstrip() for line in body.splitlines()))
    return body.strip()


def split_entries(text: str, source: str, docs_root: Path | None = None) -> list[Entry]:
    """The entries of one FAQ page (Markdown with optional front matter).

    ``docs_root`` is the docs language folder (``.../en``) that ``{{fragments/...}}``
    includes are relative to; without it includes stay as written.
    """
    page_title = front_matter_title(text)
    text = _FRONT_MATTER.sub("", text, count=1)
    text = expand_includes(text.replace("\r\n", "\n"), docs_root)

    entries: list[Entry] = []
    stack: list[tuple[int, str]] = []  # (level, title) of the headings above the current line
    current: tuple[int, str] | None = None
    body: list[str] = []
    fence: str | None = None

    def flush() -> None:
        answer = _clean_body(body)
        if not answer:
            return
        if current is None:  # text before the first heading: the page's own introduction
            path = [page_title] if page_title else []
            title = page_title or source
        else:
            path = [title for _, title in stack]
            title = current[1]
        if page_title and (not path or path[0] != page_title):
            path.insert(0, page_title)
        if not path or path[-1] != title:
            path.append(title)
        text = f"{PATH_SEPARATOR.join(path)}\n\n{answer}"
        entries.append(
            Entry(
                text=text,
                source=source,
                title=title,
                section=PATH_SEPARATOR.join(path[:-1]),
                search_text=link_words(text),
            )
        )

    for line in text.split("\n"):
        fence_match = _FENCE.match(line)
        if fence is not None:
            if fence_match and fence_match.group(1) == fence:
                fence = None
            body.append(line)
            continue
        if fence_match:
            fence = fence_match.group(1)
            body.append(line)
            continue
        heading = _HEADING.match(line)
        if heading and heading.group(2):
            flush()
            level, title = len(heading.group(1)), heading.group(2).strip()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            current = (level, title)
            body = []
            continue
        body.append(line)
    flush()
    return entries


def read_markdown(path: Path) -> str:
    """A docs file's text, with one clear sentence if it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RagError(
            f"{path.name} is not UTF-8 text (byte {err.start}): re-save it as UTF-8 or use the "
            "official docs zip."
        ) from err


def faq_files(docs_dir: Path) -> list[Path]:
    """The FAQ markdown files, sorted so that ids and orders repeat from run to run."""
    files = sorted(Path(docs_dir).glob(FAQ_GLOB))
    if not files:
        raise RagError(
            f"No {FAQ_GLOB} files in {docs_dir}: MILVUS_DOCS_ZIP must point at the Milvus docs "
            "zip (milvus_docs_2.4.x_en.zip), which holds them."
        )
    return files


def tutorial_pieces(docs_dir: Path) -> list[Entry]:
    """The tutorial's split: every FAQ file's text cut at each ``"# "`` (72 pieces).

    Texts are exactly the tutorial's, empty pieces included, so the baseline is faithful; the
    title is a piece's first non-blank line, the source its file.
    """
    pieces: list[Entry] = []
    for path in faq_files(docs_dir):
        for piece in read_markdown(path).split("# "):
            lines = [line.strip() for line in piece.splitlines() if line.strip()]
            pieces.append(Entry(text=piece, source=path.name, title=lines[0] if lines else ""))
    if not any(piece.text.strip() for piece in pieces):
        raise RagError(f"The FAQ files in {docs_dir} are empty: use the official docs zip.")
    return pieces


def load_phrasings(path: Path) -> dict[tuple[str, str], tuple[str, ...]]:
    """(file, title) -> the phrasings of that entry's question, from a JSON-lines file of
    ``{"source": FILE, "title": HEADING, "phrasings": [...]}`` (``data/faq_phrasings.jsonl``)."""
    table: dict[tuple[str, str], tuple[str, ...]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise RagError(
            f"Cannot read the FAQ phrasings {str(path)!r} ({type(err).__name__}): run from this "
            "project's checkout, which holds data/faq_phrasings.jsonl."
        ) from err
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key = (str(record["source"]), str(record["title"]))
            table[key] = tuple(str(p).strip() for p in record["phrasings"] if str(p).strip())
        except (ValueError, KeyError, TypeError) as err:
            raise RagError(
                f"Line {number} of {Path(path).name} is not a phrasing record ({type(err).__name__}): "
                'write {"source": ..., "title": ..., "phrasings": [...]} on it.'
            ) from err
    return table


def faq_entries(
    docs_dir: Path, phrasings: dict[tuple[str, str], tuple[str, ...]] | None = None
) -> list[Entry]:
    """Every entry of every FAQ file under the unzipped docs folder, in a stable order, each
    with its ``phrasings`` (see :func:`load_phrasings`) where the table has them."""
    entries: list[Entry] = []
    for path in faq_files(docs_dir):
        entries.extend(split_entries(read_markdown(path), path.name, docs_root=path.parent.parent))
    if not entries:
        raise RagError(
            f"The FAQ files in {docs_dir} have no entries (they are empty or hold only "
            "headings): use the official docs zip."
        )
    table = phrasings or {}
    return [replace(e, phrasings=table.get((e.source, e.title), ())) for e in entries]


def doc_entries(docs_dir: Path) -> list[Entry]:
    """Every section of every page of the docs (all of ``en/``, FAQ included), by headings.

    Each page is split like the FAQ: a heading with the text under it is one entry, its
    source the page's path under ``en/``. ``en/fragments/`` are skipped: pages include them.
    """
    root = Path(docs_dir) / "en"
    pages = sorted(p for p in root.rglob("*.md") if "fragments" not in p.relative_to(root).parts)
    if not pages:
        raise RagError(
            f"No markdown pages under {root}: MILVUS_DOCS_ZIP must point at the Milvus docs zip."
        )
    entries: list[Entry] = []
    for path in pages:
        entries.extend(
            split_entries(read_markdown(path), path.relative_to(root).as_posix(), docs_root=root)
        )
    return entries
