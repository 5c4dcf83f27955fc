"""The READMEs' figures, each block the verbatim output of the command its marker names.

    python scripts/readme_figures.py [--check] [--docs ZIP]

A block in README.md or data/eval/README.md looks like::

    <!-- output of: python -m milvus_rag eval --markdown --questions data/eval/real_test.jsonl -->
    ...what that command printed...
    <!-- end of output -->

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a drift")
    parser.add_argument("--docs", default=os.environ.get("MILVUS_DOCS_ZIP") or str(SHARED_ZIP))
    args = parser.parse_args()
    texts = [path.read_text(encoding="utf-8") for path in READMES]
    printed = outputs(texts, Path(args.docs).resolve())
    drifted = 0
    for path, text in zip(READMES, texts, strict=True):
        new = refreshed(text, printed)
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
