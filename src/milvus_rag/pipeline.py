"""The default pipeline end to end, for the command line: docs -> FAQ entries -> Milvus ->
retrieval -> LLM answer. The notebook shows the tutorial's steps one cell at a time, then
runs this same pipeline's pieces (``retrieval``, ``llm``) in its "improved pipeline" section.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from milvus_rag import chunking, docs, retrieval, store
from milvus_rag.embedding import Embedding
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


FAQ_SUFFIX = "_faq"
"""The improved pipeline keeps its entries in ``<collection>_faq``, beside the tutorial's own
collection (whose schema differs), so the notebook and the command line never clash."""


def faq_collection(config: Config) -> str:
    return config.collection + FAQ_SUFFIX


def load_entries(config: Config, whole_corpus: bool = False) -> list[chunking.Entry]:
    """Download/unzip the docs once; one entry per FAQ entry (or per section of every page)."""
    docs_dir = docs.prepare_docs(config.docs_source, data_dir())
    if whole_corpus:
        return chunking.load_doc_entries(docs_dir)
    return chunking.load_faq_entries(docs_dir)


def ingest(
    config: Config,
    embedding: Embedding,
    entries: list[chunking.Entry],
    rebuild: bool = False,
    client=None,
) -> dict:
    """Bring the collection up to date with ``entries`` (idempotent; see sync_entries)."""
    client = client or store.connect(config.uri, milvus_token())
    return retrieval.sync_entries(
        client, faq_collection(config), embedding, entries, rebuild=rebuild
    )


def retrieve(config: Config, embedding: Embedding, question: str, k: int, client=None):
    """The ``k`` best pieces for ``question`` by the default strategy, as dicts of text,
    distance, source and title; ingests the FAQ first if the collection is missing."""
    embedding.check_question(question)
    client = client or store.connect(config.uri, milvus_token())
    name = faq_collection(config)
    if not client.has_collection(name):
        ingest(config, embedding, load_entries(config), client=client)
    else:
        retrieval.check_collection(client, name, embedding)
        store.ensure_loaded(client, name)
    return [hit.as_dict() for hit in retrieval.search(client, name, embedding, question, k)]


def answer_stream(config: Config, embedding: Embedding, question: str, hits) -> Iterator[str]:
    """The LLM's answer to ``question`` from the retrieved hits, as it arrives."""
    llm = connect_llm(config.llm_base_url, config.llm_model, embedding)
    yield from stream_text(llm, build_messages([hit["text"] for hit in hits], question))


def answer(config: Config, embedding: Embedding, question: str, hits) -> str:
    """The LLM's whole answer to ``question`` from the retrieved hits."""
    llm = connect_llm(config.llm_base_url, config.llm_model, embedding)
    return complete_text(llm, build_messages([hit["text"] for hit in hits], question))
