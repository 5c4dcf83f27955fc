"""The LLM client: any OpenAI-compatible endpoint, or the local answerer when none is set."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from milvus_rag.errors import RagError
from milvus_rag.settings import llm_api_key

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
_local_servers: dict[int, object] = {}


@dataclass
class LLM:
    """An ``openai.OpenAI`` client, the model to ask, and one line saying what it is."""

    client: object
    model: str
    description: str


def _interactive_key(base_url: str) -> str:
    """Ask for the key without echoing it, where someone can type it (JupyterLab, a terminal)."""
    import getpass
    import sys

    try:
        if "ipykernel" not in sys.modules and not sys.stdin.isatty():
            return ""
        return getpass.getpass(f"API key for {base_url} (input hidden): ").strip()
    except Exception:  # papermill, nbmake and CI have no one to ask
        return ""


def connect_llm(base_url: str, model: str, embedding, interactive: bool = False) -> LLM:
    """An LLM for ``base_url``; with no URL, the local extractive answerer (started once)."""
    import openai

    if not base_url:
        from milvus_rag.local_answerer import MODEL_NAME, LocalAnswererServer

        server = _local_servers.get(id(embedding))
        if server is None:
            server = _local_servers[id(embedding)] = LocalAnswererServer(embedding)
        client = openai.OpenAI(base_url=server.base_url, api_key="local-no-key")
        return LLM(
            client,
            MODEL_NAME,
            (
                "No LLM endpoint configured (LLM_BASE_URL): answering with the local extractive "
                "answerer on 127.0.0.1, which quotes the best retrieved passage."
            ),
        )
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise RagError(
            f"LLM_BASE_URL={base_url!r} is not an http(s) URL: set it to an OpenAI-compatible "
            "endpoint such as https://api.openai.com/v1 or http://localhost:11434/v1."
        )
    key = llm_api_key()
    if not key and parsed.hostname not in LOCAL_HOSTS and interactive:
        key = _interactive_key(base_url)
    if not key:
        if parsed.hostname not in LOCAL_HOSTS:
            raise RagError(
                f"No API key for {base_url}: set LLM_API_KEY (or LEPTONAI_TOKEN) in the "
                "environment before starting Jupyter or the command."
            )
        key = "no-key-needed"
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=2, timeout=60.0)
    return LLM(client, model, f"Using the LLM endpoint {base_url} with model {model}.")
