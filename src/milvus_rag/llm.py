"""The LLM client: any OpenAI-compatible endpoint, or the local answerer when none is set."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

from milvus_rag.errors import RagError
from milvus_rag.settings import llm_api_key

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
MAX_RETRIES = 2
"""Retries of the openai client itself (429, 5xx, connection errors), with its own backoff."""
TIMEOUT_S = 60.0
"""Seconds to wait for each attempt; ``LLM_TIMEOUT`` overrides it."""


def timeout_s() -> float:
    try:
        value = float(os.environ.get("LLM_TIMEOUT", "") or TIMEOUT_S)
    except ValueError:
        value = 0
    if value <= 0:
        raise RagError("LLM_TIMEOUT must be a positive number of seconds: fix or unset it.")
    return value


_local_servers: dict[int, object] = {}


@dataclass
class LLM:
    """An ``openai.OpenAI`` client, the model to ask, and one line saying what it is."""

    client: object
    model: str
    description: str
    endpoint: str = "the local answerer"


def _interactive_key(base_url: str) -> str:
    """Ask for the key without echoing it, where someone can type it (JupyterLab, a terminal)."""
    import getpass
    import sys

    try:
        if "ipykernel" not in sys.modules and not sys.stdin.isatty():
            return ""
        return getpass.getpass(f"API key for {base_url} (input hidden): ").strip()
    except Exception:  # papermill, nbmake and CI have no one to ask
        return ""


def connect_llm(base_url: str, model: str, embedding, interactive: bool = False) -> LLM:
    """An LLM for ``base_url``; with no URL, the local extractive answerer (started once)."""
    import openai

    if not base_url:
        from milvus_rag.local_answerer import MODEL_NAME, LocalAnswererServer

        server = _local_servers.get(id(embedding))
        if server is None:
            server = _local_servers[id(embedding)] = LocalAnswererServer(embedding)
        client = openai.OpenAI(base_url=server.base_url, api_key="local-no-key")
        return LLM(
            client,
            MODEL_NAME,
            (
                "No LLM endpoint configured (LLM_BASE_URL): answering with the local extractive "
                "answerer on 127.0.0.1, which quotes the best retrieved passage."
            ),
        )
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise RagError(
            f"LLM_BASE_URL={base_url!r} is not an http(s) URL: set it to an OpenAI-compatible "
            "endpoint such as https://api.openai.com/v1 or http://localhost:11434/v1."
        )
    key = llm_api_key()
    if not key and parsed.hostname not in LOCAL_HOSTS and interactive:
        key = _interactive_key(base_url)
    if not key:
        if parsed.hostname not in LOCAL_HOSTS:
            raise RagError(
                f"No API key for {base_url}: set LLM_API_KEY (or LEPTONAI_TOKEN) in the "
                "environment before starting Jupyter or the command."
            )
        key = "no-key-needed"
    client = openai.OpenAI(
        base_url=base_url, api_key=key, max_retries=MAX_RETRIES, timeout=timeout_s()
    )
    return LLM(client, model, f"Using the LLM endpoint {base_url} with model {model}.", base_url)


def _explain(err: Exception, llm: LLM) -> str | None:
    """One sentence for an ``openai`` error: what happened at which endpoint, and what to do.

    The server's own message is left out on purpose: some echo part of the key.
    """
    import openai

    where = llm.endpoint
    status = getattr(err, "status_code", None)
    if isinstance(err, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return (
            f"The LLM endpoint {where} rejected the API key (HTTP {status}): check "
            "LLM_API_KEY (or LEPTONAI_TOKEN) and that it is valid for this endpoint."
        )
    if isinstance(err, openai.NotFoundError):
        return (
            f"The LLM endpoint {where} does not know model {llm.model!r} or this API path "
            "(HTTP 404): set LLM_MODEL to a model it serves and check LLM_BASE_URL (it "
            "usually ends in /v1)."
        )
    if isinstance(err, openai.RateLimitError):
        return (
            f"The LLM endpoint {where} is rate limiting requests (HTTP 429, still after "
            f"{MAX_RETRIES} retries): wait a minute and run again, or use a plan or "
            "endpoint with a higher limit."
        )
    if isinstance(err, openai.InternalServerError):
        return (
            f"The LLM endpoint {where} failed with a server error (HTTP {status}, still "
            f"after {MAX_RETRIES} retries): try again later or use another endpoint."
        )
    if isinstance(err, openai.APITimeoutError):
        return (
            f"The LLM endpoint {where} did not answer within {timeout_s():g} s (after "
            f"{MAX_RETRIES} retries): check that the server is up and not overloaded, or "
            "use another LLM_BASE_URL."
        )
    if isinstance(err, openai.APIConnectionError):
        return (
            f"Cannot reach the LLM endpoint {where}: check LLM_BASE_URL and your network, "
            "and that the server is running."
        )
    if isinstance(err, openai.APIStatusError):
        return (
            f"The LLM endpoint {where} refused the request (HTTP {status}): check "
            "LLM_BASE_URL, LLM_MODEL and LLM_API_KEY."
        )
    return None


@contextlib.contextmanager
def llm_errors(llm: LLM) -> Iterator[None]:
    """Turn the ``openai`` client's errors into one clear ``RagError`` sentence."""
    import openai

    try:
        yield
    except openai.OpenAIError as err:
        message = _explain(err, llm)
        if message is None:
            raise
        raise RagError(message) from None


def stream_text(llm: LLM, messages: list[dict[str, str]]) -> Iterator[str]:
    """The answer's text as it arrives (``stream=True``), with errors as ``RagError``."""
    with llm_errors(llm):
        stream = llm.client.chat.completions.create(model=llm.model, messages=messages, stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content


def complete_text(llm: LLM, messages: list[dict[str, str]]) -> str:
    """The whole answer at once (no streaming), with errors as ``RagError``."""
    with llm_errors(llm):
        response = llm.client.chat.completions.create(model=llm.model, messages=messages)
    return response.choices[0].message.content or ""
