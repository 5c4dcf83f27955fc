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
        body = json.dumps(
            {"error": {"message": self.message, "type": "error", "code": str(self.status)}}
        ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("retry-after-ms", "10")  # keep the client's own retries quick
        self.end_headers()
        self.wfile.write(body)
