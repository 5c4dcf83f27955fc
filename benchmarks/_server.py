"""Start and stop a ``milvus-lite server`` (Milvus Lite behind the Milvus gRPC protocol)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from _common import free_port, wait_for_port


def server_command() -> list[str]:
    """``milvus-lite`` beside this interpreter (the virtualenv's), else on PATH, else ``-m``."""
    beside = Path(sys.executable).parent / "milvus-lite"
    found = str(beside) if beside.is_file() else shutil.which("milvus-lite")
    return [found] if found else [sys.executable, "-m", "milvus_lite"]


def _default_sigint() -> None:
    """In the child before exec: a shell's background job ignores SIGINT, and an ignored signal
    stays ignored across exec; reset it so that Ctrl-C (``stop_server``) shuts down cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_server(data_dir: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """A server on 127.0.0.1 and a free port; returns the process and its ``http://`` URI."""
    port = free_port()
    # The server imports pymilvus, which refuses a MILVUS_URI that is not an http(s) URL.
    env = {k: v for k, v in os.environ.items() if k != "MILVUS_URI"}
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [
                *server_command(),
                "server",
                "--data-dir",
                str(data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_default_sigint,
        )
    try:
        wait_for_port(port, process)
    except RuntimeError as err:
        stop_server(process)
        raise RuntimeError(f"milvus-lite server: {err}:\n{log_path.read_text()[-2000:]}") from None
    return process, f"http://127.0.0.1:{port}"


def stop_server(process: subprocess.Popen) -> None:
    """Ctrl-C (the server closes its data folder cleanly), then SIGTERM, then SIGKILL."""
    for sig, wait_s in ((signal.SIGINT, 60), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
