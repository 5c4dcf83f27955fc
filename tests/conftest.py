"""Fixtures for the unit tests."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CANARY_KEY = "sk-canary-DO-NOT-PRINT-4f1c2a"
"""A key-shaped secret: tests set it and check that it never appears in any output."""

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def docs_zip() -> Path:
    """The real docs zip (../shared/data); the test fails in CI and skips elsewhere without it."""
    path = Path(os.environ.get("MILVUS_DOCS_ZIP", ""))
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail("MILVUS_DOCS_ZIP / ../shared/data/milvus_docs_2.4.x_en.zip is missing")
        pytest.skip("the docs zip is not available")
    return path


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2 embedding, loaded once per test session."""
    from milvus_rag.embedding import load_embedding

    return load_embedding("minilm")


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    """Each test caches downloads and unzipped docs in its own folder."""
    monkeypatch.setenv("MILVUS_RAG_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture()
def canary_key() -> str:
    return CANARY_KEY


class FailingEndpoint(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that answers every request with ``status``.

    Status 0 means it never answers (the client times out). The error body echoes the key's
    start, as some providers do, so that tests can check it is never shown.
    """

    status = 500
    requests: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        type(self).requests.append(self.headers.get("Authorization", ""))
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.status == 0:
            threading.Event().wait(5)
            return
        body = json.dumps(
            {
                "error": {
                    "message": f"Incorrect API key provided: {CANARY_KEY[:8]}...",
                    "type": "error",
                    "code": str(self.status),
                }
            }
        ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("retry-after-ms", "10")  # keep the client's own retries quick
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def failing_endpoint():
    """Start endpoints on 127.0.0.1: ``start(status) -> (base_url, handler class)``."""
    servers = []

    def start(status: int):
        handler = type("Handler", (FailingEndpoint,), {"status": status, "requests": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
