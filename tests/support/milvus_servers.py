"""Start and stop a real Milvus gRPC server on 127.0.0.1, for the tests and the benchmarks.

Two engines speak Milvus's gRPC protocol without Docker:

``lite3``
    Milvus Lite 3.x, the pure-Python engine installed in this interpreter's environment,
    served by its ``milvus-lite server`` command.
``lite25``
    milvus-lite 2.5.1, Milvus's C++ engine (segcore/knowhere) behind a gRPC server. Both
    versions install the module ``milvus_lite``, so 2.5.1 lives in a virtual environment of
    its own under the repository's ``.cache/`` (one per Python version), built on first use
    (``pip install``) and reused after; only its ``milvus`` binary is run.
``standalone``
    Milvus 2.3.5 standalone, the real Go server (``milvus run standalone``, reporting
    ``v2.3.5-lite``), from PyPI's ``milvus`` package in a virtual environment of its own under
    ``.cache/``, started by that package's ``milvus-server`` launcher. It listens on **all
    network interfaces** (its etcd on 127.0.0.1), so it starts only inside a private network
    namespace that has nothing but loopback (``tests/standalone/rehearse.py`` runs the tests in
    one); elsewhere ``start`` refuses it.

The engines the tests run against: ``ENGINES`` (lite3 and lite25), or those named in
``MILVUS_TEST_ENGINES`` (comma-separated; the standalone rehearsal sets ``standalone``).

Usage::

    from support.milvus_servers import start

    with start("lite25", tmp / "data", tmp / "server.log") as server:
        client = MilvusClient(uri=server.uri)  # http://127.0.0.1:PORT
        ...

Ports: each server binds port 0, so the kernel gives it a port nobody holds, and the port is
read back from the sockets of the very process started (``/proc``, so Linux only). No port
is picked, released and bound later, so none can be lost to another process in between.

The standalone has no lifeline: it is stopped by its process group (SIGINT to the launcher,
which ignores SIGTERM, then SIGKILL to the group), and its ports are those the launcher wrote
into ``DATA/configs/milvus.yaml`` (it silently takes the next port when one is still in
TIME-WAIT), awaited until its health check answers. What outlives a killed test process dies
with the PID namespace the rehearsal runs in.

Lifetime: the lite servers live while this process holds its lifeline, the write end of the
server's stdin (lite3) or a lock on a file in its data folder (lite25). ``Server.stop``
releases it, and either engine then shuts down cleanly (lite3 drains requests and closes its
data folder, lite25 exits 0); if that takes too long it gets SIGTERM, then SIGKILL. When this
process dies, even by SIGKILL, the kernel releases the lifeline and the server exits too:
no orphan keeps a port and a data folder. Servers run in a session of their own, so a
Ctrl-C at the terminal reaches only this process, whose clean-up then stops them in order.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LITE_ENGINES = ("lite3", "lite25")
KNOWN_ENGINES = (*LITE_ENGINES, "standalone")
ENGINES = tuple(e for e in os.environ.get("MILVUS_TEST_ENGINES", ",".join(LITE_ENGINES)).split(",")
                if e)  # fmt: skip
LITE25_VERSION = "2.5.1"
STANDALONE_VERSION = "2.3.5"
REPO = Path(__file__).resolve().parents[2]
# One venv per Python version: a venv belongs to the interpreter that made it (its bin/python).
PYTHON_TAG = f"py{sys.version_info.major}.{sys.version_info.minor}"
LITE25_VENV = REPO / ".cache" / f"milvus-lite-{LITE25_VERSION}-{PYTHON_TAG}"
STANDALONE_VENV = REPO / ".cache" / f"milvus-{STANDALONE_VERSION}-{PYTHON_TAG}"
STANDALONE_PORT = 19530  # asked for; the launcher takes the next free one if it is taken
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 3000

_LOCKS_HELD: set[str] = set()  # the lite25 lock files that this process holds
_LOCKS_GUARD = threading.Lock()

# pymilvus reads these when imported (the lite3 server imports it) and refuses a MILVUS_URI
# that is not an http(s) URL; a server has no use for the client settings of this process.
_CLIENT_SETTINGS = ("MILVUS_URI", "MILVUS_TOKEN")

# Run by this interpreter: ``milvus-lite server`` on 127.0.0.1, port 0, that prints the
# milvus-lite version first and shuts down cleanly on SIGINT, on SIGTERM (the CLI alone
# dies on SIGTERM without closing its data folder) and when its stdin reaches end of file.
# The handlers are installed here because an ignored SIGINT is inherited across exec (as
# in a shell's background job), and Python would then leave Ctrl-C ignored.
_LITE3_MAIN = """\
import os, signal, sys, threading
import milvus_lite
from milvus_lite.cmdline import main

def shut_down(signum, frame):
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal ends it at once
        signal.signal(sig, signal.SIG_DFL)
    raise KeyboardInterrupt

def watch_lifeline():
    while os.read(0, 4096):  # b"" once the parent closes its end or dies
        pass
    os.kill(os.getpid(), signal.SIGINT)

signal.signal(signal.SIGINT, shut_down)
signal.signal(signal.SIGTERM, shut_down)
threading.Thread(target=watch_lifeline, daemon=True).start()
print("milvus-lite", milvus_lite.__version__, flush=True)
sys.exit(main(["server", "--data-dir", sys.argv[1], "--host", "127.0.0.1", "--port", "0"]))
"""


class ServerError(RuntimeError):
    """A server that could not be started (the message ends with the end of its log)."""


@dataclass
class Server:
    """A running server: ``uri`` is ``http://127.0.0.1:PORT``; ``stop()`` or ``with`` ends it."""

    engine: str
    port: int
    process: subprocess.Popen
    data_dir: Path
    log_path: Path
    _lifeline: IO | None = field(repr=False)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Stop the server and return its exit code: 0 for a clean stop of either engine.

        Releases the lifeline (a clean shut-down), waits ``timeout_s``, then SIGTERM and
        10 s, then SIGKILL. Safe to call twice.
        """
        if self.engine == "standalone":
            return self._stop_group(timeout_s)
        if self._lifeline is not None:
            _release(self._lifeline)
            self._lifeline = None
        for sig, wait_s in ((None, timeout_s), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            if sig is not None and self.process.poll() is None:
                self.process.send_signal(sig)
            try:
                return self.process.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
        raise ServerError(f"{self.engine} server (pid {self.process.pid}) survived SIGKILL")

    def _stop_group(self, timeout_s: float) -> int:
        """SIGINT to the launcher (which stops the Go server), then SIGKILL to the group, so
        nothing of it is left; 0 if the launcher exited by itself within ``timeout_s``."""
        code = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                code = self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.process.returncode if code is None else code

    def kill(self) -> None:
        """SIGKILL to the whole process group (a crash: no clean-up), and wait until it is gone."""
        if self._lifeline is not None:  # a lite server's: released, so it can start again
            _release(self._lifeline)
            self._lifeline = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while group_pids(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start(
    engine: str, data_dir: Path | str, log_path: Path | str, timeout_s: float = START_TIMEOUT_S
) -> Server:
    """Start ``engine`` ("lite3" or "lite25") on 127.0.0.1 with its data in ``data_dir``.

    Output goes to ``log_path``. Returns once the server listens; raises ServerError (with
    the end of the log) if it exits first or does not listen within ``timeout_s``. The
    first start of "lite25" may build its virtual environment (see ``lite25_binary``).
    """
    if engine not in KNOWN_ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {KNOWN_ENGINES}")
    data_dir, log_path = Path(data_dir).absolute(), Path(log_path).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in _CLIENT_SETTINGS}
    if engine == "standalone":
        return _start_standalone(data_dir, log_path, env, timeout_s)
    if engine == "lite3":
        command = [sys.executable, "-c", _LITE3_MAIN, str(data_dir)]
        env["PYTHONUNBUFFERED"] = "1"
        lifeline = None  # the stdin pipe, made by Popen
    else:
        binary = lite25_binary()
        lock_path = data_dir / ".milvus.db.lock"
        # milvus <db file> <address> <log level> <lock file>: the server waits for the
        # lock in the background and exits as soon as it gets it.
        command = [
            str(binary),
            str(data_dir / "milvus.db"),
            "127.0.0.1:0",
            "WARNING",
            str(lock_path),
        ]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(binary.parent), env.get("LD_LIBRARY_PATH")) if p
        )
        lifeline = _lock(lock_path)
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if engine == "lite3" else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=data_dir,
                start_new_session=True,
            )
    except BaseException:
        if lifeline is not None:
            _release(lifeline)
        raise
    server = Server(engine, 0, process, data_dir, log_path, lifeline or process.stdin)
    deadline = time.monotonic() + timeout_s
    problem = ""
    while not problem:
        ports = listening_ports(process.pid)
        if process.poll() is not None:
            problem = f"exited with code {process.returncode} before listening"
        elif len(ports) == 1:
            server.port = ports[0]
            return server
        elif len(ports) > 1:
            problem = f"listens on several ports {ports}"
        elif time.monotonic() > deadline:
            problem = f"did not listen within {timeout_s:g} s"
        else:
            time.sleep(0.1)
    server.stop(timeout_s=5)
    tail = log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    raise ServerError(f"{engine} server {problem}; its log ({log_path}) ends with:\n{tail}")


def loopback_only() -> bool:
    """Whether this process's network namespace has no interface but loopback (Linux)."""
    try:  # /proc/self/net is this namespace's (/sys/class/net is the host's until remounted)
        lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    return [line.split(":", 1)[0].strip() for line in lines] == ["lo"]


def group_pids(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (from /proc; zombies left out)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:  # state, ppid, pgrp
            pids.append(int(stat.parent.name))
    return pids


def _start_standalone(data_dir: Path, log_path: Path, env: dict, timeout_s: float) -> Server:
    """Start Milvus standalone (see the module's docstring) and wait until it answers."""
    if not loopback_only():
        raise ServerError("The Milvus standalone listens on every network interface, and this "
                          "network has more than loopback: run it in a private network "
                          "namespace (python tests/standalone/rehearse.py makes one).")  # fmt: skip
    launcher = standalone_launcher()
    config = data_dir / "configs" / "milvus.yaml"
    config.unlink(missing_ok=True)  # rewritten by the launcher with the ports it chose
    command = [str(launcher), "--data", str(data_dir), "--proxy-port", str(STANDALONE_PORT)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, env=env, cwd=data_dir,
                                   start_new_session=True)  # fmt: skip
    server = Server("standalone", 0, process, data_dir, log_path, None)
    deadline, problem = time.monotonic() + timeout_s, ""
    while not problem:
        if process.poll() is not None:
            problem = f"exited with code {process.returncode} before answering"
        elif time.monotonic() > deadline:
            problem = f"did not answer within {timeout_s:g} s"
        elif (ports := _standalone_ports(process.pid, config)) and _healthy(ports[1]):
            server.port = ports[0]
            return server
        else:
            time.sleep(0.2)
    server.kill()
    logs = [log_path, *sorted((data_dir / "logs").glob("*.log"))]
    tail = "".join(p.read_text(errors="replace")[-LOG_TAIL_CHARS:] for p in logs if p.is_file())
    raise ServerError(f"standalone server {problem}; its logs ({log_path}, {data_dir / 'logs'}) "
                      f"end with:\n{tail}")  # fmt: skip


def _standalone_ports(pgid: int, config: Path) -> tuple[int, int] | None:
    """(proxy port, health port) once the Go server of group ``pgid`` listens on both."""
    for pid in group_pids(pgid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        metrics = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"METRICS_PORT=")]
        if not metrics or not config.is_file():  # not yet the Go server (it gets METRICS_PORT)
            continue
        found = re.search(r"(?m)^proxy:\n(?:  .*\n|\s*\n)*?  port: (\d+)", config.read_text())
        ports = int(found.group(1)) if found else 0, int(metrics[0])
        if found and set(ports) <= set(listening_ports(pid)):
            return ports
    return None


def _healthy(port: int) -> bool:
    """Whether the standalone's health check on 127.0.0.1:``port`` says OK."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return b"OK" in answer.read()
    except OSError:
        return False


def _lock(path: Path) -> IO:
    """Lock ``path`` for a lite25 server: the file stays open, and locked, until it stops.

    The binary expects a POSIX record lock (``lockf``), which belongs to the process, not to
    the open file: a second lock by this same process would succeed, and closing either file
    would release both. ``_LOCKS_HELD`` refuses that second start instead.
    """
    with _LOCKS_GUARD:
        if str(path) in _LOCKS_HELD:
            raise ServerError(f"{path.parent} is in use by another lite25 server of this process")
        import fcntl  # here, not at the top: the fast tier imports this module on Windows too

        lock = open(path, "a")  # closed by Server.stop
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise ServerError(f"{path.parent} is in use by another lite25 server") from None
        _LOCKS_HELD.add(str(path))
        return lock


def _release(lifeline: IO) -> None:
    """Close a lifeline: the server's stdin pipe (lite3) or its locked file (lite25)."""
    with _LOCKS_GUARD:
        _LOCKS_HELD.discard(str(lifeline.name))
        lifeline.close()


def running(engine: str, folder: Path) -> Iterator[Server]:
    """Yield a started server (data and log in ``folder``) and stop it afterwards.

    For a pytest fixture, without importing pytest here::

        @pytest.fixture(scope="module")
        def server(tmp_path_factory):
            yield from running("lite3", tmp_path_factory.mktemp("lite3"))
    """
    with start(engine, Path(folder) / "data", Path(folder) / "server.log") as server:
        yield server


def listening_ports(pid: int) -> list[int]:
    """The TCP ports on which process ``pid`` itself listens (from /proc; Linux only)."""
    proc = Path("/proc", str(pid))
    if not Path("/proc/self/net/tcp").exists():
        raise ServerError("finding a server's port needs Linux's /proc")
    inodes = set()
    try:
        for fd in (proc / "fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
        tables = [(proc / "net" / name).read_text() for name in ("tcp", "tcp6")]
    except (FileNotFoundError, ProcessLookupError):  # the process has exited
        return []
    ports = set()
    for table in tables:
        for line in table.splitlines()[1:]:
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            columns = line.split()
            if columns[3] == "0A" and columns[9] in inodes:  # 0A: LISTEN
                ports.add(int(columns[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def lite25_binary(venv: Path = LITE25_VENV) -> Path:
    """The ``milvus`` binary of milvus-lite 2.5.1, in its own virtual environment ``venv``
    (about 200 MB). setuptools: milvus-lite 2.5.1's __init__ imports pkg_resources, which venvs
    of Python 3.12+ lack (no setuptools in them) and which setuptools 81 removed."""
    return _cached_venv(venv, [f"milvus-lite=={LITE25_VERSION}", "setuptools<81"], _LITE25_FIND,
                        LITE25_VERSION)  # fmt: skip


def standalone_launcher(venv: Path = STANDALONE_VENV) -> Path:
    """The ``milvus-server`` launcher of PyPI's milvus 2.3.5, in its own virtual environment
    ``venv`` (about 80 MB; setuptools for its pkg_resources import). Building it needs PyPI, so
    it is built before entering a private network namespace (rehearse.py does)."""
    return _cached_venv(venv, [f"milvus=={STANDALONE_VERSION}", "setuptools<81"],
                        _STANDALONE_FIND, STANDALONE_VERSION)  # fmt: skip


def _cached_venv(venv: Path, packages: list[str], find: str, version: str) -> Path:
    """The program that ``find`` (run in ``venv``) names, with ``packages`` installed there.

    Built on first use (``python -m venv``, then ``pip install``); reused while its marker file
    names a program that exists. A file lock beside ``venv`` makes a second process wait for the
    first one's build instead of racing it, and the marker is written last, so a build that
    died half-way is started over.
    """
    marker = venv / "milvus-binary.txt"

    def built() -> Path | None:
        if marker.is_file():
            binary = venv / marker.read_text().strip()
            if binary.is_file() and os.access(binary, os.X_OK):
                return binary
        return None

    if binary := built():
        return binary
    venv.parent.mkdir(parents=True, exist_ok=True)
    import fcntl  # the servers run on Linux

    with open(venv.parent / f"{venv.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another process builds it
        if binary := built():
            return binary
        shutil.rmtree(venv, ignore_errors=True)
        python = venv / "bin" / "python"
        _run([sys.executable, "-m", "venv", str(venv)])
        _run([str(python), "-m", "pip", "install", "--quiet", *packages])
        found = _run([str(python), "-c", find]).split()
        if found[:1] != [version] or len(found) != 2 or not Path(found[1]).is_file():
            raise ServerError(f"{packages[0]} in {venv} looks wrong: {found}")
        binary = Path(found[1]).resolve().relative_to(venv.resolve())
        marker.with_suffix(".tmp").write_text(f"{binary}\n")
        marker.with_suffix(".tmp").replace(marker)
        return venv / binary


_LITE25_FIND = (
    "import importlib.metadata, os, milvus_lite.server as s; "
    "print(importlib.metadata.version('milvus-lite'), os.path.join(s.BIN_PATH, 'milvus'))"
)


_STANDALONE_FIND = (
    "import importlib.metadata, os, sys; print(importlib.metadata.version('milvus'), "
    "os.path.join(os.path.dirname(sys.executable), 'milvus-server'))"
)


def _run(command: list[str]) -> str:
    env = {k: v for k, v in os.environ.items() if k not in _CLIENT_SETTINGS}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-LOG_TAIL_CHARS:]
        raise ServerError(f"{' '.join(command)} failed ({result.returncode}):\n{output}")
    return result.stdout
