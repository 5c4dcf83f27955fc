"""The command line, called in-process with a stand-in embedding; one real subprocess for the
``error:`` line and exit-code contract."""

import json
import re
import subprocess
import sys

import pytest

from milvus_rag import chunking, cli, embedding


@pytest.fixture()
def run(monkeypatch, lite_uri, fake_embedding, docs_zip, capsys, tmp_path):
    """``run(*argv) -> (exit code, stdout, stderr)`` against a fresh Lite path.

    The FAQ phrasings are left out (an empty table): the stand-in embedding matches words, and
    a short phrasing of another entry that shares a question's words would come first."""
    empty = tmp_path / "no-phrasings.jsonl"
    empty.write_text("")
    for module in (cli, chunking):
        monkeypatch.setattr(module, "phrasings_path", lambda: empty)
    monkeypatch.setenv("MILVUS_LITE_PATH", lite_uri)
    monkeypatch.setenv("MILVUS_DOCS_ZIP", str(docs_zip))
    monkeypatch.setattr(embedding, "load_embedding", lambda choice, base_url="": fake_embedding)

    def call(*argv):
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return call


def test_ingest_is_idempotent(run):
    code, out, _ = run("ingest")
    assert code == 0
    assert json.loads(out) == {"collection": "my_rag_collection_faq", "count": 61, "rows": 61,
                               "added": 61, "removed": 0}  # fmt: skip
    assert json.loads(run("ingest")[1])["added"] == 0
    assert json.loads(run("ingest", "--rebuild")[1])["added"] == 61


def test_ingest_indexes_the_projects_phrasings_too(run, monkeypatch):
    from milvus_rag.config import phrasings_path

    monkeypatch.setattr(chunking, "phrasings_path", phrasings_path)
    ingested = json.loads(run("ingest")[1])
    assert (ingested["count"], ingested["rows"]) == (61, 61 * 5)  # each entry and 4 phrasings


def test_ask_json_ingests_a_missing_collection_and_honours_flags(run):
    code, out, err = run("ask", "Where does Milvus store data?", "--json", "--k", "2",
                         "--collection", "other")  # fmt: skip
    assert code == 0 and "does not exist yet: ingesting" in err
    answer = json.loads(out)
    assert [hit["title"] for hit in answer["hits"]][0] == "Where does Milvus store data?"
    assert len(answer["hits"]) == 2
    assert set(answer["hits"][0]) == {"text", "score", "source", "title"}
    assert "etcd" in answer["answer"] and answer["answer"].endswith("[1]")


def test_ask_streams_the_answer_then_its_sources(run):
    run("ingest")
    code, out, _ = run("ask", "Where does Milvus store data?")
    answer, sources = out.split("\n\nSources:\n")
    assert code == 0 and "etcd" in answer
    assert sources.splitlines()[0].startswith("[1] product_faq.md · Where does Milvus store data?")
    assert len(sources.strip().splitlines()) == 3


TIMINGS = re.compile(r"Timings: imports [0-9.]+ s, documents [0-9.]+ s, model [0-9.]+ s, "
                     r"connect [0-9.]+ s, search [0-9.]+ s, answer [0-9.]+ s, close [0-9.]+ s; "
                     r"total ([0-9.]+) s \(since milvus_rag's import\)\.")


def test_ask_timings_prints_the_split_last_on_stderr(run, monkeypatch):
    code, out, err = run("ask", "Where does Milvus store data?", "--timings")
    assert code == 0 and "etcd" in out and "Timings" not in out
    assert TIMINGS.fullmatch(err.strip().splitlines()[-1]), err
    assert "Timings:" not in run("ask", "Where does Milvus store data?")[2]  # asked for only
    monkeypatch.setenv("RAG_TIMINGS", "1")
    code, _, err = run("ingest")
    assert code == 0 and re.search(r"model [0-9.]+ s, connect [0-9.]+ s, ingest [0-9.]+ s", err)
    monkeypatch.setenv("RAG_TIMINGS", "sometimes")
    code, _, err = run("ask", "Where does Milvus store data?")
    assert code == 1 and err.startswith("error: RAG_TIMINGS must be 1 or 0 (true or false), not "
                                        "'sometimes'")  # fmt: skip


def test_ask_without_an_llm_endpoint_answers_in_process_not_through_openai(run, monkeypatch):
    from milvus_rag import generation, local_answerer

    def no_client(*args, **kwargs):
        raise AssertionError("the openai client was built for the local answerer")

    monkeypatch.setattr(generation, "client", no_client)
    code, out, _ = run("ask", "Where does Milvus store data?", "--json")
    answer = json.loads(out)
    context = [hit["text"] for hit in answer["hits"]]
    messages = generation.build_messages(context, "Where does Milvus store data?")
    assert code == 0 and answer["answer"] == local_answerer.reply(messages)  # the server's reply


def test_eval_prints_intervals_the_default_and_one_json_line(run, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"q": "How does Milvus flush data?",
                                     "gold": "How does Milvus flush data?"}) + "\n")  # fmt: skip
    output = tmp_path / "hits.jsonl"
    code, out, _ = run("eval", "--questions", str(questions), "--output", str(output))
    assert code == 0
    assert "entry-dense" in out and "95% bootstrap interval" in out and "Default by the rule: " in out
    assert json.loads(out.splitlines()[-1])["n"] == 1
    assert len(json.loads(output.read_text())["hits"]) == 10
    code, out, _ = run("eval", "--questions", str(questions), "--only")
    assert code == 0 and "tutorial-dense" not in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ask", "   "], "The question is empty"),
        (["ask", "q", "--k", "0"], "--k must be a whole number of at least 1"),
        (["eval", "--strategy", "nope"], "Unknown retrieval strategy 'nope'"),
        (["ingest", "--docs", "/nonexistent/docs.zip"], "'/nonexistent/docs.zip' does not exist"),
        (["ingest", "--uri", "./no-suffix"], "a Milvus Lite path (MILVUS_LITE_PATH) is a plain path ending in .db"),
        (["serve", "--port", "70000"], "--port must be a whole number from 0 (any free port) to 65535"),
    ],
)
def test_user_errors_are_one_line_and_exit_1(run, argv, message):
    code, out, err = run(*argv)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_the_real_command_prints_one_error_line_and_exits_1(tmp_path):
    """The contract as the shell sees it: no traceback, exit code 1."""
    completed = subprocess.run(
        [sys.executable, "-m", "milvus_rag", "ingest", "--docs", str(tmp_path / "none.zip")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 1 and completed.stdout == ""
    assert completed.stderr.startswith("error: The docs source") and "Traceback" not in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1


def test_ask_answers_from_a_keyless_endpoint_that_is_not_localhost(run, monkeypatch, serve_endpoint):
    """Ollama at http://ollama:11434/v1 or a vLLM box on the LAN needs no key: 127.0.0.2 plays
    such a host (no LLM_API_KEY is set in the tests)."""
    from milvus_rag.local_answerer import Handler

    url = serve_endpoint(Handler, "127.0.0.2")
    monkeypatch.setenv("LLM_BASE_URL", url)
    code, out, err = run("ask", "Where does Milvus store data?", "--json")
    assert code == 0, err
    assert url.startswith("http://127.0.0.2:") and "etcd" in json.loads(out)["answer"]


# --------------------------------------------------------------------------- your own documents


def own_folder(root):
    """A folder of your own: subfolders, front matter, a code fence, a .txt, spaces, non-ASCII."""
    (root / "guides" / "größe und länge").mkdir(parents=True)
    (root / "guides" / "setup.md").write_text(
        "---\ntitle: Setup\n---\n# Setup\n\n## Installing the widget\n\nRun the installer, "
        "then reboot the flux capacitor.\n\n```bash\n# not a heading\nmake install\n```\n",
        encoding="utf-8",
    )
    (root / "guides" / "größe und länge" / "notes.txt").write_text(
        "Quarterly figures are archived on the blue server.\n\nBackups run every night at two.\n",
        encoding="utf-8",
    )
    return root


def test_own_folder_and_zip_ingest_and_answer_beside_the_faq(run, tmp_path):
    import zipfile

    assert json.loads(run("ingest")[1])["added"] == 61  # the FAQ, as before
    folder = own_folder(tmp_path / "my notes")
    code, out, err = run("ingest", "--docs", str(folder))
    report = json.loads(out)
    assert code == 0 and report["collection"].startswith("my_rag_collection_my_notes")
    assert report["added"] == report["rows"] >= 2
    code, out, err = run("ask", "how do I reboot the flux capacitor", "--json", "--docs", str(folder))
    hits = json.loads(out)["hits"]
    assert code == 0 and hits[0]["source"] == "guides/setup.md" and "installer" in hits[0]["text"]
    code, out, _ = run("ask", "when do backups run", "--json", "--docs", str(folder), "--k", "1")
    assert json.loads(out)["hits"][0]["source"].endswith("notes.txt")
    archive = tmp_path / "notes.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.rglob("*"):
            zf.write(path, path.relative_to(folder).as_posix())
    zipped = json.loads(run("ingest", "--docs", str(archive))[1])
    assert zipped["collection"] not in (report["collection"], "my_rag_collection_faq")
    assert (zipped["added"], zipped["rows"]) == (report["rows"], report["rows"])
    assert json.loads(run("ingest")[1]) == {"collection": "my_rag_collection_faq", "count": 61,
                                           "rows": 61, "added": 0, "removed": 0}  # fmt: skip


def test_all_docs_has_a_collection_of_its_own(run, tmp_path):
    docs = tmp_path / "docs"
    (docs / "en" / "faq").mkdir(parents=True)
    (docs / "en" / "faq" / "faq.md").write_text("# FAQ\n\n## Is it fast?\n\nYes, quite.\n")
    (docs / "en" / "intro.md").write_text("# Intro\n\n## What is it?\n\nA database.\n")
    faq = json.loads(run("ingest", "--docs", str(docs))[1])
    every = json.loads(run("ingest", "--docs", str(docs), "--all-docs")[1])
    assert (faq["collection"], faq["count"]) == ("my_rag_collection_faq", 1)
    assert (every["collection"], every["count"]) == ("my_rag_collection_docs", 2)
    again = json.loads(run("ingest", "--docs", str(docs))[1])
    assert (again["added"], again["removed"]) == (0, 0)
    # ask with the same options searches the same collection: the page, not the FAQ
    code, out, err = run("ask", "What is it?", "--docs", str(docs), "--all-docs", "--json")
    assert code == 0 and "does not exist" not in err and "did not match" not in err
    assert [hit["source"] for hit in json.loads(out)["hits"]] == ["intro.md", "faq/faq.md"]
    code, out, _ = run("ask", "What is it?", "--docs", str(docs), "--json")
    assert code == 0 and [hit["source"] for hit in json.loads(out)["hits"]] == ["faq.md"]


def test_ask_completes_an_interrupted_ingest_and_says_so(run, lite_uri):
    from milvus_rag import index

    run("ingest")
    client = index.connect(lite_uri)
    client.delete(collection_name="my_rag_collection_faq", ids=sorted(index.existing_ids(
        client, "my_rag_collection_faq"))[:40])  # fmt: skip
    record = index.built_by(client, "my_rag_collection_faq")
    client.alter_collection_properties(
        "my_rag_collection_faq", {index.BUILT_BY: json.dumps({**record, "complete": False})}
    )
    code, out, err = run("ask", "Where does Milvus store data?", "--json")
    assert code == 0 and "did not match its documents (its last ingest did not complete)" in err
    assert "40 rows added" in err
    assert json.loads(out)["hits"][0]["title"] == "Where does Milvus store data?"
    assert index.built_by(client, "my_rag_collection_faq")["complete"] is True


def test_ask_refuses_an_index_built_by_another_model(run, monkeypatch):
    from support.fakes import FakeEmbedding

    run("ingest")

    class Other(FakeEmbedding):
        name = "other model"

    monkeypatch.setattr(embedding, "load_embedding", lambda choice, base_url="": Other())
    code, out, err = run("ask", "Where does Milvus store data?")
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 1 and out == "" and "fake (hashed bag of words)" in line and "other model" in line


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: None, "No readable Markdown"),
        (lambda d: (d / "only.pdf").write_bytes(b"%PDF-1.4"), "No readable Markdown"),
    ],
)
def test_a_folder_with_nothing_to_index_is_refused_and_changes_nothing(run, tmp_path, make, message):
    run("ingest")
    folder = tmp_path / "empty"
    folder.mkdir()
    make(folder)
    code, out, err = run("ingest", "--docs", str(folder))
    assert code == 1 and out == "" and err.startswith("error: ") and message in err
    assert json.loads(run("ingest")[1])["added"] == 0


def test_a_bad_file_is_skipped_with_a_warning_that_names_it(run, tmp_path):
    folder = own_folder(tmp_path / "mine")
    (folder / "broken.md").write_bytes(b"# Title\n\n\xff\xfe not utf-8")
    (folder / "binary.md").write_bytes(b"\x00\x01\x02PNG")
    code, out, err = run("ingest", "--docs", str(folder))
    assert code == 0 and "Warning: " in err and "broken.md" in err and "binary.md" in err
    assert json.loads(out)["added"] >= 2


def test_eval_on_a_server_without_bm25_skips_those_strategies_in_one_line(run, tmp_path, monkeypatch):
    """As on Milvus 2.3: the dense strategies are measured, one line names the others and why;
    asking for a BM25 strategy's figures is refused in one sentence."""
    from support.fakes import Milvus23

    from milvus_rag import index

    connect = index.connect
    monkeypatch.setattr(index, "connect", lambda uri, token="": Milvus23(connect(uri, token)))
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"q": "How does Milvus flush data?",
                                     "gold": "How does Milvus flush data?"}) + "\n")  # fmt: skip
    code, out, err = run("eval", "--questions", str(questions))
    assert code == 0, err
    assert ("Skipped tutorial-bm25, tutorial-hybrid-rrf, entry-bm25, entry-hybrid-rrf, "
            "entry-hybrid-weighted: BM25 full-text search needs Milvus 2.5 or later, but the "
            "server at MILVUS_URI runs 2.3.\n") in err  # fmt: skip
    rows = [line.split()[0] for line in out.splitlines() if line[:1].islower()]
    assert rows[1:4] == ["tutorial-dense", "entry-dense", "entry-phrasings-dense"]  # after "strategy"
    assert "entry-bm25" not in out and json.loads(out.splitlines()[-1])["n"] == 1
    code, _, err = run("eval", "--questions", str(questions), "--only", "--strategy", "entry-bm25")
    assert code == 1 and err.splitlines()[-1] == ("error: BM25 full-text search needs Milvus 2.5 or later, but the "
                                 "server at MILVUS_URI runs 2.3: upgrade it, or use the dense "
                                 "strategies only.")  # fmt: skip


# ------------------------------------------------------------------ any model: endpoints, --models

LOAD = embedding.load_embedding  # the real loader (the run fixture puts the stand-in in its place)
MODEL = "stand-in-embedder"


@pytest.fixture()
def on_endpoint(run, monkeypatch, embeddings_endpoint):
    """``start(**attrs) -> (url, handler)``: EMBEDDING_BASE_URL and EMBEDDING_MODEL set to an
    embeddings endpoint that embeds as the stand-in does, loaded by the real loader."""
    monkeypatch.setattr(embedding, "load_embedding", LOAD)

    def start(**attrs):
        url, handler = embeddings_endpoint(**attrs)
        monkeypatch.setenv("EMBEDDING_BASE_URL", url)
        monkeypatch.setenv("EMBEDDING_MODEL", MODEL)
        return url, handler

    return start


def test_an_endpoints_model_ingests_and_answers_and_another_endpoints_index_is_refused(
    run, on_endpoint
):
    first, _ = on_endpoint()
    code, out, err = run("ingest")
    assert code == 0 and json.loads(out)["added"] == 61
    assert f"Embedding model: {MODEL} at {first}, dimension 64" in err
    code, out, _ = run("ask", "Where does Milvus store data?", "--json")
    assert code == 0 and json.loads(out)["hits"][0]["title"] == "Where does Milvus store data?"
    second, _ = on_endpoint()  # the same model name at another endpoint: other vectors
    code, out, err = run("ask", "Where does Milvus store data?")
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 1 and f"was built with {MODEL} at {first}, but this run embeds with {MODEL} at {second}" in line
    code, out, err = run("ingest")
    assert code == 0 and "re-embedded it" in err and json.loads(out)["added"] == 61


@pytest.mark.parametrize("attrs, says", [
    ({"failures": [401], "healthy": 1}, "rejected the API key (HTTP 401)"),
    ({"failures": [429] * 6, "healthy": 1}, "is rate limiting requests (HTTP 429 after 5 retries"),
    ({"answer": "grow"}, "answered vectors of mixed dimensions (65, 66)"),
])  # fmt: skip
def test_an_endpoint_failing_midway_is_one_line_and_leaves_milvus_as_it_was(
    run, on_endpoint, lite_uri, attrs, says, monkeypatch, canary_key
):
    monkeypatch.setenv("EMBEDDING_API_KEY", canary_key)
    url, handler = on_endpoint()
    run("ingest", "--docs", "data/sample_docs")  # another collection, left as it was too
    on_endpoint(**attrs)
    code, out, err = run("ingest")
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 1 and out == "" and says in line and canary_key not in err
    from milvus_rag import index

    client = index.connect(lite_uri)
    try:
        assert not client.has_collection("my_rag_collection_faq")
    finally:
        client.close()


def test_eval_models_prints_the_models_side_by_side(run, monkeypatch):
    from support.fakes import FakeEmbedding

    class Narrow(FakeEmbedding):
        name = "narrow (16 axes)"

    loaded = {"wide": FakeEmbedding(), "narrow": Narrow(16)}
    monkeypatch.setattr(embedding, "load_embedding", lambda choice, base_url="": loaded[choice])
    code, out, err = run("eval", "--models", "wide,narrow")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].split() == ["model", "n", "hit@1", "hit@3", "mrr", "ingest", "s", "ms/q"]
    rows = {line.split()[0]: line.split() for line in lines[3:5]}
    assert list(rows) == ["wide", "narrow"] and rows["wide"][1] == "48"
    wide, narrow = (json.loads(lines[-1])[name] for name in ("wide", "narrow"))
    assert wide["hit@1"] > narrow["hit@1"]  # 16 hashed axes confuse more entries
    (paired,) = [line for line in lines if " vs " in line]
    assert paired.startswith("  narrow vs wide: hit@1 -")
    code, markdown, _ = run("eval", "--models", "wide,narrow", "--markdown")
    assert markdown.splitlines()[:2] == ["| model | hit@1 | hit@3 | MRR |", "| --- | --- | --- | --- |"]
    assert "ingest" not in markdown and "- narrow vs wide: " in markdown


def test_eval_models_refuses_an_empty_list(run):
    code, _, err = run("eval", "--models", " , ")
    assert code == 1 and err.strip().endswith("--models names no model: give EMBEDDING_MODEL "
                                              "values separated by commas, e.g. --models "
                                              "minilm,BAAI/bge-small-en-v1.5.")  # fmt: skip


# --------------------------------------------------------------------------- coverage


@pytest.fixture()
def calibrated(monkeypatch, fake_embedding):
    """The stand-in model calibrated: ``calibrated(threshold)``; the LLM is never reached unless
    the test allows it (``sent`` counts the requests)."""
    from milvus_rag import coverage, local_answerer

    sent = []  # without LLM_BASE_URL, ask asks the local answerer in its own process
    real = local_answerer.reply
    monkeypatch.setattr(local_answerer, "reply", lambda messages: sent.append(messages) or real(messages))

    def set_threshold(value):
        monkeypatch.setitem(coverage.THRESHOLDS, fake_embedding.name, value)
        return sent

    return set_threshold


def test_ask_abstains_below_the_threshold_and_sends_nothing_to_the_llm(run, calibrated):
    sent = calibrated(2.0)  # no cosine reaches it
    code, out, err = run("ask", "Where does Milvus store data?", "--json")
    answer = json.loads(out)
    assert code == 0 and answer["covered"] is False and answer["answer"] is None
    assert answer["hits"][0]["title"] == "Where does Milvus store data?" and not sent
    code, out, _ = run("ask", "Where does Milvus store data?")
    said, sources = out.split("\n\nNearest sources:\n")
    assert said.startswith("The documents do not seem to cover this question (its best match ")
    assert said.endswith("(--always-answer sends it anyway).")
    assert sources.startswith("[1] product_faq.md · Where does Milvus store data?") and not sent


def test_always_answer_sends_it_anyway_after_saying_so(run, calibrated):
    sent = calibrated(2.0)
    code, out, _ = run("ask", "Where does Milvus store data?", "--always-answer")
    said, rest = out.split("\n\n", 1)
    assert said.startswith("The documents do not seem to cover this question") and len(sent) == 1
    answer, sources = rest.split("\n\nSources:\n")
    assert "etcd" in answer and sources.startswith("[1] product_faq.md")
    answer = json.loads(run("ask", "Where does Milvus store data?", "--json", "--always-answer")[1])
    assert answer["covered"] is False and "etcd" in answer["answer"]


def test_ask_answers_at_or_above_the_threshold(run, calibrated):
    sent = calibrated(0.05)
    answer = json.loads(run("ask", "Where does Milvus store data?", "--json")[1])
    assert answer["covered"] is True and "etcd" in answer["answer"] and len(sent) == 1


def test_ask_with_an_uncalibrated_model_answers_and_says_so(run):
    code, out, err = run("ask", "Where does Milvus store data?", "--json")
    assert json.loads(out)["covered"] is True and "etcd" in json.loads(out)["answer"]
    assert "No coverage threshold is calibrated for fake (hashed bag of words)" in err


def test_eval_abstention_and_calibrate_report_shares_with_intervals(run, calibrated, tmp_path):
    answerable = tmp_path / "a.jsonl"
    answerable.write_text("".join(json.dumps({"q": q, "gold": q}) + "\n" for q in (
        "How does Milvus flush data?", "Where does Milvus store data?")))  # fmt: skip
    unanswerable = tmp_path / "u.jsonl"
    unanswerable.write_text(json.dumps({"q": "zebra quartz lantern", "nearest": "x"}) + "\n")
    files = ("--questions", str(answerable), "--unanswerable", str(unanswerable))
    code, out, err = run("eval", "--abstention", *files)
    assert code == 1 and "No coverage threshold is calibrated for fake" in err  # nothing to measure
    calibrated(0.15)
    code, out, _ = run("eval", "--abstention", *files)
    assert code == 0 and "held-out questions (a.jsonl: answerable, u.jsonl: unanswerable)" in out
    assert "- unanswerable questions abstained on: 1 of 1, 1.000 [1.00, 1.00]" in out
    assert "- answerable questions still answered: 2 of 2, 1.000 [1.00, 1.00]" in out
    code, out, _ = run("eval", "--calibrate", *files)
    lines = out.splitlines()
    assert lines[0].startswith("Threshold for fake (hashed bag of words), by the rule (")
    assert "coverage.THRESHOLDS holds 0.15: set it to" in lines[0]
    assert lines[1].startswith("Coverage on development questions")
