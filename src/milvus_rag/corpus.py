"""Get the Milvus docs: download the zip once (cached), check it, and unzip it safely once.

Nothing here is ever half-written: a download goes to a ``.part`` file renamed into place only
when complete, and the zip is unpacked into a staging folder renamed into place, under a file
lock so that two processes doing their first run at once do not trip over each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from milvus_rag.errors import RagError, cause

MAX_TOTAL_BYTES = 200 * 1024 * 1024
"""Refuse archives that expand beyond this (the real one expands to about 2 MB)."""

MAX_RATIO = 200
"""Refuse members compressed more than this many times (zip bombs)."""

DOWNLOAD_TIMEOUT_S = 30

OFFICIAL = "milvus_docs_2.4.x_en.zip"


def is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https")


def sha256_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fetch_zip(source: str, cache_dir: Path) -> Path:
    """The local path of the docs zip: ``source`` itself if it is a path, else a cached download."""
    if not is_url(source):
        path = Path(source).expanduser()
        if not path.is_file():
            raise RagError(
                f"The docs zip {source!r} does not exist: set MILVUS_DOCS_ZIP to the path of "
                f"{OFFICIAL} or to its download URL."
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
                f"bytes): run again, or set MILVUS_DOCS_ZIP to a local copy of {OFFICIAL}."
            )
        if not zipfile.is_zipfile(part):
            raise RagError(
                f"{source} did not return a zip file: check the URL, or set MILVUS_DOCS_ZIP "
                f"to a local copy of {OFFICIAL}."
            )
        os.replace(part, target)
    except urllib.error.HTTPError as err:
        raise RagError(
            f"Downloading {source} failed with HTTP {err.code} ({err.reason}): check the URL, "
            f"or set MILVUS_DOCS_ZIP to a local copy of {OFFICIAL}."
        ) from err
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        raise RagError(
            f"Cannot download {source} ({reason}): check the network, or set MILVUS_DOCS_ZIP "
            f"to a local copy of {OFFICIAL}."
        ) from err
    finally:
        part.unlink(missing_ok=True)
    return target


def _checked_members(archive: zipfile.ZipFile, source: Path) -> list[zipfile.ZipInfo]:
    """Every member, after refusing paths that escape the target folder and zip bombs."""
    members = archive.infolist()
    total = 0
    for info in members:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            raise RagError(
                f"Refusing to unzip {source}: member {info.filename!r} would be written "
                f"outside the target folder. Use the official {OFFICIAL}."
            )
        total += info.file_size
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
            raise RagError(
                f"Refusing to unzip {source}: member {info.filename!r} expands more than "
                f"{MAX_RATIO} times (a zip bomb?). Use the official {OFFICIAL}."
            )
    if total > MAX_TOTAL_BYTES:
        raise RagError(
            f"Refusing to unzip {source}: it would expand to {total // (1 << 20)} MiB, more "
            f"than {MAX_TOTAL_BYTES // (1 << 20)} MiB. Use the official {OFFICIAL}."
        )
    return members


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (POSIX ``flock``; no lock where there is none)."""
    try:
        import fcntl
    except ImportError:  # Windows: one process at a time is the user's business there
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def extract(zip_path: Path, target: Path) -> Path:
    """Unzip ``zip_path`` into ``target`` once; later calls with the same zip reuse it.

    The archive is unpacked into a staging folder and renamed into place, so ``target`` is
    absent or complete; a marker file inside records which zip it holds. The whole check and
    swap runs under a lock, so a second process waits and then reuses the first one's work.
    """
    zip_path, target = Path(zip_path), Path(target)
    marker = target / ".source-sha256"
    digest = sha256_of(zip_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.parent / f".{target.name}.lock"):
        if marker.is_file() and marker.read_text().strip() == digest:
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            try:
                with zipfile.ZipFile(zip_path) as archive:
                    archive.extractall(staging, members=_checked_members(archive, zip_path))
            except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, zlib.error) as err:
                raise RagError(
                    f"{zip_path} is not a readable zip ({cause(err)}): download it again, or "
                    f"set MILVUS_DOCS_ZIP to a good copy of {OFFICIAL}."
                ) from err
            (staging / marker.name).write_text(digest + "\n")
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
                os.replace(target, old / target.name)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def prepare_docs(source: str, cache_dir: Path | None = None) -> Path:
    """Download (a URL, once) and unzip (once) the docs; returns the unzipped folder.

    ``cache_dir`` defaults to the project's ``data/`` folder (``config.data_dir()``).
    """
    if cache_dir is None:
        from milvus_rag.config import data_dir

        cache_dir = data_dir()
    return extract(fetch_zip(source, cache_dir), Path(cache_dir) / "milvus_docs")
