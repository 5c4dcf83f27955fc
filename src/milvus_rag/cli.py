"""``python -m milvus_rag``: ingest the FAQ, or ask a question, from the shell."""

from __future__ import annotations

import argparse
import json
import sys

from pymilvus.exceptions import MilvusException

from milvus_rag import evaluation, pipeline
from milvus_rag.embedding import load_embedding
from milvus_rag.errors import RagError
from milvus_rag.prompts import format_sources
from milvus_rag.settings import env_int


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m milvus_rag",
        description="RAG over the Milvus FAQ with Milvus: ingest the docs, then ask questions. "
        "Defaults come from the same environment variables as the notebook.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--docs", default=None, help="docs zip: path or URL (env MILVUS_DOCS_ZIP)")
        p.add_argument("--uri", default=None, help="Milvus URI (env MILVUS_URI)")
        p.add_argument("--collection", default=None, help="collection (env MILVUS_COLLECTION)")

    ingest = sub.add_parser(
        "ingest",
        help="split, embed and insert the FAQ into Milvus (idempotent: only changes are applied)",
    )
    ingest.add_argument("--rebuild", action="store_true", help="drop and recreate the collection")
    ingest.add_argument(
        "--all-docs",
        action="store_true",
        help="every page of the docs (all of en/), not only the FAQ, one piece per section",
    )
    common(ingest)
    ev = sub.add_parser("eval", help="measure retrieval quality on a labeled question set")
    evaluation.add_eval_arguments(ev)
    common(ev)
    ask = sub.add_parser("ask", help="answer a question from the FAQ (ingests first if needed)")
    ask.add_argument("question")
    ask.add_argument(
        "--k", type=int, default=None, help="how many pieces to retrieve (env RAG_TOP_K)"
    )
    ask.add_argument("--json", action="store_true", help="end with one JSON line")
    common(ask)
    return parser


def _config(args: argparse.Namespace) -> pipeline.Config:
    config = pipeline.Config()
    config.docs_source = args.docs or config.docs_source
    config.uri = args.uri or config.uri
    config.collection = args.collection or config.collection
    return config


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load_embedding(config: pipeline.Config):
    embedding = load_embedding(config.embedding_model)
    _status(f"Embedding model: {embedding.name}, dimension {embedding.dim} ({embedding.reason}).")
    return embedding


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = _config(args)
    if args.command == "ingest":
        entries = pipeline.load_entries(config, whole_corpus=args.all_docs)  # fail fast on bad docs
        result = pipeline.ingest(config, _load_embedding(config), entries, rebuild=args.rebuild)
        print(json.dumps(result))
        return 0
    if args.command == "eval":
        return evaluation.run_eval(args, _load_embedding(config), config)
    k = args.k if args.k is not None else env_int("RAG_TOP_K")
    if k < 1:
        raise RagError(f"--k must be at least 1, not {k}.")
    embedding = _load_embedding(config)
    hits = pipeline.retrieve(config, embedding, args.question, k)
    if args.json:
        answer = pipeline.answer(config, embedding, args.question, hits)
        print(json.dumps({"question": args.question, "hits": hits, "answer": answer}))
        return 0
    for part in pipeline.answer_stream(config, embedding, args.question, hits):
        print(part, end="", flush=True)
    print("\n\nSources:")
    print(format_sources(hits))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except RagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except MilvusException as err:
        print(
            f"error: Milvus refused the request ({err.message}): check MILVUS_URI and the "
            "collection, or rebuild it with `python -m milvus_rag ingest --rebuild`.",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
