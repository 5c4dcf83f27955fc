"""Tests for milvus_rag.docs: download once, unzip safely, split the FAQ as the tutorial does."""

from __future__ import annotations

import io
import os
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from milvus_rag import docs
from milvus_rag.docs import (
    extract_docs,
    fetch_docs_zip,
    load_faq_pieces,
    prepare_docs,
)
from milvus_rag.errors import RagError

# --------------------------------------------------------------------------- helpers


def make_zip(path: Path, members: dict[str, bytes | str]) -> Path:
    """A deflated zip at ``path`` holding ``members`` (name -> content)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def zip_bytes(members: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


class _Route:
    def __init__(self, status: int, body: bytes, announced_length: int | None = None):
        self.status = status
        self.body = body
        self.announced_length = len(body) if announced_length is None else announced_length


class LocalHTTPServer:
    """A tiny HTTP server on 127.0.0.1 that serves fixed routes and counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, _Route] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                route = outer.routes.get(self.path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "9")
                    self.end_headers()
                    self.wfile.write(b"not found")
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(route.announced_length))
                self.end_headers()
                self.wfile.write(route.body)
                self.wfile.flush()
                # HTTP/1.0: the connection closes here, even when fewer bytes were sent
                # than announced (a truncated download).

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def http_server() -> Iterator[LocalHTTPServer]:
    server = LocalHTTPServer()
    try:
        yield server
    finally:
        server.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def no_part_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".part" in p.name]


# --------------------------------------------------------------------------- fetch_docs_zip


def test_fetch_local_path_is_returned_as_is(tmp_path):
    local = make_zip(tmp_path / "docs.zip", {"en/faq/a.md": "# A\n"})
    cache = tmp_path / "cache"
    assert fetch_docs_zip(str(local), cache) == local
    assert not cache.exists(), "a local zip must not be copied into the cache"


def test_fetch_missing_local_path_raises_naming_the_variable(tmp_path):
    missing = tmp_path / "nope" / "milvus_docs.zip"
    with pytest.raises(RagError) as info:
        fetch_docs_zip(str(missing), tmp_path / "cache")
    assert "MILVUS_DOCS_ZIP" in str(info.value)
    assert str(missing) in str(info.value)


def test_fetch_directory_is_not_a_zip(tmp_path):
    with pytest.raises(RagError, match="MILVUS_DOCS_ZIP"):
        fetch_docs_zip(str(tmp_path), tmp_path / "cache")


def test_download_once_then_cached(tmp_path, http_server):
    payload = zip_bytes({"en/faq/a.md": "# Q?\nAnswer.\n"})
    http_server.routes["/release/docs.zip"] = _Route(200, payload)
    cache = tmp_path / "cache"

    first = fetch_docs_zip(http_server.url("/release/docs.zip"), cache)
    assert first == cache / "docs.zip"
    assert first.read_bytes() == payload
    assert http_server.requests == ["/release/docs.zip"]

    second = fetch_docs_zip(http_server.url("/release/docs.zip"), cache)
    assert second == first
    assert second.read_bytes() == payload
    assert len(http_server.requests) == 1, "the second call must reuse the cached download"
    assert no_part_files(cache)
    assert files_under(cache) == ["docs.zip"]


def test_download_http_404(tmp_path, http_server):
    cache = tmp_path / "cache"
    url = http_server.url("/missing.zip")
    with pytest.raises(RagError) as info:
        fetch_docs_zip(url, cache)
    message = str(info.value)
    assert "MILVUS_DOCS_ZIP" in message
    assert "404" in message
    assert files_under(cache) == []


def test_download_unreachable_server(tmp_path):
    cache = tmp_path / "cache"
    url = f"http://127.0.0.1:{closed_port()}/docs.zip"
    with pytest.raises(RagError) as info:
        fetch_docs_zip(url, cache)
    assert "MILVUS_DOCS_ZIP" in str(info.value)
    assert files_under(cache) == []


def test_download_not_a_zip(tmp_path, http_server):
    http_server.routes["/docs.zip"] = _Route(200, b"<html>a login page, not a zip</html>")
    cache = tmp_path / "cache"
    with pytest.raises(RagError) as info:
        fetch_docs_zip(http_server.url("/docs.zip"), cache)
    assert "MILVUS_DOCS_ZIP" in str(info.value)
    assert files_under(cache) == []


def test_download_truncated_is_not_cached(tmp_path, http_server):
    payload = zip_bytes({"en/faq/a.md": "# Q?\n" + "Answer text. " * 200})
    half = payload[: len(payload) // 2]
    http_server.routes["/docs.zip"] = _Route(200, half, announced_length=len(payload))
    cache = tmp_path / "cache"
    with pytest.raises(RagError) as info:
        fetch_docs_zip(http_server.url("/docs.zip"), cache)
    assert "MILVUS_DOCS_ZIP" in str(info.value)
    assert files_under(cache) == []

    # Once the server is fixed, the next call downloads again (nothing stale was kept).
    http_server.routes["/docs.zip"] = _Route(200, payload)
    path = fetch_docs_zip(http_server.url("/docs.zip"), cache)
    assert path.read_bytes() == payload
    assert len(http_server.requests) == 2


def test_download_truncated_zip_with_honest_length_is_refused(tmp_path, http_server):
    """A cut zip served with its (short) length is still caught: it is not a zip."""
    payload = zip_bytes({"en/faq/a.md": "# Q?\n" + "Answer text. " * 200})
    http_server.routes["/docs.zip"] = _Route(200, payload[: len(payload) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(RagError):
        fetch_docs_zip(http_server.url("/docs.zip"), cache)
    assert files_under(cache) == []


def test_download_url_without_file_name(tmp_path, http_server):
    payload = zip_bytes({"en/faq/a.md": "# Q?\n"})
    http_server.routes["/"] = _Route(200, payload)
    path = fetch_docs_zip(http_server.url("/"), tmp_path / "cache")
    assert path == tmp_path / "cache" / "milvus_docs.zip"
    assert path.read_bytes() == payload


# --------------------------------------------------------------------------- extract_docs


def test_extract_once_then_reused(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "docs.zip", {"en/faq/a.md": "# One\n", "en/b.md": "b"})
    target = tmp_path / "out" / "milvus_docs"

    assert extract_docs(archive, target) == target
    assert (target / "en" / "faq" / "a.md").read_text() == "# One\n"
    assert (target / "en" / "b.md").read_text() == "b"
    assert (target / ".source-sha256").read_text().strip() == docs.sha256_of(archive)
    # Nothing but the target is left beside it (no staging folders).
    assert sorted(p.name for p in target.parent.iterdir()) == ["milvus_docs"]

    def fail(*args, **kwargs):
        raise AssertionError("the zip was opened again although it was already extracted")

    monkeypatch.setattr(docs.zipfile, "ZipFile", fail)
    before = (target / "en" / "faq" / "a.md").stat().st_mtime_ns
    assert extract_docs(archive, target) == target
    assert (target / "en" / "faq" / "a.md").stat().st_mtime_ns == before


def test_extract_again_when_the_zip_changes(tmp_path):
    archive = tmp_path / "docs.zip"
    target = tmp_path / "milvus_docs"
    make_zip(archive, {"en/faq/a.md": "# One\n", "en/old.md": "old"})
    extract_docs(archive, target)
    assert (target / "en" / "old.md").is_file()

    archive.unlink()
    make_zip(archive, {"en/faq/a.md": "# Two\n", "en/new.md": "new"})
    extract_docs(archive, target)
    assert (target / "en" / "faq" / "a.md").read_text() == "# Two\n"
    assert (target / "en" / "new.md").read_text() == "new"
    assert not (target / "en" / "old.md").exists(), "files of the old zip must be gone"
    assert (target / ".source-sha256").read_text().strip() == docs.sha256_of(archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.zip", "milvus_docs"]


def test_extract_replaces_an_unmarked_folder(tmp_path):
    archive = make_zip(tmp_path / "docs.zip", {"en/faq/a.md": "# One\n"})
    target = tmp_path / "milvus_docs"
    (target / "en" / "faq").mkdir(parents=True)
    (target / "en" / "faq" / "stale.md").write_text("half of an old unzip")
    extract_docs(archive, target)
    assert files_under(target / "en" / "faq") == ["a.md"]


@pytest.mark.parametrize(
    "evil_name",
    ["../evil.md", "en/../../evil.md", "/tmp/milvus-rag-evil-absolute.md", "..\\evil.md"],
)
def test_extract_refuses_paths_outside_the_target(tmp_path, evil_name):
    archive = make_zip(tmp_path / "in" / "docs.zip", {"en/faq/a.md": "# ok\n", evil_name: "x"})
    work = tmp_path / "work"
    target = work / "milvus_docs"
    with pytest.raises(RagError) as info:
        extract_docs(archive, target)
    assert "outside the target" in str(info.value)
    assert not target.exists()
    assert not (tmp_path / "evil.md").exists()
    assert not (work / "evil.md").exists()
    assert not Path("/tmp/milvus-rag-evil-absolute.md").exists()
    assert list(work.iterdir()) == [], "no staging folder may be left behind"


def test_extract_refuses_a_zip_bomb(tmp_path):
    archive = make_zip(
        tmp_path / "bomb.zip",
        {"en/faq/a.md": "# ok\n", "en/zeros.bin": b"\0" * (20 * 1024 * 1024)},
    )
    info = zipfile.ZipFile(archive).getinfo("en/zeros.bin")
    assert info.file_size / info.compress_size > docs.MAX_RATIO  # the fixture is a bomb
    target = tmp_path / "out" / "milvus_docs"
    with pytest.raises(RagError, match="zip bomb"):
        extract_docs(archive, target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_extract_refuses_too_large_a_total(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "docs.zip", {"en/faq/a.md": os.urandom(4096)})
    monkeypatch.setattr(docs, "MAX_TOTAL_BYTES", 1024)
    with pytest.raises(RagError, match="MiB"):
        extract_docs(archive, tmp_path / "milvus_docs")
    assert not (tmp_path / "milvus_docs").exists()


def test_extract_not_a_zip(tmp_path):
    bogus = tmp_path / "docs.zip"
    bogus.write_bytes(b"this is not a zip file at all")
    target = tmp_path / "out" / "milvus_docs"
    with pytest.raises(RagError) as info:
        extract_docs(bogus, target)
    assert "MILVUS_DOCS_ZIP" in str(info.value)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_extract_truncated_zip(tmp_path, fraction):
    good = zip_bytes({f"en/faq/{i}.md": f"# Q{i}?\n" + "words " * 500 for i in range(5)})
    cut = tmp_path / "docs.zip"
    cut.write_bytes(good[: int(len(good) * fraction)])
    target = tmp_path / "out" / "milvus_docs"
    with pytest.raises(RagError):
        extract_docs(cut, target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def _corrupt_member_data(archive: bytes, name: str) -> bytes:
    """``archive`` with bytes inside member ``name``'s compressed data flipped."""
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(name)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data = bytearray(archive)
    for i in range(start + 10, start + min(200, info.compress_size - 10)):
        data[i] ^= 0xFF
    return bytes(data)


def test_extract_stored_member_with_bad_crc(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("en/faq/a.md", "# Q?\n" + "stored text " * 100)
    corrupt = tmp_path / "docs.zip"
    corrupt.write_bytes(_corrupt_member_data(buffer.getvalue(), "en/faq/a.md"))
    target = tmp_path / "out" / "milvus_docs"
    with pytest.raises(RagError, match="not a readable zip"):
        extract_docs(corrupt, target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_extract_deflated_member_with_corrupt_data(tmp_path):
    good = zip_bytes({"en/faq/a.md": os.urandom(3000).hex()})
    corrupt = tmp_path / "docs.zip"
    corrupt.write_bytes(_corrupt_member_data(good, "en/faq/a.md"))
    assert zipfile.is_zipfile(corrupt)  # it passes the download's check
    target = tmp_path / "out" / "milvus_docs"
    try:
        with pytest.raises(RagError):
            extract_docs(corrupt, target)
    finally:
        assert not target.exists()


def test_extract_keeps_the_old_docs_when_a_new_zip_is_bad(tmp_path):
    archive = make_zip(tmp_path / "docs.zip", {"en/faq/a.md": "# One\n"})
    target = tmp_path / "milvus_docs"
    extract_docs(archive, target)
    archive.write_bytes(b"garbage")
    with pytest.raises(RagError):
        extract_docs(archive, target)
    assert (target / "en" / "faq" / "a.md").read_text() == "# One\n"


# --------------------------------------------------------------------------- load_faq_pieces


def write_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def test_load_faq_pieces_splits_like_the_tutorial(tmp_path):
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
    expected: list[str] = []
    for name in sorted(texts):
        expected.extend(texts[name].split("# "))
    assert load_faq_pieces(root) == expected
    assert load_faq_pieces(root)[0] == "---\nid: a.md\n---\n\n"


def test_load_faq_pieces_without_faq_folder(tmp_path):
    root = write_tree(tmp_path / "docs", {"en/other.md": "# not a faq"})
    with pytest.raises(RagError) as info:
        load_faq_pieces(root)
    assert "en/faq" in str(info.value)


def test_load_faq_pieces_non_utf8_file(tmp_path):
    root = write_tree(
        tmp_path / "docs",
        {"en/faq/good.md": "# fine\n", "en/faq/latin1.md": "# caf\xe9\n".encode("latin-1")},
    )
    with pytest.raises(RagError) as info:
        load_faq_pieces(root)
    assert "latin1.md" in str(info.value)
    assert "UTF-8" in str(info.value)


def test_load_faq_pieces_all_empty(tmp_path):
    root = write_tree(tmp_path / "docs", {"en/faq/a.md": "", "en/faq/b.md": "  \n\n"})
    with pytest.raises(RagError, match="empty"):
        load_faq_pieces(root)


# --------------------------------------------------------------------------- the real docs zip


def test_real_docs_zip_gives_72_pieces(docs_zip, isolated_data_dir):
    folder = prepare_docs(str(docs_zip), isolated_data_dir)
    assert folder == isolated_data_dir / "milvus_docs"
    faq = docs.faq_files(folder)
    assert [p.name for p in faq] == [
        "operational_faq.md",
        "performance_faq.md",
        "product_faq.md",
        "troubleshooting.md",
    ]
    pieces = load_faq_pieces(folder)
    assert len(pieces) == 72
    assert any("Where does Milvus store data?" in piece for piece in pieces)
    # The same folder is reused by a second call (no second unzip).
    marker = folder / ".source-sha256"
    before = marker.stat().st_mtime_ns
    assert prepare_docs(str(docs_zip), isolated_data_dir) == folder
    assert marker.stat().st_mtime_ns == before
