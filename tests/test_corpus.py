"""Tests for milvus_rag.corpus: a zip URL (downloaded once), a zip or a folder; unzipped safely
once; its documents read, and every file that cannot be one skipped with a sentence.

Every bad input is tested once here, in-process: it must end in one RagError sentence that says
what happened, why and what to do, keep its cause (``raise ... from err``), and leave nothing
half-written behind. (That the command line turns such an error into one line and exit code 1
is tested with the command line.)
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.error
import zipfile
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from milvus_rag import corpus
from milvus_rag.chunking import faq_entries, faq_files, tutorial_pieces
from milvus_rag.corpus import (
    Corpus,
    Document,
    documents,
    extract,
    fetch_zip,
    open_corpus,
    prepare_docs,
)
from milvus_rag.errors import RagError

# --------------------------------------------------------------------------- helpers


def zip_bytes(members: dict[str, bytes | str], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip holding ``members`` (name -> content), as bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def make_zip(path: Path, members: dict[str, bytes | str]) -> Path:
    """A deflated zip at ``path`` holding ``members``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zip_bytes(members))
    return path


def files_under(folder: Path) -> list[str]:
    """Every path under ``folder`` (relative, sorted); [] when it does not exist."""
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """What a refused unzip left under ``folder``: nothing but lock files may be there."""
    return [p for p in files_under(folder) if not p.endswith(".lock")]


def raised(call, *args) -> RagError:
    """The RagError that ``call(*args)`` raises (the test fails if it raises none)."""
    with pytest.raises(RagError) as info:
        call(*args)
    return info.value


class Route:
    """What the local server answers on one path. ``announced_length`` may lie (a cut)."""

    def __init__(self, body: bytes, status: int = 200, announced_length: int | None = None):
        self.status = status
        self.body = body
        self.announced_length = len(body) if announced_length is None else announced_length


class LocalHTTPServer:
    """A tiny HTTP/1.0 server on 127.0.0.1 that serves fixed routes and records requests."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                route = outer.routes.get(self.path, Route(b"not found", status=404))
                self.send_response(route.status)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(route.announced_length))
                self.end_headers()
                self.wfile.write(route.body)
                # HTTP/1.0: the connection closes here, even when fewer bytes were sent than
                # announced (an interrupted download).

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


ZIP_NAME = "milvus_docs_2.4.x_en.zip"
SMALL_DOCS = {"en/faq/a.md": "# Q?\n" + "Answer text. " * 200}


# --------------------------------------------------------------------------- fetch_zip


def test_a_local_zip_is_unzipped_but_not_copied(tmp_path):
    local = make_zip(tmp_path / "docs.zip", {"en/faq/a.md": "# A\n"})
    cache = tmp_path / "cache"
    assert open_corpus(str(local), cache) == Corpus(cache / "milvus_docs", "", True)
    assert files_under(cache) == [
        ".milvus_docs.lock", "milvus_docs", "milvus_docs/.source-sha256", "milvus_docs/en",
        "milvus_docs/en/faq", "milvus_docs/en/faq/a.md",
    ], "a local zip must not be copied into the cache"  # fmt: skip


@pytest.mark.parametrize("name", [ZIP_NAME, "my folder", "mes_résumés"])
def test_a_missing_source_says_what_it_may_be(tmp_path, name):
    source = tmp_path / "nope" / name
    message = str(raised(open_corpus, str(source), tmp_path / "cache"))
    assert message == (
        f"The docs source {str(source)!r} does not exist: give --docs (or MILVUS_DOCS_ZIP) a "
        "folder or a zip of Markdown/text files, or the download URL of a zip."
    )
    assert files_under(tmp_path / "cache") == []


def test_one_document_is_not_a_source(tmp_path):
    note = tree(tmp_path, {"note.md": "# A note\n"}) / "note.md"
    message = str(raised(open_corpus, str(note), tmp_path / "cache"))
    assert message.startswith(f"The docs source {str(note)!r} is one document, not a folder: give")


def test_download_once_then_cached(tmp_path, http_server):
    payload = zip_bytes({"en/faq/a.md": "# Q?\nAnswer.\n"})
    http_server.routes["/release/docs.zip"] = Route(payload)
    cache = tmp_path / "cache"

    first = fetch_zip(http_server.url("/release/docs.zip"), cache)
    assert first == cache / "docs.zip"
    assert first.read_bytes() == payload
    assert http_server.requests == ["/release/docs.zip"]

    second = fetch_zip(http_server.url("/release/docs.zip"), cache)
    assert second == first and second.read_bytes() == payload
    assert len(http_server.requests) == 1, "the second call must reuse the cached download"
    assert files_under(cache) == ["docs.zip"], "no .part file may be left"


def test_download_url_without_file_name(tmp_path, http_server):
    payload = zip_bytes({"en/faq/a.md": "# Q?\n"})
    http_server.routes["/"] = Route(payload)
    path = fetch_zip(http_server.url("/"), tmp_path / "cache")
    assert path == tmp_path / "cache" / "milvus_docs.zip"
    assert path.read_bytes() == payload


def test_download_unreachable_server(tmp_path):
    cache = tmp_path / "cache"
    url = f"http://127.0.0.1:{closed_port()}/{ZIP_NAME}"
    err = raised(fetch_zip, url, cache)
    message = str(err)
    assert message.startswith(f"Cannot download {url} (")
    assert "check the URL and the network" in message and "MILVUS_DOCS_ZIP" in message
    assert isinstance(err.__cause__, urllib.error.URLError)
    reason = err.__cause__.reason  # e.g. "[Errno 111] Connection refused"
    assert message.startswith(f"Cannot download {url} ({reason}): check the URL")
    assert files_under(cache) == []


def test_download_http_404(tmp_path, http_server):
    cache = tmp_path / "cache"
    url = http_server.url(f"/{ZIP_NAME}")
    err = raised(fetch_zip, url, cache)
    message = str(err)
    assert message.startswith(f"Cannot download {url} (HTTP 404 Not Found): check the URL")
    assert "MILVUS_DOCS_ZIP" in message
    assert isinstance(err.__cause__, urllib.error.HTTPError) and err.__cause__.code == 404
    assert files_under(cache) == []


def test_download_not_a_zip(tmp_path, http_server):
    http_server.routes["/docs.zip"] = Route(b"<html>a login page, not a zip</html>")
    cache = tmp_path / "cache"
    url = http_server.url("/docs.zip")
    message = str(raised(fetch_zip, url, cache))
    assert f"{url} did not return a zip file" in message
    assert "check the URL" in message and "MILVUS_DOCS_ZIP" in message
    assert files_under(cache) == []


def test_interrupted_download_is_not_kept(tmp_path, http_server):
    """The connection drops after a third of the announced Content-Length (over 1 MiB, more
    than one read): an error and no file; once the server is fixed, the next call downloads
    again (nothing stale was kept)."""
    payload = zip_bytes({"en/faq/a.bin": os.urandom(4 << 20)}, zipfile.ZIP_STORED)
    cut = len(payload) // 3
    http_server.routes["/docs.zip"] = Route(payload[:cut], announced_length=len(payload))
    cache = tmp_path / "cache"
    url = http_server.url("/docs.zip")
    message = str(raised(fetch_zip, url, cache))
    assert message.startswith(
        f"The download of {url} stopped early ({cut} of {len(payload)} bytes): run again"
    )
    assert "MILVUS_DOCS_ZIP" in message
    assert files_under(cache) == []

    http_server.routes["/docs.zip"] = Route(payload)
    assert fetch_zip(url, cache).read_bytes() == payload
    assert len(http_server.requests) == 2


def test_download_truncated_zip_with_honest_length_is_refused(tmp_path, http_server):
    """A cut zip served with its own (short) length is still caught: it is not a zip."""
    payload = zip_bytes(SMALL_DOCS)
    http_server.routes["/docs.zip"] = Route(payload[: len(payload) // 2])
    cache = tmp_path / "cache"
    message = str(raised(fetch_zip, http_server.url("/docs.zip"), cache))
    assert "did not return a zip file" in message and "MILVUS_DOCS_ZIP" in message
    assert files_under(cache) == []


# --------------------------------------------------------------------------- extract


def test_extract_once_then_reused(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "docs.zip", {"en/faq/a.md": "# One\n", "en/b.md": "b"})
    target = tmp_path / "out" / "milvus_docs"

    assert extract(archive, target.parent) == Corpus(target, "", True)
    assert (target / "en" / "faq" / "a.md").read_text() == "# One\n"
    assert (target / "en" / "b.md").read_text() == "b"
    assert (target / ".source-sha256").read_text().strip() == sha256_of(archive)
    # Nothing but the target and its lock file is left beside it (no staging folders).
    assert sorted(p.name for p in target.parent.iterdir()) == [".milvus_docs.lock", "milvus_docs"]

    def fail(*args, **kwargs):
        raise AssertionError("the zip was unzipped again although it was already extracted")

    monkeypatch.setattr(corpus.zipfile.ZipFile, "extractall", fail)
    before = (target / "en" / "faq" / "a.md").stat().st_mtime_ns
    assert extract(archive, target.parent).root == target
    assert (target / "en" / "faq" / "a.md").stat().st_mtime_ns == before


def test_extract_again_when_the_zip_changes(tmp_path):
    archive = tmp_path / "docs.zip"
    target = tmp_path / "milvus_docs"
    make_zip(archive, {"en/faq/a.md": "# One\n", "en/old.md": "old"})
    extract(archive, tmp_path)
    assert (target / "en" / "old.md").is_file()

    make_zip(archive, {"en/faq/a.md": "# Two\n", "en/new.md": "new"})
    extract(archive, tmp_path)
    assert (target / "en" / "faq" / "a.md").read_text() == "# Two\n"
    assert (target / "en" / "new.md").read_text() == "new"
    assert not (target / "en" / "old.md").exists(), "files of the old zip must be gone"
    assert (target / ".source-sha256").read_text().strip() == sha256_of(archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".milvus_docs.lock",
        "docs.zip",
        "milvus_docs",
    ]


def test_extract_replaces_an_unmarked_folder(tmp_path):
    """A folder without the marker (e.g. a half unzip by hand) is replaced, not merged."""
    archive = make_zip(tmp_path / "docs.zip", {"en/faq/a.md": "# One\n"})
    target = tmp_path / "milvus_docs"
    (target / "en" / "faq").mkdir(parents=True)
    (target / "en" / "faq" / "stale.md").write_text("half of an old unzip")
    extract(archive, tmp_path)
    assert files_under(target / "en" / "faq") == ["a.md"]


@pytest.mark.parametrize(
    "member",
    ["../escaped.md", "en/../../escaped.md", "/tmp/escaped.md", "..\\escaped.md", "C:/escaped.md"],
)
def test_extract_refuses_paths_outside_the_target(tmp_path, member):
    archive = make_zip(tmp_path / "in" / "docs.zip", {"en/faq/a.md": "# ok\n", member: "x"})
    work = tmp_path / "work"
    target = work / "milvus_docs"
    message = str(raised(extract, archive, work))
    assert message.startswith(f"Refusing to unzip {archive}: member {member!r}")
    assert "would be written outside the target folder; zip the files again" in message
    assert f"or use the official {ZIP_NAME}" in message
    assert not target.exists()
    assert not (tmp_path / "escaped.md").exists() and not (work / "escaped.md").exists()
    assert not Path("/tmp/escaped.md").exists()
    assert files_under(work) == [], "refused before anything is written"


def test_extract_refuses_a_zip_bomb(tmp_path):
    archive = make_zip(
        tmp_path / "bomb.zip", {"en/faq/a.md": "# ok\n", "en/zeros.md": bytes(8 << 20)}
    )
    info = zipfile.ZipFile(archive).getinfo("en/zeros.md")
    assert info.file_size / info.compress_size > corpus.MAX_RATIO  # the fixture is a bomb
    message = str(raised(extract, archive, tmp_path / "out"))
    assert message.startswith(f"Refusing to unzip {archive}: member 'en/zeros.md' expands")
    assert f"more than {corpus.MAX_RATIO} times (a zip bomb?)" in message
    assert "or use the official" in message
    assert files_under(tmp_path / "out") == []


def test_extract_refuses_too_large_a_total(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "MAX_TOTAL_BYTES", 1 << 20)
    archive = make_zip(
        tmp_path / "docs.zip", {"en/faq/a.md": os.urandom(1 << 20), "en/faq/b.md": b"# B\n"}
    )
    message = str(raised(extract, archive, tmp_path / "out"))
    assert message.startswith(f"Refusing to unzip {archive}: it would expand to 1 MiB")
    assert "more than 1 MiB" in message and "or use the official" in message
    assert files_under(tmp_path / "out") == []


def assert_unreadable_zip(err: RagError, path: Path, cause_types) -> None:
    """The sentence for a zip that cannot be read: names the file and the cause, keeps it."""
    message = str(err)
    assert isinstance(err.__cause__, cause_types), repr(err.__cause__)
    assert message.startswith(f"{path} is not a readable zip ({type(err.__cause__).__name__}: ")
    assert str(err.__cause__).splitlines()[0] in message
    assert "download it again" in message and "MILVUS_DOCS_ZIP" in message


def test_local_file_that_is_not_a_zip(tmp_path):
    fake = tmp_path / "docs.zip"
    fake.write_text("<html>not a zip</html>")
    err = raised(prepare_docs, str(fake), tmp_path / "cache")
    assert_unreadable_zip(err, fake, zipfile.BadZipFile)
    assert "File is not a zip file" in str(err)
    assert files_under(tmp_path / "cache") == []


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_local_truncated_zip(tmp_path, fraction):
    good = zip_bytes({f"en/faq/{i}.md": f"# Q{i}?\n" + "words " * 500 for i in range(5)})
    cut = tmp_path / "docs.zip"
    cut.write_bytes(good[: int(len(good) * fraction)])
    assert_unreadable_zip(raised(extract, cut, tmp_path / "out"), cut, zipfile.BadZipFile)
    assert leftovers(tmp_path / "out") == []


def _corrupt_member_data(archive: bytes, name: str) -> bytes:
    """``archive`` with bytes inside member ``name``'s compressed data flipped."""
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(name)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data = bytearray(archive)
    for i in range(start + 10, start + min(200, info.compress_size - 10)):
        data[i] ^= 0xFF
    return bytes(data)


def test_stored_member_with_bad_crc(tmp_path):
    good = zip_bytes({"en/faq/a.md": "# Q?\n" + "stored text " * 100}, zipfile.ZIP_STORED)
    corrupt = tmp_path / "docs.zip"
    corrupt.write_bytes(_corrupt_member_data(good, "en/faq/a.md"))
    err = raised(extract, corrupt, tmp_path / "out")
    assert_unreadable_zip(err, corrupt, zipfile.BadZipFile)
    assert "Bad CRC-32 for file 'en/faq/a.md'" in str(err)
    assert files_under(tmp_path / "out") == [".milvus_docs.lock"], "no staging folder is left"


def test_deflated_member_with_corrupt_data(tmp_path):
    good = zip_bytes({"en/faq/a.md": os.urandom(3000).hex()})
    corrupt = tmp_path / "docs.zip"
    corrupt.write_bytes(_corrupt_member_data(good, "en/faq/a.md"))
    assert zipfile.is_zipfile(corrupt)  # it passes the download's check
    err = raised(extract, corrupt, tmp_path / "out")
    assert_unreadable_zip(err, corrupt, (zlib.error, zipfile.BadZipFile))
    assert leftovers(tmp_path / "out") == []


def test_a_bad_new_zip_keeps_the_old_docs(tmp_path):
    archive = make_zip(tmp_path / "docs.zip", {"en/faq/a.md": "# One\n"})
    target = tmp_path / "milvus_docs"
    extract(archive, tmp_path)
    marker = (target / ".source-sha256").read_text()
    archive.write_bytes(b"garbage")
    assert "is not a readable zip" in str(raised(extract, archive, tmp_path))
    assert (target / "en" / "faq" / "a.md").read_text() == "# One\n"
    assert (target / ".source-sha256").read_text() == marker
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".milvus_docs.lock",
        "docs.zip",
        "milvus_docs",
    ]


# --------------------------------------------------------------------------- prepare_docs


def test_prepare_docs_caches_in_the_data_dir_by_default(tmp_path, isolated_data_dir):
    archive = make_zip(tmp_path / "docs.zip", {"en/faq/a.md": "# A?\nYes.\n"})
    folder = prepare_docs(str(archive))
    assert folder == isolated_data_dir / "milvus_docs"
    assert (folder / "en" / "faq" / "a.md").read_text() == "# A?\nYes.\n"


def test_prepare_docs_downloads_then_unzips(tmp_path, http_server):
    http_server.routes[f"/{ZIP_NAME}"] = Route(zip_bytes({"en/faq/a.md": "# A?\nYes.\n"}))
    cache = tmp_path / "cache"
    folder = prepare_docs(http_server.url(f"/{ZIP_NAME}"), cache)
    assert folder == cache / "milvus_docs"
    assert (folder / "en" / "faq" / "a.md").read_text() == "# A?\nYes.\n"
    assert prepare_docs(http_server.url(f"/{ZIP_NAME}"), cache) == folder
    assert len(http_server.requests) == 1


def test_a_folder_without_faq(tmp_path):
    """The FAQ steps refuse a folder without en/faq (prepare_docs refuses it first)."""
    folder = tmp_path / "docs"
    (folder / "en" / "about").mkdir(parents=True)
    (folder / "en" / "about" / "overview.md").write_text("# Overview\n")
    for load in (faq_entries, tutorial_pieces):
        message = str(raised(load, folder))
        assert message.startswith(f"No en/faq/*.md files in {folder}")
        assert "MILVUS_DOCS_ZIP must point at the Milvus docs zip" in message


def test_empty_faq_files(tmp_path):
    empty = make_zip(tmp_path / "empty.zip", {"en/faq/a.md": "", "en/faq/b.md": "  \n\n"})
    folder = prepare_docs(str(empty), tmp_path / "cache")
    message = str(raised(faq_entries, folder))
    assert message == (f"The FAQ files in {folder} have no entries (they are empty or hold only "
                       "headings): use the official docs zip.")  # fmt: skip
    message = str(raised(tutorial_pieces, folder))
    assert f"The FAQ files in {folder} are empty" in message
    assert "use the official docs zip" in message


def test_markdown_that_is_not_utf8(tmp_path):
    latin1 = make_zip(
        tmp_path / "latin1.zip",
        {"en/faq/good.md": "# Fine\nYes.\n", "en/faq/latin1.md": "# caf\xe9\n".encode("latin-1")},
    )
    folder = prepare_docs(str(latin1), tmp_path / "cache")
    for load in (faq_entries, tutorial_pieces):
        err = raised(load, folder)
        assert str(err) == (
            "latin1.md is not UTF-8 text (byte 5): re-save it as UTF-8 or use the official docs zip."
        )
        assert isinstance(err.__cause__, UnicodeDecodeError)


def test_real_docs_zip(docs_zip, isolated_data_dir):
    folder = prepare_docs(str(docs_zip))
    assert folder == isolated_data_dir / "milvus_docs"
    assert [p.name for p in faq_files(folder)] == [
        "operational_faq.md",
        "performance_faq.md",
        "product_faq.md",
        "troubleshooting.md",
    ]
    # The same folder is reused by a second call (no second unzip).
    marker = folder / ".source-sha256"
    before = marker.stat().st_mtime_ns
    assert prepare_docs(str(docs_zip)) == folder
    assert marker.stat().st_mtime_ns == before


# --------------------------------------------------------------------------- two processes

WORKER = textwrap.dedent(
    """
    import sys, time, zipfile
    from pathlib import Path
    from milvus_rag import corpus

    zip_path, target, ready, go = map(Path, sys.argv[1:5])
    unzips = []
    original = zipfile.ZipFile.extractall

    def counted(self, *args, **kwargs):
        unzips.append(1)
        return original(self, *args, **kwargs)

    zipfile.ZipFile.extractall = counted
    ready.touch()
    deadline = time.monotonic() + 30
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("the go file never came")
        time.sleep(0.001)
    result = corpus.extract(zip_path, target.parent).root
    # Right when extract returns, the folder must be complete (the other may still be running).
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            if (result / info.filename).read_bytes() != archive.read(info):
                sys.exit(f"{info.filename} differs right after extract returned")
    print(f"unzipped {len(unzips)}")
    """
)


def test_two_processes_unzip_the_same_target_at_once(tmp_path):
    """Issue: "the first-run unzip safe when two processes start at once".

    Two real processes call ``extract`` on the same target at the same moment. Both succeed,
    the zip is unpacked exactly once (the second process waits for the lock, then reuses the
    first one's work), and the target then holds exactly the zip's members.
    """
    archive = tmp_path / "docs.zip"
    target = tmp_path / "data" / "milvus_docs"
    go = tmp_path / "go"
    readies = [tmp_path / f"ready-{n}" for n in range(2)]
    processes = [  # started first: they import the package while the zip is being built
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(archive), str(target), str(ready), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for ready in readies
    ]
    try:
        members = {  # about 7 MB in 150 files: unpacking takes long enough to overlap
            f"en/faq/file_{i:03}.md": f"# Q{i}?\n"
            + "".join(f"line {j} of file {i}: {os.urandom(4).hex()}\n" for j in range(1500))
            for i in range(150)
        }
        make_zip(archive, members)
        for _ in range(3000):  # until both wait on the go file (or one has died)
            if all(r.exists() for r in readies) or any(p.poll() is not None for p in processes):
                break
            threading.Event().wait(0.01)
        go.touch()
        outputs = [p.communicate(timeout=60) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err
    assert sorted(out.strip() for out, _ in outputs) == ["unzipped 0", "unzipped 1"]

    expected = {**members, ".source-sha256": sha256_of(archive) + "\n"}
    assert files_under(target) == sorted({*expected, "en", "en/faq"})
    for name, content in expected.items():
        assert (target / name).read_text() == content, name
    assert sorted(p.name for p in target.parent.iterdir()) == [".milvus_docs.lock", "milvus_docs"]


# --------------------------------------------------------------------------- nothing good replaced


def test_a_zip_that_is_not_the_milvus_docs_never_replaces_them(tmp_path, isolated_data_dir):
    """Issue 17: a zip without en/faq replaced the cached, good data/milvus_docs/."""
    good = make_zip(tmp_path / "milvus.zip", {"en/faq/a.md": "# A?\nYes.\n"})
    folder = prepare_docs(str(good))
    marker = (folder / ".source-sha256").read_text()
    other = make_zip(tmp_path / "other.zip", {"notes/overview.md": "# Overview\nText.\n"})
    message = str(raised(prepare_docs, str(other)))
    assert message == (
        f"{other} is not the Milvus docs (it holds no en/faq/*.md): the tutorial's steps need the "
        f"Milvus docs zip ({ZIP_NAME}); give your own documents to --docs or to the notebook's "
        "MY_DOCS parameter."
    )
    assert files_under(folder) == [".source-sha256", "en", "en/faq", "en/faq/a.md"]
    assert (folder / ".source-sha256").read_text() == marker
    assert prepare_docs(str(good)) == folder


def test_another_zip_gets_its_own_cache_folder(tmp_path, isolated_data_dir, monkeypatch):
    milvus = open_corpus(str(make_zip(tmp_path / "m.zip", {"en/faq/a.md": "# A?\nYes.\n"})))
    mine = make_zip(tmp_path / "My Notes.zip", {"notes/a.md": "# A\nText.\n", "b.txt": "Plain."})
    found = open_corpus(str(mine))
    label = f"my_notes_{sha256_of(mine)[:6]}"
    assert found == Corpus(isolated_data_dir / "corpora" / label, label, False)
    assert documents(found) == ([Document("b.txt", "Plain."), Document("notes/a.md", "# A\nText.\n")], [])
    assert files_under(milvus.root) == [".source-sha256", "en", "en/faq", "en/faq/a.md"]
    monkeypatch.setattr(corpus.zipfile.ZipFile, "extractall", lambda *a, **k: 1 / 0)
    assert open_corpus(str(mine)) == found, "the second call reuses the unzip"


def test_a_zip_without_documents_is_refused_before_anything_is_replaced(tmp_path):
    cache = tmp_path / "cache"
    good = extract(make_zip(tmp_path / "a.zip", {"en/faq/a.md": "# A?\nYes.\n"}), cache)
    images = make_zip(tmp_path / "a.zip", {"en/faq/a.png": b"\x89PNG", "en/faq/b.pdf": b"%PDF"})
    message = str(raised(open_corpus, str(images), cache))
    assert message == (
        f"Refusing to unzip {images}: it holds no Markdown or text file (.md, .markdown, .txt); "
        f"zip the files again, or use the official {ZIP_NAME}."
    )
    assert files_under(good.root) == [".source-sha256", "en", "en/faq", "en/faq/a.md"]
    assert leftovers(cache / "corpora") == []


def test_a_url_of_another_zip(tmp_path, http_server):
    http_server.routes["/kb.zip"] = Route(zip_bytes({"kb/faq.txt": "Q and A."}))
    found = open_corpus(http_server.url("/kb.zip"), tmp_path / "cache")
    assert (found.label[:3], found.is_milvus_docs) == ("kb_", False)
    assert documents(found)[0] == [Document("kb/faq.txt", "Q and A.")]


# --------------------------------------------------------------------------- folders


def tree(root: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def test_a_folder_is_used_where_it_lies(tmp_path):
    folder = tree(tmp_path / "My Docs", {"a.md": "# A\n"})
    found = open_corpus(str(folder), tmp_path / "cache")
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()
    assert found == Corpus(folder.resolve(), f"my_docs_{digest[:6]}", False)
    assert not (tmp_path / "cache").exists()
    other = open_corpus(str(tree(tmp_path / "elsewhere" / "My Docs", {"a.md": "# A\n"})))
    assert other.label != found.label, "two folders of one name get two collections"
    milvus = tree(tmp_path / "unzipped", {"en/faq/a.md": "# A?\nYes.\n"})
    assert open_corpus(str(milvus)) == Corpus(milvus, "", True)


@pytest.mark.parametrize(
    "name, label",
    [("Mes Résumés", "mes_resumes_"), ("2024 notes", "docs_2024_notes_"), ("___", "docs_"),
     ("A" * 60, "a" * 28 + "_"), ("知识库", "docs_"), ("  Notes!", "notes_"),
     ("a1 notes", "a1_notes_"), ("a" * 27 + " tail", "a" * 27 + "_")],
)  # fmt: skip
def test_labels_are_short_lowercase_and_start_with_a_letter(name, label):
    made = corpus._label(name, "abcdef0123")
    assert made == label + "abcdef"
    assert re.fullmatch(r"[a-z][a-z0-9_]{0,39}", made)


def test_documents_of_a_folder_in_any_layout(tmp_path):
    folder = tree(tmp_path / "docs", {
        "b/über uns.md": "# Über\n", "a b/notes.TXT": "\ufeffPlain text.", "c.markdown": "# C\n",
        "phrasings.jsonl": "{}", "b/phrasings.jsonl": "{}", "img.png": b"\x89PNG\0",
        ".git/HEAD.md": "x", ".ipynb_checkpoints/c-checkpoint.md": "x", ".hidden.md": "x",
    })  # fmt: skip
    docs, skipped = documents(open_corpus(str(folder)))
    assert docs == [
        Document("a b/notes.TXT", "Plain text."),
        Document("b/über uns.md", "# Über\n"),
        Document("c.markdown", "# C\n"),
    ]
    assert skipped == []


def test_files_that_cannot_be_documents_are_skipped_with_a_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "MAX_FILE_BYTES", 1 << 20)
    outside = tree(tmp_path / "outside", {"secret.md": "# Secret\n", "more/x.md": "# X\n"})
    folder = tree(tmp_path / "docs", {
        "good.md": "# Good\n", "latin1.md": "# caf\xe9\n".encode("latin-1"),
        "binary.md": b"\x00\x01# not text", "huge.txt": "x" * ((1 << 20) + 1), "empty.md": " \n",
    })  # fmt: skip
    (folder / "link.md").symlink_to(outside / "secret.md")
    (folder / "loop.md").symlink_to(folder / "loop.md")
    (folder / "more").symlink_to(outside / "more", target_is_directory=True)
    (folder / "inside.md").symlink_to(folder / "good.md")
    (folder / "photo.png").symlink_to(outside / "secret.md")  # not a document: ignored
    (folder / "cycle").symlink_to(folder / "cycle")  # neither a document nor a folder: ignored
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(folder, target_is_directory=True)
    docs, skipped = documents(open_corpus(str(folder)))
    loop = skipped[5]
    skipped[5] = re.sub(r"\(.*\)", "(…)", loop)
    assert docs == [Document("good.md", "# Good\n"), Document("inside.md", "# Good\n")]
    assert skipped == [
        "Skipped binary.md: it holds NUL bytes (binary, or UTF-16?); save it as UTF-8 text.",
        "Skipped empty.md: it is empty.",
        "Skipped huge.txt: it is larger than the 1 MiB limit for one document; split it.",
        "Skipped latin1.md: it is not UTF-8 text (byte 5); re-save it as UTF-8.",
        "Skipped link.md: it is a symlink to outside the folder (not followed).",
        "Skipped loop.md: it cannot be read (…).",  # the cause: RuntimeError, or OSError (3.13)
        "Skipped more: it is a symlink to a folder outside this one (not followed).",
    ]
    assert re.fullmatch(r"Skipped loop\.md: it cannot be read \((RuntimeError|OSError): .*loop.*\)\.", loop)


def test_a_folder_without_documents_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    message = str(raised(documents, open_corpus(str(empty))))
    assert message == (
        f"No readable Markdown or text file (.md, .markdown, .txt) in {empty}: put your documents "
        "there, or give --docs (MILVUS_DOCS_ZIP) their folder."
    )
    bad = tree(tmp_path / "bad", {"a.md": b"\xff\xfe", "b.txt": b"\x00", "c.pdf": b"%PDF"})
    message = str(raised(documents, open_corpus(str(bad))))
    assert message == (f"No readable Markdown or text file (.md, .markdown, .txt) in {bad} (2 "
                       "skipped, e.g. Skipped a.md: it is not UTF-8 text (byte 0); re-save it as "
                       "UTF-8): put your documents there, or give --docs (MILVUS_DOCS_ZIP) their "
                       "folder.")  # fmt: skip


def test_the_sample_documents_read_cleanly():
    folder = Path(__file__).resolve().parents[1] / "data" / "sample_docs"
    docs, skipped = documents(open_corpus(str(folder)))
    assert skipped == [] and len(docs) >= 3
    assert {Path(d.path).suffix for d in docs} >= {".md", ".txt"}
    assert any("/" in d.path for d in docs)


def test_a_download_in_progress_is_a_part_file_beside_its_target(tmp_path, http_server, monkeypatch):
    """Written as ``NAME.part*`` in the cache folder itself (made if missing): git ignores it
    (``data/*.zip.part*``), and the finished file is renamed into place, never copied across."""
    http_server.routes["/docs.zip"] = Route(zip_bytes(SMALL_DOCS))
    cache = tmp_path / "data" / "cache"
    seen = []
    copy = corpus.shutil.copyfileobj

    def watched(source, target, *args):
        seen.extend(os.listdir(cache))
        return copy(source, target, *args)

    monkeypatch.setattr(corpus.shutil, "copyfileobj", watched)
    assert fetch_zip(http_server.url("/docs.zip"), cache) == cache / "docs.zip"
    assert len(seen) == 1 and seen[0].startswith("docs.zip.part"), seen
    assert files_under(cache) == ["docs.zip"]


def test_a_download_finished_second_on_windows_keeps_the_first_ones_zip(tmp_path, http_server, monkeypatch):
    """Two processes download at once; the first renamed its zip into place and has it open.
    Windows refuses to replace an open file (PermissionError), so the second keeps the first's
    zip; a PermissionError with no zip in place is a real one, and is raised."""
    http_server.routes["/docs.zip"] = Route(zip_bytes(SMALL_DOCS))
    cache, real_replace, copy = tmp_path / "cache", os.replace, corpus.shutil.copyfileobj

    def windows_replace(source, target):
        if Path(target).exists():
            raise PermissionError(13, "Access is denied", str(target))
        real_replace(source, target)

    def the_other_process_finishes_first(source, target, *args):
        copy(source, target, *args)
        (cache / "docs.zip").write_bytes(zip_bytes(SMALL_DOCS))

    monkeypatch.setattr(corpus.os, "replace", windows_replace)
    monkeypatch.setattr(corpus.shutil, "copyfileobj", the_other_process_finishes_first)
    assert fetch_zip(http_server.url("/docs.zip"), cache) == cache / "docs.zip"
    assert files_under(cache) == ["docs.zip"]
    monkeypatch.setattr(corpus.shutil, "copyfileobj", copy)
    monkeypatch.setattr(corpus.os, "replace", lambda source, target: windows_replace(source, __file__))
    with pytest.raises(PermissionError):
        fetch_zip(http_server.url("/docs.zip"), tmp_path / "other")
    assert files_under(tmp_path / "other") == []


def test_a_server_that_never_answers_ends_in_a_sentence(tmp_path, monkeypatch):
    """It accepts the connection and sends nothing: after DOWNLOAD_TIMEOUT_S, one sentence."""
    monkeypatch.setattr(corpus, "DOWNLOAD_TIMEOUT_S", 0.2)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/{ZIP_NAME}"
        message = str(raised(fetch_zip, url, tmp_path / "cache"))
    assert message.startswith(f"Cannot download {url} (timed out): check the URL and the network")
    assert files_under(tmp_path / "cache") == []


def test_a_document_of_exactly_the_size_limit_is_read_and_a_broken_link_is_unreadable(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(corpus, "MAX_FILE_BYTES", 16)
    folder = tree(tmp_path / "docs", {"limit.md": "x" * 16, "over.md": "x" * 17})
    (folder / "gone.md").symlink_to(tmp_path / "outside" / "gone.md")
    docs, skipped = documents(open_corpus(str(folder)))
    assert docs == [Document("limit.md", "x" * 16)]
    assert skipped[0].startswith("Skipped gone.md: it cannot be read (FileNotFoundError: ")
    assert skipped[1].startswith("Skipped over.md: it is larger than the ")


def test_the_limits_are_inclusive_and_unzipping_stages_in_a_hidden_folder_beside_the_target(
    tmp_path, monkeypatch
):
    """A zip exactly at the total and ratio limits is unzipped; into a cache folder not yet
    made, through a hidden staging folder beside the target (renamed into place, not copied)."""
    archive = make_zip(tmp_path / "docs.zip", {"en/faq/a.md": "# Q?\n" + "Answer. " * 500})
    info = zipfile.ZipFile(archive).getinfo("en/faq/a.md")
    monkeypatch.setattr(corpus, "MAX_TOTAL_BYTES", info.file_size)
    monkeypatch.setattr(corpus, "MAX_RATIO", info.file_size / info.compress_size)
    staged = []
    unzip = zipfile.ZipFile.extractall

    def watched(self, path, members=None):
        staged.append(Path(path))
        return unzip(self, path, members)

    monkeypatch.setattr(zipfile.ZipFile, "extractall", watched)
    cache = tmp_path / "data" / "cache"
    assert extract(archive, cache) == Corpus(cache / "milvus_docs", "", True)
    assert [(p.parent, p.name.startswith(".milvus_docs.")) for p in staged] == [(cache, True)]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_url_is_downloaded_whichever_its_scheme(tmp_path, monkeypatch, scheme):
    local = make_zip(tmp_path / "docs.zip", {"en/faq/a.md": "# A\n"})
    fetched = []
    monkeypatch.setattr(corpus, "fetch_zip", lambda url, cache: fetched.append(url) or local)
    url = f"{scheme}://example.invalid/docs.zip"  # never contacted: fetch_zip is replaced
    assert open_corpus(url, tmp_path / "cache").is_milvus_docs and fetched == [url]
