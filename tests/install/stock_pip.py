"""Install the notebook's requirements as the README says, with the pip a new venv ships.

    python tests/install/stock_pip.py

A fresh ``python3 -m venv`` (pip not upgraded), then ``pip install -r requirements.txt``, then a
Milvus Lite database is created, filled and searched with that venv's Python. Exit 0 when it
works; 1 with the step that failed. Run by `make rehearse` (and so by CI); needs PyPI.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE_PYTHON = os.environ.get("STOCK_PYTHON", "python3")

SMOKE = """
from pymilvus import MilvusClient
client = MilvusClient(uri="./stock.db")
client.create_collection("c", dimension=4, metric_type="IP")
client.insert("c", [{"id": 1, "vector": [1.0, 0, 0, 0], "text": "hi"}])
hits = client.search("c", data=[[1.0, 0, 0, 0]], limit=1, output_fields=["text"])
assert hits[0][0]["entity"]["text"] == "hi", hits
import milvus_lite, openai, tqdm, papermill, nbmake, jupyterlab, milvus_rag
print("Milvus Lite", milvus_lite.__version__, "works")
"""


def step(what: str, command: list[str], **kwargs) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    print(f"{what}: exit {done.returncode} in {time.monotonic() - started:.0f} s", flush=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"error: {what} failed (exit {done.returncode}).")
    return done


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="stock-pip-"))
    try:
        venv = work / "venv"
        step("python3 -m venv", [BASE_PYTHON, "-m", "venv", str(venv)])
        python = str(venv / "bin" / "python")
        pip = step("pip --version", [python, "-m", "pip", "--version"]).stdout.split()[1]
        print(f"stock pip {pip}")
        step("pip install -r requirements.txt", [python, "-m", "pip", "install", "--quiet",
             "-r", "requirements.txt"], cwd=REPO)  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "MILVUS_URI"}
        print(step("Milvus Lite smoke test", [python, "-c", SMOKE], cwd=work, env=env).stdout.strip())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
