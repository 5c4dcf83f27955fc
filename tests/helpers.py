"""Helpers shared by the test modules (imported as ``helpers``; tests/ is on sys.path)."""

import os
import subprocess
import sys
from pathlib import Path

NOTEBOOK = (
    Path(__file__).resolve().parents[1] / "notebooks" / "build_RAG_with_milvus_and_lepton.ipynb"
)


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``python -m milvus_rag ARGS`` in a subprocess, the environment plus ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "milvus_rag", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def execute_notebook(output: Path, **parameters) -> Path:
    """Run the tutorial notebook with papermill (from notebooks/) into ``output``."""
    import papermill as pm

    pm.execute_notebook(str(NOTEBOOK), str(output), cwd=str(NOTEBOOK.parent),
                        kernel_name="python3", parameters=parameters, progress_bar=False)  # fmt: skip
    return output


def stdout_of(cell) -> str:
    """Everything a notebook cell printed to stdout."""
    return "".join(
        o.get("text", "")
        for o in cell.get("outputs", [])
        if o.get("output_type") == "stream" and o.get("name") == "stdout"
    )


def source_cell(nb, fragment: str):
    """The first code cell whose source contains ``fragment``."""
    return next(c for c in nb.cells if c.cell_type == "code" and fragment in c.source)
