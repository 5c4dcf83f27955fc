"""The tutorial's steps as functions, for the command line and the tests.

The notebook shows the same steps one cell at a time; this module strings them together.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from milvus_rag import docs, store
from milvus_rag.embedding import Embedding, load_embedding
from milvus_rag.llm import complete_text, connect_llm, stream_text
from milvus_rag.prompts import build_messages
from milvus_rag.settings import data_dir, env, milvus_token


@dataclass
class Config:
    """Where the docs, Milvus and the LLM are, read from the environment by default."""

    docs_source: str = field(default_factory=lambda: env("MILVUS_DOCS_ZIP"))
    uri: str = field(default_factory=lambda: env("MILVUS_URI"))
    collection: str = field(default_factory=lambda: env("MILVUS_COLLECTION"))
    embedding_model: str = field(default_factory=lambda: env("EMBEDDING_MODEL"))
    llm_base_url: str = field(default_factory=lambda: env("LLM_BASE_URL"))
    llm_model: str = field(default_factory=lambda: env("LLM_MODEL"))


def load_pieces(config: Config) -> list[tuple[str, str]]:
    """Download/unzip the docs once and split the FAQ as the tutorial does: (file, piece)."""
    return docs.faq_pieces(docs.prepare_docs(config.docs_source, data_dir()))


def ingest(config: Config, embedding: Embedding, client=None) -> dict:
    """Recreate the collection and insert every FAQ piece; returns the collection and count."""
    pieces = load_pieces(config)
    client = client or store.connect(config.uri, milvus_token())
    vectors = store.embed_in_batches(embedding.encode_documents, [text for _, text in pieces])
    store.recreate_collection(client, config.collection, embedding.dim)
    result = client.insert(collection_name=config.collection, data=store.rows_for(pieces, vectors))
    return {"collection": config.collection, "count": result["insert_count"]}


def retrieve(config: Config, embedding: Embedding, question: str, k: int, client=None):
    """The ``k`` pieces nearest to ``question``, ingesting first if the collection is missing."""
    embedding.check_question(question)
    client = client or store.connect(config.uri, milvus_token())
    if not client.has_collection(config.collection):
        ingest(config, embedding, client)
    else:
        store.check_dimension(client, config.collection, embedding.dim, embedding.name)
        client.load_collection(config.collection)  # a reopened collection starts released
    query_vector = embedding.encode_queries([question])[0]
    return store.search(client, config.collection, query_vector, k)


def answer_stream(config: Config, embedding: Embedding, question: str, hits) -> Iterator[str]:
    """The LLM's answer to ``question`` from the retrieved hits, as it arrives."""
    llm = connect_llm(config.llm_base_url, config.llm_model, embedding)
    yield from stream_text(llm, build_messages([hit["text"] for hit in hits], question))


def answer(config: Config, embedding: Embedding, question: str, hits) -> str:
    """The LLM's whole answer to ``question`` from the retrieved hits."""
    llm = connect_llm(config.llm_base_url, config.llm_model, embedding)
    return complete_text(llm, build_messages([hit["text"] for hit in hits], question))


def load_config_embedding(config: Config) -> Embedding:
    return load_embedding(config.embedding_model)
