"""Every setting in one place: its environment variable, its default, and what it means.

The notebook's ``parameters`` cell and the command line both read their values here, so a
variable set in the shell behaves the same everywhere. Secrets (``LLM_API_KEY`` or
``LEPTONAI_TOKEN``, ``MILVUS_TOKEN``) are read from the environment only and never printed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from milvus_rag.errors import RagError

DOCS_URL = (
    "https://github.com/milvus-io/milvus-docs/releases/download/"
    "v2.4.6-preview/milvus_docs_2.4.x_en.zip"
)
"""The release asset the original tutorial downloads."""

DEFAULTS: dict[str, str] = {
    "MILVUS_DOCS_ZIP": DOCS_URL,  # docs zip: URL (downloaded once into data/) or local path
    "MILVUS_URI": "./milvus_demo.db",  # a Milvus Lite path, or a server URL http://host:19530
    "MILVUS_COLLECTION": "my_rag_collection",  # the tutorial's collection; others derive from it
    "EMBEDDING_MODEL": "auto",  # auto | default (the tutorial's) | minilm (packaged, offline)
    "LLM_BASE_URL": "",  # any OpenAI-compatible endpoint; empty: the local answerer
    "LLM_MODEL": "mistral-7b",  # the model name at that endpoint
    "LLM_MAX_TOKENS": "400",  # longest answer, in tokens: short answers, no rambling
    "LLM_TEMPERATURE": "0",  # 0: the most likely words, so the answer sticks to the passages
    "LLM_TIMEOUT": "60",  # seconds per request attempt (the client retries twice)
    "RAG_QUESTION": "How is data stored in milvus?",
    "RAG_TOP_K": "3",  # how many pieces to retrieve
    "RAG_EVAL_QUESTIONS": "",  # labeled questions (JSON lines); empty: the project's test set
    "RAG_PROGRESS": "auto",  # progress bars: auto (widgets in a notebook) | text
}
"""Environment variable -> default, for every setting that is not a secret."""


def setting(name: str) -> str:
    """The value of environment variable ``name``, else its default (blank counts as unset).

    Only the names in ``DEFAULTS`` are settings: any other name (a secret, a typo) is a KeyError.
    """
    default = DEFAULTS[name]
    value = os.environ.get(name, "").strip()
    return value if value else default


def positive_int(name: str, value: object | None = None) -> int:
    """``value`` (default: the setting ``name``) as a whole number of at least 1."""
    raw = setting(name) if value is None else value
    try:
        number = int(str(raw).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise RagError(
            f"{name} must be a whole number of at least 1, not {raw!r}: fix or unset it."
        )
    return number


def non_negative_float(name: str) -> float:
    """The setting ``name`` as a number of at least 0."""
    raw = setting(name)
    try:
        number = float(raw)
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise RagError(f"{name} must be a number of at least 0, not {raw!r}: fix or unset it.")
    return number


def secret(*names: str) -> str:
    """The first non-empty variable among ``names``, or "". Never print or log the value."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return ""


def llm_api_key() -> str:
    """The LLM key: ``LLM_API_KEY``, or ``LEPTONAI_TOKEN`` as the tutorial names it."""
    return secret("LLM_API_KEY", "LEPTONAI_TOKEN")


def milvus_token() -> str:
    """The Milvus server or Zilliz Cloud token (``MILVUS_TOKEN``); "" for Milvus Lite."""
    return secret("MILVUS_TOKEN")


class Collections(NamedTuple):
    """The collections derived from one base name (``MILVUS_COLLECTION``)."""

    tutorial: str
    """The tutorial's own collection (quick-setup schema, its 72 pieces)."""
    faq: str
    """The improved pipeline's: one row per FAQ entry, content-keyed (the CLI's too)."""
    eval_tutorial: str
    """Evaluation: the tutorial's pieces with a BM25 field (dropped after the run)."""
    eval_entries: str
    """Evaluation: the FAQ entries with a BM25 field (dropped after the run)."""


def collections(base: str) -> Collections:
    return Collections(base, f"{base}_faq", f"{base}_eval_tutorial", f"{base}_eval_entries")


def project_root() -> Path | None:
    """This project's checkout: the one the package is installed from in editable mode, or the
    one the current folder is in (as in Colab after cloning); None when there is none."""
    cwd = Path.cwd().resolve()
    for candidate in (Path(__file__).resolve().parents[2], cwd, *cwd.parents):
        if _is_checkout(candidate):
            return candidate
    return None


def data_dir() -> Path:
    """Where downloads and unzipped docs are cached: ``MILVUS_RAG_DATA_DIR`` if set, else the
    checkout's ``data/`` folder, else ``./data``."""
    configured = os.environ.get("MILVUS_RAG_DATA_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    root = project_root()
    return (root if root is not None else Path.cwd()) / "data"


def eval_questions() -> Path:
    """The labeled questions: ``RAG_EVAL_QUESTIONS`` if set, else the checkout's test set."""
    configured = setting("RAG_EVAL_QUESTIONS")
    if configured:
        return Path(configured).expanduser()
    root = project_root()
    return (root if root is not None else Path.cwd()) / "data" / "eval" / "test.jsonl"


def phrasings_path() -> Path:
    """The checkout's ``data/faq_phrasings.jsonl``: other ways users ask each FAQ question."""
    root = project_root()
    return (root if root is not None else Path.cwd()) / "data" / "faq_phrasings.jsonl"


def _is_checkout(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    return (
        (folder / "data").is_dir()
        and pyproject.is_file()
        and 'name = "milvus-rag"' in pyproject.read_text(encoding="utf-8", errors="replace")
    )
