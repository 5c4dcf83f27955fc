"""What differs on Windows and macOS, tested here on any system: the cross-process lock (Windows'
``msvcrt`` branch simulated where there is no Windows), Windows paths as Milvus Lite paths, CRLF
documents, file: URLs, the command line's output encoding, and text files opened with their
encoding (Windows' default is its ANSI code page, not UTF-8)."""

import ast
import errno
import importlib
import io
import os
import re
import shutil
import sys
import threading
import types
import zipfile
from pathlib import Path

import pytest

from milvus_rag import cli, config, corpus, index, locks
from milvus_rag.chunking import corpus_entries
from milvus_rag.errors import RagError

REPO = Path(__file__).resolve().parents[1]


def fake_msvcrt() -> types.ModuleType:
    """``msvcrt`` as Windows has it, for locking: ``locking(fd, mode, nbytes)`` locks ``nbytes``
    from the file's current position, for that open file alone, so that another open of it (in
    this process too) is refused: EACCES at once (``LK_NBLCK``), EDEADLOCK after ten tries
    (``LK_LOCK``); unlocking bytes that this open does not hold fails too."""
    module = types.ModuleType("msvcrt")
    module.LK_UNLCK, module.LK_LOCK, module.LK_NBLCK, module.LK_RLCK, module.LK_NBRLCK = range(5)
    held: dict[tuple, int] = {}  # (device, inode, byte) -> the descriptor that holds it

    def locking(fd: int, mode: int, nbytes: int) -> None:
        info, start = os.fstat(fd), os.lseek(fd, 0, os.SEEK_CUR)
        keys = [(info.st_dev, info.st_ino, start + n) for n in range(nbytes)]
        if mode == module.LK_UNLCK:
            if any(held.get(key) != fd for key in keys):
                raise OSError(errno.EACCES, "Permission denied")
            for key in keys:
                del held[key]
        elif any(key in held for key in keys):
            busy = errno.EACCES if mode in (module.LK_NBLCK, module.LK_NBRLCK) else errno.EDEADLK
            raise OSError(busy, os.strerror(busy))
        else:
            held.update(dict.fromkeys(keys, fd))

    module.locking = locking
    return module


@pytest.fixture(params=["posix", "windows"])
def platform(request, monkeypatch):
    """``milvus_rag.locks`` as on POSIX or as on Windows: for real on this system, else (Windows
    here) the module imported anew with ``fcntl`` unimportable and a ``msvcrt`` as Windows has it,
    also put in ``sys.modules`` for Milvus Lite's own lock. Yields the simulated msvcrt or None."""
    on_windows = locks.fcntl is None
    if request.param == "posix" and on_windows:
        pytest.skip("no fcntl on Windows")
    if request.param == "posix" or on_windows:
        yield None
        return
    fake = fake_msvcrt()
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "fcntl", None)  # `import fcntl` raises ImportError
        patch.setitem(sys.modules, "msvcrt", fake)
        importlib.reload(locks)
    assert locks.fcntl is None and locks.msvcrt is fake
    monkeypatch.setitem(sys.modules, "msvcrt", fake)  # for Milvus Lite on "win32" (see below)
    try:
        yield fake
    finally:
        del locks.msvcrt
        importlib.reload(locks)


def as_milvus_lite_on(fake, monkeypatch) -> None:
    """Milvus Lite takes its lock by ``sys.platform``: its Windows branch where msvcrt is simulated."""
    if fake is not None:
        monkeypatch.setattr(sys, "platform", "win32")


def test_a_second_holder_waits_until_the_first_lets_go(platform, tmp_path):
    path, entered = tmp_path / ".milvus_docs.lock", threading.Event()

    def second_holder():
        with locks.locked(path):
            entered.set()

    with locks.locked(path):
        assert locks.held_elsewhere(path)
        thread = threading.Thread(target=second_holder, daemon=True)
        thread.start()
        assert not entered.wait(0.3), "the second holder did not wait"
    assert entered.wait(5), "the lock was not let go"
    thread.join(5)
    assert not locks.held_elsewhere(path) and not locks.held_elsewhere(tmp_path / "missing")


def test_unzipping_waits_for_another_process_on_every_system(platform, tmp_path):
    """corpus.extract takes the same lock: while another holds it, nothing is unzipped."""
    archive, cache = tmp_path / "docs.zip", tmp_path / "cache"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("en/faq/a.md", "# A?\nYes.\n")
    cache.mkdir()
    done, found = threading.Event(), []
    with locks.locked(cache / ".milvus_docs.lock"):
        thread = threading.Thread(target=lambda: (found.append(corpus.extract(archive, cache)), done.set()),
                                  daemon=True)  # fmt: skip
        thread.start()
        assert not done.wait(0.3) and not (cache / "milvus_docs").exists()
    assert done.wait(10)
    assert (found[0].root / "en" / "faq" / "a.md").read_text(encoding="utf-8") == "# A?\nYes.\n"


def test_the_probe_sees_the_lock_milvus_lite_itself_takes(platform, tmp_path, monkeypatch):
    """Milvus Lite locks its folder's LOCK with flock on POSIX and msvcrt.locking of the first
    byte on Windows: a database it holds is blamed on another process, one it let go is not."""
    from milvus_lite.db import MilvusLite

    uri = str(tmp_path / "held.db")
    with monkeypatch.context() as patch:
        as_milvus_lite_on(platform, patch)
        holder = MilvusLite(uri)
    try:
        with pytest.raises(RagError, match=r"^The Milvus Lite database .* is open in another process"):
            with index.milvus_errors(uri):
                raise RuntimeError("DataDirLockedError")
    finally:
        with monkeypatch.context() as patch:
            as_milvus_lite_on(platform, patch)
            holder.close()
    with pytest.raises(RagError, match=r"^Cannot open Milvus at .* \(RuntimeError: disk full\)"):
        with index.milvus_errors(uri):
            raise RuntimeError("disk full")


@pytest.mark.parametrize(
    "uri", [r"C:\Users\me\milvus_demo.db", "C:/data/milvus.db", r"\\server\share\milvus.db",
            r".\milvus_demo.db", r"D:\my milvus\rag.db"],
)  # fmt: skip
def test_windows_paths_are_milvus_lite_paths_and_not_server_urls(uri, monkeypatch):
    """A drive letter is no URL scheme (urlparse says "c"); backslashes are separators."""
    assert index.is_lite_path(uri)
    index.check_uri(uri)
    monkeypatch.setenv("MILVUS_LITE_PATH", uri)
    assert config.milvus_uri() == uri
    monkeypatch.setenv("MILVUS_URI", uri)
    with pytest.raises(RagError, match="put a Milvus Lite path in MILVUS_LITE_PATH"):
        config.milvus_uri()


def test_a_file_url_is_no_milvus_lite_path_but_names_documents(tmp_path):
    with pytest.raises(RagError, match="is a plain path ending in .db"):
        index.check_uri((tmp_path / "milvus_demo.db").as_uri())
    folder = tmp_path / "my notes"  # a space: %20 in the URL
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.md").write_text("# A\n\nText.\n", encoding="utf-8")
    assert corpus.open_corpus(folder.as_uri()) == corpus.open_corpus(str(folder))
    archive = tmp_path / "notes.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.md", "# A\n\nText.\n")
    assert corpus.open_corpus(archive.as_uri(), tmp_path / "cache").root.parent == tmp_path / "cache" / "corpora"


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"], ids=["CRLF", "CR"])
def test_documents_saved_with_windows_line_endings_are_split_as_elsewhere(tmp_path, newline):
    """Git for Windows checks text out with CRLF, and Windows editors save it: the sample
    documents give the same sections, titles and phrasings with either line ending."""
    copies = {}
    for name, ending in (("lf", b"\n"), ("other", newline)):
        copies[name] = shutil.copytree(REPO / "data" / "sample_docs", tmp_path / name / "sample_docs")
        for path in (p for p in copies[name].rglob("*") if p.suffix in corpus.SUFFIXES):
            path.write_bytes(re.sub(rb"\r\n|\r|\n", ending, path.read_bytes()))
    lf, other = (corpus_entries(corpus.open_corpus(str(copies[n])))[1] for n in ("lf", "other"))
    assert other == lf
    assert any(entry.phrasings for entry in lf) and not any("\r" in entry.text for entry in other)


def test_the_command_line_writes_utf8_where_windows_writes_its_code_page(monkeypatch):
    """Redirected to a file, Windows gives stdout its ANSI code page (cp1252), where "→" or "日本"
    cannot be written; stderr keeps writing what cannot be encoded (a file name that is not
    UTF-8) as escapes."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="cp1252")
    err = io.TextIOWrapper(io.BytesIO(), encoding="cp1252", errors="backslashreplace")
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)

    def run(argv):
        print("notes/日本.md → an answer")
        print("Warning: Skipped caf\udce9.md", file=sys.stderr)
        return 0

    monkeypatch.setattr(cli, "run", run)
    assert cli.main([]) == 0
    out.flush(), err.flush()
    assert out.buffer.getvalue().decode("utf-8").splitlines() == ["notes/日本.md → an answer"]
    assert err.buffer.getvalue().decode("utf-8").splitlines() == ["Warning: Skipped caf\\udce9.md"]


def _text_io_without_encoding(path: Path) -> list[str]:
    """Where ``path`` reads or writes text without naming its encoding (so, on Windows, in the
    ANSI code page): read_text/write_text, open/fdopen in text mode, subprocess with text=True."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or any(k.arg == "encoding" for k in node.keywords):
            continue
        func, args = node.func, node.args
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        keywords = {k.arg: k.value for k in node.keywords}
        if name in ("read_text", "write_text"):
            text = len(args) < (2 if name == "write_text" else 1)  # or the encoding by position
        elif name in ("open", "fdopen") and getattr(getattr(func, "value", None), "id", "") != "os":
            method = isinstance(func, ast.Attribute) and name == "open"  # Path.open(mode)
            mode = keywords.get("mode") or (args[0 if method else 1] if len(args) > (0 if method else 1) else None)
            if method and mode is not None and not (isinstance(mode, ast.Constant) and re.fullmatch(r"[rwxabt+]+", str(mode.value))):
                continue  # ZipFile.open(name) and the like: not a text file
            text = not (isinstance(mode, ast.Constant) and "b" in str(mode.value))
        elif name in ("run", "Popen", "check_output"):
            text = any(getattr(keywords.get(k), "value", False) for k in ("text", "universal_newlines"))
        else:
            continue
        found += [f"{path.relative_to(REPO).as_posix()}:{node.lineno}"] if text else []
    return found


def test_the_package_and_scripts_name_the_encoding_of_every_text_file():
    files = sorted([*(REPO / "src" / "milvus_rag").glob("*.py"), *(REPO / "scripts").glob("*.py")])
    assert [line for path in files for line in _text_io_without_encoding(path)] == []
