"""``python -m milvus_rag ask`` as a user runs it: fresh processes, warm caches, offline.

Set-up (not timed): a temporary data folder, the packaged MiniLM converted to ONNX there, and
``ingest`` of the FAQ into a temporary Milvus Lite folder. Then ``--runs`` times
``python -m milvus_rag ask QUESTION --timings``, each a new interpreter, with ``HF_HUB_OFFLINE=1``,
an empty Hugging Face cache (``EMBEDDING_MODEL=auto`` falls back to the packaged model, as on
a machine that never downloaded the tutorial's) and no ``LLM_BASE_URL`` (the local answerer).
Printed: the machine, the load average before and after each run, each run's wall time (as the
shell sees it) and the command's own split (``--timings``), then the best and the median.

``--src DIR`` runs another checkout's ``src`` (e.g. an export of ``main``) with this virtualenv,
for a before/after on the same machine and load; ``--model minilm`` skips the ``auto`` decision.
``--tutorial-model`` puts the tutorial's model in that Hugging Face cache first, so that ``auto``
loads ``DefaultEmbeddingFunction`` by its own code (pymilvus.model, transformers) as on a machine
that downloaded it once. The hub cannot be reached here, so the cache holds the tests' stand-in
(``tests/support/hf_standin.py``: the tutorial's two repositories in the hub's layout, with
MiniLM's weights exported as the real ``model.onnx`` is shaped): the loading path is the real
one, the forward pass is MiniLM's. ``--python PATH`` runs the command with another virtualenv's
interpreter, e.g. one made by ``pip install -r requirements.txt`` alone, without torch (which
transformers imports when it is installed). ``--record FILE`` also writes the figures as JSON
(``benchmarks/results/``, from which ``scripts/readme_figures.py`` writes the README's table).
It measures; it asserts nothing.

    python benchmarks/bench_ask.py                      # 5 runs
    python benchmarks/bench_ask.py --runs 3 --src /tmp/main-export/src
    python benchmarks/bench_ask.py --tutorial-model --record benchmarks/results/ask-tutorial-model.json
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, SHARED_ZIP, load_average, print_machine, record

SPLIT = re.compile(r"^Timings: (.*); total ([0-9.]+) s", re.M)


def has_torch(python: str) -> bool:
    """Whether torch is installed for ``python`` (transformers imports it whenever it is)."""
    code = "import importlib.util; print(importlib.util.find_spec('torch') is not None)"
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip() == "True"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--question", default="How is data stored in milvus?")
    parser.add_argument("--docs", default=os.environ.get("MILVUS_DOCS_ZIP") or str(SHARED_ZIP))
    parser.add_argument("--src", default=str(REPO / "src"), help="the package's source folder")
    parser.add_argument("--model", default="auto", help="EMBEDDING_MODEL (default auto)")
    parser.add_argument("--tutorial-model", action="store_true",
                        help="the tutorial's model cached (the tests' stand-in; see above)")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter that runs the command (default: this one)")
    parser.add_argument("--record", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    print_machine()
    work = Path(tempfile.mkdtemp(prefix="bench-ask-"))
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HF_", "TRANSFORMERS_", "LLM_", "MILVUS_", "EMBEDDING_", "RAG_"))}  # fmt: skip
    env |= {"PYTHONPATH": str(Path(args.src).resolve()), "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(work / "hf"), "HF_HUB_CACHE": str(work / "hf" / "hub"),
            "MILVUS_RAG_DATA_DIR": str(work / "data"), "MILVUS_LITE_PATH": str(work / "milvus.db"),
            "MILVUS_DOCS_ZIP": args.docs, "EMBEDDING_MODEL": args.model, "RAG_PROGRESS": "text"}  # fmt: skip
    if args.tutorial_model:
        from support.hf_standin import build_standin_hf_home, standin_env

        env |= standin_env(build_standin_hf_home(work / "hf"))
    try:
        started = time.perf_counter()
        setup = subprocess.run([args.python, "-m", "milvus_rag", "ingest"], env=env,
                               capture_output=True, text=True)  # fmt: skip
        if setup.returncode:
            print(setup.stderr[-3000:], file=sys.stderr)
            return 1
        print(f"\nset-up (convert the model, ingest the FAQ): {time.perf_counter() - started:.1f} s")
        torch = has_torch(args.python)
        print(f"source: {args.src}; EMBEDDING_MODEL={args.model}; question: {args.question!r}; "
              f"interpreter: {args.python} (torch {'installed' if torch else 'not installed'})\n")
        print("| run | load before | wall s | the command's split (--timings) | load after |")
        print("| --- | --- | --- | --- | --- |")
        walls, runs = [], []
        flag = ["--timings"] if "--timings" in (Path(args.src) / "milvus_rag" / "cli.py").read_text() else []
        for number in range(1, args.runs + 1):
            before = load_average()
            started = time.perf_counter()
            done = subprocess.run([args.python, "-m", "milvus_rag", "ask", args.question, *flag],
                                  env=env, capture_output=True, text=True)  # fmt: skip
            wall = time.perf_counter() - started
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            found = SPLIT.search(done.stderr)
            split = f"{found[1]}; total {found[2]} s" if found else "(none: no --timings here)"
            walls.append(wall)
            runs.append({"wall_s": round(wall, 2), "load_before": before, "load_after": load_average(),
                         "split": found[1] if found else ""})  # fmt: skip
            print(f"| {number} | {before} | {wall:.2f} | {split} | {load_average()} |", flush=True)
        model = next((line for line in done.stderr.splitlines() if line.startswith("Embedding model")), "")
        print(f"\n{model}")
        print(f"ask, wall: best {min(walls):.2f} s, median {statistics.median(walls):.2f} s "
              f"({len(walls)} runs)")  # fmt: skip
        if args.record:
            record(args.record, "bench_ask.py", {
                "model": model, "question": args.question, "runs": runs,
                "best_s": round(min(walls), 2), "median_s": round(statistics.median(walls), 2),
                "tutorial_model": args.tutorial_model, "torch": torch})  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
