"""Every bad input a user can cause ends in one sentence, exit code 1, no traceback, and
nothing half-written (issue: "every bad input gets one clear sentence and loses nothing").

Each case runs the real command line in a subprocess, as a user would.
"""

import socket
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import run_cli


def cli(*args, env_extra=None):
    return run_cli(*args, env={"EMBEDDING_MODEL": "minilm", **(env_extra or {})})


def one_sentence_error(result) -> str:
    """The command failed with exactly one `error:` line and no traceback; returns it."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture()
def env(tmp_path, isolated_data_dir):
    return {"MILVUS_URI": str(tmp_path / "bad.db"), "MILVUS_RAG_DATA_DIR": str(isolated_data_dir)}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def serve(status: int, body: bytes = b""):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/milvus_docs_2.4.x_en.zip"


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


# 1. docs URL unreachable, or answering 404 -------------------------------------------------


def test_1_docs_url_unreachable(env, isolated_data_dir):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/milvus_docs_2.4.x_en.zip"
    line = one_sentence_error(cli("ingest", "--docs", url, env_extra=env))
    assert "Cannot download" in line and "MILVUS_DOCS_ZIP" in line
    assert not [n for n in leftovers(isolated_data_dir) if n.endswith(".zip") or ".part" in n]


def test_1_docs_url_404(env, isolated_data_dir):
    server, url = serve(404)
    try:
        line = one_sentence_error(cli("ingest", "--docs", url, env_extra=env))
    finally:
        server.shutdown()
    assert "HTTP 404" in line and "MILVUS_DOCS_ZIP" in line
    assert leftovers(isolated_data_dir) == []


# 2. not a zip, truncated zip, zip without en/faq/*.md ----------------------------------------


def test_2_not_a_zip(env, tmp_path):
    fake = tmp_path / "docs.zip"
    fake.write_text("<html>not a zip</html>")
    line = one_sentence_error(cli("ingest", "--docs", str(fake), env_extra=env))
    assert "is not a readable zip" in line


def test_2_truncated_zip(env, tmp_path, docs_zip):
    cut = tmp_path / "cut.zip"
    cut.write_bytes(docs_zip.read_bytes()[: docs_zip.stat().st_size // 2])
    line = one_sentence_error(cli("ingest", "--docs", str(cut), env_extra=env))
    assert "is not a readable zip" in line


def test_2_zip_without_faq(env, tmp_path, isolated_data_dir):
    other = make_zip(tmp_path / "other.zip", {"en/about/overview.md": b"# Overview\n"})
    line = one_sentence_error(cli("ingest", "--docs", str(other), env_extra=env))
    assert "No en/faq/*.md files" in line and "MILVUS_DOCS_ZIP" in line


# 3. hostile zip: ../ or absolute members, huge expansion --------------------------------------


@pytest.mark.parametrize("member", ["../escaped.md", "en/../../escaped.md", "/tmp/escaped.md"])
def test_3_zip_with_paths_outside_the_target(env, tmp_path, isolated_data_dir, member):
    hostile = make_zip(tmp_path / "hostile.zip", {"en/faq/a.md": b"# A?\n", member: b"pwned"})
    line = one_sentence_error(cli("ingest", "--docs", str(hostile), env_extra=env))
    assert "Refusing to unzip" in line and "outside the target folder" in line
    assert not (isolated_data_dir.parent / "escaped.md").exists()
    assert not (isolated_data_dir / "escaped.md").exists()
    assert not Path("/tmp/escaped.md").exists()
    assert not (isolated_data_dir / "milvus_docs").exists()


def test_3_zip_bomb(env, tmp_path, isolated_data_dir):
    bomb = make_zip(
        tmp_path / "bomb.zip", {"en/faq/a.md": b"# A?\n", "en/zeros.md": bytes(50 << 20)}
    )
    line = one_sentence_error(cli("ingest", "--docs", str(bomb), env_extra=env))
    assert "Refusing to unzip" in line and "zip bomb" in line
    assert not (isolated_data_dir / "milvus_docs").exists()


# 4. empty FAQ folder; a markdown file that is not UTF-8 ----------------------------------------


def test_4_empty_faq_files(env, tmp_path):
    empty = make_zip(tmp_path / "empty.zip", {"en/faq/a.md": b"", "en/faq/b.md": b"  \n"})
    line = one_sentence_error(cli("ingest", "--docs", str(empty), env_extra=env))
    assert "have no entries (they are empty" in line


def test_4_markdown_not_utf8(env, tmp_path):
    latin1 = make_zip(
        tmp_path / "latin1.zip",
        {"en/faq/a.md": "# Qu'est-ce que Milvus ?\n\u00e9t\u00e9".encode("latin-1")},
    )
    line = one_sentence_error(cli("ingest", "--docs", str(latin1), env_extra=env))
    assert "a.md is not UTF-8" in line


# 6. a second process opening the same Milvus Lite path -----------------------------------------


def test_6_milvus_lite_path_held_by_another_process(env, docs_zip):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, milvus_rag\nfrom pymilvus import MilvusClient\n"
            f"client = MilvusClient({env['MILVUS_URI']!r})\nprint('open', flush=True)\nsys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        result = cli(
            "ask",
            "How is data stored in milvus?",
            env_extra={**env, "MILVUS_DOCS_ZIP": str(docs_zip)},
        )
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    line = one_sentence_error(result)
    assert "is open in another process" in line and "MILVUS_URI" in line


# 8. an empty or whitespace-only question; a question longer than the model's input -------------


@pytest.mark.parametrize("question", ["", "   \n\t"])
def test_8_empty_question(env, docs_zip, question):
    line = one_sentence_error(
        cli("ask", question, env_extra={**env, "MILVUS_DOCS_ZIP": str(docs_zip)})
    )
    assert "The question is empty" in line


def test_8_question_longer_than_the_model_reads(env, docs_zip):
    question = "How is data stored in milvus? " + "really " * 300
    line = one_sentence_error(
        cli("ask", question, env_extra={**env, "MILVUS_DOCS_ZIP": str(docs_zip)})
    )
    assert "tokens long" in line and "reads only the first 256" in line


# 9. an interrupted download: no partial file is ever taken for a complete one ------------------


def test_9_interrupted_download_is_not_kept(env, tmp_path, isolated_data_dir, docs_zip):
    whole = docs_zip.read_bytes()

    class Cut(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(whole)))
            self.end_headers()
            self.wfile.write(whole[: len(whole) // 3])  # then the connection drops

    server = ThreadingHTTPServer(("127.0.0.1", 0), Cut)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/milvus_docs_2.4.x_en.zip"
    try:
        line = one_sentence_error(cli("ingest", "--docs", url, env_extra=env))
    finally:
        server.shutdown()
    assert "download" in line.lower() and "MILVUS_DOCS_ZIP" in line
    assert leftovers(isolated_data_dir) == []
