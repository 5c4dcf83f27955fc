"""Configuration in one place: every setting has an environment variable and a default.

The notebook's ``parameters`` cell and the command line both read their defaults from
here, so a value set in the environment behaves the same everywhere. Secrets are read
only from the environment (or typed in interactively) and are never part of a parameter.
"""

from __future__ import annotations

import os
from pathlib import Path

DOCS_URL = (
    "https://github.com/milvus-io/milvus-docs/releases/download/"
    "v2.4.6-preview/milvus_docs_2.4.x_en.zip"
)
"""The release asset the original tutorial downloads."""

DEFAULTS: dict[str, str] = {
    "MILVUS_DOCS_ZIP": DOCS_URL,
    "MILVUS_URI": "./milvus_demo.db",
    "MILVUS_COLLECTION": "my_rag_collection",
    "EMBEDDING_MODEL": "auto",
    "LLM_BASE_URL": "",
    "LLM_MODEL": "mistral-7b",
    "RAG_QUESTION": "How is data stored in milvus?",
    "RAG_TOP_K": "3",
    "RAG_EVAL_QUESTIONS": "../data/eval/questions.jsonl",
}
"""Environment variable -> default, for every non-secret setting."""

SECRET_VARIABLES = ("LLM_API_KEY", "LEPTONAI_TOKEN", "MILVUS_TOKEN")


def env(name: str, default: str | None = None) -> str:
    """The value of environment variable ``name``, else its project default.

    An empty or blank variable counts as unset, so ``LLM_BASE_URL=`` means "none".
    """
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if default is not None:
        return default
    return DEFAULTS[name]


def env_int(name: str) -> int:
    """``env(name)`` as a positive integer, with a clear message when it is not one."""
    from milvus_rag.errors import RagError

    raw = env(name)
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise RagError(f"{name} must be a positive whole number, not {raw!r}: fix or unset it.")
    return value


def secret(*names: str) -> str:
    """The first non-empty environment variable among ``names``; "" when none is set.

    The value is returned, never printed or logged; callers must keep it that way.
    """
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return ""


def llm_api_key() -> str:
    """The LLM key: ``LLM_API_KEY``, or ``LEPTONAI_TOKEN`` as the tutorial names it."""
    return secret("LLM_API_KEY", "LEPTONAI_TOKEN")


def milvus_token() -> str:
    """The Milvus server / Zilliz Cloud token, from ``MILVUS_TOKEN`` ("" for Milvus Lite)."""
    return secret("MILVUS_TOKEN")


def data_dir() -> Path:
    """Where downloads and extracted docs are cached.

    ``MILVUS_RAG_DATA_DIR`` if set; else the ``data/`` folder of this project's checkout (the
    one the package is installed from in editable mode, or the one the current folder is
    in, as in Colab after cloning); else ``./data``.
    """
    configured = os.environ.get("MILVUS_RAG_DATA_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    cwd = Path.cwd().resolve()
    for candidate in (Path(__file__).resolve().parents[2], cwd, *cwd.parents):
        if _is_checkout(candidate):
            return candidate / "data"
    return cwd / "data"


def _is_checkout(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    return (
        (folder / "data").is_dir()
        and pyproject.is_file()
        and ('name = "milvus-rag"' in pyproject.read_text(encoding="utf-8", errors="replace"))
    )
