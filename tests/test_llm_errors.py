"""Every way an OpenAI-compatible endpoint fails ends in one sentence, never a traceback.

The real ``openai`` client talks to a small HTTP server on 127.0.0.1 that answers with the
status under test (or not at all). A canary key checks that no secret is ever printed.
"""

import socket

import pytest
from helpers import run_cli

from milvus_rag.errors import RagError
from milvus_rag.llm import LLM, complete_text, connect_llm, stream_text

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture()
def endpoint(request, failing_endpoint):
    return failing_endpoint(request.param)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


EXPECTED = {
    401: "rejected the API key (HTTP 401)",
    403: "rejected the API key (HTTP 403)",
    404: "does not know model 'test-model'",
    429: "rate limiting requests (HTTP 429, still after 2 retries)",
    500: "server error (HTTP 500, still after 2 retries)",
    503: "server error (HTTP 503, still after 2 retries)",
    0: "did not answer within 0.5 s",
}
ATTEMPTS = {401: 1, 403: 1, 404: 1, 429: 3, 500: 3, 503: 3}


@pytest.mark.parametrize("endpoint", list(EXPECTED), indirect=True)
@pytest.mark.parametrize("stream", [False, True])
def test_endpoint_failures_become_one_sentence(endpoint, stream, canary_key, monkeypatch):
    url, handler = endpoint
    monkeypatch.setenv("LLM_API_KEY", canary_key)
    monkeypatch.setenv("LLM_TIMEOUT", "0.5")
    llm = connect_llm(url, "test-model", embedding=None)
    with pytest.raises(RagError) as info:
        "".join(stream_text(llm, MESSAGES)) if stream else complete_text(llm, MESSAGES)
    message = str(info.value)
    assert EXPECTED[handler.status] in message
    assert url in message
    assert canary_key not in message and canary_key[:8] not in message
    assert "\n" not in message
    assert handler.requests and all(h == f"Bearer {canary_key}" for h in handler.requests)
    if handler.status in ATTEMPTS:  # the openai client's own retries, no loop of ours
        assert len(handler.requests) == ATTEMPTS[handler.status]


def test_unreachable_endpoint(canary_key, monkeypatch):
    url = closed_port_url()
    monkeypatch.setenv("LLM_API_KEY", canary_key)
    llm = connect_llm(url, "m", embedding=None)
    with pytest.raises(RagError, match=r"Cannot reach the LLM endpoint http://127\.0\.0\.1:\d+/v1"):
        complete_text(llm, MESSAGES)


def test_other_openai_errors_are_not_hidden():
    class Broken:
        class chat:  # noqa: N801
            class completions:  # noqa: N801
                @staticmethod
                def create(**kwargs):
                    raise ValueError("a bug, not a user error")

    with pytest.raises(ValueError):
        complete_text(LLM(Broken(), "m", "", "x"), MESSAGES)


@pytest.fixture(scope="module")
def ingested_uri(tmp_path_factory, docs_zip):
    """One collection for all the CLI cases, so each runs only retrieval and generation."""
    uri = str(tmp_path_factory.mktemp("llm") / "llm.db")
    env = {"MILVUS_DOCS_ZIP": str(docs_zip), "MILVUS_URI": uri, "EMBEDDING_MODEL": "minilm"}
    result = run_cli("ingest", env=env)
    assert result.returncode == 0, result.stderr
    return uri


def run_cli_ask(url: str, uri: str, key: str):
    env = {
        "LLM_BASE_URL": url,
        "LLM_API_KEY": key,
        "LLM_MODEL": "test-model",
        "LLM_TIMEOUT": "0.5",
        "MILVUS_URI": uri,
        "EMBEDDING_MODEL": "minilm",
    }
    return run_cli("ask", "How is data stored in milvus?", env=env)


@pytest.mark.parametrize("endpoint", [401, 404, 429, 503, 0], indirect=True)
def test_cli_exits_non_zero_with_one_line(endpoint, ingested_uri, canary_key):
    url, handler = endpoint
    result = run_cli_ask(url, ingested_uri, canary_key)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: The LLM endpoint " + url)
    assert EXPECTED[handler.status] in last
    assert canary_key not in result.stdout + result.stderr
    assert canary_key[:8] not in result.stdout + result.stderr


def test_cli_unreachable_endpoint(ingested_uri, canary_key):
    url = closed_port_url()
    result = run_cli_ask(url, ingested_uri, canary_key)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: Cannot reach the LLM endpoint {url}")
    )
    assert canary_key not in result.stdout + result.stderr
