"""Fixtures shared by the tests (the session's environment is set in ../conftest.py)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/support, tests/helpers

from support.endpoints import CANARY_KEY, FailingEndpoint, base_url, serve  # noqa: E402
from support.fakes import FakeEmbedding  # noqa: E402

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


@pytest.fixture(scope="session")
def standin_hf_home() -> Path:
    """A Hugging Face cache holding a stand-in for the tutorial's model (built once a session;
    the nbmake run of the notebook uses the same one)."""
    from support.hf_standin import build_standin_hf_home

    return build_standin_hf_home(Path(os.environ["MILVUS_RAG_TEST_SCRATCH"]) / "hf-standin")


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


@pytest.fixture()
def serve_endpoint():
    """``start(handler, host="127.0.0.1") -> base URL``: servers stopped after the test."""
    servers = []

    def start(handler: type, host: str = "127.0.0.1") -> str:
        servers.append(serve(handler, host))
        return base_url(servers[-1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def failing_endpoint(serve_endpoint):
    """``start(status, message=None, host="127.0.0.1") -> (base_url, handler)``."""

    def start(status: int, message: str | None = None, host: str = "127.0.0.1"):
        attrs = {"status": status, "requests": []}
        if message is not None:
            attrs["message"] = message
        handler = type("Handler", (FailingEndpoint,), attrs)
        return serve_endpoint(handler, host), handler

    return start


@pytest.fixture()
def embeddings_endpoint(serve_endpoint):
    """``start(**attrs) -> (base_url, handler)``: an OpenAI-compatible embeddings endpoint
    (``support.endpoints.EmbeddingsEndpoint``, its attributes overridden by ``attrs``)."""
    from support.endpoints import EmbeddingsEndpoint

    def start(**attrs):
        handler = type("Embeddings", (EmbeddingsEndpoint,), {"requests": [], "failures": [], **attrs})
        return serve_endpoint(handler), handler

    return start
