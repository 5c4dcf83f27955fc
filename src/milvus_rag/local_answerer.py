"""A small OpenAI-compatible chat-completions server that answers from the prompt's context.

It stands in for an LLM when none is configured, so the tutorial's generation step runs
unchanged with the real ``openai`` client. Like an LLM, it reads only the request: the
``<context>`` and ``<question>`` of the user message. Its answer is the first passage's own
sentences, trimmed to those sharing the most words with the question when the passage is
long. It never invents text and listens on 127.0.0.1 only; one server per process serves
every client, and it stops when the process exits.

It is a real HTTP server (not an in-process ``httpx`` transport) so that the notebook's
``OpenAI(api_key=..., base_url=...)`` cell is the tutorial's, unchanged, and so that any other
OpenAI-compatible tool can be pointed at it.
"""

from __future__ import annotations

import atexit
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_NAME = "local-extractive"
MAX_SENTENCES = 5
NO_ANSWER = "The provided context does not contain an answer to this question."

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_PROMPT = re.compile(  # the tutorial's user prompt, read from its end: passages may hold tags
    r"^<context>\n(.*)\n</context>\n<question>\n(.*)\n</question>\s*\Z", re.S | re.M
)
_WORD = re.compile(r"[a-z0-9]+")
_FRONT_MATTER = re.compile(r"^[a-z_]+: ")  # "id: ...", "summary: ..." lines of a page header
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])")


def _sentences(text: str) -> list[str]:
    """Plain sentences of a markdown text: no headings, no question titles, no links."""
    sentences: list[str] = []
    for line in _LINK.sub(r"\1", text).splitlines():
        line = line.strip().lstrip("-*>").strip()
        if not line or line.startswith(("#", "|", "<", "```")) or _FRONT_MATTER.match(line):
            continue
        for sentence in _SENTENCE_END.split(line):
            sentence = sentence.strip()
            if len(sentence.split()) >= 4 and not sentence.endswith("?"):
                sentences.append(sentence)
    return list(dict.fromkeys(sentences))


def _is_title(line: str) -> bool:
    line = line.strip().lstrip("#").strip()
    return line.endswith("?") and len(line) <= 200


_PASSAGE = re.compile(r"^\[(\d+)\] ", re.M)


def numbered_sections(context: str) -> list[tuple[int | None, list[str]]]:
    """The context's passages as (number, sentences), in rank order, dropping empty ones.

    Passages numbered ``[1] ...`` (as ``generation.build_messages`` writes them) are split at
    their numbers; an unnumbered context is cut where a FAQ question title starts.
    """
    marks = list(_PASSAGE.finditer(context))
    if marks:
        bounds = [m.start() for m in marks] + [len(context)]
        parts = [
            (int(m.group(1)), context[m.end() : end])
            for m, end in zip(marks, bounds[1:], strict=True)
        ]
    else:
        chunks: list[list[str]] = [[]]
        for line in context.splitlines():
            if _is_title(line) and chunks[-1]:
                chunks.append([])
            chunks[-1].append(line)
        parts = [(None, "\n".join(lines)) for lines in chunks]
    sections = [(number, _sentences(text)) for number, text in parts]
    return [(number, sentences) for number, sentences in sections if sentences]


def parse_user_prompt(prompt: str) -> tuple[str, str]:
    """The (context, question) inside the tutorial's user prompt; no tags: all question."""
    match = _PROMPT.search(prompt)
    if match is None:
        return "", prompt.strip()
    return match.group(1), match.group(2).strip()


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def extract_answer(context: str, question: str, max_sentences: int = MAX_SENTENCES) -> str:
    """The first passage's sentences, cited; if more than ``max_sentences``, those sharing the
    most words with the question, in their order. ``NO_ANSWER`` without context or question."""
    sections = numbered_sections(context)
    if not sections or not question.strip():
        return NO_ANSWER
    number, sentences = sections[0]
    if len(sentences) > max_sentences:
        asked = _words(question)
        overlap = [len(asked & _words(sentence)) for sentence in sentences]
        best = sorted(range(len(sentences)), key=lambda i: (-overlap[i], i))[:max_sentences]
        sentences = [sentences[i] for i in sorted(best)]
    citation = f" [{number}]" if number is not None else ""
    return " ".join(sentences) + citation


def _text_of(content) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    raise TypeError("message content must be a string or a list of parts")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):  # keep the notebook and terminal quiet
        pass

    def _send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": MODEL_NAME,
                            "object": "model",
                            "created": 0,
                            "owned_by": "milvus_rag",
                        }
                    ],
                },
            )
        else:
            self._send_json(
                404, {"error": {"message": "not found", "type": "invalid_request_error"}}
            )

    def do_POST(self):
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(
                404, {"error": {"message": "not found", "type": "invalid_request_error"}}
            )
            return
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            user = _text_of(
                [m for m in request["messages"] if isinstance(m, dict) and m.get("role") == "user"][
                    -1
                ].get("content")
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            self._send_json(
                400,
                {
                    "error": {
                        "message": "expected a chat request with a user message",
                        "type": "invalid_request_error",
                    }
                },
            )
            return
        try:
            answer = extract_answer(*parse_user_prompt(user))
        except Exception as err:  # a bug here must reach the client as what it is
            self._send_json(
                500, {"error": {"message": f"{type(err).__name__}: {err}", "type": "server_error"}}
            )
            return
        model = request.get("model") or MODEL_NAME
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if request.get("stream"):
            self._stream(ident, created, model, answer)
            return
        self._send_json(
            200,
            {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": answer},
                    }
                ],
                "usage": {
                    "prompt_tokens": len(user.split()),
                    "completion_tokens": len(answer.split()),
                    "total_tokens": len(user.split()) + len(answer.split()),
                },
            },
        )

    def _stream(self, ident: str, created: int, model: str, answer: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

        def event(delta: dict, finish: str | None) -> None:
            chunk = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()

        event({"role": "assistant", "content": ""}, None)
        for word in re.findall(r"\S+\s*", answer):
            event({"content": word}, None)
        event({}, "stop")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A client that hung up (it stopped reading a stream) is not an error worth a
        traceback in the user's notebook; anything else still is reported."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LocalAnswererServer:
    """The server, running in a daemon thread on 127.0.0.1 and a port the system picks."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._server = _Server((host, port), _Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="milvus-rag-local-answerer"
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalAnswererServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_running: LocalAnswererServer | None = None
_lock = threading.Lock()


def base_url() -> str:
    """The URL of this process's local answerer, started on first use and closed at exit."""
    global _running
    with _lock:
        if _running is None:
            _running = LocalAnswererServer()
            atexit.register(_running.close)
        return _running.base_url
