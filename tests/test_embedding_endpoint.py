"""The model of an OpenAI-compatible embeddings endpoint: batches, retries, keys, prefixes, and
each failure in one sentence, through the real openai client against local servers."""

import numpy as np
import pytest
from support.fakes import FakeEmbedding

from milvus_rag import embedding_endpoint
from milvus_rag.embedding import load_embedding
from milvus_rag.errors import RagError

MODEL = "stand-in-embedder"


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    for name in ("EMBEDDING_API_KEY", "LLM_API_KEY", "LEPTONAI_TOKEN", "LLM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_the_dimension_is_the_first_vectors_and_the_name_holds_the_url(embeddings_endpoint):
    url, handler = embeddings_endpoint(dim=48)
    model = load_embedding(MODEL, url + "/")
    assert (model.dim, model.name) == (48, f"{MODEL} at {url}")
    assert [body["input"] for _, body in handler.requests] == [[embedding_endpoint.PROBE]]
    assert handler.requests[0][1]["encoding_format"] == "float"  # Ollama has no base64


def test_texts_go_in_batches_and_come_back_in_order_at_unit_length(embeddings_endpoint):
    url, handler = embeddings_endpoint()
    model = load_embedding(MODEL, url)
    texts = [f"text number {n} about milvus" for n in range(150)]
    vectors = model.encode_documents(texts)
    sizes = [len(body["input"]) for _, body in handler.requests[1:]]
    assert sizes == [64, 64, 22] and max(sizes) == embedding_endpoint.BATCH
    expected = [FakeEmbedding(64)._vector(text) for text in texts]
    assert np.allclose(vectors, expected)  # the endpoint's vectors were 3x: normalized here
    assert np.allclose([np.linalg.norm(v) for v in vectors], 1.0)


def test_queries_and_documents_get_the_models_prefixes(embeddings_endpoint):
    url, handler = embeddings_endpoint(model="intfloat/e5-small-v2")
    model = load_embedding("intfloat/e5-small-v2", url)
    model.encode_queries(["where is data stored?"])
    model.encode_documents(["Milvus stores data in object storage."])
    sent = [body["input"] for _, body in handler.requests[1:]]
    assert sent == [["query: where is data stored?"], ["passage: Milvus stores data in object storage."]]


@pytest.mark.parametrize("failures", [[429, 429], [503], [500, 502, 429]])
def test_rate_limits_and_server_errors_are_retried_with_back_off(embeddings_endpoint, failures):
    url, handler = embeddings_endpoint(failures=list(failures))
    assert load_embedding(MODEL, url).dim == 64
    assert len(handler.requests) == len(failures) + 1


@pytest.mark.parametrize("status, start", [
    (429, "is rate limiting requests (HTTP 429 after 5 retries; it said: failure 429): wait"),
    (503, "failed with a server error (HTTP 503 after 5 retries; it said: failure 503): try again"),
])  # fmt: skip
def test_a_lasting_failure_is_one_sentence_after_the_retries(embeddings_endpoint, status, start):
    url, handler = embeddings_endpoint(failures=[status] * 6)
    with pytest.raises(RagError) as caught:
        load_embedding(MODEL, url)
    assert str(caught.value).startswith(f"The embedding endpoint {url} {start}")
    assert len(handler.requests) == 6  # the first try and 5 retries


def test_a_rejected_key_is_one_sentence_that_never_shows_the_key(
    embeddings_endpoint, monkeypatch, canary_key
):
    monkeypatch.setenv("EMBEDDING_API_KEY", canary_key)
    url, handler = embeddings_endpoint(failures=[401])
    with pytest.raises(RagError) as caught:
        load_embedding(MODEL, url)
    assert str(caught.value) == (f"The embedding endpoint {url} rejected the API key (HTTP 401): "
                                 "check EMBEDDING_API_KEY (or LLM_API_KEY, for the LLM's own URL) "
                                 "and that it is valid for this endpoint.")  # fmt: skip
    assert handler.requests[0][0] == f"Bearer {canary_key}"


def test_the_llm_key_is_sent_only_to_the_llms_own_url(embeddings_endpoint, monkeypatch, canary_key):
    url, handler = embeddings_endpoint()
    monkeypatch.setenv("LLM_API_KEY", canary_key)
    monkeypatch.setenv("LLM_BASE_URL", "https://api.example.com/v1")
    load_embedding(MODEL, url)
    monkeypatch.setenv("LLM_BASE_URL", url + "/")
    load_embedding(MODEL, url)
    assert [auth for auth, _ in handler.requests] == ["Bearer no-key", f"Bearer {canary_key}"]


def test_an_unknown_model_is_one_sentence_naming_it(embeddings_endpoint):
    url, _ = embeddings_endpoint()
    with pytest.raises(RagError) as caught:
        load_embedding("text-embedding-9", url)
    assert str(caught.value).startswith(
        f"The embedding endpoint {url} does not know model 'text-embedding-9' or this API path "
        "(HTTP 404; it said: model 'text-embedding-9' not found): set EMBEDDING_MODEL to a model "
        "it serves and check EMBEDDING_BASE_URL")


def test_an_endpoint_that_is_down_is_one_sentence(monkeypatch):
    import socket

    quick = embedding_endpoint.EMBEDDINGS._replace(retries=0)  # not 15 s of back-off
    monkeypatch.setattr(embedding_endpoint, "EMBEDDINGS", quick)

    with socket.socket() as free:  # a port nobody listens on
        free.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{free.getsockname()[1]}/v1"
    with pytest.raises(RagError) as caught:
        load_embedding(MODEL, down)
    assert str(caught.value).startswith(f"Cannot reach the embedding endpoint {down} (")
    assert str(caught.value).endswith("check EMBEDDING_BASE_URL and your network, and that the "
                                      "server is running.")  # fmt: skip


def test_not_an_http_url_is_refused():
    with pytest.raises(RagError, match=r"^EMBEDDING_BASE_URL='localhost:11434' is not an http\(s\) URL"):
        load_embedding(MODEL, "localhost:11434")


@pytest.mark.parametrize("answer, says", [
    ("too_few", "answered 1 vectors for 2 texts, or vectors that are not lists of numbers: check"),
    ("not_a_list", "answered something other than a list of vectors (TypeError): check"),
    ("ragged", "answered vectors of mixed dimensions (63, 64): the model behind it changed"),
])  # fmt: skip
def test_a_wrong_answer_is_one_sentence(embeddings_endpoint, answer, says):
    url, handler = embeddings_endpoint()
    model = load_embedding(MODEL, url)
    handler.answer = answer
    with pytest.raises(RagError) as caught:
        model.encode_documents(["one text", "another text"])
    assert str(caught.value).startswith(f"The embedding endpoint {url} (model '{MODEL}') {says}")


def test_a_dimension_that_changes_between_requests_is_refused(embeddings_endpoint):
    url, handler = embeddings_endpoint(answer="grow")
    model = load_embedding(MODEL, url)
    with pytest.raises(RagError, match=r"answered vectors of mixed dimensions \(65, 66\)"):
        model.encode_documents(["one text"])
