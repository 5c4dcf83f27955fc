"""Fixtures for the unit tests."""

import os
from pathlib import Path

import pytest

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
