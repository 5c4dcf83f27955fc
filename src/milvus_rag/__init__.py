"""Helpers for the "Build RAG with Milvus" tutorial notebook: docs, embeddings, Milvus, LLM.

The notebook shows each step's real Milvus and OpenAI calls; this package holds the
plumbing around them (download and caching, configuration, model choice, the local
answerer) and the command line ``python -m milvus_rag``.
"""

import os
import sys


def _import_pymilvus() -> None:
    """Import pymilvus even when ``MILVUS_URI`` holds a Milvus Lite path.

    pymilvus reads ``MILVUS_URI`` when it is first imported, for its ORM's default
    connection, and refuses anything but an http(s) URL there, so ``import pymilvus``
    fails with ``MILVUS_URI=./milvus_demo.db``. This project uses the same variable for
    ``MilvusClient(uri=...)``, which does accept a path, so the variable is hidden from
    that one import (and restored at once).
    """
    uri = os.environ.get("MILVUS_URI")
    if "pymilvus" in sys.modules or not uri or "://" in uri:
        return
    del os.environ["MILVUS_URI"]
    try:
        import pymilvus  # noqa: F401
    finally:
        os.environ["MILVUS_URI"] = uri


_import_pymilvus()

from milvus_rag.errors import RagError, show_rag_errors_briefly  # noqa: E402

show_rag_errors_briefly()

__version__ = "0.1.0"
__all__ = ["RagError", "__version__"]
