"""A failing OpenAI-compatible endpoint, for the error paths of generation and the notebook."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CANARY_KEY = "sk-canary-DO-NOT-PRINT-4f1c2a"
"""A key-shaped secret: tests set it and check that it never appears in any output."""


def serve(handler: type, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve ``handler`` on ``host`` and a port the system picks, in a daemon thread.

    It checks for ``shutdown()`` every 20 ms (``serve_forever``'s default is 0.5 s, which adds
    up over a test file). Stop it with ``server.shutdown(); server.server_close()``.
    """
    server = ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    ).start()
    return server


def base_url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/v1"


class FailingEndpoint(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that answers every request with ``status``.

    Status 0 means it never answers (the client times out). The error body echoes the key's
    start, as some providers do, so that tests can check it is never shown for 401/403.
    """

    status = 500
    requests: list = []
    message = f"Incorrect API key provided: {CANARY_KEY[:8]}..."

    def log_message(self, *args):
        pass

    def do_POST(self):
        type(self).requests.append(self.headers.get("Authorization", ""))
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.status == 0:
            threading.Event().wait(5)
            return
        send_json(self, self.status,
                  {"error": {"message": self.message, "type": "error", "code": str(self.status)}})


def send_json(handler: BaseHTTPRequestHandler, status: int, body: dict) -> None:
    """Answer ``handler``'s request with ``status`` and the JSON ``body``."""
    encoded = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(encoded)))
    handler.send_header("retry-after-ms", "10")  # keep the client's own retries quick
    handler.end_headers()
    handler.wfile.write(encoded)


class EmbeddingsEndpoint(BaseHTTPRequestHandler):
    """An OpenAI-compatible ``POST /v1/embeddings`` that embeds with the fast tests' stand-in
    (``FakeEmbedding``, ``dim`` axes) and serves ``model`` only (404 for others, as OpenAI).

    ``failures``: statuses answered, one per request, once ``healthy`` requests were answered
    (429, 503, ...); then
    ``answer``: ``"vectors"``, ``"too_few"`` (one vector less), ``"ragged"`` (the last vector one
    axis short), ``"not_a_list"`` (a JSON object without data), or ``"grow"`` (vectors one axis
    longer on each request). ``requests``: each request's (Authorization, body)."""

    model = "stand-in-embedder"
    dim = 64
    failures: list = []
    healthy = 0
    answer = "vectors"
    requests: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        from support.fakes import FakeEmbedding

        cls = type(self)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        cls.requests.append((self.headers.get("Authorization", ""), body))
        if cls.failures and len(cls.requests) > cls.healthy:
            status = cls.failures.pop(0)
            return send_json(self, status, {"error": {"message": f"failure {status}", "code": status}})
        if body.get("model") != cls.model:
            return send_json(self, 404, {"error": {"message": f"model {body.get('model')!r} not found",
                                              "code": "model_not_found"}})  # fmt: skip
        if cls.answer == "not_a_list":
            return send_json(self, 200, {"object": "list", "detail": "no data here"})
        dim = cls.dim + (len(cls.requests) if cls.answer == "grow" else 0)
        vectors = [FakeEmbedding(dim)._vector(text).tolist() for text in body["input"]]
        if cls.answer == "too_few":
            vectors = vectors[:-1]
        if cls.answer == "ragged":
            vectors[-1] = vectors[-1][:-1]
        data = [{"object": "embedding", "index": i, "embedding": [3 * x for x in v]}  # not unit
                for i, v in enumerate(vectors)]  # fmt: skip
        send_json(self, 200, {"object": "list", "data": data, "model": cls.model,
                         "usage": {"prompt_tokens": 1, "total_tokens": 1}})  # fmt: skip
