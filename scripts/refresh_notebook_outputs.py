"""Re-execute the tutorial notebook in place, so its committed outputs are those of a real run.

    python scripts/refresh_notebook_outputs.py [--docs PATH_OR_URL]

It runs offline and without a key (the packaged model and the local answerer), with the
parameters at their defaults except where the environment says otherwise, in a temporary
Milvus Lite database; then it strips run metadata (papermill's, timings) and refuses to
save outputs that hold a path of this machine or anything shaped like a key.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nbformat
import papermill as pm
from check_secrets import findings  # the one list of key and machine-path patterns

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "build_RAG_with_milvus_and_lepton.ipynb"


def _collapse_progress(text: str) -> str:
    """What a terminal would show: each line as left by its last carriage return."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def clean(nb) -> None:
    """Drop run metadata; merge stream outputs and keep only the final state of progress bars."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
        if not cell.metadata.get("tags", True):
            cell.metadata.pop("tags")
        if cell.cell_type != "code":
            continue
        merged = []
        for output in cell.outputs:
            previous = merged[-1] if merged else None
            if (
                output.get("output_type") == "stream"
                and previous is not None
                and previous.get("output_type") == "stream"
                and previous.get("name") == output.get("name")
            ):
                previous["text"] += output["text"]
            else:
                merged.append(output)
        for output in merged:
            if output.get("output_type") == "stream":
                output["text"] = _collapse_progress(output["text"])
        cell.outputs = [o for o in merged if o.get("output_type") != "stream" or o["text"].strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", help="docs zip path or URL (default: $MILVUS_DOCS_ZIP)")
    args = parser.parse_args()
    if args.docs:
        os.environ["MILVUS_DOCS_ZIP"] = str(Path(args.docs).resolve())
    for name in ("LLM_BASE_URL", "LLM_API_KEY", "LEPTONAI_TOKEN", "MILVUS_TOKEN", "MILVUS_URI"):
        os.environ.pop(name, None)
    os.environ["RAG_PROGRESS"] = "text"  # saved outputs hold text bars (stdout), not widgets
    # ignore_cleanup_errors: on Windows, a file the kernel had open may not be free at once
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as scratch:
        os.environ["MILVUS_LITE_PATH"] = str(Path(scratch) / "milvus_demo.db")
        output = Path(scratch) / NOTEBOOK.name
        pm.execute_notebook(
            str(NOTEBOOK),
            str(output),
            cwd=str(NOTEBOOK.parent),
            kernel_name="python3",
            progress_bar=False,
        )
        nb = nbformat.read(output, as_version=4)
    clean(nb)
    text = nbformat.writes(nb)
    problems = findings(NOTEBOOK.relative_to(REPO), text)
    if problems:
        print(f"error: not saved: {'; '.join(problems)}", file=sys.stderr)
        return 1
    NOTEBOOK.write_text(text + ("" if text.endswith("\n") else "\n"), encoding="utf-8")
    print(f"Saved outputs of a fresh run into {NOTEBOOK.relative_to(REPO)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
