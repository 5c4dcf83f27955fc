"""Get the Milvus docs: download once (cached), unzip safely, split the FAQ as the tutorial does."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from milvus_rag.errors import RagError

FAQ_GLOB = "en/faq/*.md"
"""The files the tutorial reads, relative to the unzipped docs folder."""

MAX_TOTAL_BYTES = 200 * 1024 * 1024
"""Refuse archives that expand beyond this (the real one expands to about 2 MB)."""

MAX_RATIO = 200
"""Refuse members compressed more than this many times (zip bombs)."""

DOWNLOAD_TIMEOUT_S = 30


def is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_docs_zip(source: str, cache_dir: Path) -> Path:
    """The local path of the docs zip: ``source`` itself if it is a path, else a cached download.

    A download goes to a temporary ``.part`` file and is renamed into place only once it
    is complete and is a readable zip, so an interrupted download is never reused.
    """
    if not is_url(source):
        path = Path(source).expanduser()
        if not path.is_file():
            raise RagError(
                f"The docs zip {source!r} does not exist: set MILVUS_DOCS_ZIP to the path "
                "of milvus_docs_2.4.x_en.zip or to its download URL."
            )
        return path
    name = PurePosixPath(urlparse(source).path).name or "milvus_docs.zip"
    target = Path(cache_dir) / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, part_name = tempfile.mkstemp(prefix=name + ".part", dir=target.parent)
    part = Path(part_name)
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_S) as response:
                expected = response.headers.get("Content-Length")
                shutil.copyfileobj(response, out, 1 << 20)
        if expected is not None and part.stat().st_size != int(expected):
            raise RagError(
                f"The download of {source} stopped early ({part.stat().st_size} of {expected} "
                "bytes): run again, or set MILVUS_DOCS_ZIP to a local copy of the zip."
            )
        if not zipfile.is_zipfile(part):
            raise RagError(
                f"{source} did not return a zip file: check the URL, or set MILVUS_DOCS_ZIP "
                "to a local copy of milvus_docs_2.4.x_en.zip."
            )
        os.replace(part, target)
    except urllib.error.HTTPError as err:
        raise RagError(
            f"Downloading {source} failed with HTTP {err.code}: check the URL, or set "
            "MILVUS_DOCS_ZIP to a local copy of milvus_docs_2.4.x_en.zip."
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        raise RagError(
            f"Cannot download {source} ({reason}): check the network, or set "
            "MILVUS_DOCS_ZIP to a local copy of milvus_docs_2.4.x_en.zip."
        ) from None
    finally:
        part.unlink(missing_ok=True)
    return target


def _checked_members(archive: zipfile.ZipFile, source: Path) -> list[zipfile.ZipInfo]:
    """Every member, after refusing paths that escape the target and zip bombs."""
    members = archive.infolist()
    total = 0
    for info in members:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            raise RagError(
                f"Refusing to unzip {source}: member {info.filename!r} would be written "
                "outside the target folder. Use the official milvus_docs_2.4.x_en.zip."
            )
        total += info.file_size
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
            raise RagError(
                f"Refusing to unzip {source}: member {info.filename!r} expands more than "
                f"{MAX_RATIO} times (a zip bomb?). Use the official milvus_docs_2.4.x_en.zip."
            )
    if total > MAX_TOTAL_BYTES:
        raise RagError(
            f"Refusing to unzip {source}: it would expand to {total // (1 << 20)} MiB, more than "
            f"{MAX_TOTAL_BYTES // (1 << 20)} MiB. Use the official milvus_docs_2.4.x_en.zip."
        )
    return members


def extract_docs(zip_path: Path, target: Path) -> Path:
    """Unzip ``zip_path`` into ``target`` once; later calls with the same zip reuse it.

    The archive is unpacked into a temporary sibling folder and renamed into place, so
    ``target`` is either absent or complete. A marker file records which zip it holds.
    """
    zip_path, target = Path(zip_path), Path(target)
    marker = target / ".source-sha256"
    digest = sha256_of(zip_path)
    if marker.is_file() and marker.read_text().strip() == digest:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                archive.extractall(staging, members=_checked_members(archive, zip_path))
        except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, zlib.error) as err:
            raise RagError(
                f"{zip_path} is not a readable zip ({err}): download it again, or set "
                "MILVUS_DOCS_ZIP to a good copy of milvus_docs_2.4.x_en.zip."
            ) from None
        (staging / marker.name).write_text(digest + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def faq_files(docs_dir: Path) -> list[Path]:
    """The FAQ markdown files, in a stable (sorted) order so ids are repeatable."""
    files = sorted(Path(docs_dir).glob(FAQ_GLOB))
    if not files:
        raise RagError(
            f"No {FAQ_GLOB} files in {docs_dir}: MILVUS_DOCS_ZIP must point at the Milvus "
            "docs zip (milvus_docs_2.4.x_en.zip), which holds them."
        )
    return files


def split_like_tutorial(text: str) -> list[str]:
    """The tutorial's split: every piece between occurrences of ``"# "``."""
    return text.split("# ")


def read_markdown(path: Path) -> str:
    """A docs file's text, with one clear sentence if it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RagError(
            f"{path.name} is not UTF-8 text (byte {err.start}): re-save it as UTF-8 or "
            "use the official docs zip."
        ) from None


def faq_pieces(docs_dir: Path) -> list[tuple[str, str]]:
    """(file name, piece) for every piece of every FAQ file, split as the tutorial does."""
    pieces: list[tuple[str, str]] = []
    for path in faq_files(docs_dir):
        pieces.extend((path.name, piece) for piece in split_like_tutorial(read_markdown(path)))
    if not any(piece.strip() for _, piece in pieces):
        raise RagError(f"The FAQ files in {docs_dir} are empty: use the official docs zip.")
    return pieces


def load_faq_pieces(docs_dir: Path) -> list[str]:
    """All pieces of all FAQ files, split as the tutorial does (72 for the 2.4.x docs)."""
    return [piece for _, piece in faq_pieces(docs_dir)]


def prepare_docs(source: str, cache_dir: Path) -> Path:
    """Download (if a URL, once) and unzip (once) the docs; returns the unzipped folder."""
    zip_path = fetch_docs_zip(source, cache_dir)
    return extract_docs(zip_path, Path(cache_dir) / "milvus_docs")
