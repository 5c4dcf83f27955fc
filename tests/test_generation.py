"""Generation: the tutorial's prompts, the request options, the endpoint and its key, and every
way an OpenAI-compatible endpoint fails ending in one sentence.

The real ``openai`` client talks to small HTTP servers on the loopback range: the
``failing_endpoint`` fixture (one HTTP status for every request, or none at all) and the
recording server below, which keeps each request and answers with a fixed text or with the
server-sent events a test scripts. A canary key checks that no secret is ever shown.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

import openai
import openai._base_client
import pytest

from milvus_rag import local_answerer
from milvus_rag.errors import RagError
from milvus_rag.generation import (
    MAX_RETRIES,
    PLACEHOLDER_KEY,
    SYSTEM_PROMPT,
    USER_PROMPT,
    answer,
    build_messages,
    client,
    endpoint,
    explain,
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
    assert "\n" not in message
    assert message.endswith("."), message
    assert "Traceback" not in message


def closed_port_url(host: str = "127.0.0.1") -> str:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return f"http://{host}:{sock.getsockname()[1]}/v1"


def ask(url: str, stream: bool, model: str = "test-model", messages=MESSAGES) -> str:
    """The answer through the project's own path: endpoint(), client(), answer()."""
    base_url, key, _ = endpoint(url)
    pieces = answer(client(base_url, key), model, url, messages, stream)
    return "".join(pieces)


# --------------------------------------------------------------------------- a recording server


def sse(payload: dict | str, event: str | None = None) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return (f"event: {event}\n" if event else "") + f"data: {data}\n\n"


def chunk(choices: list | None, **extra) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "test-model",
        "choices": choices,
        **extra,
    }


def delta(content: str | None = None, finish: str | None = None, **fields) -> dict:
    body = dict(fields)
    if content is not None:
        body["content"] = content
    return {"index": 0, "delta": body, "finish_reason": finish}


def frames_for(text: str) -> list[str]:
    words = text.split(" ")
    pieces = [w + " " for w in words[:-1]] + [words[-1]]
    return [
        sse(chunk([delta("", role="assistant")])),
        *(sse(chunk([delta(piece)])) for piece in pieces),
        sse(chunk([delta(finish="stop")])),
        sse("[DONE]"),
    ]


class Recorder(BaseHTTPRequestHandler):
    """Keeps each request's JSON body and Authorization header; answers ``text`` (JSON or
    streamed, as asked) or, for a streaming request, the scripted ``frames``."""

    bodies: list
    auth: list
    text = REPLY
    frames: list[str] | None = None

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        type(self).bodies.append(body)
        type(self).auth.append(self.headers.get("Authorization", ""))
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            frames = self.frames if self.frames is not None else frames_for(self.text)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client stopped
                for frame in frames:
                    self.wfile.write(frame.encode())
                    self.wfile.flush()
            return
        data = json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": self.text},
                    }
                ],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def recording_endpoint(serve_endpoint):
    """``start(host="127.0.0.1", text=REPLY, frames=None) -> (base_url, handler)``."""

    def start(host: str = "127.0.0.1", text: str = REPLY, frames: list[str] | None = None):
        attrs = {"bodies": [], "auth": [], "text": text, "frames": frames}
        handler = type("RecorderHandler", (Recorder,), attrs)
        return serve_endpoint(handler, host), handler

    return start


# --------------------------------------------------------------------------- build_messages


def test_build_messages_uses_the_tutorial_prompts():
    messages = build_messages(["  first text\n", "second\ntext"], "What is Milvus?")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    assert "You are an AI assistant." in SYSTEM_PROMPT
    assert "Cite the numbered passages you use, like [1]." in SYSTEM_PROMPT
    assert messages[1]["content"] == (
        "\nUse the following pieces of information enclosed in <context> tags to provide an "
        "answer to the question enclosed in <question> tags.\n"
        "<context>\n[1] first text\n\n[2] second\ntext\n</context>\n"
        "<question>\nWhat is Milvus?\n</question>\n"
    )
    assert messages[1]["content"] == USER_PROMPT.format(
        context="[1] first text\n\n[2] second\ntext", question="What is Milvus?"
    )


def test_build_messages_numbers_every_passage_in_order():
    texts = [f"passage {n}" for n in range(1, 13)]
    user = build_messages(texts, "q")[1]["content"]
    positions = [user.index(f"[{n}] passage {n}\n") for n in range(1, 13)]
    assert positions == sorted(positions)
    assert "[13]" not in user and "[0]" not in user


def test_build_messages_without_passages_keeps_the_question():
    user = build_messages([], "What is Milvus?")[1]["content"]
    assert "<context>\n\n</context>" in user
    assert "<question>\nWhat is Milvus?\n</question>" in user


# --------------------------------------------------------------------------- options


def test_options_defaults():
    assert options() == {"max_tokens": 400, "temperature": 0.0}


def test_options_from_the_environment(monkeypatch):
    monkeypatch.setenv("LLM_MAX_TOKENS", " 64 ")
    monkeypatch.setenv("LLM_TEMPERATURE", "0.7")
    assert options() == {"max_tokens": 64, "temperature": 0.7}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LLM_MAX_TOKENS", "0"),
        ("LLM_MAX_TOKENS", "-5"),
        ("LLM_MAX_TOKENS", "many"),
        ("LLM_MAX_TOKENS", "12.5"),
        ("LLM_TEMPERATURE", "-0.1"),
        ("LLM_TEMPERATURE", "warm"),
        ("LLM_TEMPERATURE", "nan"),
        ("LLM_TEMPERATURE", "inf"),
    ],
)
def test_options_bad_value_is_one_sentence_naming_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(RagError) as info:
        options()
    message = str(info.value)
    assert variable in message
    assert repr(value) in message
    one_sentence(message)


@pytest.mark.parametrize("stream", [False, True])
def test_options_are_sent_on_every_request(recording_endpoint, monkeypatch, stream):
    url, handler = recording_endpoint()
    monkeypatch.setenv("LLM_MAX_TOKENS", "123")
    monkeypatch.setenv("LLM_TEMPERATURE", "0.25")
    assert ask(url, stream) == REPLY
    assert ask(url, stream) == REPLY
    assert len(handler.bodies) == 2
    for body in handler.bodies:
        assert body["max_tokens"] == 123
        assert body["temperature"] == 0.25
        assert body["model"] == "test-model"
        assert body["messages"] == MESSAGES
        assert bool(body.get("stream")) is stream


@pytest.mark.parametrize("stream", [False, True])
def test_default_options_are_sent(recording_endpoint, stream):
    url, handler = recording_endpoint()
    assert ask(url, stream) == REPLY
    assert handler.bodies[0]["max_tokens"] == 400
    assert handler.bodies[0]["temperature"] == 0.0


@pytest.mark.parametrize("stream", [False, True])
def test_bad_option_stops_before_any_request(recording_endpoint, monkeypatch, stream):
    url, handler = recording_endpoint()
    monkeypatch.setenv("LLM_MAX_TOKENS", "lots")
    with pytest.raises(RagError, match="LLM_MAX_TOKENS"):
        ask(url, stream)
    assert handler.bodies == []


# --------------------------------------------------------------------------- endpoint and key


def test_no_url_is_the_local_answerer():
    base_url, key, about = endpoint("")
    assert base_url == local_answerer.base_url()
    assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
    assert key == PLACEHOLDER_KEY
    assert "LLM_BASE_URL" in about and "local answerer" in about
    assert endpoint("")[0] == base_url  # the same server each time


@pytest.mark.parametrize("stream", [False, True])
def test_no_url_answers_through_the_local_answerer(stream):
    messages = build_messages(
        ["Milvus stores inserted data in object storage as incremental logs."], "Where?"
    )
    text = ask("", stream, model=local_answerer.MODEL_NAME, messages=messages)
    assert text == "Milvus stores inserted data in object storage as incremental logs. [1]"


@pytest.mark.parametrize(
    "base_url",
    ["ftp://example.com/v1", "localhost:11434/v1", "api.openai.com/v1", "https://", "file:///v1"],
)
def test_non_http_url_is_refused(monkeypatch, canary_key, base_url):
    monkeypatch.setenv("LLM_API_KEY", canary_key)
    with pytest.raises(RagError) as info:
        endpoint(base_url)
    message = str(info.value)
    assert "LLM_BASE_URL" in message and repr(base_url) in message
    assert canary_key not in message
    one_sentence(message)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://localhost:11434/v1",
        "http://127.0.0.1:8000/v1",
        "http://[::1]:8000/v1",
        "http://gpu-box.lan:8000/v1",
        "https://api.example.com/v1",
    ],
)
def test_no_key_is_required_for_any_endpoint(base_url):
    assert endpoint(base_url) == (
        base_url,
        PLACEHOLDER_KEY,
        f"The LLM endpoint {base_url} answers.",
    )


@pytest.mark.parametrize("stream", [False, True])
def test_keyless_endpoint_off_localhost_answers(recording_endpoint, stream):
    url, handler = recording_endpoint(host="127.0.0.2")
    assert ask(url, stream) == REPLY
    assert handler.auth == [f"Bearer {PLACEHOLDER_KEY}"]


@pytest.mark.parametrize("variable", ["LLM_API_KEY", "LEPTONAI_TOKEN"])
@pytest.mark.parametrize("stream", [False, True])
def test_key_is_sent_and_never_shown(recording_endpoint, monkeypatch, capfd, canary_key, variable, stream):  # fmt: skip
    url, handler = recording_endpoint(host="127.0.0.2")
    monkeypatch.setenv(variable, canary_key)
    base_url, key, about = endpoint(url, interactive=True)
    assert (base_url, key) == (url, canary_key)
    assert canary_key not in about and canary_key[:8] not in about
    text = ask(url, stream)
    assert text == REPLY
    assert handler.auth == [f"Bearer {canary_key}"]
    out, err = capfd.readouterr()
    assert canary_key[:8] not in out + err


def test_llm_api_key_wins_over_leptonai_token(recording_endpoint, monkeypatch, canary_key):
    url, handler = recording_endpoint()
    monkeypatch.setenv("LLM_API_KEY", canary_key)
    monkeypatch.setenv("LEPTONAI_TOKEN", "lepton-token")
    assert ask(url, False) == REPLY
    assert handler.auth == [f"Bearer {canary_key}"]


# --------------------------------------------------------------------------- asking for a key


@pytest.fixture()
def prompt(monkeypatch):
    """Someone at a terminal: getpass records the order of events and types ``typed``."""
    import getpass

    state = SimpleNamespace(events=[], typed="  typed-key-123  ", fail=False)
    real_print = builtins.print

    def recording_print(*args, **kwargs):
        state.events.append(("print", " ".join(str(a) for a in args)))
        real_print(*args, **kwargs)

    def fake_getpass(text="Password: ", stream=None):
        state.events.append(("getpass", text))
        if state.fail:
            raise EOFError("no one to ask")
        return state.typed

    monkeypatch.setattr(builtins, "print", recording_print)
    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(isatty=lambda: True))
    return state


def test_https_without_key_asks_after_printing_a_notice(prompt, capsys):
    url = "https://api.example.com/v1"
    base_url, key, about = endpoint(url, interactive=True)
    assert (base_url, key) == (url, "typed-key-123")
    assert "typed-key-123" not in about
    assert [kind for kind, _ in prompt.events] == ["print", "getpass"]
    notice = prompt.events[0][1]
    assert url in notice and "LLM_API_KEY" in notice
    assert "typed-key-123" not in capsys.readouterr().out


def test_asks_in_jupyter_without_a_terminal(prompt, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    monkeypatch.setitem(sys.modules, "ipykernel", SimpleNamespace())
    assert endpoint("https://api.example.com/v1", interactive=True)[1] == "typed-key-123"
    assert [kind for kind, _ in prompt.events] == ["print", "getpass"]


def test_no_terminal_and_no_jupyter_does_not_ask(prompt, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert endpoint("https://api.example.com/v1", interactive=True)[1] == PLACEHOLDER_KEY
    assert prompt.events == []


def test_enter_without_a_key_goes_on_with_the_placeholder(prompt):
    prompt.typed = "   "
    assert endpoint("https://api.example.com/v1", interactive=True)[1] == PLACEHOLDER_KEY
    assert [kind for kind, _ in prompt.events] == ["print", "getpass"]


def test_no_one_to_ask_is_the_placeholder(prompt):
    prompt.fail = True
    assert endpoint("https://api.example.com/v1", interactive=True)[1] == PLACEHOLDER_KEY
    assert [kind for kind, _ in prompt.events] == ["print", "getpass"]


@pytest.mark.parametrize(
    ("base_url", "interactive"),
    [
        ("http://gpu-box.lan:8000/v1", True),  # plain http: a local server, needs no key
        ("http://localhost:11434/v1", True),
        ("https://api.example.com/v1", False),
    ],
)
def test_asks_only_for_https_when_interactive(prompt, base_url, interactive):
    assert endpoint(base_url, interactive=interactive)[1] == PLACEHOLDER_KEY
    assert prompt.events == []


def test_does_not_ask_when_a_key_is_set(prompt, monkeypatch, canary_key):
    monkeypatch.setenv("LEPTONAI_TOKEN", canary_key)
    assert endpoint("https://api.example.com/v1", interactive=True)[1] == canary_key
    assert prompt.events == []


# --------------------------------------------------------------------------- client


def test_client_has_the_projects_retries_and_timeout(monkeypatch):
    monkeypatch.setenv("LLM_TIMEOUT", "7.5")
    llm = client("http://127.0.0.1:9/v1", PLACEHOLDER_KEY)
    assert llm.max_retries == MAX_RETRIES == 2
    assert llm.timeout == 7.5
    assert str(llm.base_url).rstrip("/") == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_timeout_is_one_sentence(monkeypatch, value):
    monkeypatch.setenv("LLM_TIMEOUT", value)
    with pytest.raises(RagError, match="LLM_TIMEOUT") as info:
        client("http://127.0.0.1:9/v1", PLACEHOLDER_KEY)
    one_sentence(str(info.value))


# --------------------------------------------------------------------------- endpoint failures


SERVER_SAYS = {
    400: "This model's maximum context length is 4096 tokens",
    404: "The model `test-model` does not exist",
    422: "temperature: Input should be less than or equal to 2",
    429: "Rate limit reached for requests per min",
    500: "The server had an error while processing your request",
    503: "The engine is currently overloaded, please try again later",
}
EXPECTED = {
    401: "rejected the API key (HTTP 401)",
    403: "rejected the API key (HTTP 403)",
    400: "refused the request (HTTP 400;",
    404: "does not know model 'test-model' or this API path (HTTP 404;",
    422: "refused the request (HTTP 422;",
    429: f"is rate limiting requests (HTTP 429 after {MAX_RETRIES} retries;",
    500: f"failed with a server error (HTTP 500 after {MAX_RETRIES} retries;",
    503: f"failed with a server error (HTTP 503 after {MAX_RETRIES} retries;",
}
ERROR_TYPES = {
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    400: openai.BadRequestError,
    404: openai.NotFoundError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
    500: openai.InternalServerError,
    503: openai.InternalServerError,
}
ATTEMPTS = {401: 1, 403: 1, 400: 1, 404: 1, 422: 1, 429: 3, 500: 3, 503: 3}


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("stream", [False, True])
def test_rejected_key_is_one_sentence_without_the_servers_message(failing_endpoint, monkeypatch, capfd, canary_key, status, stream):  # fmt: skip
    url, handler = failing_endpoint(status)  # its message echoes the key's first 8 characters
    assert canary_key[:8] in handler.message
    monkeypatch.setenv("LLM_API_KEY", canary_key)
    with pytest.raises(RagError) as info:
        ask(url, stream)
    message = str(info.value)
    assert message.startswith(f"The LLM endpoint {url} rejected the API key (HTTP {status})")
    assert "LLM_API_KEY" in message
    assert "Incorrect API key" not in message
    assert canary_key not in message and canary_key[:8] not in message
    one_sentence(message)
    assert isinstance(info.value.__cause__, ERROR_TYPES[status])
    assert handler.requests == [f"Bearer {canary_key}"]  # no retry of a rejected key
    out, err = capfd.readouterr()
    assert canary_key[:8] not in out + err


@pytest.mark.parametrize("status", [400, 404, 422, 429, 500, 503])
@pytest.mark.parametrize("stream", [False, True])
def test_http_error_is_one_sentence_with_the_servers_message(failing_endpoint, monkeypatch, quick_retries, canary_key, status, stream):  # fmt: skip
    url, handler = failing_endpoint(status, SERVER_SAYS[status])
    monkeypatch.setenv("LLM_API_KEY", canary_key)
    with pytest.raises(RagError) as info:
        ask(url, stream)
    message = str(info.value)
    assert message.startswith(f"The LLM endpoint {url} ")
    assert EXPECTED[status] in message
    assert f"it said: {SERVER_SAYS[status]}" in message
    assert canary_key not in message
    one_sentence(message)
    assert type(info.value.__cause__) is ERROR_TYPES[status]
    assert len(handler.requests) == ATTEMPTS[status]  # the client's own retries, none of ours
    assert set(handler.requests) == {f"Bearer {canary_key}"}


def test_long_server_message_is_cut(failing_endpoint, quick_retries):
    url, _ = failing_endpoint(400, "context too long " + "x" * 2000 + "\nsecond line")
    with pytest.raises(RagError) as info:
        ask(url, False)
    message = str(info.value)
    assert "it said: context too long x" in message
    assert "second line" not in message
    assert len(message) < 600
    one_sentence(message)


@pytest.mark.parametrize("stream", [False, True])
def test_timeout_is_one_sentence(failing_endpoint, monkeypatch, quick_retries, stream):
    url, handler = failing_endpoint(0)  # never answers
    monkeypatch.setenv("LLM_TIMEOUT", "0.1")
    with pytest.raises(RagError) as info:
        ask(url, stream)
    message = str(info.value)
    assert message.startswith(f"The LLM endpoint {url} did not answer within 0.1 s")
    assert f"after {MAX_RETRIES} retries" in message and "LLM_TIMEOUT" in message
    one_sentence(message)
    assert isinstance(info.value.__cause__, openai.APITimeoutError)
    assert len(handler.requests) == 1 + MAX_RETRIES


@pytest.mark.parametrize("stream", [False, True])
def test_unreachable_endpoint_is_one_sentence_with_the_cause(quick_retries, stream):
    url = closed_port_url()
    with pytest.raises(RagError) as info:
        ask(url, stream)
    message = str(info.value)
    assert message.startswith(f"Cannot reach the LLM endpoint {url} (ConnectError: ")
    assert "refused" in message.lower()
    assert "LLM_BASE_URL" in message
    one_sentence(message)
    assert type(info.value.__cause__) is openai.APIConnectionError


def test_keep_going_prints_the_sentence_instead(failing_endpoint, capsys, canary_key, monkeypatch):
    url, _ = failing_endpoint(401)
    monkeypatch.setenv("LLM_API_KEY", canary_key)
    llm = client(url, canary_key)
    reached = []
    with llm_errors(url, "test-model", keep_going=True):
        llm.chat.completions.create(model="test-model", messages=MESSAGES, **options())
        reached.append("after the call")
    assert reached == []
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == (
        f"RagError: The LLM endpoint {url} rejected the API key (HTTP 401): check LLM_API_KEY "
        "(or LEPTONAI_TOKEN) and that it is valid for this endpoint."
    )
    assert canary_key[:8] not in err


def test_keep_going_without_an_error_prints_nothing(capsys):
    with llm_errors("", "m", keep_going=True):
        pass
    assert capsys.readouterr() == ("", "")


def test_local_answerer_is_named_when_no_url_is_set():
    err = openai.APIConnectionError(request=None)  # type: ignore[arg-type]
    with pytest.raises(RagError, match="^Cannot reach the LLM endpoint the local answerer "):
        with llm_errors("", "m"):
            raise err


def test_other_exceptions_pass_through_unchanged(capsys):
    bug = ValueError("a bug, not a user error")
    with pytest.raises(ValueError) as info:
        with llm_errors("http://x/v1", "m", keep_going=True):
            raise bug
    assert info.value is bug
    assert capsys.readouterr().err == ""


def test_openai_errors_explain_cannot_word_pass_through():
    err = openai.OpenAIError("not an API error")
    assert explain(err, "http://x/v1", "m") is None
    with pytest.raises(openai.OpenAIError) as info:
        with llm_errors("http://x/v1", "m"):
            raise err
    assert info.value is err


@pytest.mark.parametrize("stream", [False, True])
def test_bugs_in_the_client_pass_through_answer(stream):
    class Broken:
        class chat:  # noqa: N801
            class completions:  # noqa: N801
                @staticmethod
                def create(**kwargs):
                    raise KeyError("a bug, not a user error")

    with pytest.raises(KeyError):
        "".join(answer(Broken(), "m", "http://x/v1", MESSAGES, stream))


# --------------------------------------------------------------------------- other providers' streams


USAGE = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


@pytest.mark.parametrize("stream", [False, True])
def test_streams_from_other_providers_skip_chunks_without_text(recording_endpoint, stream):
    frames = [
        ": keep-alive comment\n\n",
        sse(chunk([delta("", role="assistant")])),
        sse(chunk([])),  # empty choices
        sse(chunk([delta("Milvus ")])),
        sse(chunk([delta(None, role="assistant")])),  # a delta without content
        sse(chunk([{"index": 0, "delta": {"content": None}, "finish_reason": None}])),
        sse(chunk([delta("stores data.")])),
        sse(chunk([delta(finish="stop")])),
        sse(chunk([], usage=USAGE)),  # the usage-only chunk of stream_options
        sse("[DONE]"),
    ]
    url, _ = recording_endpoint(text="Milvus stores data.", frames=frames)
    base_url, key, _ = endpoint(url)
    pieces = list(answer(client(base_url, key), "test-model", url, MESSAGES, stream))
    assert "".join(pieces) == "Milvus stores data."
    if stream:
        assert pieces == ["Milvus ", "stores data."]


def test_error_event_mid_stream_after_the_text_before_it(recording_endpoint, capfd, canary_key, monkeypatch):  # fmt: skip
    frames = [
        sse(chunk([delta("Milvus ")])),
        sse(chunk([delta("stores ")])),
        sse({"error": {"message": "overloaded", "type": "server_error"}}, event="error"),
        sse(chunk([delta("never seen")])),
        sse("[DONE]"),
    ]
    url, _ = recording_endpoint(frames=frames)
    monkeypatch.setenv("LLM_API_KEY", canary_key)
    pieces = []
    with pytest.raises(RagError) as info:
        for piece in ask_pieces(url):
            pieces.append(piece)
    assert pieces == ["Milvus ", "stores "]
    message = str(info.value)
    assert message == (
        f"The LLM endpoint {url} reported an error while answering (it said: overloaded): "
        "run again, or check LLM_MODEL and the endpoint."
    )
    assert type(info.value.__cause__) is openai.APIError
    assert canary_key[:8] not in "".join(capfd.readouterr())


def ask_pieces(url: str):
    base_url, key, _ = endpoint(url)
    return answer(client(base_url, key), "test-model", url, MESSAGES, True)


def test_error_event_in_the_notebooks_cell_keeps_going(recording_endpoint, capsys):
    frames = [
        sse(chunk([delta("Partial ")])),
        sse({"error": {"message": "overloaded"}}, event="error"),
    ]
    url, _ = recording_endpoint(frames=frames)
    llm = client(*endpoint(url)[:2])
    with llm_errors(url, "test-model", keep_going=True):
        response = llm.chat.completions.create(
            model="test-model", messages=MESSAGES, stream=True, **options()
        )
        for text in stream_text(response):
            print(text, end="", flush=True)
    out, err = capsys.readouterr()
    assert out == "Partial "
    assert err.strip() == (
        f"RagError: The LLM endpoint {url} reported an error while answering (it said: "
        "overloaded): run again, or check LLM_MODEL and the endpoint."
    )


def test_non_stream_answer_without_choices_or_content_is_empty(recording_endpoint):
    url, _ = recording_endpoint()
    fake = SimpleNamespace(choices=[])
    empty = SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=None))])
    for response in (fake, empty):
        llm = SimpleNamespace(
            chat=SimpleNamespace(
                completions=SimpleNamespace(create=lambda response=response, **kw: response)
            )
        )
        assert list(answer(llm, "m", url, MESSAGES, False)) == [""]


# --------------------------------------------------------------------------- stream_text


class FakeStream:
    def __init__(self, chunks, fail_after: int | None = None):
        self.chunks = chunks
        self.fail_after = fail_after
        self.closed = 0

    def __iter__(self):
        for n, item in enumerate(self.chunks):
            if n == self.fail_after:
                raise openai.APIError("overloaded", request=None, body=None)  # type: ignore[arg-type]
            yield item

    def close(self):
        self.closed += 1


def text_chunk(text):
    return SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content=text))])


ODD_CHUNKS = [
    SimpleNamespace(choices=None),
    SimpleNamespace(choices=[]),
    SimpleNamespace(choices=[SimpleNamespace(delta=None)]),
    SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace())]),  # no content field
    SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content=""))]),
    SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content=None))]),
]


def test_stream_text_skips_chunks_without_text_and_closes_at_the_end():
    stream = FakeStream([ODD_CHUNKS[0], text_chunk("a"), *ODD_CHUNKS[1:], text_chunk("b")])
    assert list(stream_text(stream)) == ["a", "b"]
    assert stream.closed == 1


def test_stream_text_closes_when_the_caller_stops_early():
    stream = FakeStream([text_chunk("a"), text_chunk("b"), text_chunk("c")])
    pieces = stream_text(stream)
    assert next(pieces) == "a"
    assert stream.closed == 0
    pieces.close()
    assert stream.closed == 1


def test_stream_text_closes_when_the_stream_fails():
    stream = FakeStream([text_chunk("a"), text_chunk("b")], fail_after=1)
    pieces = stream_text(stream)
    assert next(pieces) == "a"
    with pytest.raises(openai.APIError):
        next(pieces)
    assert stream.closed == 1


def test_stream_text_closes_a_real_stream_when_the_caller_stops_early(recording_endpoint):
    url, _ = recording_endpoint()
    llm = client(*endpoint(url)[:2])
    response = llm.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    pieces = stream_text(response)
    assert next(pieces) == "Milvus "
    assert not response.response.is_closed
    pieces.close()
    assert response.response.is_closed


def test_answer_closes_the_stream_when_the_caller_stops_early(monkeypatch):
    stream = FakeStream([text_chunk("a"), text_chunk("b")])
    llm = SimpleNamespace(
        chat=SimpleNamespace(completions=SimpleNamespace(create=lambda **kwargs: stream))
    )
    pieces = answer(llm, "m", "http://x/v1", MESSAGES, True)
    assert next(pieces) == "a"
    pieces.close()
    assert stream.closed == 1
