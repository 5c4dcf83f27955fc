"""Split documents into sections: the tutorial's ``"# "`` split, and entries by heading or paragraph.

Markdown is split on its headings (not ``#`` in code): a heading with text under it is an
:class:`Entry`, its text starting with its heading path (``Product FAQ > Where does Milvus store
data?``); headings with nothing under them stay in the path; front matter gives the page's title;
the Milvus docs' ``{{fragments/NAME.md}}`` includes are expanded. Plain text splits at blank lines."""

import json
import re
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from milvus_rag.config import phrasings_path
from milvus_rag.corpus import PHRASINGS, Corpus, Document, documents
from milvus_rag.errors import RagError, cause, first_line

FAQ_GLOB = "en/faq/*.md"  # the files the tutorial reads, relative to the unzipped docs folder
PATH_SEPARATOR = " > "  # joins the heading path in an entry's first line
MAX_PART_CHARS = 1000  # longest entry text: all-MiniLM-L6-v2 reads 256 tokens, about 1,000
# characters, and ignores the rest; a longer section is cut at paragraphs into "(part N)"s
TITLE_CHARS = 60  # a plain-text block's title: its first line, cut to this many characters

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.M)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n", re.S)
_TITLE = re.compile(r"^[ \t]*title[ \t]*:(.*)$", re.M)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_BREAK = re.compile(r"<br\s*/?>", re.I)
_INCLUDE = re.compile(r"\{\{\s*(fragments/[\w.-]+\.md)\s*\}\}")
_LINK = re.compile(r"(!?)\[([^\]]*)\]\([^)\s]*(?:\s+\"[^\"]*\")?\)")
_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")


@dataclass(frozen=True)
class Entry:
    """One section of a document: what is stored, embedded and indexed for it."""

    text: str  # what is stored: its heading path, a blank line, the section
    source: str  # its file, relative (``product_faq.md``)
    title: str  # its heading as written (a plain-text block's first line)
    section: str = ""  # the headings above it, joined by PATH_SEPARATOR
    search_text: str = ""  # what is embedded and indexed for BM25 ("": text; see link_words)
    phrasings: tuple[str, ...] = ()  # other ways users ask for it, each indexed too

    def __post_init__(self) -> None:
        if not self.search_text:
            object.__setattr__(self, "search_text", self.text)


def link_words(markdown: str) -> str:
    """``markdown`` with ``[words](url)`` reduced to ``words`` and images removed (URLs eat input)."""
    return _LINK.sub(lambda m: "" if m.group(1) else m.group(2), markdown)


def front_matter_title(text: str) -> str:
    """The ``title:`` of a page's front matter, or "" when there is none."""
    title = (match := _FRONT_MATTER.match(text)) and _TITLE.search(match.group(1))
    return title.group(1).strip().strip("\"'") if title else ""


def expand_includes(text: str, docs_root: Path | None) -> str:
    """Replace ``{{fragments/NAME.md}}`` by that file under ``docs_root`` (left as is if absent)."""

    def include(match: re.Match) -> str:
        path = Path(docs_root) / match.group(1)
        return path.read_text(encoding="utf-8").strip() if path.is_file() else match.group(0)

    return text if docs_root is None else _INCLUDE.sub(include, text)


def _clean_body(text: str) -> str:
    """``text`` without comments and ``<br>``, dedented, with one blank line between paragraphs."""
    body = _BREAK.sub("", _COMMENT.sub("", text))
    body = textwrap.dedent("\n".join(line.rstrip() for line in body.splitlines()))
    return _BLANK_RUNS.sub("\n\n", body).strip()


def _blocks(text: str, size: int) -> list[str]:
    """``text`` in blocks of at most ``size`` characters: whole paragraphs (a code fence with blank
    lines inside is one) grouped in order; a longer paragraph is wrapped at spaces."""
    units: list[str] = []
    for paragraph in text.split("\n\n"):
        if units and len(_FENCE.findall(units[-1])) % 2:  # inside an open code fence
            units[-1] += "\n\n" + paragraph
        else:
            units.append(paragraph)
    blocks: list[str] = []
    for unit in units:
        for piece in textwrap.wrap(unit, size, replace_whitespace=False) if len(unit) > size else [unit]:
            if blocks and len(blocks[-1]) + 2 + len(piece) <= size:
                blocks[-1] += "\n\n" + piece
            else:
                blocks.append(piece)
    return blocks


def _entry(path: list[str], body: str, source: str) -> Entry:
    text = f"{PATH_SEPARATOR.join(path)}\n\n{body}"
    return Entry(text, source, path[-1], PATH_SEPARATOR.join(path[:-1]), link_words(text))


def split_entries(text: str, source: str, docs_root: Path | None = None,
                  limit: int | None = MAX_PART_CHARS) -> list[Entry]:  # fmt: skip
    """The entries of one Markdown page by headings, those longer than ``limit`` in parts;
    includes are relative to ``docs_root`` (``.../en``), and without it stay as written."""
    page_title = front_matter_title(text)
    text = expand_includes(_FRONT_MATTER.sub("", text, count=1).replace("\r\n", "\n"), docs_root)
    entries, stack, body, fence = [], [], [], None  # stack: (level, title) of the headings above

    def flush() -> None:
        if not (answer := _clean_body("\n".join(body))):
            return
        path = [title for _, title in stack] or [page_title or source]
        if page_title and path[0] != page_title:
            path.insert(0, page_title)
        head = len(PATH_SEPARATOR.join(path)) + 2
        if limit is None or head + len(answer) <= limit:
            entries.append(_entry(path, answer, source))
        else:  # parts, each with room for " (part N)"
            blocks = _blocks(answer, max(limit - head - len(" (part 999)"), limit // 2))
            entries.extend(_entry([*path[:-1], f"{path[-1]} (part {n})"], b, source) for n, b in enumerate(blocks, 1))

    for line in text.split("\n"):
        fence_match = _FENCE.match(line)
        if fence is not None:  # inside a code fence until the same marker closes it
            fence = None if fence_match and fence_match.group(1) == fence else fence
        elif fence_match:
            fence = fence_match.group(1)
        elif (heading := _HEADING.match(line)) and heading.group(2):
            flush()
            level, body = len(heading.group(1)), []
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading.group(2).strip()))
            continue
        body.append(line)
    flush()
    return entries


def document_entries(docs: list[Document], phrasings: dict | None = None, docs_root: Path | None = None,
                     limit: int | None = MAX_PART_CHARS) -> list[Entry]:  # fmt: skip
    """The entries of every document, each with its ``phrasings`` (:func:`load_phrasings`):
    Markdown by headings, sections longer than ``limit`` in parts; plain text (``.txt``) by
    paragraphs grouped up to ``limit``, each block titled by its first line under the file's name."""
    entries: list[Entry] = []
    for d in docs:
        if not d.path.lower().endswith(".txt"):
            entries += split_entries(d.text, d.path, docs_root, limit)
            continue
        name = PurePosixPath(d.path).name
        size = (limit or MAX_PART_CHARS) - len(name + PATH_SEPARATOR) - TITLE_CHARS - 2
        blocks = _blocks(_clean_body(d.text), size)
        entries += [_entry([name, first_line(b, TITLE_CHARS)], b, d.path) for b in blocks if b]
    table = phrasings or {}
    return [replace(e, phrasings=table.get((e.source, e.title), ())) for e in entries]


def read_markdown(path: Path) -> str:
    """A docs file's text, with one clear sentence if it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        fix = "re-save it as UTF-8 or use the official docs zip"
        raise RagError(f"{path.name} is not UTF-8 text (byte {err.start}): {fix}.") from err


def faq_files(docs_dir: Path) -> list[Path]:
    """The FAQ markdown files, sorted so that ids and orders repeat from run to run."""
    if not (files := sorted(Path(docs_dir).glob(FAQ_GLOB))):
        raise RagError(f"No {FAQ_GLOB} files in {docs_dir}: MILVUS_DOCS_ZIP must point at the "
                       "Milvus docs zip (milvus_docs_2.4.x_en.zip), which holds them.")
    return files


def tutorial_pieces(docs_dir: Path) -> list[Entry]:
    """The tutorial's split: every FAQ file's text cut at each ``"# "`` (72 pieces), exactly
    (empty pieces included); a piece's title is its first non-blank line, its source its file."""
    files = faq_files(docs_dir)
    pieces = [Entry(p, f.name, first_line(p, len(p) + 1)) for f in files for p in read_markdown(f).split("# ")]
    if not any(piece.text.strip() for piece in pieces):
        raise RagError(f"The FAQ files in {docs_dir} are empty: use the official docs zip.")
    return pieces


def load_phrasings(path: Path) -> dict[tuple[str, str], tuple[str, ...]]:
    """(file, title) -> the phrasings of that entry's question, from a JSON-lines file of
    ``{"source": FILE, "title": HEADING, "phrasings": [...]}`` (``data/faq_phrasings.jsonl``)."""
    table = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise RagError(f"Cannot read the phrasings {str(path)!r} ({cause(err)}): check the file (the "
                       "FAQ's, data/faq_phrasings.jsonl, is in this project's checkout).") from err
    for number, line in ((n, line) for n, line in enumerate(lines, 1) if line.strip()):
        try:
            record = json.loads(line)
            phrasings = (str(p).strip() for p in record["phrasings"])
            table[str(record["source"]), str(record["title"])] = tuple(p for p in phrasings if p)
        except (ValueError, KeyError, TypeError) as err:
            fix = 'write {"source": ..., "title": ..., "phrasings": [...]} on it'
            raise RagError(f"Line {number} of {Path(path).name} is not a phrasing record ({cause(err)}): {fix}.") from err
    return table


def faq_entries(docs_dir: Path, phrasings: dict | None = None) -> list[Entry]:
    """Every entry of every FAQ file under the unzipped docs folder, in a stable order, each with
    its ``phrasings`` (see :func:`load_phrasings`). Entries are kept whole: each answers one
    question (the longest is 1,018 characters), and the evaluation's figures are of whole ones."""
    docs = [Document(f.name, read_markdown(f)) for f in faq_files(docs_dir)]
    if not (entries := document_entries(docs, phrasings, Path(docs_dir) / "en", limit=None)):
        raise RagError(f"The FAQ files in {docs_dir} have no entries (they are empty or hold only "
                       "headings): use the official docs zip.")
    return entries


def doc_entries(docs_dir: Path) -> list[Entry]:
    """Every section of every page of the Milvus docs (``en/``, FAQ included, fragments not)."""
    root = Path(docs_dir) / "en"
    pages = sorted(p for p in root.rglob("*.md") if "fragments" not in p.relative_to(root).parts)
    if not pages:
        raise RagError(f"No markdown pages under {root}: MILVUS_DOCS_ZIP must point at the Milvus docs zip.")
    docs = [Document(p.relative_to(root).as_posix(), read_markdown(p)) for p in pages]
    return document_entries(docs, docs_root=root)


def corpus_entries(docs: Corpus, all_docs: bool = False) -> tuple[str, list[Entry], list[str], str]:
    """What to index for a corpus: (its collection's suffix, entries, files skipped, chunking).
    The Milvus docs give their FAQ with the project's phrasings ("faq"), or every page with
    ``all_docs`` ("docs"); other documents are split by headings, with their own phrasings."""
    if docs.is_milvus_docs and all_docs:
        return "docs", doc_entries(docs.root), [], f"sections of at most {MAX_PART_CHARS} characters"
    if docs.is_milvus_docs:
        entries = faq_entries(docs.root, load_phrasings(phrasings_path()))
        return "faq", entries, [], "FAQ entries, with phrasings"
    found, skipped = documents(docs)
    own = docs.root / PHRASINGS
    entries = document_entries(found, load_phrasings(own) if own.is_file() else None)
    return docs.label, entries, skipped, f"sections of at most {MAX_PART_CHARS} characters"
