"""Run All, headless: the whole notebook under papermill, and each cell's share of the time.

    python benchmarks/bench_notebook.py [--docs ZIP] [--runs 2] [--model auto] [--src DIR]

Offline and without a key, as `make run` does (``EMBEDDING_MODEL=auto`` with an empty Hugging
Face cache: the packaged model; the local answerer, a fresh Milvus Lite folder per run, text
progress bars). ``--model minilm`` names the model instead of deciding (the figures before issue
28 were taken so); ``--src DIR`` makes the kernel import another checkout's package (a before and
after on the same load). The first run starts from empty caches (the
docs unzipped, the packaged model converted to ONNX once); later runs reuse them, as a reader's
second session does. Prints, per run, the wall time of the papermill call (kernel start
included) and the sum of the cells; then each cell's seconds and share of that sum, per run.
Everything goes to a temporary folder, removed at the end. ``--record FILE`` also writes the
figures as JSON (``benchmarks/results/``, from which ``scripts/readme_figures.py`` writes the
README's table).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, SHARED_ZIP, load_average, markdown_table, print_machine, record

NOTEBOOK = REPO / "notebooks" / "build_RAG_with_milvus_and_lepton.ipynb"


def run_once(workdir: Path, docs: Path, index: int) -> tuple[float, list[tuple[str, float]]]:
    import papermill as pm

    output = workdir / f"run{index}.ipynb"
    started = time.perf_counter()
    pm.execute_notebook(str(NOTEBOOK), str(output), cwd=str(NOTEBOOK.parent),
                        kernel_name="python3", progress_bar=False,
                        parameters={"DOCS_SOURCE": str(docs),
                                    "MILVUS_URI": str(workdir / f"run{index}.db")})  # fmt: skip
    wall = time.perf_counter() - started
    cells = json.loads(output.read_text())["cells"]
    timings = [(cell_name(c), c["metadata"]["papermill"]["duration"] or 0.0)
               for c in cells if c["cell_type"] == "code"]  # fmt: skip
    return wall, timings


def cell_name(cell: dict) -> str:
    """The cell's id; papermill's own parameters cell gets a random one, so it is named."""
    if "injected-parameters" in cell["metadata"].get("tags", []):
        return "(papermill's injected parameters)"
    return cell.get("id", "?")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default=os.environ.get("MILVUS_DOCS_ZIP") or str(SHARED_ZIP))
    parser.add_argument("--runs", type=int, default=2, help="the first one starts cold")
    parser.add_argument("--model", default="auto", help="EMBEDDING_MODEL (default auto)")
    parser.add_argument("--src", default="", help="the package's source folder for the kernel")
    parser.add_argument("--record", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    print_machine()
    workdir = Path(tempfile.mkdtemp(prefix="bench-notebook-"))
    for name in ("LLM_BASE_URL", "LLM_API_KEY", "LEPTONAI_TOKEN", "MILVUS_URI", "MILVUS_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update({
        "EMBEDDING_MODEL": args.model, "HF_HUB_OFFLINE": "1", "RAG_PROGRESS": "text",
        "HF_HOME": str(workdir / "hf"), "HF_HUB_CACHE": str(workdir / "hf" / "hub"),
        "MILVUS_RAG_DATA_DIR": str(workdir / "data"),
        "MILVUS_RAG_MODEL_CACHE": str(workdir / "models"),
    })  # fmt: skip
    if args.src:
        os.environ["PYTHONPATH"] = str(Path(args.src).resolve())
    load_at_start = load_average()
    print(f"EMBEDDING_MODEL={args.model}; package: {args.src or 'this checkout'}; load average "
          f"{load_at_start}", flush=True)  # fmt: skip
    try:
        runs = [run_once(workdir, Path(args.docs), i) for i in range(args.runs)]
        print(f"load average after the runs: {load_average()}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("## Run All, headless (papermill)")
    rows = [[f"{i + 1}" + (" (cold caches)" if i == 0 else ""), round(wall, 1),
             round(sum(d for _, d in cells), 1)] for i, (wall, cells) in enumerate(runs)]  # fmt: skip
    print(markdown_table(["run", "wall s (kernel start included)", "sum of cells s"], rows))
    print(f"\n## Cells, slowest first in run {len(runs)} (seconds and share of the sum of cells)")
    totals = [sum(d for _, d in cells) or 1.0 for _, cells in runs]
    order = [cid for cid, _ in sorted(runs[-1][1], key=lambda cell: -cell[1])]
    seconds = [dict(cells) for _, cells in runs]
    header = ["cell id"] + [h for i in range(len(runs)) for h in (f"run {i + 1} s", "share")]
    table = [[cid] + [v for i, t in enumerate(totals)
                      for v in (round(seconds[i].get(cid, 0.0), 2),
                                f"{100 * seconds[i].get(cid, 0.0) / t:.0f}%")]
             for cid in order]  # fmt: skip
    print(markdown_table(header, table))
    if args.record:
        record(args.record, "bench_notebook.py", {
            "model": args.model, "load_at_start": load_at_start,
            "runs": [{"wall_s": round(wall, 2), "cells_s": round(sum(d for _, d in cells), 2),
                      "cells": {cid: round(d, 2) for cid, d in cells}} for wall, cells in runs]})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
