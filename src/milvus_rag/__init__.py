"""Helpers for the "Build RAG with Milvus" tutorial notebook and its command line.

The notebook shows each step's real Milvus and OpenAI calls; this package holds what is around
them. Data flows one way through its modules (see the README's "Layout"):
config -> corpus -> chunking -> embedding -> index -> search -> generation, with evaluation on
top and cli as the shell's face.
"""

import os
import sys


def _import_pymilvus() -> None:
    """Import pymilvus even when ``MILVUS_URI`` holds a Milvus Lite path.

    pymilvus reads ``MILVUS_URI`` when first imported (for its ORM's default connection) and
    refuses anything but an http(s) URL there, so ``import pymilvus`` fails with
    ``MILVUS_URI=./milvus_demo.db``. This project uses the same variable for
    ``MilvusClient(uri=...)``, which accepts a path, so the variable is hidden from that one
    import and put back at once: ``os.environ`` is left as it was found.
    """
    if "pymilvus" in sys.modules:
        return
    uri = os.environ.pop("MILVUS_URI", None)
    if uri is not None and "://" in uri:
        os.environ["MILVUS_URI"] = uri  # a server URL: pymilvus may read it
    try:
        import pymilvus  # noqa: F401  (now, while the variable is hidden: it reads it only once)
    finally:
        if uri is not None:
            os.environ["MILVUS_URI"] = uri


_import_pymilvus()

__version__ = "0.2.0"
