"""Start and stop a ``milvus-lite server``: Milvus Lite behind the Milvus gRPC protocol.

It stands in for a Milvus server (same protocol, ``MILVUS_URI=http://127.0.0.1:PORT``) in
the tests and benchmarks, and lets anyone try the server path without Docker::

    from milvus_rag.lite_server import start, stop
    process, uri = start("./lite-server-data", "./lite-server.log")
    ...  # MILVUS_URI=uri
    stop(process)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from milvus_rag.errors import RagError

STARTUP_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command() -> list[str]:
    """``milvus-lite`` beside this interpreter (the virtualenv's), else on PATH, else ``-m``."""
    beside = Path(sys.executable).parent / "milvus-lite"
    found = str(beside) if beside.is_file() else shutil.which("milvus-lite")
    return [found] if found else [sys.executable, "-m", "milvus_lite"]


def _default_sigint() -> None:
    """In the child before exec: a shell's background job ignores SIGINT, and an ignored signal
    stays ignored across exec; reset it so that Ctrl-C (``stop``) shuts the server down cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start(
    data_dir: Path | str, log_path: Path | str, timeout_s: float = STARTUP_TIMEOUT_S
) -> tuple[subprocess.Popen, str]:
    """A server on 127.0.0.1 and a free port, data in ``data_dir``, output in ``log_path``.

    Returns the process and its ``http://127.0.0.1:PORT`` URI once the port accepts
    connections; a server that exits or does not listen in time is stopped and reported
    (with the end of its log) as a RagError.
    """
    port = free_port()
    # The server imports pymilvus, which refuses a MILVUS_URI that is not an http(s) URL.
    env = {k: v for k, v in os.environ.items() if k not in ("MILVUS_URI", "MILVUS_TOKEN")}
    command = [*server_command(), "server", "--data-dir", str(data_dir),
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env,
                                   preexec_fn=_default_sigint)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    problem = ""
    while not problem and not _listening(port):
        if process.poll() is not None:
            problem = f"exited with code {process.returncode} before listening"
        elif time.monotonic() > deadline:
            problem = f"did not listen on 127.0.0.1:{port} within {timeout_s:g} s"
        else:
            time.sleep(0.2)
    if not problem and process.poll() is not None:  # something else answered on that port
        problem = f"exited with code {process.returncode} (port {port} taken?)"
    if problem:
        stop(process)
        tail = Path(log_path).read_text(errors="replace")[-3000:]
        raise RagError(f"milvus-lite server {problem}; its log ends with:\n{tail}")
    return process, f"http://127.0.0.1:{port}"


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C (the server closes its data folder cleanly), then SIGTERM, then SIGKILL."""
    for sig, wait_s in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
