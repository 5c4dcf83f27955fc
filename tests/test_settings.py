"""Tests for milvus_rag.settings (environment variables, defaults, secrets) and llm.connect_llm."""

from __future__ import annotations

from pathlib import Path

import pytest

from milvus_rag import llm, settings
from milvus_rag.errors import RagError
from milvus_rag.llm import connect_llm
from milvus_rag.settings import DEFAULTS, data_dir, env, env_int, llm_api_key, milvus_token

CANARY = "sk-canary-123"


@pytest.fixture(autouse=True)
def no_secrets(monkeypatch):
    for name in settings.SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- env / env_int


def test_env_default_when_unset(monkeypatch):
    monkeypatch.delenv("MILVUS_RAG_TEST_VAR", raising=False)
    assert env("MILVUS_RAG_TEST_VAR", "fallback") == "fallback"


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_env_default_when_blank(monkeypatch, blank):
    monkeypatch.setenv("MILVUS_RAG_TEST_VAR", blank)
    assert env("MILVUS_RAG_TEST_VAR", "fallback") == "fallback"


def test_env_value_when_set(monkeypatch):
    monkeypatch.setenv("MILVUS_RAG_TEST_VAR", "  value  ")
    assert env("MILVUS_RAG_TEST_VAR", "fallback") == "value"


def test_env_project_defaults(monkeypatch):
    monkeypatch.delenv("MILVUS_COLLECTION", raising=False)
    monkeypatch.setenv("LLM_MODEL", "")
    assert env("MILVUS_COLLECTION") == DEFAULTS["MILVUS_COLLECTION"] == "my_rag_collection"
    assert env("LLM_MODEL") == DEFAULTS["LLM_MODEL"]
    monkeypatch.setenv("MILVUS_COLLECTION", "other")
    assert env("MILVUS_COLLECTION") == "other"
    monkeypatch.delenv("LLM_BASE_URL", raising=False)
    assert env("LLM_BASE_URL") == ""  # "no endpoint" is a real default


def test_env_unknown_name_without_default(monkeypatch):
    monkeypatch.delenv("MILVUS_RAG_NOT_A_SETTING", raising=False)
    with pytest.raises(KeyError):
        env("MILVUS_RAG_NOT_A_SETTING")


@pytest.mark.parametrize("raw, value", [("1", 1), ("3", 3), (" 12 ", 12)])
def test_env_int_accepts_positive_numbers(monkeypatch, raw, value):
    monkeypatch.setenv("RAG_TOP_K", raw)
    assert env_int("RAG_TOP_K") == value


def test_env_int_default(monkeypatch):
    monkeypatch.delenv("RAG_TOP_K", raising=False)
    assert env_int("RAG_TOP_K") == int(DEFAULTS["RAG_TOP_K"]) == 3


@pytest.mark.parametrize("raw", ["0", "-2", "abc", "2.5", "1e3"])
def test_env_int_rejects_non_positive_or_non_integers(monkeypatch, raw):
    monkeypatch.setenv("RAG_TOP_K", raw)
    with pytest.raises(RagError) as info:
        env_int("RAG_TOP_K")
    assert "RAG_TOP_K" in str(info.value)
    assert repr(raw) in str(info.value)


# --------------------------------------------------------------------------- secrets


def test_llm_api_key_prefers_llm_api_key(monkeypatch):
    assert llm_api_key() == ""
    monkeypatch.setenv("LEPTONAI_TOKEN", "lepton-key")
    assert llm_api_key() == "lepton-key"
    monkeypatch.setenv("LLM_API_KEY", "llm-key")
    assert llm_api_key() == "llm-key"
    monkeypatch.setenv("LLM_API_KEY", "   ")
    assert llm_api_key() == "lepton-key"


def test_milvus_token(monkeypatch):
    assert milvus_token() == ""
    monkeypatch.setenv("MILVUS_TOKEN", " user:password ")
    assert milvus_token() == "user:password"


def test_secrets_are_not_settings():
    assert not set(settings.SECRET_VARIABLES) & set(DEFAULTS)


# --------------------------------------------------------------------------- data_dir


def test_data_dir_honours_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("MILVUS_RAG_DATA_DIR", str(tmp_path / "cache"))
    assert data_dir() == tmp_path / "cache"
    monkeypatch.setenv("MILVUS_RAG_DATA_DIR", "~/milvus-rag-cache")
    assert data_dir() == Path.home() / "milvus-rag-cache"


def test_data_dir_in_a_checkout(monkeypatch, tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "src" / "milvus_rag").mkdir(parents=True)
    (checkout / "data").mkdir()
    (checkout / "pyproject.toml").write_text('[project]\nname = "milvus-rag"\n')
    monkeypatch.setattr(settings, "__file__", str(checkout / "src" / "milvus_rag" / "settings.py"))
    monkeypatch.setenv("MILVUS_RAG_DATA_DIR", " ")
    assert data_dir() == checkout / "data"


def test_data_dir_from_a_folder_inside_a_checkout(monkeypatch, tmp_path):
    """As in Colab: the package installed from a clone, the notebook run in its notebooks/."""
    checkout = tmp_path / "clone"
    (checkout / "notebooks").mkdir(parents=True)
    (checkout / "data").mkdir()
    (checkout / "pyproject.toml").write_text('[project]\nname = "milvus-rag"\n')
    site = tmp_path / "site-packages"
    (site / "milvus_rag").mkdir(parents=True)
    monkeypatch.setattr(settings, "__file__", str(site / "milvus_rag" / "settings.py"))
    monkeypatch.delenv("MILVUS_RAG_DATA_DIR", raising=False)
    monkeypatch.chdir(checkout / "notebooks")
    assert data_dir() == checkout / "data"


def test_another_projects_checkout_is_not_used(monkeypatch, tmp_path):
    other = tmp_path / "other"
    (other / "data").mkdir(parents=True)
    (other / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    monkeypatch.setattr(settings, "__file__", str(tmp_path / "site" / "milvus_rag" / "settings.py"))
    monkeypatch.delenv("MILVUS_RAG_DATA_DIR", raising=False)
    (other / "notebooks").mkdir()
    monkeypatch.chdir(other / "notebooks")
    assert data_dir() == other / "notebooks" / "data"  # ./data, not the other project's


def test_data_dir_outside_a_checkout(monkeypatch, tmp_path):
    site = tmp_path / "site-packages"
    (site / "milvus_rag").mkdir(parents=True)
    monkeypatch.setattr(settings, "__file__", str(site / "milvus_rag" / "settings.py"))
    monkeypatch.delenv("MILVUS_RAG_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert data_dir() == tmp_path / "data"


# --------------------------------------------------------------------------- connect_llm


@pytest.mark.parametrize(
    "base_url", ["ftp://example.com/v1", "localhost:11434/v1", "api.openai.com/v1", "https://"]
)
def test_connect_llm_refuses_non_http_urls(monkeypatch, base_url):
    monkeypatch.setenv("LEPTONAI_TOKEN", CANARY)
    with pytest.raises(RagError) as info:
        connect_llm(base_url, "mistral-7b", embedding=None)
    assert "LLM_BASE_URL" in str(info.value)
    assert CANARY not in str(info.value)


def test_connect_llm_remote_without_key(monkeypatch):
    def no_prompt(base_url):
        raise AssertionError("interactive=False must not ask for a key")

    monkeypatch.setattr(llm, "_interactive_key", no_prompt)
    with pytest.raises(RagError) as info:
        connect_llm("https://llm.example.com/api/v1", "mistral-7b", embedding=None)
    assert "LLM_API_KEY" in str(info.value)
    assert "https://llm.example.com/api/v1" in str(info.value)


def test_connect_llm_remote_interactive_key(monkeypatch):
    monkeypatch.setattr(llm, "_interactive_key", lambda base_url: CANARY)
    result = connect_llm("https://llm.example.com/v1", "m", embedding=None, interactive=True)
    assert result.client.api_key == CANARY
    assert CANARY not in result.description


def test_connect_llm_remote_interactive_no_one_to_ask(monkeypatch):
    monkeypatch.setattr(llm, "_interactive_key", lambda base_url: "")
    with pytest.raises(RagError, match="LLM_API_KEY"):
        connect_llm("https://llm.example.com/v1", "m", embedding=None, interactive=True)


@pytest.mark.parametrize("variable", ["LEPTONAI_TOKEN", "LLM_API_KEY"])
def test_connect_llm_remote_with_key_never_shows_it(monkeypatch, variable):
    monkeypatch.setenv(variable, CANARY)
    result = connect_llm("https://llm.example.com/api/v1", "mistral-7b", embedding=None)
    assert result.model == "mistral-7b"
    assert result.client.api_key == CANARY
    assert str(result.client.base_url).rstrip("/") == "https://llm.example.com/api/v1"
    assert CANARY not in result.description
    assert CANARY not in repr(result.description)
    assert "https://llm.example.com/api/v1" in result.description


@pytest.mark.parametrize(
    "base_url", ["http://localhost:11434/v1", "http://127.0.0.1:8000/v1", "http://[::1]:8000/v1"]
)
def test_connect_llm_local_endpoint_needs_no_key(base_url):
    result = connect_llm(base_url, "llama3", embedding=None)
    assert result.client.api_key == "no-key-needed"
    assert result.model == "llama3"


def test_connect_llm_without_url_starts_the_local_answerer_once():
    class FakeEmbedding:
        def encode_documents(self, texts):
            return [[1.0] for _ in texts]

        def encode_queries(self, texts):
            return [[1.0] for _ in texts]

    embedding = FakeEmbedding()
    try:
        first = connect_llm("", "mistral-7b", embedding)
        second = connect_llm("", "mistral-7b", embedding)
        from milvus_rag.local_answerer import MODEL_NAME

        assert first.model == MODEL_NAME
        assert str(first.client.base_url) == str(second.client.base_url)
        assert str(first.client.base_url).startswith("http://127.0.0.1:")
        assert "LLM_BASE_URL" in first.description
        assert [m.id for m in first.client.models.list()] == [MODEL_NAME]
    finally:
        server = llm._local_servers.pop(id(embedding), None)
        if server is not None:
            server.close()
