"""The offline stand-in for an LLM: an OpenAI-compatible chat server on 127.0.0.1 that quotes,
and that serves ``/v1/embeddings`` with the packaged all-MiniLM-L6-v2.

With no ``LLM_BASE_URL`` the notebook's ``OpenAI(...)`` cells run unchanged against it: it answers
the ``<question>`` of the tutorial's user prompt with sentences of the first passage in its
``<context>``, those sharing the most words with the question (:func:`reply`, which
``python -m milvus_rag ask`` calls in its own process). One per process, closed at exit.
``python -m milvus_rag serve`` runs one in the foreground, so that ``EMBEDDING_BASE_URL`` can point
at it (the endpoint path, end to end, with no network)."""

import atexit
import base64
import contextlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from milvus_rag.chunking import link_words

MODEL_NAME = "local-extractive"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"  # the name it serves the packaged MiniLM under
MAX_SENTENCES = 5

_PROMPT = re.compile(r"(?sm)^<context>\n(.*)\n</context>\n<question>\n(.*)\n</question>\s*\Z")
_NUMBERED = re.compile(r"^\[(\d+)\] ", re.M)  # a passage as generation.build_messages starts it
_FAQ_TITLE = re.compile(r"\n(?=[ \t]*#*[ \t]*[^\n]{0,199}\?[ \t]*$)", re.M)  # a line: "Why...?"
_NOT_PROSE = re.compile(r"[#|<]|```|[a-z_]+: ")  # heading, table, tag, code, "id: ..." header
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])")
_WORD = re.compile(r"[a-z0-9]+")
_TITLE_LINE = re.compile(r"\A\s*\S[^\n]*\n[ \t]*\n(?=\s*\S)")  # a first line, a blank one, more


def _sentences(text: str) -> list[str]:
    """Plain sentences of a passage's markdown, each once: no title (its first line, when a blank
    line follows: an entry's heading path, a piece's heading), headings, tables, tags, questions
    or links."""
    plain = link_words(_TITLE_LINE.sub("", text, count=1))
    lines = (line.strip().lstrip("-*>").strip() for line in plain.splitlines())
    prose = (line for line in lines if line and not _NOT_PROSE.match(line))
    sentences = [s.strip() for line in prose for s in _SENTENCE_END.split(line)]
    return list(dict.fromkeys(s for s in sentences if len(s.split()) >= 4 and s[-1] != "?"))


def _passages(context: str) -> list[tuple[int | None, list[str]]]:
    """(number, sentences) of each passage that has sentences, in rank order."""
    pieces = _NUMBERED.split(context)  # [before, "1", text, "2", text, ...]
    if len(pieces) > 1:
        parts = [(int(n), text) for n, text in zip(pieces[1::2], pieces[2::2], strict=True)]
    else:  # the tutorial's unnumbered context: a passage starts at each FAQ question title
        parts = [(None, text) for text in _FAQ_TITLE.split(context)]
    return [(number, sentences) for number, text in parts if (sentences := _sentences(text))]


def parse_user_prompt(prompt: str) -> tuple[str, str]:
    """The (context, question) inside the tutorial's user prompt, read from its end (passages
    may hold the tags too); without the tags, all of it is the question."""
    match = _PROMPT.search(prompt)
    return (match[1], match[2].strip()) if match else ("", prompt.strip())


def extract_answer(context: str, question: str) -> str:
    """The first passage's sentences, cited; if more than ``MAX_SENTENCES``, those sharing the
    most words with the question, in their order; without context or question, says so."""
    if not (passages := _passages(context)) or not question.strip():
        return "The provided context does not contain an answer to this question."
    number, sentences = passages[0]
    asked = set(_WORD.findall(question.lower()))
    shared = [len(asked & set(_WORD.findall(s.lower()))) for s in sentences]
    best = sorted(sorted(range(len(sentences)), key=lambda i: -shared[i])[:MAX_SENTENCES])
    return " ".join(sentences[i] for i in best) + (f" [{number}]" if number is not None else "")


def reply(messages: list[dict]) -> str:
    """The answer to a chat's last user message (the tutorial's prompt): what the server sends."""
    user = [m["content"] for m in messages if m["role"] == "user"][-1]
    return extract_answer(*parse_user_prompt(user))


class Handler(BaseHTTPRequestHandler):
    """POST chat/completions: the answer as one JSON body, or word by word as server-sent events."""

    def log_message(self, format, *args):  # keep the notebook and the terminal quiet
        pass

    def handle(self):  # a client that stops reading a stream hangs up: nothing to report
        with contextlib.suppress(ConnectionError):
            super().handle()

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.rstrip("/").endswith("/embeddings"):
            return self._embeddings(request)
        answer = reply(request["messages"])
        stream = request.get("stream")
        texts = re.findall(r"\S+\s*", answer) if stream else [answer]
        key, kind = ("delta", "chat.completion.chunk") if stream else ("message", "chat.completion")
        choices = [{"index": 0, key: {"role": "assistant", "content": t}} for t in texts]
        choices[-1]["finish_reason"] = "stop"  # the others' is None
        head = {"id": f"chatcmpl-{time.time_ns()}", "object": kind, "created": int(time.time())}
        head["model"] = request.get("model", MODEL_NAME)
        bodies = [json.dumps({**head, "choices": [{"finish_reason": None, **c}]}) for c in choices]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
        self.end_headers()  # HTTP/1.0: the body ends where the connection closes
        events = "".join(f"data: {body}\n\n" for body in [*bodies, "[DONE]"])
        self.wfile.write((events if stream else bodies[0]).encode())


    def _embeddings(self, request: dict) -> None:
        """``POST /v1/embeddings`` as OpenAI answers it, for :data:`EMBEDDING_MODEL` only."""
        texts = request.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if request.get("model") != EMBEDDING_MODEL:
            return self._error(404, f"The model {request.get('model')!r} does not exist; this "
                               f"server has {EMBEDDING_MODEL!r}.", "model_not_found")  # fmt: skip
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return self._error(400, "'input' must be a string or a non-empty list of strings.",
                               "invalid_input")  # fmt: skip
        from milvus_rag.errors import RagError
        try:
            vectors = _minilm().function.encode_documents(texts)  # no cache: each call does work
        except RagError as err:  # the packaged model missing or damaged: said to the client
            return self._error(500, str(err), "model_unavailable")
        as_base64 = request.get("encoding_format") == "base64"  # the openai client's default
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if as_base64
                 else [float(x) for x in v]} for i, v in enumerate(vectors)]  # fmt: skip
        self._json(200, {"object": "list", "data": data, "model": EMBEDDING_MODEL,
                         "usage": {"prompt_tokens": 0, "total_tokens": 0}})  # fmt: skip

    def _error(self, status: int, message: str, code: str) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error",
                                      "param": None, "code": code}})  # fmt: skip

    def _json(self, status: int, body: dict) -> None:
        encoded = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)


_lock = threading.Lock()
_server: ThreadingHTTPServer | None = None
_model = None


def _minilm():
    """The packaged MiniLM, loaded on the first embeddings request (one per process)."""
    global _model
    with _lock:
        if _model is None:
            from milvus_rag.embedding import load_minilm
            _model = load_minilm()
        return _model


def base_url() -> str:
    """The URL of this process's local answerer, started on first use and closed at exit."""
    global _server
    with _lock:
        if _server is None:
            _server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=_server.serve_forever, args=(0.05,), daemon=True).start()
            atexit.register(_server.server_close)  # atexit runs last-in first: shutdown first
            atexit.register(_server.shutdown)
        return f"http://127.0.0.1:{_server.server_address[1]}/v1"


def serve(port: int) -> None:
    """Serve chat completions and MiniLM embeddings on 127.0.0.1:``port`` until interrupted."""
    with ThreadingHTTPServer(("127.0.0.1", port), Handler) as server:
        print(f"Serving on http://127.0.0.1:{server.server_address[1]}/v1: chat model "
              f"{MODEL_NAME}, embedding model {EMBEDDING_MODEL} (Ctrl-C stops it).", flush=True)  # fmt: skip
        server.serve_forever()
