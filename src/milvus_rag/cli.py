"""``python -m milvus_rag``: ingest the FAQ, ask a question, or measure retrieval, from the shell.

The same functions as the notebook's improved pipeline, the same environment variables
(:mod:`milvus_rag.config`). Every failure a user can cause ends in one ``error:`` line and
exit code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from milvus_rag import chunking, corpus, embedding, evaluation, generation, index, search
from milvus_rag.config import (
    collections,
    eval_questions,
    milvus_token,
    phrasings_path,
    positive_int,
    setting,
)
from milvus_rag.errors import RagError, cause


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
        p.add_argument(
            "--collection", default=None, help="base collection name (env MILVUS_COLLECTION)"
        )

    ingest = sub.add_parser(
        "ingest", help="split, embed and insert the FAQ (idempotent: only changes are applied)"
    )
    ingest.add_argument("--rebuild", action="store_true", help="drop and recreate the collection")
    ingest.add_argument(
        "--all-docs", action="store_true",
        help="every page of the docs (all of en/), not only the FAQ, one piece per section",
    )  # fmt: skip
    common(ingest)
    ask = sub.add_parser("ask", help="answer a question from the FAQ (ingests first if needed)")
    ask.add_argument("question")
    ask.add_argument("--k", default=None, help="how many pieces to retrieve (env RAG_TOP_K)")
    ask.add_argument("--json", action="store_true", help="print one JSON line instead of a stream")
    common(ask)
    ev = sub.add_parser("eval", help="measure retrieval quality on a labeled question set")
    ev.add_argument(
        "--questions", default=None,
        help='JSON lines of {"q": ..., "gold": FAQ title} (env RAG_EVAL_QUESTIONS; default: '
        "the project's test set, data/eval/test.jsonl)",
    )  # fmt: skip
    ev.add_argument("--k", default="10", help="hits per question written by --output (default 10)")
    ev.add_argument("--output", default=None, help="write each question's top-k texts (JSON lines)")
    ev.add_argument(
        "--strategy", default=search.DEFAULT_STRATEGY,
        help=f"the strategy of the last JSON line and --output (default {search.DEFAULT_STRATEGY})",
    )  # fmt: skip
    ev.add_argument("--only", action="store_true", help="evaluate --strategy alone")
    common(ev)
    return parser


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load_embedding() -> embedding.Embedding:
    loaded = embedding.load_embedding(setting("EMBEDDING_MODEL"))
    _status(f"Embedding model: {loaded.name}, dimension {loaded.dim} ({loaded.reason}).")
    return loaded


def _docs(args) -> Path:
    """The unzipped docs of ``--docs`` or ``MILVUS_DOCS_ZIP`` (downloaded and unzipped once)."""
    return corpus.prepare_docs(args.docs or setting("MILVUS_DOCS_ZIP"))


def _ingest(args, client, model, collection: str, docs_dir: Path) -> dict:
    if args.all_docs:
        entries = chunking.doc_entries(docs_dir)
    else:
        entries = chunking.faq_entries(docs_dir, chunking.load_phrasings(phrasings_path()))
    return index.sync(client, collection, model, entries, rebuild=args.rebuild)


def _ask(args, client, model, collection: str, k: int) -> None:
    model.check_question(args.question)
    if not client.has_collection(collection):
        args.all_docs = args.rebuild = False
        _status(f"Collection {collection!r} does not exist yet: ingesting the FAQ first.")
        _status(json.dumps(_ingest(args, client, model, collection, _docs(args))))
    else:
        index.check_collection(client, collection, model)
        index.ensure_loaded(client, collection)
    hits = search.search(client, collection, model, args.question, k, search.DEFAULT_STRATEGY)
    messages = generation.build_messages([hit.text for hit in hits], args.question)
    base_url, key, _ = generation.endpoint(setting("LLM_BASE_URL"))
    llm = generation.client(base_url, key)
    llm_model = setting("LLM_MODEL") if setting("LLM_BASE_URL") else "local-extractive"
    pieces = generation.answer(llm, llm_model, setting("LLM_BASE_URL"), messages, not args.json)
    if args.json:
        hits_out = [hit.as_dict() for hit in hits]
        print(json.dumps({"question": args.question, "hits": hits_out, "answer": "".join(pieces)}))
        return
    for piece in pieces:
        print(piece, end="", flush=True)
    print("\n\nSources:")
    print(search.format_hits(hits))


def _eval(args, client, model, names, depth: int) -> None:
    path = args.questions or eval_questions()
    questions = evaluation.load_questions(path)
    strategies = [args.strategy] if args.only else list(search.STRATEGIES)
    docs_dir = _docs(args)
    unknown = evaluation.unknown_golds(questions, chunking.faq_entries(docs_dir))
    if unknown:
        _status(f"Warning: {len(unknown)} gold title(s) head no FAQ entry: {unknown[:3]}")
    try:
        phrasings = chunking.load_phrasings(phrasings_path())
        evaluation.build_collections(client, names, model, docs_dir, strategies, phrasings)
        results = evaluation.evaluate(client, names, model, questions, strategies)
    finally:
        evaluation.drop_collections(client, names)
    chosen = results[args.strategy]
    print(f"Retrieval on {path} (n={len(questions)}), "
          f"embedding {model.name}:")  # fmt: skip
    print(evaluation.format_table(results, default=search.DEFAULT_STRATEGY))
    if not args.only:
        verdict, why = evaluation.choose_default(results)
        agrees = (
            ""
            if verdict == search.DEFAULT_STRATEGY
            else (f" (the configured default is {search.DEFAULT_STRATEGY}: this set disagrees)")
        )
        print(f"\nDefault: {verdict}{agrees}. Why: {why}.")  # fmt: skip
        baseline = results.get("tutorial-dense")
        others = [r for n, r in results.items() if n != chosen.strategy and r is not baseline]
        print("\nPaired differences (95% intervals; an interval holding 0 shows no difference):")
        for other in ([baseline] if baseline and baseline is not chosen else []) + others:
            print("  " + evaluation.compare(chosen, other))
    missed = evaluation.misses(chosen, questions)
    if missed:
        print(f"\n{args.strategy}: first hit not at rank 1 for")
        print("\n".join(missed))
    if args.output:
        evaluation.write_hits(args.output, questions, chosen, depth)
        _status(f"Wrote {len(questions)} lines to {args.output}.")
    print(json.dumps(chosen.metrics))


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    uri = args.uri or setting("MILVUS_URI")
    names = collections(args.collection or setting("MILVUS_COLLECTION"))
    index.check_uri(uri)  # what can be checked without the model fails before it loads
    if args.command == "ingest":
        docs_dir = _docs(args)
    elif args.command == "ask":
        embedding.require_question(args.question)
        k = positive_int("--k", args.k) if args.k is not None else positive_int("RAG_TOP_K")
    else:
        search.strategy_named(args.strategy)
        depth = positive_int("--k", args.k)
    model = _load_embedding()
    client = index.connect(uri, milvus_token())
    try:
        if args.command == "ingest":
            print(json.dumps(_ingest(args, client, model, names.faq, docs_dir)))
        elif args.command == "ask":
            _ask(args, client, model, names.faq, k)
        else:
            _eval(args, client, model, names, depth)
    finally:
        client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run a command; a user-caused failure prints one ``error:`` line and returns 1."""
    from pymilvus.exceptions import MilvusException

    try:
        return run(argv)
    except RagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except MilvusException as err:
        print(
            f"error: Milvus refused the request ({cause(err)}): check MILVUS_URI and the "
            "collection, or rebuild it with `python -m milvus_rag ingest --rebuild`.",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
