"""The READMEs' figures, each block the verbatim output of the command its marker names.

    python scripts/readme_figures.py [--check] [--docs ZIP]

A block in README.md or data/eval/README.md looks like::

    <!-- output of: python -m milvus_rag eval --markdown --questions data/eval/real_test.jsonl -->
    ...what that command printed...
    <!-- end of output -->

A second kind of block (in those files and benchmarks/README.md) holds benchmark figures,
written from what the benchmarks recorded (``python benchmarks/bench_*.py --record
benchmarks/results/NAME.json``)::

    <!-- benchmark table: benchmarks/results -->
    ...a table with a row per JSON file in that folder...
    <!-- end of benchmark -->

    <!-- benchmark report: benchmarks/results/NAME.json -->
    ...the report that benchmark printed and recorded...
    <!-- end of benchmark -->

Without ``--check`` each block is replaced by what its command prints now; with ``--check``
nothing is written and the exit code is 1 if any block differs (the slow test
tests/test_readme_figures.py does the same). Commands run offline with the packaged model
(``EMBEDDING_MODEL=minilm``), on a temporary Milvus Lite folder and data cache, from the
checkout, so the figures are the ones anybody can reproduce with the same command. The local
answerer runs meanwhile, serving the packaged model as ``all-MiniLM-L6-v2`` at
``EMBEDDING_BASE_URL`` (as ``python -m milvus_rag serve`` does), for ``eval --models``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READMES = [REPO / "README.md", REPO / "data" / "eval" / "README.md"]
SHARED_ZIP = REPO.parent / "shared" / "data" / "milvus_docs_2.4.x_en.zip"
BLOCK = re.compile(
    r"(<!-- output of: python -m milvus_rag (?P<args>[^\n]*?) -->\n)(?P<body>.*?)(<!-- end of output -->)",
    re.S,
)

BENCHMARK_READMES = [*READMES, REPO / "benchmarks" / "README.md"]
TABLE = re.compile(r"(<!-- benchmark (?P<kind>table|report): (?P<target>[^\n]*?) -->\n)(?P<body>.*?)"
                   r"(<!-- end of benchmark -->)", re.S)  # fmt: skip
SCRIPTS = ("bench_ask.py", "bench_notebook.py", "bench_quantized.py")  # the table's order


def run(args: str, docs: Path, scratch: Path) -> str:
    """What ``python -m milvus_rag ARGS`` prints on stdout, offline and on a fresh Milvus Lite."""
    from milvus_rag import local_answerer

    prefixes = ("LLM_", "MILVUS_", "RAG_", "EMBEDDING_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(EMBEDDING_MODEL="minilm", EMBEDDING_BASE_URL=local_answerer.base_url(),
               HF_HUB_OFFLINE="1", RAG_PROGRESS="text",
               MILVUS_DOCS_ZIP=str(docs), MILVUS_LITE_PATH=str(scratch / "figures.db"),
               MILVUS_RAG_DATA_DIR=str(scratch / "data"),
               MILVUS_RAG_MODEL_CACHE=os.environ.get("MILVUS_RAG_MODEL_CACHE", str(scratch / "models")))  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "milvus_rag", *shlex.split(args)], cwd=REPO,
                          env=env, capture_output=True, encoding="utf-8", timeout=1800)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"python -m milvus_rag {args} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def blocks(text: str) -> list[re.Match]:
    return list(BLOCK.finditer(text))


def outputs(texts: list[str], docs: Path) -> dict[str, str]:
    """Each command of the blocks in ``texts`` (once, however often it appears) -> its output."""
    commands = dict.fromkeys(m["args"] for text in texts for m in blocks(text))
    with tempfile.TemporaryDirectory(prefix="readme-figures-") as folder:
        return {args: run(args, docs, Path(folder)) for args in commands}


def refreshed(text: str, printed: dict[str, str]) -> str:
    """``text`` with every block's body replaced by what its command printed."""
    return BLOCK.sub(lambda m: m.group(1) + printed[m["args"]] + m.group(4), text)


def _one_minute(load: str) -> float:
    return float(load.split("/")[0].split()[-1])


def _loads(*loads: str) -> str:
    """The 1-minute load averages of ``loads`` ("0.54/0.92/0.98" or "a -> b"), as a range."""
    values = [_one_minute(part) for load in loads for part in load.split("->")]
    low, high = min(values), max(values)
    return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f} to {high:.1f}"


def _ask_row(data: dict) -> list[str]:
    model = "the tutorial's model cached (stand-in files)" if data["tutorial_model"] else "the packaged model"
    model += (", torch installed (the offline extra)" if data["torch"] else
              ", torch not installed (`pip install -r requirements.txt` alone)")  # fmt: skip
    runs = sorted(data["runs"], key=lambda run: run["wall_s"])
    middle = runs[(len(runs) - 1) // 2]
    return [f"`python -m milvus_rag ask`, offline, {model}; a fresh process each",
            f"median **{data['median_s']:.2f} s**, best {data['best_s']:.2f} s ({len(runs)} runs)",
            f"a median run: {middle['split']}",
            _loads(*(run["load_before"] for run in runs), data["load_at_end"])]  # fmt: skip


def _notebook_row(data: dict) -> list[str]:
    cold, *warm = data["runs"]
    walls = sorted(run["wall_s"] for run in warm)
    slowest = sorted(warm[-1]["cells"].items(), key=lambda cell: -cell[1])[:3]
    cells = ", ".join(f"`{name}` {seconds:.1f} s" for name, seconds in slowest)
    return [f"the notebook's Run All, headless (papermill, `EMBEDDING_MODEL={data['model']}`)",
            f"warm **{walls[0]:.1f} to {walls[-1]:.1f} s** ({len(walls)} runs); cold {cold['wall_s']:.1f} s",
            f"slowest cells: {cells} of {warm[-1]['cells_s']:.1f} s in cells",
            _loads(data["load_at_start"], data["load_at_end"])]  # fmt: skip


def _quantized_row(data: dict) -> list[str]:
    (first, base), *others = data["ingest"].items()
    measured = [f"{first} {base['seconds']:.0f} s"] + [
        f"{label} {row['seconds']:.0f} s ({base['seconds'] / row['seconds']:.2f}x)" for label, row in others]
    passes = ", ".join(f"{label} {row['forward_pass_s']:.0f} s" for label, row in data["ingest"].items())
    return [f"`ingest --all-docs` ({base['rows']:,} rows), per variant of MiniLM's forward pass",
            "; ".join(measured), f"the forward pass: {passes}",
            _loads(*(row["load"] for row in data["ingest"].values()))]  # fmt: skip


ROWS = {"bench_ask.py": _ask_row, "bench_notebook.py": _notebook_row, "bench_quantized.py": _quantized_row}


def benchmark_table(folder: Path) -> str:
    """The README's benchmark table: a row per JSON file the benchmarks recorded in ``folder``."""
    recorded = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))]
    lines = ["| what you wait for | measured | where the time goes | 1-minute load |", "| --- | --- | --- | --- |"]
    for data in sorted(recorded, key=lambda data: SCRIPTS.index(data["script"])):
        lines.append("| " + " | ".join(ROWS[data["script"]](data)) + " |")
    machines = {(d["machine"]["cpu_model"], d["machine"]["cores_usable"], d["machine"]["ram_gib"]) for d in recorded}
    when = sorted({d["measured"][:10] for d in recorded})
    where = "; ".join(f"{cpu}, {cores} cores, {ram} GiB" for cpu, cores, ram in sorted(machines))
    commits = ", ".join(sorted({f"`{d['commit']}`" + (" with changes" if d["changed"] else "") for d in recorded}))
    lines.append(f"\nMeasured {' and '.join(when)} on {where}; package at {commits}; "
                 f"the JSON in `{folder.relative_to(REPO)}/`.\n")  # fmt: skip
    return "\n".join(lines)


def benchmark_block(kind: str, target: str) -> str:
    """A benchmark block's body: the table of the folder ``target``, or the report recorded in
    the file ``target``."""
    if kind == "table":
        return benchmark_table(REPO / target)
    return json.loads((REPO / target).read_text(encoding="utf-8"))["report"] + "\n"


def tables_refreshed(text: str) -> str:
    """``text`` with every benchmark block rendered again from what its marker names."""
    return TABLE.sub(lambda m: m.group(1) + benchmark_block(m["kind"], m["target"]) + m.group(5), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a drift")
    parser.add_argument("--docs", default=os.environ.get("MILVUS_DOCS_ZIP") or str(SHARED_ZIP))
    args = parser.parse_args()
    texts = [path.read_text(encoding="utf-8") for path in BENCHMARK_READMES]
    printed = outputs(texts, Path(args.docs).resolve())
    drifted = 0
    for path, text in zip(BENCHMARK_READMES, texts, strict=True):
        new = tables_refreshed(refreshed(text, printed))
        for old, now in zip(TABLE.finditer(text), TABLE.finditer(new), strict=True):
            if old["body"] != now["body"]:
                drifted += 1
                print(f"{path.relative_to(REPO)}: the benchmark {old['kind']} differs from what "
                      f"{old['target']} recorded", file=sys.stderr)  # fmt: skip
        for old, now in zip(blocks(text), blocks(new), strict=True):
            if old["body"] != now["body"]:
                drifted += 1
                print(f"{path.relative_to(REPO)}: `python -m milvus_rag {old['args']}` printed "
                      "something else than the block shows", file=sys.stderr)  # fmt: skip
        if not args.check:
            path.write_text(new, encoding="utf-8")
    print(f"{drifted} block(s) {'differ' if args.check else 'refreshed'}.")
    return 1 if args.check and drifted else 0


if __name__ == "__main__":
    sys.exit(main())
