"""Generation: the prompt, the LLM endpoint and its client, and the LLM's errors in one sentence.

Any OpenAI-compatible endpoint works through ``LLM_BASE_URL``, ``LLM_MODEL`` and a key; with none,
the local answerer (:mod:`milvus_rag.local_answerer`) answers the same ``chat.completions`` call."""

import contextlib
import sys
from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import urlparse

from milvus_rag.config import llm_api_key, non_negative_float, positive_int
from milvus_rag.errors import RagError, cause, first_line

MAX_RETRIES = 2  # by the openai client itself, with its backoff: 429, 5xx, dropped connections
PLACEHOLDER_KEY = "no-key"  # sent with no key set: Ollama, vLLM, llama.cpp ignore it; 401 explained
_TYPED_KEYS: dict[str, str] = {}  # endpoint -> what was typed for it in this process (kept in memory only)


class Service(NamedTuple):
    """An OpenAI-compatible service's words in :func:`explain`: its label and its variables."""

    label: str
    key: str
    model: str
    url: str
    limits: str  # what to check when a request is refused (HTTP 400)
    retries: int  # the client's own, with back-off: 429, 5xx, dropped connections


LLM = Service("LLM", "LLM_API_KEY (or LEPTONAI_TOKEN)", "LLM_MODEL", "LLM_BASE_URL",
              "LLM_MODEL, LLM_MAX_TOKENS and the question", MAX_RETRIES)  # fmt: skip
EMBEDDINGS = Service("embedding", "EMBEDDING_API_KEY (or LLM_API_KEY, for the LLM's own URL)",
                     "EMBEDDING_MODEL", "EMBEDDING_BASE_URL",
                     "EMBEDDING_MODEL and the texts' length", 5)  # fmt: skip
# (an ingest sends many requests: a rate limit gets more time, 0.5 s doubled up to 8 s, or as
# the endpoint's Retry-After says)

# The tutorial's system prompt, plus a line asking for citations of the numbered passages, and
# one asking to say so when they do not answer (rather than answer from something near it).
SYSTEM_PROMPT = """
Human: You are an AI assistant. You are able to find answers to the questions from the contextual passage snippets provided.
Cite the numbered passages you use, like [1].
If the passages do not answer the question, say that the documents do not cover it instead of guessing.
"""
# The tutorial's user prompt, as a template.
USER_PROMPT = """
Use the following pieces of information enclosed in <context> tags to provide an answer to the question enclosed in <question> tags.
<context>
{context}
</context>
<question>
{question}
</question>
"""


def build_messages(texts: list[str], question: str) -> list[dict[str, str]]:
    """The system prompt, then the user prompt: texts numbered [1], [2], ... and the question."""
    context = "\n\n".join(f"[{n}] {text.strip()}" for n, text in enumerate(texts, 1))
    user = USER_PROMPT.format(context=context, question=question)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def options() -> dict:
    """``max_tokens`` and ``temperature`` of every request (LLM_MAX_TOKENS, LLM_TEMPERATURE)."""
    return dict(max_tokens=positive_int("LLM_MAX_TOKENS"),
                temperature=non_negative_float("LLM_TEMPERATURE"))  # fmt: skip


def timeout_s() -> float:
    """Seconds per request attempt (``LLM_TIMEOUT``)."""
    if (timeout := non_negative_float("LLM_TIMEOUT")) <= 0:
        raise RagError("LLM_TIMEOUT must be a positive number of seconds: fix or unset it.")
    return timeout


def require_http_url(base_url: str, service: Service = LLM):
    """``base_url`` parsed; refused in one sentence unless it is an http(s) URL."""
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise RagError(f"{service.url}={base_url!r} is not an http(s) URL: set it to an OpenAI-"
                       "compatible endpoint such as https://api.openai.com/v1 or "
                       "http://localhost:11434/v1.")  # fmt: skip
    return parsed


def endpoint(base_url: str, model: str = "", interactive: bool = False) -> tuple[str, str, str]:
    """(base URL, API key, a sentence saying only what is known) for ``base_url``. No URL: the
    local answerer (one per process). No key set: a placeholder, which keyless servers accept;
    ``interactive``: ask for an ``https`` endpoint's key where someone can type (hidden)."""
    if not base_url:
        from milvus_rag import local_answerer
        about = "No LLM_BASE_URL: the local answerer listens on 127.0.0.1, quoting the top passage."
        return local_answerer.base_url(), PLACEHOLDER_KEY, about
    parsed = require_http_url(base_url)
    key = llm_api_key() or _TYPED_KEYS.get(base_url, "")
    asked = base_url in _TYPED_KEYS  # once per process: the cells after the first reuse the answer
    if not key and not asked and interactive and parsed.scheme == "https":
        if "ipykernel" in sys.modules or sys.stdin.isatty():
            import getpass
            print(f"No LLM_API_KEY for {base_url}: type it (hidden), or press Enter to skip.",
                  flush=True)  # fmt: skip
            with contextlib.suppress(Exception):  # papermill, nbmake and CI have no one to ask
                key = getpass.getpass("API key: ").strip()
            _TYPED_KEYS[base_url] = key  # asked once per process: later cells reuse it
    named = f", model {model}" if model else ""
    keyed = "with an API key" if key else "no API key (a placeholder is sent)"
    about = f"LLM endpoint {base_url}{named}, {keyed}: not contacted until the answer cells below."
    return base_url, key or PLACEHOLDER_KEY, about


def client(base_url: str, api_key: str, service: Service = LLM):
    """An ``openai.OpenAI`` client with this project's retries and timeout."""
    from openai import OpenAI
    return OpenAI(api_key=api_key, base_url=base_url, max_retries=service.retries,
                  timeout=timeout_s())  # fmt: skip


def explain(err: Exception, where: str, model: str, service: Service = LLM) -> str | None:
    """One sentence for an ``openai`` error: what happened where, the cause, and what to do."""
    import openai
    body = getattr(err, "body", None)  # the server's own words: {"error": {"message": ...}}
    inner = body.get("error", body) if isinstance(body, dict) else None
    said = inner.get("message") if isinstance(inner, dict) else inner
    said = f"it said: {first_line(str(said or getattr(err, 'message', '') or err))}"
    status = getattr(err, "status_code", None)
    who, retried = f"The {service.label} endpoint {where}", f"after {service.retries} retries"
    # fmt: off
    sentences = [  # the first kind that matches: subclasses before their bases
        (openai.AuthenticationError | openai.PermissionDeniedError,  # not {said}: may echo the key
         f"{who} rejected the API key (HTTP {status}): check {service.key} and "
         "that it is valid for this endpoint."),
        (openai.NotFoundError,
         f"{who} does not know model {model!r} or this API path (HTTP 404; {said}): set "
         f"{service.model} to a model it serves and check {service.url} (it usually ends in /v1)."),
        (openai.RateLimitError,
         f"{who} is rate limiting requests (HTTP 429 {retried}; {said}): wait a minute and run "
         "again, or use a higher plan or another endpoint."),
        (openai.InternalServerError,
         f"{who} failed with a server error (HTTP {status} {retried}; {said}): try again later or "
         "use another endpoint."),
        (openai.APIStatusError,
         f"{who} refused the request (HTTP {status}; {said}): check {service.limits} against "
         "what the endpoint accepts."),
        (openai.APITimeoutError,
         f"{who} did not answer within {timeout_s():g} s ({retried}): check that the server is up "
         "and not overloaded, or raise LLM_TIMEOUT."),
        (openai.APIConnectionError,
         f"Cannot reach the {service.label} endpoint {where} ({cause(err.__cause__ or err)}): "
         f"check {service.url} and your network, and that the server is running."),
        (openai.APIError,  # e.g. an error event in the middle of a stream
         f"{who} reported an error while answering ({said}): run again, or check {service.model} "
         "and the endpoint."),
    ]
    # fmt: on
    return next((sentence for kind, sentence in sentences if isinstance(err, kind)), None)


@contextlib.contextmanager
def llm_errors(base_url: str, model: str, keep_going: bool = False,
               service: Service = LLM) -> Iterator[None]:  # fmt: skip
    """Turn ``openai`` errors into one ``RagError`` sentence naming the endpoint and cause;
    ``keep_going``: print it to stderr instead, so that Run All goes on to cells needing no LLM."""
    import openai
    try:
        yield
    except openai.OpenAIError as err:
        if (message := explain(err, base_url or "the local answerer", model, service)) is None:
            raise
        if not keep_going:
            raise RagError(message) from err
        print(f"RagError: {message}", file=sys.stderr, flush=True)


def stream_text(stream) -> Iterator[str]:
    """The text of a streamed chat completion as it arrives, skipping chunks without text
    (usage reports, keep-alives); the stream is closed however the caller stops reading."""
    try:
        for chunk in stream:
            for choice in chunk.choices or []:
                if text := getattr(choice.delta, "content", None):
                    yield text
    finally:
        stream.close()


def answer(llm, model: str, base_url: str, messages: list[dict], keep_going: bool = False,
           settings: dict | None = None) -> Iterator[str]:  # fmt: skip
    """``llm``'s answer to ``messages``, its pieces as they arrive; an error, before the stream or
    in the middle of it, ends in one ``RagError`` sentence (see :func:`explain`; ``keep_going``:
    printed to stderr instead). ``settings``: :func:`options`, read now if not given."""
    with llm_errors(base_url, model, keep_going):
        response = llm.chat.completions.create(model=model, messages=messages, stream=True,
                                               **(options() if settings is None else settings))  # fmt: skip
        yield from stream_text(response)


def llm_answer(texts: list[str], question: str, base_url: str, model: str,
               interactive: bool = False, keep_going: bool = False) -> Iterator[str]:  # fmt: skip
    """The LLM's answer to ``question`` from the passages ``texts``, its pieces as they arrive: from
    the endpoint ``base_url``; with none, the local answerer's reply, made in this process (the
    same words its server sends, without a server or the openai client: ~1 s less for ``ask``).
    ``keep_going``: an error is printed to stderr and the generator ends (see :func:`llm_errors`)."""
    messages, settings = build_messages(texts, question), options()  # a bad setting: before asking
    if not base_url:
        from milvus_rag.local_answerer import reply as local_reply
        yield local_reply(messages)
        return
    url, key, _ = endpoint(base_url, model, interactive)
    yield from answer(client(url, key), model, base_url, messages, keep_going, settings)


def reply(hits: list, question: str, verdict, base_url: str, model: str, interactive: bool = False,
          keep_going: bool = False, always_answer: bool = False) -> Iterator[str]:  # fmt: skip
    """The reply to ``question`` as it is shown, piece by piece: the ``verdict``'s sentence (a
    :class:`milvus_rag.coverage.Verdict`), the LLM's answer from ``hits`` where it covers the
    question (or ``always_answer``), then the numbered sources (the nearest ones where nothing was
    asked). ``keep_going``: an LLM error is printed to stderr and the sources still follow."""
    from milvus_rag.search import format_hits
    if verdict.sentence:
        yield verdict.sentence + "\n\n"
    asked = verdict.covered or always_answer
    if asked:
        answered = False  # an LLM error said on stderr (keep_going): the sources follow at once
        for piece in llm_answer([hit.text for hit in hits], question, base_url, model,
                                interactive, keep_going):  # fmt: skip
            answered = True
            yield piece
        if answered:
            yield "\n\n"
    yield ("Sources:\n" if asked else "Nearest sources:\n") + format_hits(hits) + "\n"
