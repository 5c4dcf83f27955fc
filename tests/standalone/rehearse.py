"""The tests of a Milvus server, against a real Milvus standalone, in a private network.

Run it with the dev environment's Python, as root (it makes namespaces), from anywhere:

    .venv/bin/python tests/standalone/rehearse.py [PYTEST ARGS]

1. Builds, once, the standalone's virtual environment (PyPI's ``milvus`` 2.3.5, under
   ``.cache/``; see ``tests/support/milvus_servers.py``), while PyPI can still be reached.
2. Starts itself again in new network, PID and mount namespaces (``unshare``): the network has
   only loopback (brought up here), so the standalone, which listens on every interface, can be
   reached from nowhere else, and every process started in there dies with this one.
3. Runs, with ``MILVUS_TEST_ENGINES=standalone``: the engine tests (``test_milvus_engines.py``,
   the table of ``tests/support/ENGINES.md``), the command line on the server
   (``test_server.py``: ingest, ask, eval, own documents, ``--all-docs``, a killed server) and
   the notebook headless (``test_server_notebook.py``), and prints how long each step took.

Exit status 0 when every step passed; otherwise the first failing step's (pytest's) status.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from support.milvus_servers import loopback_only, standalone_launcher  # noqa: E402

SHARED_ZIP = REPO.parent / "shared" / "data" / "milvus_docs_2.4.x_en.zip"
STEPS = [  # (what, test files)
    ("engine tests", ["tests/test_milvus_engines.py"]),
    ("command line", ["tests/test_server.py"]),
    ("notebook", ["tests/test_server_notebook.py"]),
]
INSIDE = "--inside-private-network"


def inside(pytest_args: list[str]) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    if not loopback_only():
        print("error: the private network has more than loopback; nothing was run.")
        return 1
    env = {**os.environ, "MILVUS_TEST_ENGINES": "standalone"}
    for what, files in STEPS:
        started = time.monotonic()
        command = [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider",
                   "-q", *files, *pytest_args]  # fmt: skip
        code = subprocess.run(command, cwd=REPO, env=env).returncode
        print(f"standalone rehearsal, {what}: {'passed' if code == 0 else 'FAILED'} in "
              f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
        if code not in (0, 5):  # 5: every test deselected by the caller's -k
            return code
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == [INSIDE]:
        return inside(argv[1:])
    if os.geteuid() != 0:
        print("error: the standalone rehearsal makes network and PID namespaces, which needs "
              "root: run it as root (CI does), or skip it.")  # fmt: skip
        return 1
    started = time.monotonic()
    standalone_launcher()  # needs PyPI the first time: before the network is cut off
    print(f"standalone rehearsal: its venv ready in {time.monotonic() - started:.0f} s", flush=True)
    if not os.environ.get("MILVUS_DOCS_ZIP") and SHARED_ZIP.is_file():
        os.environ["MILVUS_DOCS_ZIP"] = str(SHARED_ZIP)
    command = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
               sys.executable, __file__, INSIDE, *argv]  # fmt: skip
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
