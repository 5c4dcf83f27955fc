"""The model of an OpenAI-compatible ``POST /v1/embeddings`` endpoint (OpenAI, Ollama, vLLM, TEI,
LM Studio, the local answerer): texts sent in batches, retried with back-off on 429 and 5xx by
the ``openai`` client, and every answer checked before a vector is used."""

import numpy as np

from milvus_rag.config import embedding_api_key
from milvus_rag.embedding import Embedding, prefixes
from milvus_rag.errors import RagError
from milvus_rag.generation import EMBEDDINGS, PLACEHOLDER_KEY, client, llm_errors, require_http_url

BATCH = 64  # texts per request: far below OpenAI's 2,048 inputs and 300k tokens for FAQ-sized texts
PROBE = "What is Milvus?"  # embedded on loading: the key, the model and the dimension, checked


class EndpointFunction:
    """``encode_queries`` / ``encode_documents`` through ``client.embeddings.create``, with the
    model's prefixes (:data:`milvus_rag.embedding.PREFIXES`); vectors of unit length."""

    def __init__(self, base_url: str, model: str):
        self.base_url, self.model, self.dim = base_url, model, 0  # 0: until the first vector
        self.query_prefix, self.document_prefix = prefixes(model)
        self.client = client(base_url, embedding_api_key(base_url) or PLACEHOLDER_KEY, EMBEDDINGS)

    def encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        return self._embed([self.query_prefix + text for text in texts])

    def encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        return self._embed([self.document_prefix + text for text in texts])

    def _embed(self, texts: list[str]) -> list[np.ndarray]:
        vectors: list[np.ndarray] = []
        for start in range(0, len(texts), BATCH):
            batch = texts[start : start + BATCH]
            with llm_errors(self.base_url, self.model, service=EMBEDDINGS):
                response = self.client.embeddings.create(model=self.model, input=batch,
                                                         encoding_format="float")  # fmt: skip
            vectors.extend(self._vectors(response, len(batch)))
        return vectors

    def _vectors(self, response, expected: int) -> list[np.ndarray]:
        """The ``expected`` vectors of one answer, in input order, at unit length; refused in one
        sentence if it holds another number of them, non-numbers, or several dimensions."""
        where = f"The embedding endpoint {self.base_url} (model {self.model!r})"
        fix = ("check that EMBEDDING_BASE_URL is an OpenAI-compatible endpoint (it usually ends "
               "in /v1) and that EMBEDDING_MODEL is an embedding model it serves")  # fmt: skip
        try:
            data = sorted(response.data, key=lambda item: item.index)
            rows = [np.asarray(item.embedding, dtype=float) for item in data]
        except (AttributeError, TypeError, ValueError) as err:
            raise RagError(f"{where} answered something other than a list of vectors "
                           f"({type(err).__name__}): {fix}.") from err  # fmt: skip
        if len(rows) != expected or any(row.ndim != 1 or not row.size for row in rows):
            raise RagError(f"{where} answered {len(rows)} vectors for {expected} texts, or "
                           f"vectors that are not lists of numbers: {fix}.")  # fmt: skip
        dims = sorted({row.size for row in rows} | ({self.dim} if self.dim else set()))
        if len(dims) > 1:
            raise RagError(f"{where} answered vectors of mixed dimensions ({', '.join(map(str, dims))}): "
                           "the model behind it changed or it serves several under one name; "
                           "point EMBEDDING_MODEL at one model and ingest again.")  # fmt: skip
        norms = [np.linalg.norm(row) for row in rows]
        if not all(np.isfinite(norm) and norm > 0 for norm in norms):
            raise RagError(f"{where} answered a vector of zeros or of non-numbers: {fix}.")
        self.dim = dims[0]
        return [row / norm for row, norm in zip(rows, norms, strict=True)]


def load_endpoint(base_url: str, model: str) -> Embedding:
    """The model ``model`` of the endpoint ``base_url``, checked by embedding one text (a bad
    key, an unknown model or an endpoint down fails here, before Milvus is touched); its
    dimension is that vector's. Its name holds the URL: an index built by one endpoint is never
    searched with another's vectors."""
    require_http_url(base_url, EMBEDDINGS)
    function = EndpointFunction(base_url.rstrip("/"), model)
    dim = len(function.encode_queries([PROBE])[0])
    return Embedding(function, f"{model} at {function.base_url}", dim)
