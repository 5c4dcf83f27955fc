"""Generation: the prompt, the request options, the endpoint, its key and its status line, and
every way an OpenAI-compatible endpoint fails ending in one sentence.

The real ``openai`` client talks to small servers on the loopback range: ``failing_endpoint``
(one HTTP status for every request, or no answer at all) and the recording server below, which
keeps each request and answers a fixed text or the server-sent events a test scripts. A canary
key checks that no secret is ever shown.
"""

from __future__ import annotations

import io
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

import openai
import openai._base_client
import pytest
from openai.types.chat import ChatCompletionChunk

from milvus_rag import local_answerer
from milvus_rag.errors import RagError
from milvus_rag.generation import (
    MAX_RETRIES,
    PLACEHOLDER_KEY,
    SYSTEM_PROMPT,
    answer,
    build_messages,
    client,
    endpoint,
    llm_errors,
    options,
    stream_text,
)

MESSAGES = [{"role": "user", "content": "How is data stored in milvus?"}]
REPLY = "Milvus stores inserted data in object storage as incremental logs [1]."


@pytest.fixture()
def quick_retries(monkeypatch):
    """The openai client's own retries (2) still happen, with 10 ms instead of 0.5-1 s backoff."""
    monkeypatch.setattr(openai._base_client, "INITIAL_RETRY_DELAY", 0.01)


def one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith("."), message


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def ask_pieces(url: str, model: str = "test-model", messages=MESSAGES):
    """The answer through the project's own path: endpoint(), client(), answer()."""
    base_url, key, _ = endpoint(url)
    return answer(client(base_url, key), model, url, messages)


def ask(url: str, **kwargs) -> str:
    return "".join(ask_pieces(url, **kwargs))


def sse(payload: dict | str, event: str | None = None) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return (f"event: {event}\n" if event else "") + f"data: {data}\n\n"


def chunk(text: str | None = None, choices: list | None = None, **extra) -> dict:
    if choices is None:
        choices = [{"index": 0, "delta": {} if text is None else {"content": text}}]
    return {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": choices, **extra}


class Recorder(BaseHTTPRequestHandler):
    """Keeps each request's JSON body and Authorization header; streams ``REPLY`` in two pieces,
    or the scripted ``frames``."""

    frames: list[str] | None = None

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        type(self).auth.append(self.headers.get("Authorization", ""))
        frames = self.frames or [sse(chunk("Milvus ")), sse(chunk(REPLY[7:])), sse("[DONE]")]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write("".join(frames).encode())


@pytest.fixture()
def recording_endpoint(serve_endpoint):
    """``start(host="127.0.0.1", frames=None) -> (base_url, handler)``."""

    def start(host: str = "127.0.0.1", frames: list[str] | None = None):
        handler = type("Recording", (Recorder,), {"bodies": [], "auth": [], "frames": frames})
        return serve_endpoint(handler, host), handler

    return start


@pytest.fixture()
def library_request(recording_endpoint):
    """A request as the openai client itself builds and sends it (its errors carry one; each
    release may read more of it, so no test makes up its own)."""
    url, _ = recording_endpoint()
    stream = client(*endpoint(url)[:2]).chat.completions.create(
        model="m", messages=MESSAGES, stream=True
    )
    stream.close()
    return stream.response.request


@pytest.fixture(autouse=True)
def nothing_typed_yet(monkeypatch):
    """Each test starts in a process where no key was typed (generation keeps what was)."""
    from milvus_rag import generation

    monkeypatch.setattr(generation, "_TYPED_KEYS", {})


# --------------------------------------------------------------------------- prompt and options


def test_build_messages_numbers_the_stripped_passages_in_the_tutorials_prompt():
    messages = build_messages(["  first text\n", "second\ntext"], "What is Milvus?")
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert messages[1] == {
        "role": "user",
        "content": "\nUse the following pieces of information enclosed in <context> tags to provide "
        "an answer to the question enclosed in <question> tags.\n"
        "<context>\n[1] first text\n\n[2] second\ntext\n</context>\n"
        "<question>\nWhat is Milvus?\n</question>\n",
    }


def test_the_system_prompt_is_the_tutorials_and_asks_to_cite_and_to_say_when_not_covered():
    tutorial = ("\nHuman: You are an AI assistant. You are able to find answers to the questions "
                "from the contextual passage snippets provided.\n")  # fmt: skip
    assert SYSTEM_PROMPT.startswith(tutorial)
    assert SYSTEM_PROMPT[len(tutorial):].splitlines() == [
        "Cite the numbered passages you use, like [1].",
        "If the passages do not answer the question, say that the documents do not cover it "
        "instead of guessing."]  # fmt: skip


@pytest.mark.parametrize(
    ("env", "sent"),
    [({}, (400, 0.0)), ({"LLM_MAX_TOKENS": " 64 ", "LLM_TEMPERATURE": "0.25"}, (64, 0.25))],
)
def test_every_request_carries_the_options(recording_endpoint, monkeypatch, env, sent):
    """The README's defaults (400 tokens, temperature 0), or the variables' values."""
    url, handler = recording_endpoint()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert ask(url) == ask(url) == REPLY
    for body in handler.bodies:
        assert (body["max_tokens"], body["temperature"]) == sent
        assert (body["model"], body["messages"], body["stream"]) == ("test-model", MESSAGES, True)


def test_a_bad_option_is_one_sentence_before_any_request(recording_endpoint, monkeypatch):
    url, handler = recording_endpoint()
    monkeypatch.setenv("LLM_MAX_TOKENS", "lots")
    with pytest.raises(RagError, match="LLM_MAX_TOKENS") as info:
        ask(url)
    one_sentence(str(info.value))
    assert handler.bodies == []


def test_client_has_the_projects_retries_and_timeout(monkeypatch):
    monkeypatch.setenv("LLM_TIMEOUT", "7.5")
    llm = client("http://127.0.0.1:9/v1", PLACEHOLDER_KEY)
    assert (llm.max_retries, llm.timeout) == (MAX_RETRIES, 7.5)
    monkeypatch.setenv("LLM_TIMEOUT", "0")
    with pytest.raises(RagError, match="^LLM_TIMEOUT must be a positive number") as info:
        client("http://127.0.0.1:9/v1", PLACEHOLDER_KEY)
    one_sentence(str(info.value))


# --------------------------------------------------------------------------- endpoint, key, status


def test_no_url_is_the_local_answerer_and_says_only_that_it_listens():
    base_url, key, about = endpoint("")
    assert (base_url, key) == (local_answerer.base_url(), PLACEHOLDER_KEY)
    assert about == (
        "No LLM_BASE_URL: the local answerer listens on 127.0.0.1, quoting the top passage."
    )
    messages = build_messages(["Milvus stores inserted data in object storage as logs."], "Where?")
    assert ask("", messages=messages) == (
        "Milvus stores inserted data in object storage as logs. [1]"
    )


def test_the_status_line_of_an_endpoint_claims_nothing_unchecked(monkeypatch, canary_key):
    """Nothing listens on a closed port: the line must not say the endpoint answers."""
    url = closed_port_url()
    assert endpoint(url, "mistral-7b") == (
        url,
        PLACEHOLDER_KEY,
        f"LLM endpoint {url}, model mistral-7b, no API key (a placeholder is sent): not contacted "
        "until the answer cells below.",
    )
    monkeypatch.setenv("LLM_API_KEY", canary_key)
    assert endpoint(url)[1:] == (
        canary_key,
        f"LLM endpoint {url}, with an API key: not contacted until the answer cells below.",
    )


@pytest.mark.parametrize("base_url", ["localhost:11434/v1", "ftp://example.com/v1", "https://"])
def test_a_url_that_is_not_http_is_one_sentence(monkeypatch, canary_key, base_url):
    monkeypatch.setenv("LLM_API_KEY", canary_key)
    with pytest.raises(RagError) as info:
        endpoint(base_url)
    message = str(info.value)
    assert message == (
        f"LLM_BASE_URL={base_url!r} is not an http(s) URL: set it to an OpenAI-compatible "
        "endpoint such as https://api.openai.com/v1 or http://localhost:11434/v1."
    )
    assert canary_key not in message
    one_sentence(message)


def test_a_keyless_endpoint_off_localhost_gets_the_placeholder(recording_endpoint):
    url, handler = recording_endpoint(host="127.0.0.2")  # Ollama or vLLM on another host
    assert ask(url) == REPLY
    assert handler.auth == [f"Bearer {PLACEHOLDER_KEY}"]


@pytest.mark.parametrize(
    "variables", [("LLM_API_KEY",), ("LEPTONAI_TOKEN",), ("LLM_API_KEY", "LEPTONAI_TOKEN")]
)
def test_the_key_is_sent_and_never_shown(
    recording_endpoint, monkeypatch, capfd, canary_key, variables
):
    url, handler = recording_endpoint()
    for name in reversed(variables):  # LLM_API_KEY wins: the other one holds another key
        monkeypatch.setenv(name, canary_key if name == variables[0] else "lepton-token")
    _, key, about = endpoint(url, interactive=True)
    assert key == canary_key and canary_key[:8] not in about
    assert ask(url) == REPLY
    assert handler.auth == [f"Bearer {canary_key}"]
    assert canary_key[:8] not in "".join(capfd.readouterr())


@pytest.fixture()
def terminal(monkeypatch):
    """Someone at a terminal: ``getpass`` records that it was called and types ``typed``."""
    import getpass

    state = SimpleNamespace(asked=0, typed="  typed-key-123  ", prompt=None)

    def fake_getpass(prompt="Password: ", stream=None):
        state.asked += 1
        state.prompt = prompt
        if state.typed is None:
            raise EOFError("no one to ask")
        return state.typed

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(isatty=lambda: True))
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    return state


@pytest.mark.parametrize(
    ("base_url", "interactive", "typed", "key"),
    [
        ("https://api.example.com/v1", True, "  typed-key-123  ", "typed-key-123"),
        ("https://api.example.com/v1", True, "   ", PLACEHOLDER_KEY),  # Enter: go on without
        ("https://api.example.com/v1", True, None, PLACEHOLDER_KEY),  # no one to ask after all
        ("http://gpu-box.lan:8000/v1", True, "typed", PLACEHOLDER_KEY),  # not asked: http
        ("https://api.example.com/v1", False, "typed", PLACEHOLDER_KEY),  # not asked
    ],
)
def test_asks_for_a_key_only_for_https_when_interactive(
    terminal, capsys, base_url, interactive, typed, key
):
    terminal.typed = typed
    ask = {"interactive": True} if interactive else {}  # not interactive unless asked to be
    assert endpoint(base_url, **ask)[1] == key
    asked = interactive and base_url.startswith("https")
    assert terminal.asked == asked and terminal.prompt == ("API key: " if asked else None)
    notice = capsys.readouterr().out
    assert (f"No LLM_API_KEY for {base_url}: type it (hidden)" in notice) is asked
    assert "typed-key" not in notice


def test_a_typed_key_is_asked_once_per_process_and_reused_by_the_cells_after(terminal):
    url = "https://api.example.com/v1"
    assert endpoint(url, interactive=True)[1] == "typed-key-123"
    assert endpoint(url, interactive=True)[1] == "typed-key-123" and terminal.asked == 1
    assert endpoint("https://other.example.com/v1", interactive=True)[1] == "typed-key-123"
    assert terminal.asked == 2  # another endpoint: asked for its own key


def test_does_not_ask_without_a_terminal_or_jupyter_nor_when_a_key_is_set(
    terminal, monkeypatch, canary_key
):
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    assert endpoint("https://api.example.com/v1", interactive=True)[1] == PLACEHOLDER_KEY
    monkeypatch.setitem(sys.modules, "ipykernel", SimpleNamespace())  # JupyterLab: no tty
    assert endpoint("https://api.example.com/v1", interactive=True)[1] == "typed-key-123"
    monkeypatch.setenv("LEPTONAI_TOKEN", canary_key)
    assert endpoint("https://api.example.com/v1", interactive=True)[1] == canary_key
    assert terminal.asked == 1


# --------------------------------------------------------------------------- failures in one sentence


SAID = {
    400: "This model's maximum context length is 4096 tokens",
    404: "The model `test-model` does not exist",
    429: "Rate limit reached for requests per min",
    503: "The engine is currently overloaded, please try again later",
}
EXPECTED = {
    400: "refused the request (HTTP 400;",
    404: "does not know model 'test-model' or this API path (HTTP 404;",
    429: f"is rate limiting requests (HTTP 429 after {MAX_RETRIES} retries;",
    503: f"failed with a server error (HTTP 503 after {MAX_RETRIES} retries;",
}
ATTEMPTS = {400: 1, 404: 1, 429: 1 + MAX_RETRIES, 503: 1 + MAX_RETRIES}
ADVICE = {  # what the sentence tells the user to do, after the server's words
    400: "check LLM_MODEL, LLM_MAX_TOKENS and the question against what the endpoint accepts.",
    404: "set LLM_MODEL to a model it serves and check LLM_BASE_URL (it usually ends in /v1).",
    429: "wait a minute and run again, or use a higher plan or another endpoint.",
    503: "try again later or use another endpoint.",
}


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_key_is_one_sentence_without_the_servers_words(failing_endpoint, monkeypatch, capfd, canary_key, status):  # fmt: skip
    url, handler = failing_endpoint(status)  # its message echoes the key's first 8 characters
    monkeypatch.setenv("LLM_API_KEY", canary_key)
    with pytest.raises(RagError) as info:
        ask(url)
    assert str(info.value) == (
        f"The LLM endpoint {url} rejected the API key (HTTP {status}): check LLM_API_KEY "
        "(or LEPTONAI_TOKEN) and that it is valid for this endpoint."
    )
    assert isinstance(info.value.__cause__, openai.APIStatusError)
    assert handler.requests == [f"Bearer {canary_key}"]  # no retry of a rejected key
    assert canary_key[:8] not in "".join(capfd.readouterr())


@pytest.mark.parametrize("status", [400, 404, 429, 503])
def test_an_http_error_is_one_sentence_with_the_servers_words(failing_endpoint, quick_retries, status):  # fmt: skip
    url, handler = failing_endpoint(status, SAID[status])
    with pytest.raises(RagError) as info:
        ask(url)
    message = str(info.value)
    said, advice = SAID[status], ADVICE[status]
    assert message == f"The LLM endpoint {url} {EXPECTED[status]} it said: {said}): {advice}"
    one_sentence(message)
    assert len(handler.requests) == ATTEMPTS[status]  # the client's own retries, none of ours


def test_only_the_first_line_of_the_servers_words_is_quoted(failing_endpoint):
    url, _ = failing_endpoint(400, "context too long " + "x" * 2000 + "\nsecond line")
    with pytest.raises(RagError) as info:
        ask(url)
    assert "it said: context too long x" in str(info.value) and len(str(info.value)) < 600
    one_sentence(str(info.value))


def test_no_answer_in_time_is_one_sentence(failing_endpoint, monkeypatch, quick_retries):
    url, handler = failing_endpoint(0)  # never answers
    monkeypatch.setenv("LLM_TIMEOUT", "0.1")
    with pytest.raises(RagError) as info:
        ask(url)
    assert str(info.value) == (
        f"The LLM endpoint {url} did not answer within 0.1 s (after {MAX_RETRIES} retries): check "
        "that the server is up and not overloaded, or raise LLM_TIMEOUT."
    )
    assert len(handler.requests) == 1 + MAX_RETRIES


def test_an_unreachable_endpoint_is_one_sentence_with_the_cause(quick_retries):
    url = closed_port_url()
    with pytest.raises(RagError) as info:
        ask(url)
    message = str(info.value)
    assert message.startswith(f"Cannot reach the LLM endpoint {url} (ConnectError: ")
    assert "refused" in message.lower()
    assert message.endswith(
        "): check LLM_BASE_URL and your network, and that the server is running."
    )
    one_sentence(message)


def test_the_local_answerer_is_named_when_no_url_is_set(library_request):
    with pytest.raises(RagError, match="^Cannot reach the LLM endpoint the local answerer "):
        with llm_errors("", "m"):
            raise openai.APIConnectionError(request=library_request)


@pytest.mark.parametrize("error", [ValueError("a bug"), openai.OpenAIError("not an API error")])
def test_errors_that_are_not_the_endpoints_pass_through_unchanged(capsys, error):
    with pytest.raises(type(error)) as info:
        with llm_errors("http://x/v1", "m", keep_going=True):
            raise error
    assert info.value is error
    assert capsys.readouterr() == ("", "")


ERROR_EVENT = sse({"error": {"message": "overloaded", "type": "server_error"}}, event="error")


def test_an_error_event_mid_stream_comes_after_the_text_before_it(recording_endpoint):
    url, _ = recording_endpoint(frames=[sse(chunk("Milvus ")), ERROR_EVENT, sse(chunk("never"))])
    pieces = []
    with pytest.raises(RagError) as info:
        for piece in ask_pieces(url):
            pieces.append(piece)
    assert pieces == ["Milvus "]
    assert str(info.value) == (
        f"The LLM endpoint {url} reported an error while answering (it said: overloaded): "
        "run again, or check LLM_MODEL and the endpoint."
    )


def test_the_notebooks_answer_cell_prints_the_sentence_on_its_own_and_goes_on(recording_endpoint, capsys):  # fmt: skip
    """The notebook's cell, verbatim: the text so far, then the sentence as stderr's one line
    (a block of its own in a notebook), no blank line before it."""
    url, _ = recording_endpoint(frames=[sse(chunk("Partial ")), ERROR_EVENT])
    llm = client(*endpoint(url)[:2])
    with llm_errors(url, "test-model", keep_going=True):
        response = llm.chat.completions.create(
            model="test-model", messages=MESSAGES, stream=True, **options()
        )
        for text in stream_text(response):
            print(text, end="", flush=True)
    assert capsys.readouterr() == (
        "Partial ",
        f"RagError: The LLM endpoint {url} reported an error while answering (it said: "
        "overloaded): run again, or check LLM_MODEL and the endpoint.\n",
    )


# --------------------------------------------------------------------------- reading answers


def test_chunks_without_text_are_skipped(recording_endpoint):
    """Other providers' streams: keep-alive comments, empty choices, deltas without content,
    and the usage-only chunk of ``stream_options``."""
    frames = [
        ": keep-alive comment\n\n",
        sse(chunk("")),
        sse(chunk(choices=[])),
        sse(chunk("Milvus ")),
        sse(chunk(None)),
        sse(chunk(choices=[{"index": 0, "delta": {"content": None}}])),
        sse(chunk("stores data.")),
        sse(
            chunk(choices=[], usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
        ),
        sse("[DONE]"),
    ]
    url, _ = recording_endpoint(frames=frames)
    assert list(ask_pieces(url)) == ["Milvus ", "stores data."]


def test_the_stream_is_closed_when_the_reader_stops_early(recording_endpoint):
    url, _ = recording_endpoint()
    response = client(*endpoint(url)[:2]).chat.completions.create(
        model="m", messages=MESSAGES, stream=True
    )
    pieces = stream_text(response)
    assert next(pieces) == "Milvus " and not response.response.is_closed
    pieces.close()
    assert response.response.is_closed


class FakeStream:
    """Yields real chunk objects, then fails with a real error after ``fail_after`` of them."""

    def __init__(self, chunks, fail_after: int | None = None, request=None):
        self.chunks, self.fail_after, self.request, self.closed = chunks, fail_after, request, 0

    def __iter__(self):
        for n, item in enumerate(self.chunks):
            if n == self.fail_after:
                raise openai.APIError("overloaded", request=self.request, body=None)
            yield item

    def close(self):
        self.closed += 1


def text_chunk(text):
    return ChatCompletionChunk.model_validate({**chunk(text), "created": 0})


def test_the_stream_is_closed_when_it_fails_and_when_answer_is_left_early(library_request):
    stream = FakeStream([text_chunk("a"), text_chunk("b")], fail_after=1, request=library_request)
    pieces = stream_text(stream)
    assert next(pieces) == "a"
    with pytest.raises(openai.APIError):
        next(pieces)
    assert stream.closed == 1
    stream = FakeStream([text_chunk("a"), text_chunk("b")])
    llm = SimpleNamespace(
        chat=SimpleNamespace(completions=SimpleNamespace(create=lambda **kw: stream))
    )
    pieces = answer(llm, "m", "http://x/v1", MESSAGES)
    assert next(pieces) == "a"
    pieces.close()
    assert stream.closed == 1


@pytest.mark.parametrize("body", [{"error": {"message": "the words"}}, {"message": "the words"}])
def test_the_servers_words_are_found_in_either_shape_of_error_body(library_request, body):
    """OpenAI nests them under "error"; some compatible servers do not."""
    err = openai.APIError("Error code: 400", request=library_request, body=body)
    with pytest.raises(RagError, match=r"reported an error while answering \(it said: the words\)"):
        with llm_errors("http://llm.invalid/v1", "m"):
            raise err
