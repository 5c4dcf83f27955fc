"""Generation: the prompt, the LLM endpoint, and its errors in one sentence.

Any OpenAI-compatible endpoint works through ``LLM_BASE_URL``, ``LLM_MODEL`` and a key; with
no endpoint configured, the local answerer (:mod:`milvus_rag.local_answerer`) takes its place,
so the call is the same ``client.chat.completions.create(...)`` either way.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from urllib.parse import urlparse

from milvus_rag.config import llm_api_key, non_negative_float, positive_int
from milvus_rag.errors import RagError, cause, first_line

MAX_RETRIES = 2
"""Retries of the openai client itself (429, 5xx, dropped connections), with its backoff."""

PLACEHOLDER_KEY = "no-key"
"""Sent when no key is set: Ollama, vLLM and llama.cpp ignore it; a real 401 is explained."""

SYSTEM_PROMPT = """
Human: You are an AI assistant. You are able to find answers to the questions from the contextual passage snippets provided.
Cite the numbered passages you use, like [1].
"""
"""The tutorial's system prompt, plus one line asking for citations of the numbered passages."""

USER_PROMPT = """
Use the following pieces of information enclosed in <context> tags to provide an answer to the question enclosed in <question> tags.
<context>
{context}
</context>
<question>
{question}
</question>
"""
"""The tutorial's user prompt, as a template."""


def build_messages(texts: list[str], question: str) -> list[dict[str, str]]:
    """The chat messages: the system prompt, then the retrieved texts numbered [1], [2], ...

    and the question."""
    context = "\n\n".join(f"[{n}] {text.strip()}" for n, text in enumerate(texts, 1))
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_PROMPT.format(context=context, question=question)},
    ]


def options() -> dict:
    """``max_tokens`` and ``temperature`` for every request (``LLM_MAX_TOKENS``, ``LLM_TEMPERATURE``)."""
    return {
        "max_tokens": positive_int("LLM_MAX_TOKENS"),
        "temperature": non_negative_float("LLM_TEMPERATURE"),
    }


def timeout_s() -> float:
    timeout = non_negative_float("LLM_TIMEOUT")
    if timeout <= 0:
        raise RagError("LLM_TIMEOUT must be a positive number of seconds: fix or unset it.")
    return timeout


def _ask_for_key(base_url: str) -> str:
    """A key typed in without echo, where someone can type (JupyterLab, a terminal); else ""."""
    import getpass

    if "ipykernel" not in sys.modules and not sys.stdin.isatty():
        return ""
    print(
        f"No LLM_API_KEY in the environment for {base_url}: type the key below (hidden), or press "
        "Enter to go on without one. (Set LLM_API_KEY before starting Jupyter to skip this.)",
        flush=True,
    )
    try:
        return getpass.getpass("API key: ").strip()
    except Exception:  # papermill, nbmake and CI have no one to ask
        return ""


def endpoint(base_url: str, interactive: bool = False) -> tuple[str, str, str]:
    """(base URL, API key, a sentence saying what answers) for ``LLM_BASE_URL`` ``base_url``.

    No URL: the local answerer, started once in this process. No key in the environment: a
    placeholder, which keyless servers (Ollama, vLLM, llama.cpp) accept; with ``interactive``,
    an ``https`` endpoint (a hosted provider, which needs a key) first asks for one.
    """
    if not base_url:
        from milvus_rag import local_answerer

        return (
            local_answerer.base_url(),
            PLACEHOLDER_KEY,
            "No LLM endpoint configured (LLM_BASE_URL): the local answerer on 127.0.0.1 answers "
            "by quoting the best retrieved passage.",
        )
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise RagError(
            f"LLM_BASE_URL={base_url!r} is not an http(s) URL: set it to an OpenAI-compatible "
            "endpoint such as https://api.openai.com/v1 or http://localhost:11434/v1."
        )
    key = llm_api_key()
    if not key and interactive and parsed.scheme == "https":
        key = _ask_for_key(base_url)
    return base_url, key or PLACEHOLDER_KEY, f"The LLM endpoint {base_url} answers."


def client(base_url: str, api_key: str):
    """An ``openai.OpenAI`` client with this project's retries and timeout."""
    from openai import OpenAI

    return OpenAI(api_key=api_key, base_url=base_url, max_retries=MAX_RETRIES, timeout=timeout_s())


def _server_message(err) -> str:
    """The endpoint's own error message (never for 401/403: providers may echo the key)."""
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return first_line(str(message))
    return first_line(getattr(err, "message", "") or str(err))


def explain(err: Exception, where: str, model: str) -> str | None:
    """One sentence for an ``openai`` error: what happened where, the cause, and what to do."""
    import openai

    status = getattr(err, "status_code", None)
    if isinstance(err, openai.AuthenticationError | openai.PermissionDeniedError):
        return (
            f"The LLM endpoint {where} rejected the API key (HTTP {status}): check LLM_API_KEY "
            "(or LEPTONAI_TOKEN) and that it is valid for this endpoint."
        )
    said = f"it said: {_server_message(err)}"
    if isinstance(err, openai.NotFoundError):
        return (
            f"The LLM endpoint {where} does not know model {model!r} or this API path (HTTP 404; "
            f"{said}): set LLM_MODEL to a model it serves and check LLM_BASE_URL (it usually "
            "ends in /v1)."
        )
    if isinstance(err, openai.RateLimitError):
        return (
            f"The LLM endpoint {where} is rate limiting requests (HTTP 429 after {MAX_RETRIES} "
            f"retries; {said}): wait a minute and run again, or use a higher plan or another "
            "endpoint."
        )
    if isinstance(err, openai.InternalServerError):
        return (
            f"The LLM endpoint {where} failed with a server error (HTTP {status} after "
            f"{MAX_RETRIES} retries; {said}): try again later or use another endpoint."
        )
    if isinstance(err, openai.APIStatusError):
        return (
            f"The LLM endpoint {where} refused the request (HTTP {status}; {said}): check "
            "LLM_MODEL, LLM_MAX_TOKENS and the question against what the endpoint accepts."
        )
    if isinstance(err, openai.APITimeoutError):
        return (
            f"The LLM endpoint {where} did not answer within {timeout_s():g} s (after "
            f"{MAX_RETRIES} retries): check that the server is up and not overloaded, or raise "
            "LLM_TIMEOUT."
        )
    if isinstance(err, openai.APIConnectionError):
        reason = cause(err.__cause__) if err.__cause__ else cause(err)
        return (
            f"Cannot reach the LLM endpoint {where} ({reason}): check LLM_BASE_URL and your "
            "network, and that the server is running."
        )
    if isinstance(err, openai.APIError):  # e.g. an error event in the middle of a stream
        return (
            f"The LLM endpoint {where} reported an error while answering ({said}): run again, "
            "or check LLM_MODEL and the endpoint."
        )
    return None


@contextlib.contextmanager
def llm_errors(base_url: str, model: str, keep_going: bool = False) -> Iterator[None]:
    """Turn ``openai`` errors into one ``RagError`` sentence naming the endpoint and cause.

    ``keep_going``: print the sentence instead of raising, so that a notebook's Run All goes
    on to the cells that need no LLM.
    """
    import openai

    where = base_url or "the local answerer"
    try:
        yield
    except openai.OpenAIError as err:
        message = explain(err, where, model)
        if message is None:
            raise
        if not keep_going:
            raise RagError(message) from err
        print(f"\nRagError: {message}", file=sys.stderr, flush=True)


def stream_text(stream) -> Iterator[str]:
    """The text of a streamed chat completion as it arrives.

    Chunks without choices (usage reports, keep-alives) and without text are skipped; the
    stream is closed however the caller stops reading.
    """
    try:
        for chunk in stream:
            for choice in chunk.choices or []:
                text = getattr(choice.delta, "content", None) if choice.delta else None
                if text:
                    yield text
    finally:
        stream.close()


def answer(
    llm, model: str, base_url: str, messages: list[dict[str, str]], stream: bool
) -> Iterable[str]:
    """The answer to ``messages``: its pieces as they arrive (``stream``), or the whole of it.

    Errors end in one ``RagError`` sentence (see :func:`explain`).
    """
    with llm_errors(base_url, model):
        if not stream:
            response = llm.chat.completions.create(model=model, messages=messages, **options())
            return [response.choices[0].message.content or "" if response.choices else ""]
    return _streamed(llm, model, base_url, messages)


def _streamed(llm, model: str, base_url: str, messages) -> Iterator[str]:
    with llm_errors(base_url, model):
        response = llm.chat.completions.create(
            model=model, messages=messages, stream=True, **options()
        )
        yield from stream_text(response)
