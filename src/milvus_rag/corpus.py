"""Find the documents: the Milvus docs zip (downloaded once), another zip, or a folder.

A zip is unpacked into a staging folder, checked, and only then renamed into its cache folder:
the Milvus docs' (``en/faq/*.md``) is ``data/milvus_docs/``, any other's ``data/corpora/<label>/``.
A ``phrasings.jsonl`` at a corpus's root (the format of ``data/faq_phrasings.jsonl``, read by
:func:`milvus_rag.chunking.load_phrasings`) is not a document: it gives other ways users ask for
a section (``{"source": RELATIVE PATH, "title": HEADING, ...}``), each indexed beside it."""

import hashlib
import os
import re
import shutil
import tempfile
import unicodedata
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse
from urllib.request import url2pathname

from milvus_rag.config import data_dir
from milvus_rag.errors import RagError, cause
from milvus_rag.locks import locked

MAX_TOTAL_BYTES = 200 * 1024 * 1024  # refuse archives expanding beyond (the docs: about 2 MB)
MAX_RATIO = 200  # refuse members compressed more than this many times (zip bombs)
MAX_FILE_BYTES = 2 * 1024 * 1024  # skip larger documents, warning: a book is better split
SUFFIXES = (".md", ".markdown", ".txt")  # a corpus's documents (any case); other files ignored
PHRASINGS = "phrasings.jsonl"  # the optional phrasings file at a corpus's root (see above)
MARKER = ".source-sha256"  # in an unzipped folder: the sha256 of the zip it holds
DOWNLOAD_TIMEOUT_S = 30
OFFICIAL = "milvus_docs_2.4.x_en.zip"
_FAQ_MEMBER = re.compile(r"en/faq/[^/]+\.md")


@dataclass(frozen=True)
class Corpus:
    """A folder of documents, and what names its collection."""

    root: Path  # the folder holding the documents (unzipped, or the user's own)
    label: str  # "" for the Milvus docs, else [a-z][a-z0-9_]*, at most 40 characters
    is_milvus_docs: bool  # it holds en/faq/*.md (the tutorial's FAQ pipeline)


@dataclass(frozen=True)
class Document:
    """A Markdown/text file: its ``path`` under the corpus's root (``/`` separators), its text."""

    path: str
    text: str


def _label(name: str, digest: str) -> str:
    """A slug of ``name`` and 6 hex digits of ``digest``: at most 40 characters, a letter first."""
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "_", name).strip("_")[:28].rstrip("_")
    return f"{slug if slug[:1].isalpha() else ('docs_' + slug).rstrip('_')}_{digest[:6]}"


def fetch_zip(url: str, cache_dir: Path) -> Path:
    """The zip at ``url``, downloaded once into ``cache_dir`` (a ``.part`` file until complete)."""
    name = PurePosixPath(urlparse(url).path).name or "milvus_docs.zip"
    target = Path(cache_dir) / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, part_name = tempfile.mkstemp(prefix=name + ".part", dir=target.parent)
    part, fix = Path(part_name), f"set MILVUS_DOCS_ZIP to a local copy of {OFFICIAL}"
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as got:
            expected = got.headers.get("Content-Length")
            shutil.copyfileobj(got, out, 1 << 20)
        if expected is not None and (size := part.stat().st_size) != int(expected):
            raise RagError(f"The download of {url} stopped early ({size} of {expected} bytes): run again, or {fix}.")
        if not zipfile.is_zipfile(part):
            raise RagError(f"{url} did not return a zip file: check the URL, or {fix}.")
        try:
            os.replace(part, target)
        except PermissionError:  # Windows: another process downloaded it first and has it open
            if not target.is_file():
                raise
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:  # HTTPError included
        why = f"HTTP {err.code} {err.reason}" if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", err)
        raise RagError(f"Cannot download {url} ({why}): check the URL and the network, or {fix}.") from err
    finally:
        part.unlink(missing_ok=True)
    return target


def _checked_members(archive: zipfile.ZipFile, source: Path) -> list[zipfile.ZipInfo]:
    """Every member, after refusing paths outside the target folder, zip bombs, and no document."""
    refuse, fix = f"Refusing to unzip {source}", f"zip the files again, or use the official {OFFICIAL}"
    members = archive.infolist()
    for info in members:
        parts = PurePosixPath(name := info.filename.replace("\\", "/")).parts
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            raise RagError(f"{refuse}: member {info.filename!r} would be written outside the target folder; {fix}.")
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
            raise RagError(f"{refuse}: member {info.filename!r} expands more than {MAX_RATIO} times (a zip bomb?); {fix}.")
    if (total := sum(info.file_size for info in members)) > MAX_TOTAL_BYTES:
        raise RagError(f"{refuse}: it would expand to {total >> 20} MiB, more than {MAX_TOTAL_BYTES >> 20} MiB; {fix}.")
    if not any(PurePosixPath(info.filename).suffix.lower() in SUFFIXES for info in members):
        raise RagError(f"{refuse}: it holds no Markdown or text file ({', '.join(SUFFIXES)}); {fix}.")
    return members


def extract(zip_path: Path, cache_dir: Path) -> Corpus:
    """Unzip ``zip_path`` once into its folder under ``cache_dir`` (absent or complete); under a
    lock, so a second process waits, then reuses the first one's work."""
    with open(zip_path, "rb") as fh:
        zip_path, digest = Path(zip_path), hashlib.file_digest(fh, "sha256").hexdigest()
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = _checked_members(archive, zip_path)
            if any(_FAQ_MEMBER.fullmatch(info.filename) for info in members):
                corpus = Corpus(Path(cache_dir) / "milvus_docs", "", True)
            else:
                label = _label(zip_path.stem, digest)
                corpus = Corpus(Path(cache_dir) / "corpora" / label, label, False)
            target, marker = corpus.root, corpus.root / MARKER
            target.parent.mkdir(parents=True, exist_ok=True)
            with locked(target.parent / f".{target.name}.lock"):
                if marker.is_file() and marker.read_text(encoding="utf-8").strip() == digest:
                    return corpus
                staging, old = (Path(tempfile.mkdtemp(f".{n}", f".{target.name}.", target.parent)) for n in "no")
                try:
                    archive.extractall(staging, members=members)
                    (staging / MARKER).write_text(digest + "\n", encoding="utf-8")
                    if target.exists():
                        os.replace(target, old / target.name)
                    os.replace(staging, target)
                finally:
                    for folder in (staging, old):
                        shutil.rmtree(folder, ignore_errors=True)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, zlib.error) as err:
        fix = f"download it again, or set MILVUS_DOCS_ZIP to a good copy of {OFFICIAL}"
        raise RagError(f"{zip_path} is not a readable zip ({cause(err)}): {fix}.") from err
    return corpus


def open_corpus(source: str, cache_dir: Path | None = None) -> Corpus:
    """The documents of ``source``: a zip URL (downloaded once), a zip path or a folder (or its
    ``file:`` URL)."""
    if (url := urlparse(source)).scheme == "file":
        source = url2pathname(url.path)  # file:///C:/docs.zip -> C:\docs.zip on Windows
    cache_dir, path = cache_dir or data_dir(), Path(source).expanduser()
    is_url = urlparse(source).scheme in ("http", "https")
    if is_url or (path.is_file() and path.suffix.lower() not in SUFFIXES):
        return extract(fetch_zip(source, cache_dir) if is_url else path, cache_dir)
    if not path.is_dir():
        what = "is one document, not a folder" if path.exists() else "does not exist"
        raise RagError(f"The docs source {source!r} {what}: give --docs (or MILVUS_DOCS_ZIP) a "
                       "folder or a zip of Markdown/text files, or the download URL of a zip.")
    root = path.resolve()
    if any((root / "en" / "faq").glob("*.md")):
        return Corpus(root, "", True)
    return Corpus(root, _label(root.name, hashlib.sha256(str(root).encode()).hexdigest()), False)


def prepare_docs(source: str, cache_dir: Path | None = None) -> Path:
    """The folder of the Milvus docs that the tutorial reads (a zip: downloaded and unzipped once)."""
    corpus = open_corpus(source, cache_dir)
    if not corpus.is_milvus_docs:
        raise RagError(f"{source} is not the Milvus docs (it holds no en/faq/*.md): the tutorial's steps "
                       f"need the Milvus docs zip ({OFFICIAL}); give your own documents to --docs or "
                       "to the notebook's MY_DOCS parameter.")
    return corpus.root


def _read(path: Path, root: Path) -> tuple[str, str]:
    """(the text of the file at ``path``, "") or ("", why it is skipped)."""
    try:
        if path.is_symlink() and not path.resolve(strict=True).is_relative_to(root):
            return "", "it is a symlink to outside the folder (not followed)"
        if path.stat().st_size > MAX_FILE_BYTES:
            return "", f"it is larger than the {MAX_FILE_BYTES >> 20} MiB limit for one document; split it"
        if b"\0" in (data := path.read_bytes()):
            return "", "it holds NUL bytes (binary, or UTF-16?); save it as UTF-8 text"
        text = re.sub(r"\r\n?", "\n", data.decode("utf-8-sig"))  # Windows' CRLF: lines as elsewhere
        return text, "" if text.strip() else "it is empty"
    except UnicodeDecodeError as err:
        return "", f"it is not UTF-8 text (byte {err.start}); re-save it as UTF-8"
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop, up to Python 3.12
        return "", f"it cannot be read ({cause(err)})"


def documents(corpus: Corpus) -> tuple[list[Document], list[str]]:
    """Every Markdown/text file under the corpus's root (sorted), a sentence per file skipped;
    hidden files ignored, symlinked folders not followed. Refuses a corpus without a document."""
    root, docs, skipped = corpus.root.resolve(), [], []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in sorted(n for n in dirs + files if not n.startswith(".")):
            rel = (path := Path(folder) / name).relative_to(root).as_posix()
            if path.suffix.lower() in SUFFIXES and not path.is_dir():
                text, why = _read(path, root)
                docs += [Document(rel, text)] if not why else []
            elif name in dirs and path.is_symlink() and not path.resolve().is_relative_to(root):
                why = "it is a symlink to a folder outside this one (not followed)"
            else:
                continue
            skipped += [f"Skipped {rel}: {why}."] if why else []
    if not docs:
        detail = f" ({len(skipped)} skipped, e.g. {skipped[0][:-1]})" if skipped else ""
        raise RagError(f"No readable Markdown or text file ({', '.join(SUFFIXES)}) in {root}{detail}: "
                       "put your documents there, or give --docs (MILVUS_DOCS_ZIP) their folder.")
    return sorted(docs, key=lambda d: d.path), skipped
