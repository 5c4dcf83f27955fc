"""Fixtures shared by the tests (the session's environment is set in ../conftest.py)."""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/support, tests/helpers

from support.fakes import FakeEmbedding  # noqa: E402

CANARY_KEY = "sk-canary-DO-NOT-PRINT-4f1c2a"
"""A key-shaped secret: tests set it and check that it never appears in any output."""

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def docs_zip() -> Path:
    """The real docs zip (../shared/data); fails in CI and skips elsewhere without it."""
    path = Path(os.environ.get("MILVUS_DOCS_ZIP", ""))
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail("MILVUS_DOCS_ZIP / ../shared/data/milvus_docs_2.4.x_en.zip is missing")
        pytest.skip("the docs zip is not available")
    return path


@pytest.fixture(scope="session")
def docs_dir(docs_zip, tmp_path_factory) -> Path:
    """The real docs, unzipped once per session."""
    from milvus_rag.corpus import prepare_docs

    return prepare_docs(str(docs_zip), tmp_path_factory.mktemp("docs-cache"))


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2 embedding, loaded once per session (slow tests only)."""
    from milvus_rag.embedding import load_embedding

    return load_embedding("minilm")


@pytest.fixture()
def fake_embedding() -> FakeEmbedding:
    return FakeEmbedding()


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    """Each test caches downloads and unzipped docs in its own folder."""
    monkeypatch.setenv("MILVUS_RAG_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture()
def lite_uri(tmp_path) -> str:
    """A fresh Milvus Lite path; released after the test so the folder can go."""
    uri = str(tmp_path / "milvus.db")
    yield uri
    from milvus_rag.index import release

    release(uri)


@pytest.fixture()
def canary_key() -> str:
    return CANARY_KEY


class FailingEndpoint(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that answers every request with ``status``.

    Status 0 means it never answers (the client times out). The error body echoes the key's
    start, as some providers do, so that tests can check it is never shown for 401/403.
    """

    status = 500
    requests: list = []
    message = f"Incorrect API key provided: {CANARY_KEY[:8]}..."

    def log_message(self, *args):
        pass

    def do_POST(self):
        type(self).requests.append(self.headers.get("Authorization", ""))
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.status == 0:
            threading.Event().wait(5)
            return
        body = json.dumps(
            {"error": {"message": self.message, "type": "error", "code": str(self.status)}}
        ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("retry-after-ms", "10")  # keep the client's own retries quick
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def failing_endpoint():
    """Start endpoints on 127.0.0.1: ``start(status, message=None) -> (base_url, handler)``."""
    servers = []

    def start(status: int, message: str | None = None, host: str = "127.0.0.1"):
        attrs = {"status": status, "requests": []}
        if message is not None:
            attrs["message"] = message
        handler = type("Handler", (FailingEndpoint,), attrs)
        server = ThreadingHTTPServer((host, 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://{host}:{server.server_address[1]}/v1", handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
