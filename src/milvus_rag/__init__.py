"""Helpers for the "Build RAG with Milvus" tutorial notebook and its command line.

The notebook shows each step's real Milvus and OpenAI calls; this package holds what is around
them. Data flows one way through its modules (see the README's "Layout"):
config -> corpus -> chunking -> embedding -> index -> search -> generation, with evaluation on
top and cli as the shell's face. Importing a module loads only what that module needs.
"""

import time

IMPORTED = time.perf_counter()  # when the package began to load: --timings counts imports from here
