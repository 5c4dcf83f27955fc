"""``python -m milvus_rag``: ingest documents, ask a question, or measure retrieval, from the shell.

The notebook's functions and environment variables (:mod:`milvus_rag.config`); every failure a
user can cause ends in one ``error:`` line and exit code 1."""

import argparse
import dataclasses
import json
import sys
from dataclasses import asdict
from pathlib import Path

from milvus_rag import (
    chunking,
    config,
    corpus,
    coverage,
    embedding,
    evaluation,
    generation,
    index,
    search,
)
from milvus_rag.config import phrasings_path, positive_int, setting
from milvus_rag.errors import RagError, milvus_sentence, quiet
from milvus_rag.timings import clock


def _parser() -> argparse.ArgumentParser:
    about = ("RAG with Milvus over the Milvus FAQ or your own documents: ingest them, then ask "
             "questions. Defaults come from the same environment variables as the notebook.")
    parser = argparse.ArgumentParser(prog="python -m milvus_rag", description=about)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--docs", default=None, help="the documents: a folder, a zip or a zip's "
                       "URL (env MILVUS_DOCS_ZIP; default: the Milvus docs, whose FAQ is used)")
        p.add_argument("--uri", default=None, help="a Milvus server URL or a Milvus Lite path "
                       "(env MILVUS_URI, else MILVUS_LITE_PATH)")
        p.add_argument("--collection", help="base collection name (env MILVUS_COLLECTION)")
        p.add_argument("--timings", action="store_true", help="print where the time went on "
                       "stderr: imports, model, connect, search, answer (env RAG_TIMINGS=1)")

    ingest = sub.add_parser("ingest", help="split, embed and insert the documents (idempotent)")
    ingest.add_argument("--rebuild", action="store_true", help="drop and recreate the collection")
    common(ingest)
    ask = sub.add_parser("ask", help="answer a question from the documents (ingests if needed)")
    ask.add_argument("question")
    for command in (ingest, ask):  # ask searches what ingest built with the same options
        command.add_argument("--all-docs", action="store_true",
                             help="every page of the Milvus docs (all of en/), not only the FAQ")  # fmt: skip
    ask.add_argument("--k", default=None, help="how many pieces to retrieve (env RAG_TOP_K)")
    ask.add_argument("--json", action="store_true", help="print one JSON line instead of a stream")
    ask.add_argument("--always-answer", action="store_true",
                     help="send the question to the LLM even when the documents do not seem to "
                     "cover it (by the embedding model's calibrated threshold)")  # fmt: skip
    common(ask)
    ev = sub.add_parser("eval", help="measure retrieval quality on a labeled question set")
    ev.add_argument("--questions", default=None,
                    help='JSON lines of {"q": ..., "gold": FAQ title} (env RAG_EVAL_QUESTIONS; '
                    "default: real users' questions, test part, data/eval/real_test.jsonl)")  # fmt: skip
    ev.add_argument("--hits", default="10", help="hits per question written by --output")
    ev.add_argument("--output", default=None, help="write each question's top hits (JSON lines)")
    ev.add_argument("--strategy", default=search.DEFAULT_STRATEGY,
                    help="the strategy of the last JSON line and --output (default %(default)s)")
    ev.add_argument("--only", action="store_true", help="evaluate --strategy alone")
    ev.add_argument("--markdown", action="store_true",
                    help="print the table as Markdown (as the README shows it) and nothing else")  # fmt: skip
    ev.add_argument("--models", default=None,
                    help="embedding models side by side on --strategy, the first the baseline: "
                    "EMBEDDING_MODEL values separated by commas (minilm, minilm-int8, default, a sentence-"
                    "transformers id or folder; with EMBEDDING_BASE_URL, that endpoint's models)")  # fmt: skip
    ev.add_argument("--abstention", action="store_true",
                    help="instead of the table: the share of unanswerable questions (--unanswerable) "
                    "abstained on and of answerable ones (--questions) still answered")  # fmt: skip
    ev.add_argument("--unanswerable", default=None, help='JSON lines of {"q": ..., "nearest": '
                    "FAQ title} the FAQ does not answer (default: data/eval/unanswerable_test.jsonl)")  # fmt: skip
    ev.add_argument("--calibrate", action="store_true",
                    help="compute the coverage threshold of this embedding model by the rule, on "
                    "the development questions only (real_dev and unanswerable_dev)")  # fmt: skip
    common(ev)
    serve = sub.add_parser("serve", help="serve the local answerer and the packaged MiniLM's "
                           "embeddings (OpenAI-compatible) on 127.0.0.1 until Ctrl-C")  # fmt: skip
    serve.add_argument("--port", default="8000", help="the port (default %(default)s; 0: any free one)")
    return parser


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _plan(args, docs: corpus.Corpus, base: str) -> tuple[str, list[chunking.Entry], str]:
    """(collection, entries, chunking) for the documents (see ``chunking.corpus_entries``)."""
    part, entries, skipped, how = chunking.corpus_entries(docs, getattr(args, "all_docs", False))
    for sentence in skipped:
        _status(f"Warning: {sentence}")
    return config.collection_name(base, part), entries, how


def _sync(client, model, plan, rebuild: bool = False) -> dict:
    name, entries, how = plan
    report = index.sync(client, name, model, entries, rebuild=rebuild, chunking=how)
    if "rebuilt" in report:
        _status(f"Collection {name!r} {report['rebuilt']}: re-embedded it.")
    return report


def _ask(args, client, model, plan, k: int) -> None:
    name = plan[0]
    model.check_question(args.question)
    if not client.has_collection(name):
        _status(f"Collection {name!r} does not exist yet: ingesting the documents first.")
        _status(json.dumps(_sync(client, model, plan)))
    else:
        index.check_collection(client, name, model)  # another model: refused, never re-embedded here
        before = index.built_by(client, name)
        report = _sync(client, model, plan)  # rows missing or changed: completed first
        if report["added"] or report["removed"]:
            why = ("its last ingest did not complete" if before.get("complete") is False
                   else "its documents changed, or rows were deleted")  # fmt: skip
            _status(f"Collection {name!r} did not match its documents ({why}): brought it up to "
                    f"date first ({report['added']} rows added, {report['removed']} removed).")  # fmt: skip
    hits = search.search(client, name, model, [args.question], k, search.DEFAULT_STRATEGY)[0]
    clock.mark("search")
    verdict = coverage.judge(hits, model.name, hint=" (--always-answer sends it anyway)")
    if not verdict.calibrated:
        _status(verdict.sentence)
        verdict = dataclasses.replace(verdict, sentence="")  # said on stderr: stdout is the reply
    if not args.json:
        for piece in generation.reply(hits, args.question, verdict, setting("LLM_BASE_URL"),
                                      setting("LLM_MODEL"), always_answer=args.always_answer):  # fmt: skip
            print(piece, end="", flush=True)
        return
    answer = None
    if verdict.covered or args.always_answer:
        answer = "".join(generation.llm_answer([hit.text for hit in hits], args.question,
                                               setting("LLM_BASE_URL"), setting("LLM_MODEL")))  # fmt: skip
    print(json.dumps({"question": args.question, "covered": verdict.covered,
                      "hits": [asdict(hit) for hit in hits], "answer": answer}))  # fmt: skip


def _load(choice: str) -> embedding.Embedding:
    """The model ``choice`` names (``EMBEDDING_MODEL``'s values), said on stderr."""
    model = embedding.load_embedding(choice, setting("EMBEDDING_BASE_URL"))
    _status(f"Embedding model: {model.name}, dimension {model.dim} ({model.reason}).")
    return model


def _model_labels(value: str) -> list[str]:
    labels = [label.strip() for label in value.split(",") if label.strip()]
    if not labels:
        raise RagError("--models names no model: give EMBEDDING_MODEL values separated by "
                       "commas, e.g. --models minilm,BAAI/bge-small-en-v1.5.")  # fmt: skip
    return labels


def _eval_models(args, client, models: dict, questions, path, docs: corpus.Corpus, base: str):
    """Each model on ``--strategy``, side by side (see ``evaluation.format_models``)."""
    phrasings = chunking.load_phrasings(phrasings_path())
    runs = [evaluation.evaluate_model(client, config.collections(base), model, label, docs.root,
                                      questions, args.strategy, phrasings)
            for label, model in models.items()]  # fmt: skip
    if not args.markdown:
        print(f"Retrieval on {path} (n={len(questions)}), {args.strategy}, per embedding model:")
    print(evaluation.format_models(runs, markdown=args.markdown))
    if not args.markdown:
        print(json.dumps({run.label: run.result.metrics for run in runs}))


def _eval(args, client, model, docs: corpus.Corpus, base: str, depth: int) -> None:
    if not docs.is_milvus_docs:
        raise RagError("eval measures retrieval over the Milvus FAQ: leave --docs (and "
                       "MILVUS_DOCS_ZIP) at the Milvus docs zip.")  # fmt: skip
    names = config.collections(base)
    if args.abstention or args.calibrate:
        return _coverage(args, client, model, docs, names)
    path = args.questions or config.eval_questions()
    questions = evaluation.load_questions(path)
    if search.strategy_named(args.strategy).needs_bm25:
        index.require_bm25(client)  # the one the table's last line reports: refused, not skipped
    if isinstance(model, dict):
        return _eval_models(args, client, model, questions, path, docs, base)
    strategies, skipped = evaluation.supported(
        client, [args.strategy] if args.only else list(search.STRATEGIES))
    if skipped:
        _status(skipped)
    unknown = evaluation.unknown_golds(questions, chunking.faq_entries(docs.root))
    if unknown:
        _status(f"Warning: {len(unknown)} gold title(s) head no FAQ entry: {unknown[:3]}")
    try:
        phrasings = chunking.load_phrasings(phrasings_path())
        evaluation.build_collections(client, names, model, docs.root, strategies, phrasings)
        results = evaluation.evaluate(client, names, model, questions, strategies)
    finally:
        evaluation.drop_collections(client, names)
    chosen, bullet = results[args.strategy], "- " if args.markdown else "  "
    if args.markdown:
        print(evaluation.format_markdown(results, search.DEFAULT_STRATEGY, Path(path).name))
    else:
        print(f"Retrieval on {path} (n={len(questions)}), embedding {model.name}:")
        print(evaluation.format_table(results, default=search.DEFAULT_STRATEGY))
    if not args.only:
        verdict, why = evaluation.choose_default(results)
        disagrees = verdict != search.DEFAULT_STRATEGY
        print(f"\nDefault by the rule: {verdict}" + (
            f" (the configured default is {search.DEFAULT_STRATEGY}: this set disagrees)"
            if disagrees else "") + f": {why}.")  # fmt: skip
        print("\nPaired differences (95% intervals; one that holds 0 shows no difference):\n")
        for other in (result for result in results.values() if result is not chosen):
            print(bullet + evaluation.compare(chosen, other))
    if args.markdown:
        return
    missed = evaluation.misses(chosen, questions)
    if missed:
        print(f"\n{args.strategy}: first hit not at rank 1 for")
        print("\n".join(missed))
    if args.output:
        evaluation.write_hits(args.output, questions, chosen, depth)
        _status(f"Wrote {len(questions)} lines to {args.output}.")
    print(json.dumps(chosen.metrics))


def _coverage(args, client, model, docs: corpus.Corpus, names) -> None:
    """``eval --abstention`` (held-out questions, the stored threshold) or ``eval --calibrate``
    (development questions only: the threshold by the rule)."""
    dev = args.calibrate
    answerable = args.questions or config.eval_questions("real users, dev" if dev else "real users")
    unanswerable = args.unanswerable or config.eval_questions(
        "unanswerable, dev" if dev else "unanswerable")  # fmt: skip
    evaluation.load_questions(answerable)  # a bad file fails before any collection is built
    evaluation.load_unanswerable(unanswerable)
    if not dev and coverage.threshold(model.name) is None:
        raise RagError(f"No coverage threshold is calibrated for {model.name}, so there is no "
                       "abstention to measure: run `python -m milvus_rag eval --calibrate` with "
                       "this model and add its threshold to coverage.THRESHOLDS.")  # fmt: skip
    try:
        phrasings = chunking.load_phrasings(phrasings_path())
        evaluation.build_collections(client, names, model, docs.root, [search.DEFAULT_STRATEGY],
                                     phrasings)  # fmt: skip
        print(evaluation.coverage_report(client, names, model, answerable, unanswerable, dev))
    finally:
        evaluation.drop_collections(client, names)


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    clock.start(getattr(args, "timings", False) or config.flag("RAG_TIMINGS"))
    if args.command == "serve":
        from milvus_rag.local_answerer import serve
        if not (args.port.strip().isdigit() and int(args.port) <= 65535):
            raise RagError(f"--port must be a whole number from 0 (any free port) to 65535, "
                           f"not {args.port!r}: fix it.")  # fmt: skip
        serve(int(args.port))
        return 0
    uri = args.uri or config.milvus_uri()
    base = args.collection or setting("MILVUS_COLLECTION")
    index.check_uri(uri)  # what can be checked without the model fails before it loads
    config.collection_name(base, "faq")
    docs = corpus.open_corpus(args.docs or setting("MILVUS_DOCS_ZIP"))
    if args.command == "ask":
        embedding.require_question(args.question)
        k = positive_int("--k", args.k) if args.k is not None else positive_int("RAG_TOP_K")
    elif args.command == "eval":
        search.strategy_named(args.strategy)
        depth = positive_int("--hits", args.hits)
    plan = _plan(args, docs, base) if args.command != "eval" else None
    clock.mark("documents")
    if getattr(args, "models", None) is not None:  # every model loaded before any is measured
        model = {label: _load(label) for label in _model_labels(args.models)}
    else:
        model = _load(setting("EMBEDDING_MODEL"))
    clock.mark("model")
    client = index.connect(uri, config.milvus_token())
    clock.mark("connect")
    try:
        if args.command == "ingest":
            print(json.dumps(_sync(client, model, plan, rebuild=args.rebuild)))
        elif args.command == "ask":
            _ask(args, client, model, plan, k)
        else:
            _eval(args, client, model, docs, base, depth)
        clock.mark({"ask": "answer"}.get(args.command, args.command))
    finally:
        client.close()
    clock.mark("close")
    clock.report()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run a command; a user-caused failure prints one ``error:`` line and returns 1."""
    from pymilvus.exceptions import MilvusException
    for stream in (sys.stdout, sys.stderr):  # UTF-8: in the code page Windows gives output
        if hasattr(stream, "reconfigure"):  # redirected to a file, "→" would end the command
            stream.reconfigure(encoding="utf-8", errors=stream.errors)
    try:
        with quiet("pymilvus"):  # its logs repeat, with tracebacks, the error reported below
            return run(argv)
    except RagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except MilvusException as err:
        print(f"error: {milvus_sentence(err, 'run the command again')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
