"""Every setting in one place: its environment variable, its default, and what it means.

The notebook's ``parameters`` cell and the command line both read their values here, so a
variable set in the shell behaves the same everywhere. Secrets (``LLM_API_KEY`` or
``LEPTONAI_TOKEN``, ``EMBEDDING_API_KEY``, ``MILVUS_TOKEN``) are read from the environment only
and never printed."""

import os
import re
from pathlib import Path
from typing import NamedTuple

from milvus_rag.errors import RagError

DOCS_URL = ("https://github.com/milvus-io/milvus-docs/releases/download/"
            "v2.4.6-preview/milvus_docs_2.4.x_en.zip")  # the release asset the tutorial downloads

DEFAULTS: dict[str, str] = {  # environment variable -> default, for every setting but secrets
    "MILVUS_DOCS_ZIP": DOCS_URL,  # the docs: a zip URL (downloaded once), a zip or a folder
    "MILVUS_URI": "",  # a Milvus server URL (pymilvus reads it too); empty: MILVUS_LITE_PATH
    "MILVUS_LITE_PATH": "./milvus_demo.db",  # Milvus Lite's folder, when MILVUS_URI is unset
    "MILVUS_COLLECTION": "my_rag_collection",  # the tutorial's collection; others derive from it
    "EMBEDDING_MODEL": "auto",  # auto | default | minilm | minilm-int8 | a model id or folder
    "EMBEDDING_BASE_URL": "",  # an OpenAI-compatible /v1/embeddings endpoint; empty: models here
    "LLM_BASE_URL": "",  # any OpenAI-compatible endpoint; empty: the local answerer
    "LLM_MODEL": "mistral-7b",  # the model name at that endpoint
    "LLM_MAX_TOKENS": "400",  # longest answer, in tokens: short answers, no rambling
    "LLM_TEMPERATURE": "0",  # 0: the most likely words, so the answer sticks to the passages
    "LLM_TIMEOUT": "60",  # seconds per request attempt (the client retries twice)
    "RAG_QUESTION": "How is data stored in milvus?",
    "RAG_TOP_K": "3",  # how many pieces to retrieve
    "RAG_EVAL_QUESTIONS": "",  # labeled questions (JSON lines); empty: real users' test part
    "RAG_MY_DOCS": "",  # your own documents (folder or zip); empty: data/sample_docs
    "RAG_MY_QUESTION": "Which index type should I use for a small collection?",
    "RAG_PROGRESS": "auto",  # progress bars: auto (widgets in a notebook) | text
    "RAG_TIMINGS": "0",  # 1: the command line prints where its time went (as --timings)
}


def setting(name: str) -> str:
    """The value of environment variable ``name``, else its default (blank counts as unset).
    Only the names in ``DEFAULTS`` are settings: another (a secret, a typo) is a KeyError."""
    default = DEFAULTS[name]
    return os.environ.get(name, "").strip() or default


def milvus_uri() -> str:
    """Where the vectors live: ``MILVUS_URI`` (a server URL) if set, else ``MILVUS_LITE_PATH``
    (pymilvus reads ``MILVUS_URI`` itself on import and refuses anything but a URL there)."""
    server = setting("MILVUS_URI")
    if server and not re.match(r"https?://", server):
        raise RagError(f"MILVUS_URI={server!r} is not a server URL, and pymilvus (which reads it "
                       "too) accepts only http(s) URLs there: put a Milvus Lite path in "
                       "MILVUS_LITE_PATH instead.")  # fmt: skip
    return server or setting("MILVUS_LITE_PATH")


def positive_int(name: str, value: object | None = None) -> int:
    """``value`` (default: the setting ``name``) as a whole number of at least 1."""
    raw = setting(name) if value is None else value
    number = int(str(raw).strip()) if re.fullmatch(r"\s*[+-]?\d+\s*", str(raw)) else 0
    if number < 1:
        raise RagError(f"{name} must be a whole number of at least 1, not {raw!r}: fix or unset it.")
    return number


def flag(name: str) -> bool:
    """The setting ``name`` as yes (1, true, yes, on) or no (0, false, no, off)."""
    raw = setting(name).lower()
    if raw not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise RagError(f"{name} must be 1 or 0 (true or false), not {setting(name)!r}: fix or unset it.")
    return raw in ("1", "true", "yes", "on")


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
    return next((value for name in names if (value := os.environ.get(name, "").strip())), "")


def llm_api_key() -> str:
    """The LLM key: ``LLM_API_KEY``, or ``LEPTONAI_TOKEN`` as the tutorial names it."""
    return secret("LLM_API_KEY", "LEPTONAI_TOKEN")


def embedding_api_key(base_url: str) -> str:
    """The embedding endpoint's key: ``EMBEDDING_API_KEY``, else the LLM's key when
    ``base_url`` is the LLM's endpoint too (one provider, one key); else ""."""
    same = base_url.rstrip("/") == setting("LLM_BASE_URL").rstrip("/")
    return secret("EMBEDDING_API_KEY") or (llm_api_key() if same else "")


def milvus_token() -> str:
    """The Milvus server or Zilliz Cloud token (``MILVUS_TOKEN``); "" for Milvus Lite."""
    return secret("MILVUS_TOKEN")


def collection_name(base: str, corpus: str) -> str:
    """The collection of one corpus: ``<base>_<corpus>`` (``corpus``: "faq", "docs", a label)."""
    name = f"{base}_{corpus}"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,199}", name):
        raise RagError(f"{name!r} is not a valid Milvus collection name: set MILVUS_COLLECTION "
                       "to letters, digits and underscores, starting with a letter.")  # fmt: skip
    return name


class Collections(NamedTuple):
    """The collections derived from ``MILVUS_COLLECTION``, besides the tutorial's (that name)."""

    faq: str  # the FAQ's entries and phrasings (the improved pipeline's and the CLI's)
    docs: str  # every page of the docs (``ingest --all-docs``)
    eval_tutorial: str  # these two the evaluation builds (with a BM25 field) and drops
    eval_entries: str


def collections(base: str) -> Collections:
    return Collections(*(collection_name(base, part) for part in Collections._fields))


def project_root() -> Path | None:
    """This project's checkout: the one the package is installed from in editable mode, or the
    one the current folder is in (as in Colab after cloning); None when there is none."""
    cwd = Path.cwd().resolve()
    for candidate in (Path(__file__).resolve().parents[2], cwd, *cwd.parents):
        if _is_checkout(candidate):
            return candidate
    return None


def checkout_data() -> Path:
    """The checkout's ``data/`` folder (``./data`` outside a checkout): phrasings, questions."""
    root = project_root()
    return (root if root is not None else Path.cwd()) / "data"


def _folder(variable: str, default: Path) -> Path:
    configured = os.environ.get(variable, "").strip()
    return Path(configured).expanduser() if configured else default


def data_dir() -> Path:
    """Where downloads and unzipped docs are cached: ``MILVUS_RAG_DATA_DIR``, else ``data/``."""
    return _folder("MILVUS_RAG_DATA_DIR", checkout_data())


def model_cache_dir() -> Path:
    """Where converted models are kept: ``MILVUS_RAG_MODEL_CACHE``, else ``models/`` in data."""
    return _folder("MILVUS_RAG_MODEL_CACHE", data_dir() / "models")


EVAL_SETS = {"real users": "real_test.jsonl", "AI-written": "test.jsonl",  # data/eval/README.md
             "unanswerable": "unanswerable_test.jsonl",  # real users' questions the FAQ does not answer
             "real users, dev": "real_dev.jsonl", "unanswerable, dev": "unanswerable_dev.jsonl"}


def eval_questions(kind: str = "") -> Path:
    """A set of ``EVAL_SETS`` by ``kind``, else ``RAG_EVAL_QUESTIONS``, else real users' (test)."""
    configured = "" if kind else setting("RAG_EVAL_QUESTIONS")
    default = checkout_data() / "eval" / EVAL_SETS[kind or "real users"]
    return Path(configured).expanduser() if configured else default


def my_docs() -> str:
    """Your own documents: ``RAG_MY_DOCS`` if set, else the checkout's ``data/sample_docs``."""
    return setting("RAG_MY_DOCS") or str(checkout_data() / "sample_docs")


def phrasings_path() -> Path:
    """The checkout's ``data/faq_phrasings.jsonl``: other ways users ask each FAQ question."""
    return checkout_data() / "faq_phrasings.jsonl"


def _is_checkout(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    return (folder / "data").is_dir() and pyproject.is_file() and 'name = "milvus-rag"' in (
        pyproject.read_text(encoding="utf-8", errors="replace"))  # fmt: skip
