"""Test doubles for the fast tests, where the embedding model is not the point."""

from __future__ import annotations

import hashlib
import re

import numpy as np

from milvus_rag.embedding import require_question

_WORD = re.compile(r"[a-z0-9]+")


class FakeEmbedding:
    """A deterministic bag-of-words embedding: each word hashed to one of ``dim`` axes.

    Texts sharing words get close vectors, so a question quoting a FAQ title finds it; it
    loads in no time and needs no model. Counts its calls, so tests can check what was embedded.
    """

    name = "fake (hashed bag of words)"
    reason = "test double"

    def __init__(self, dim: int = 256):
        self.dim = dim
        self.embedded: list[str] = []

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float32)
        for word in _WORD.findall(text.lower()):
            axis = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % self.dim
            vector[axis] += 1.0
        norm = np.linalg.norm(vector)
        return vector / norm if norm else vector + 1 / np.sqrt(self.dim)

    def encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        self.embedded.extend(texts)
        return [self._vector(text) for text in texts]

    def knows(self, texts: list[str]) -> bool:
        return False  # it keeps no vectors: every call embeds

    def encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        return [self._vector(text) for text in texts]

    def check_question(self, question: str) -> None:
        require_question(question)


class Milvus23:
    """A Milvus Lite client that answers as the Milvus 2.3.5 standalone does (measured in
    tests/test_milvus_engines.py): it reports ``v2.3.5-lite`` and ignores ``group_by_field``
    without an error. With ``version=None`` it does not say its version (as the C++ milvus-lite
    answers UNIMPLEMENTED) and still ignores grouping: only the answers can tell."""

    def __init__(self, client, version: str | None = "v2.3.5-lite"):
        self._client, self._version, self.searches = client, version, []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def get_server_version(self):
        if self._version is None:
            raise RuntimeError("<_InactiveRpcError: StatusCode.UNIMPLEMENTED>")
        return self._version

    def search(self, *args, group_by_field=None, **kwargs):
        self.searches.append({**kwargs, "group_by_field": group_by_field})
        return self._client.search(*args, **kwargs)
