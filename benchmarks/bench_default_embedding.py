"""DefaultEmbeddingFunction's own encode vs the package's batched path on the same model.

The tutorial's ``pymilvus.model.DefaultEmbeddingFunction`` encodes one text at a time, padded
to 512 tokens; ``milvus_rag.embedding.BatchedOnnxFunction`` runs its session and tokenizer in
batches padded to the longest text. This script loads the function through its real code from
a stand-in Hugging Face cache (all-MiniLM-L6-v2 exported to ONNX under the tutorial's repo
names, built by ``tests/support/hf_standin.py``, since the hub is not reachable here), encodes
the tutorial's 72 FAQ pieces both ways, and prints the speed of each, their ratio and the
lowest cosine between the two vectors of a piece. It measures; it asserts nothing, but any
failure of the pipeline exits non-zero.

    python benchmarks/bench_default_embedding.py [--docs ZIP] [--hf-home DIR] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
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
DEFAULT_HF_HOME = Path(tempfile.gettempdir()) / "milvus-rag-standin-hf-home"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", default=os.environ.get("MILVUS_DOCS_ZIP") or str(SHARED_ZIP))
    parser.add_argument("--hf-home", default=str(DEFAULT_HF_HOME), help="stand-in cache folder")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per path (best)")
    args = parser.parse_args(argv)

    print_machine()
    pieces = faq_pieces(Path(args.docs))
    print(f"pieces: {len(pieces)} from {args.docs}")
    # Before huggingface_hub is imported (by the build, too): it reads these once, at import.
    os.environ.update(standin_env(Path(args.hf_home)))
    start = time.perf_counter()
    hf_home = build_standin_hf_home(Path(args.hf_home))
    print(f"stand-in cache: {hf_home} ({time.perf_counter() - start:.1f} s to build or reuse)")

    from milvus_rag.embedding import load_embedding

    embedding = load_embedding("default")
    original = embedding.function.onnx_function
    print(f"model: {embedding.name} via {type(original).__name__}, dimension {embedding.dim}")

    encoders = {"own": original.encode_documents, "batched": embedding.encode_documents}
    rates, vectors = best_rates(encoders, pieces, args.runs)
    print(f"DefaultEmbeddingFunction.encode_documents: {rates['own']:8.1f} pieces/s")
    print(f"batched (BatchedOnnxFunction):             {rates['batched']:8.1f} pieces/s")
    print(f"speed-up: {rates['batched'] / rates['own']:.1f}x (best of {args.runs} runs each)")
    print(f"min cosine (own vs batched): {min_cosine(vectors['own'], vectors['batched']):.8f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
