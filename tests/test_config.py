"""Tests for milvus_rag.config: settings from the environment, defaults, secrets, folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from milvus_rag import config
from milvus_rag.config import (
    DEFAULTS,
    collection_name,
    collections,
    data_dir,
    embedding_api_key,
    eval_questions,
    llm_api_key,
    milvus_token,
    milvus_uri,
    non_negative_float,
    positive_int,
    project_root,
    secret,
    setting,
)
from milvus_rag.errors import RagError

SECRET_VARIABLES = ("LLM_API_KEY", "LEPTONAI_TOKEN", "EMBEDDING_API_KEY", "MILVUS_TOKEN")
CANARY = "sk-canary-123"


@pytest.fixture(autouse=True)
def no_secrets(monkeypatch):
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- setting


def test_setting_default_when_unset(monkeypatch):
    monkeypatch.delenv("MILVUS_COLLECTION", raising=False)
    assert setting("MILVUS_COLLECTION") == DEFAULTS["MILVUS_COLLECTION"] == "my_rag_collection"


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_setting_default_when_blank(monkeypatch, blank):
    monkeypatch.setenv("LLM_MODEL", blank)
    assert setting("LLM_MODEL") == DEFAULTS["LLM_MODEL"] == "mistral-7b"


def test_setting_value_when_set_is_stripped(monkeypatch):
    monkeypatch.setenv("MILVUS_COLLECTION", "  other  ")
    assert setting("MILVUS_COLLECTION") == "other"


def test_empty_defaults_are_real_defaults(monkeypatch):
    """ "No endpoint" (the local answerer) and "the project's test set" are defaults too."""
    monkeypatch.delenv("LLM_BASE_URL", raising=False)
    monkeypatch.delenv("RAG_EVAL_QUESTIONS", raising=False)
    assert setting("LLM_BASE_URL") == ""
    assert setting("RAG_EVAL_QUESTIONS") == ""


def test_the_docs_default_is_the_tutorials_release_asset(monkeypatch):
    monkeypatch.delenv("MILVUS_DOCS_ZIP", raising=False)
    assert setting("MILVUS_DOCS_ZIP") == config.DOCS_URL
    assert config.DOCS_URL.startswith("https://github.com/milvus-io/milvus-docs/releases/")
    assert config.DOCS_URL.endswith("/milvus_docs_2.4.x_en.zip")


def test_setting_unknown_name_raises_key_error(monkeypatch):
    monkeypatch.delenv("MILVUS_RAG_NOT_A_SETTING", raising=False)
    with pytest.raises(KeyError):
        setting("MILVUS_RAG_NOT_A_SETTING")


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("raw, value", [("1", 1), ("3", 3), (" 12 ", 12)])
def test_positive_int_accepts_whole_numbers(monkeypatch, raw, value):
    monkeypatch.setenv("RAG_TOP_K", raw)
    assert positive_int("RAG_TOP_K") == value


def test_positive_int_default(monkeypatch):
    monkeypatch.delenv("RAG_TOP_K", raising=False)
    assert positive_int("RAG_TOP_K") == int(DEFAULTS["RAG_TOP_K"]) == 3


@pytest.mark.parametrize("raw", ["0", "-2", "abc", "2.5", "1e3"])
def test_positive_int_rejects_non_positive_or_non_integers(monkeypatch, raw):
    monkeypatch.setenv("RAG_TOP_K", raw)
    with pytest.raises(RagError) as info:
        positive_int("RAG_TOP_K")
    assert str(info.value) == (
        f"RAG_TOP_K must be a whole number of at least 1, not {raw!r}: fix or unset it."
    )


def test_positive_int_of_a_given_value_ignores_the_environment(monkeypatch):
    """An explicit value (e.g. a notebook parameter or a CLI option) wins over the variable."""
    monkeypatch.setenv("RAG_TOP_K", "7")
    assert positive_int("RAG_TOP_K", 5) == 5
    assert positive_int("RAG_TOP_K", " 2 ") == 2
    with pytest.raises(RagError, match=r"^--top-k must be a whole number of at least 1, not 0:"):
        positive_int("--top-k", 0)


@pytest.mark.parametrize("raw, value", [("0", 0.0), ("0.7", 0.7), ("60", 60.0)])
def test_non_negative_float_accepts_numbers(monkeypatch, raw, value):
    monkeypatch.setenv("LLM_TEMPERATURE", raw)
    assert non_negative_float("LLM_TEMPERATURE") == value


def test_non_negative_float_defaults(monkeypatch):
    monkeypatch.delenv("LLM_TEMPERATURE", raising=False)
    monkeypatch.delenv("LLM_TIMEOUT", raising=False)
    assert non_negative_float("LLM_TEMPERATURE") == 0.0
    assert non_negative_float("LLM_TIMEOUT") == 60.0


@pytest.mark.parametrize("raw", ["-0.5", "warm", "nan"])
def test_non_negative_float_rejects_negative_or_non_numbers(monkeypatch, raw):
    monkeypatch.setenv("LLM_TEMPERATURE", raw)
    with pytest.raises(RagError) as info:
        non_negative_float("LLM_TEMPERATURE")
    assert str(info.value) == (
        f"LLM_TEMPERATURE must be a number of at least 0, not {raw!r}: fix or unset it."
    )


# --------------------------------------------------------------------------- secrets


def test_the_embedding_key_falls_back_to_the_llm_key_only_for_the_llms_url(monkeypatch):
    monkeypatch.setenv("LLM_API_KEY", "llm-key")
    monkeypatch.setenv("LLM_BASE_URL", "https://api.openai.com/v1")
    assert embedding_api_key("https://api.openai.com/v1/") == "llm-key"
    assert embedding_api_key("http://localhost:11434/v1") == ""
    monkeypatch.setenv("EMBEDDING_API_KEY", "embedding-key")
    assert embedding_api_key("https://api.openai.com/v1") == "embedding-key"
    assert embedding_api_key("http://localhost:11434/v1") == "embedding-key"


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


def test_secret_is_the_first_non_empty_variable(monkeypatch):
    monkeypatch.setenv("MILVUS_RAG_TEST_A", " ")
    monkeypatch.setenv("MILVUS_RAG_TEST_B", " b ")
    monkeypatch.setenv("MILVUS_RAG_TEST_C", "c")
    monkeypatch.delenv("MILVUS_RAG_TEST_UNSET", raising=False)
    assert secret("MILVUS_RAG_TEST_UNSET", "MILVUS_RAG_TEST_A", "MILVUS_RAG_TEST_B") == "b"
    assert secret("MILVUS_RAG_TEST_C", "MILVUS_RAG_TEST_B") == "c"
    assert secret("MILVUS_RAG_TEST_UNSET", "MILVUS_RAG_TEST_A") == ""


def test_secrets_are_not_settings():
    """Secrets have no default and are not in the list of settings that the notebook prints."""
    assert not set(SECRET_VARIABLES) & set(DEFAULTS)
    for name in DEFAULTS:  # a new setting named like a key or token would be printed too
        assert not name.endswith(("_KEY", "_TOKEN", "_SECRET", "_PASSWORD")), name


@pytest.mark.parametrize("name", SECRET_VARIABLES)
def test_setting_refuses_a_secret_when_it_is_unset(name):
    with pytest.raises(KeyError):
        setting(name)


@pytest.mark.parametrize("name", [*SECRET_VARIABLES, "MILVUS_RAG_NOT_A_SETTING"])
def test_setting_refuses_names_that_are_not_settings_even_when_set(monkeypatch, name):
    """Only the listed settings can be read with ``setting``: a secret must go through
    ``secret()`` (never printed), and a misspelt name must fail on every machine."""
    monkeypatch.setenv(name, CANARY)
    with pytest.raises(KeyError):
        setting(name)


# --------------------------------------------------------------------------- collections


def test_collections_derive_from_the_base_name():
    names = collections("base")
    assert names == ("base_faq", "base_docs", "base_eval_tutorial", "base_eval_entries")
    assert names.faq == "base_faq" and names.docs == "base_docs"


@pytest.mark.parametrize("base", ["1abc", "my-collection", "x y", "é"])
def test_a_base_name_milvus_would_refuse_is_one_sentence(base):
    with pytest.raises(RagError, match="not a valid Milvus collection name.*MILVUS_COLLECTION"):
        collection_name(base, "faq")


def test_milvus_uri_prefers_a_server_url_and_falls_back_to_the_lite_path(monkeypatch):
    monkeypatch.delenv("MILVUS_URI", raising=False)
    monkeypatch.setenv("MILVUS_LITE_PATH", "./mine.db")
    assert milvus_uri() == "./mine.db"
    monkeypatch.setenv("MILVUS_URI", "http://milvus:19530")
    assert milvus_uri() == "http://milvus:19530"


def test_a_path_in_milvus_uri_is_refused_with_the_variable_to_use(monkeypatch):
    """pymilvus itself refuses, when imported, a MILVUS_URI that is not a URL."""
    monkeypatch.setenv("MILVUS_URI", "./milvus_demo.db")
    with pytest.raises(RagError, match="not a server URL.*MILVUS_LITE_PATH"):
        milvus_uri()


# --------------------------------------------------------------------------- folders


def make_checkout(folder: Path, name: str = "milvus-rag") -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n')
    return folder


def install_outside_any_checkout(monkeypatch, tmp_path: Path) -> None:
    """Pretend the package is installed in a site-packages folder (not editable)."""
    site = tmp_path / "site-packages" / "milvus_rag"
    site.mkdir(parents=True)
    monkeypatch.setattr(config, "__file__", str(site / "config.py"))


def test_data_dir_honours_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("MILVUS_RAG_DATA_DIR", str(tmp_path / "cache"))
    assert data_dir() == tmp_path / "cache"
    monkeypatch.setenv("MILVUS_RAG_DATA_DIR", "~/milvus-rag-cache")
    assert data_dir() == Path.home() / "milvus-rag-cache"


def test_data_dir_of_the_editable_checkout(monkeypatch, tmp_path):
    checkout = make_checkout(tmp_path / "checkout")
    (checkout / "src" / "milvus_rag").mkdir(parents=True)
    monkeypatch.setattr(config, "__file__", str(checkout / "src" / "milvus_rag" / "config.py"))
    monkeypatch.setenv("MILVUS_RAG_DATA_DIR", " ")
    monkeypatch.chdir(tmp_path)
    assert project_root() == checkout
    assert data_dir() == checkout / "data"


def test_data_dir_from_a_folder_inside_a_checkout(monkeypatch, tmp_path):
    """As in Colab: the package installed from a clone, the notebook run in its notebooks/."""
    checkout = make_checkout(tmp_path / "clone")
    (checkout / "notebooks").mkdir()
    install_outside_any_checkout(monkeypatch, tmp_path)
    monkeypatch.delenv("MILVUS_RAG_DATA_DIR", raising=False)
    monkeypatch.chdir(checkout / "notebooks")
    assert data_dir() == checkout / "data"


def test_another_projects_checkout_is_not_used(monkeypatch, tmp_path):
    other = make_checkout(tmp_path / "other", name="something-else")
    (other / "notebooks").mkdir()
    install_outside_any_checkout(monkeypatch, tmp_path)
    monkeypatch.delenv("MILVUS_RAG_DATA_DIR", raising=False)
    monkeypatch.chdir(other / "notebooks")
    assert project_root() is None
    assert data_dir() == other / "notebooks" / "data"  # ./data, not the other project's


def test_data_dir_outside_a_checkout(monkeypatch, tmp_path):
    install_outside_any_checkout(monkeypatch, tmp_path)
    monkeypatch.delenv("MILVUS_RAG_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert project_root() is None
    assert data_dir() == tmp_path / "data"


def test_eval_questions_default_to_the_checkouts_test_set(monkeypatch, tmp_path):
    checkout = make_checkout(tmp_path / "clone")
    install_outside_any_checkout(monkeypatch, tmp_path)
    monkeypatch.delenv("RAG_EVAL_QUESTIONS", raising=False)
    monkeypatch.chdir(checkout)
    assert eval_questions() == checkout / "data" / "eval" / "real_test.jsonl"
    monkeypatch.chdir(tmp_path)
    assert eval_questions() == tmp_path / "data" / "eval" / "real_test.jsonl"


def test_eval_questions_honour_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_EVAL_QUESTIONS", f" {tmp_path / 'mine.jsonl'} ")
    assert eval_questions() == tmp_path / "mine.jsonl"
    monkeypatch.setenv("RAG_EVAL_QUESTIONS", "~/questions.jsonl")
    assert eval_questions() == Path.home() / "questions.jsonl"


def test_this_checkout_ships_the_default_test_set(monkeypatch):
    """The installed package finds this project's own checkout and its test set."""
    monkeypatch.delenv("RAG_EVAL_QUESTIONS", raising=False)
    root = Path(__file__).resolve().parents[1]
    assert project_root() == root
    assert eval_questions() == root / "data" / "eval" / "real_test.jsonl"
    assert all((root / "data" / "eval" / name).is_file() for name in config.EVAL_SETS.values())
