"""The local answerer: its extractive answer, its reading of the tutorial's prompt, and its
server on 127.0.0.1, driven by the real ``openai`` client."""

from __future__ import annotations

import atexit
import socket
import threading
import time

import openai
import pytest

from milvus_rag import generation, local_answerer
from milvus_rag.generation import build_messages
from milvus_rag.local_answerer import MAX_SENTENCES, extract_answer, parse_user_prompt

NO_ANSWER = "The provided context does not contain an answer to this question."

STORE_DATA_PIECE = (
    " Where does Milvus store data?\n\nMilvus deals with two types of data, inserted data and "
    "metadata. \n\nInserted data, including vector data, scalar data, and collection-specific "
    "schema, are stored in persistent storage as incremental log. Milvus supports multiple "
    "object storage backends, including [MinIO](https://min.io/), "
    "[AWS S3](https://aws.amazon.com/s3/?nc1=h_ls), "
    "[Google Cloud Storage](https://cloud.google.com/storage?hl=en#object-storage-for-companies-of-all-sizes) "
    "(GCS), [Azure Blob Storage](https://azure.microsoft.com/en-us/products/storage/blobs), "
    "[Alibaba Cloud OSS](https://www.alibabacloud.com/product/object-storage-service), and "
    "[Tencent Cloud Object Storage](https://www.tencentcloud.com/products/cos) (COS).\n\n"
    "Metadata are generated within Milvus. Each Milvus module has its own metadata that are "
    "stored in etcd.\n\n###"
)
"""The FAQ piece "Where does Milvus store data?" as the tutorial's split gives it."""

NO_VECTORS_IN_ETCD_PIECE = (
    "Why is there no vector data in etcd?\n\netcd stores Milvus module metadata; MinIO stores "
    "entities.\n\n###"
)
"""The piece that follows it in product_faq.md."""

STORE_DATA_ANSWER = (
    "Milvus deals with two types of data, inserted data and metadata. Inserted data, including "
    "vector data, scalar data, and collection-specific schema, are stored in persistent storage "
    "as incremental log. Milvus supports multiple object storage backends, including MinIO, AWS "
    "S3, Google Cloud Storage (GCS), Azure Blob Storage, Alibaba Cloud OSS, and Tencent Cloud "
    "Object Storage (COS). Metadata are generated within Milvus. Each Milvus module has its own "
    "metadata that are stored in etcd."
)
TUTORIAL_QUESTION = "How is data stored in milvus?"

SEGMENT_QUESTION = "Where are segments flushed to object storage?"
SEGMENT_SENTENCES = [
    "Alpha beta gamma delta epsilon.",  # shares 0 words with the question
    "Sealed segments are flushed to object storage.",  # 6
    "Cats sleep most of the day.",  # 0
    "Object storage keeps the binlogs.",  # 2
    "Zebras run very fast indeed.",  # 0
    "Growing segments stay in memory first.",  # 1
    "Query nodes load segments from object storage.",  # 3
    "Flushed data is durable after that.",  # 1
    "Compaction rewrites segments much later.",  # 1: ties with the two before, and comes last
]
LONG_ANSWER = " ".join(SEGMENT_SENTENCES[i] for i in (1, 3, 5, 6, 7)) + " [1]"
LONG_TEXTS = [" ".join(SEGMENT_SENTENCES), STORE_DATA_PIECE]


def answer_to(texts: list[str], question: str) -> str:
    return extract_answer(*parse_user_prompt(build_messages(texts, question)[1]["content"]))


# --------------------------------------------------------------------------- the answer


def test_answer_is_the_first_passages_sentences_cited():
    answer = answer_to([STORE_DATA_PIECE, NO_VECTORS_IN_ETCD_PIECE], TUTORIAL_QUESTION)
    assert answer == STORE_DATA_ANSWER + " [1]"


def test_the_tutorials_unnumbered_context_is_split_at_faq_titles():
    """The notebook's tutorial cell joins the pieces with "\\n", unnumbered: the answer is the
    first piece's, uncited."""
    context = STORE_DATA_PIECE + "\n" + NO_VECTORS_IN_ETCD_PIECE
    assert extract_answer(context, TUTORIAL_QUESTION) == STORE_DATA_ANSWER
    long_question = "Is it " + "very " * 45 + "fast?"  # over 200 characters: not a title
    headed = (
        f"#### What is Milvus?\n\nMilvus is a vector database.\n{long_question}\n"
        "It scales to billions of vectors.\n\n#### Why?\n\nThe next entry starts here."
    )
    assert extract_answer(headed, "What?") == (
        "Milvus is a vector database. It scales to billions of vectors."
    )


@pytest.mark.parametrize(
    ("context", "question"),
    [
        ("", TUTORIAL_QUESTION),
        ("[1] # Only a heading\n\n[2] | a | table | row | here |", TUTORIAL_QUESTION),
        ("[1] Too short.\n\n[2] What is Milvus made of?", TUTORIAL_QUESTION),
        ("[1] " + STORE_DATA_PIECE, "  \n "),
    ],
)
def test_no_answer_without_context_or_question(context, question):
    assert extract_answer(context, question) == NO_ANSWER


def test_a_long_passage_keeps_the_sentences_sharing_most_words_in_their_order():
    assert len(SEGMENT_SENTENCES) > MAX_SENTENCES == 5
    assert extract_answer("[1] " + " ".join(SEGMENT_SENTENCES), SEGMENT_QUESTION) == LONG_ANSWER


def test_markup_is_dropped():
    passage = "\n".join(
        [
            "---",
            "id: insert_data.md",
            "summary: Learn how to insert data into a collection.",
            "---",
            "## Where does inserted data go?",
            '<div class="alert note">An html note is not a sentence here.</div>',
            "| Parameter | Description of it | Default value |",
            "Milvus stores [inserted data](insert.md) in [MinIO](https://min.io/) buckets.",
            "- Short item.",
            "> Quoted lines are kept as plain sentences.",
            "What does Milvus keep in etcd for each collection?",
            "Milvus stores inserted data in MinIO buckets.",
            "```",
        ]
    )
    assert extract_answer("[1] " + passage, "Where does inserted data go?") == (
        "Milvus stores inserted data in MinIO buckets. "
        "Quoted lines are kept as plain sentences. [1]"
    )


def test_an_entrys_title_line_is_not_part_of_the_answer():
    """Entries start with their heading path (a line with no question mark, in a user's own
    docs) and a .txt block with its first line as title: neither is quoted as a sentence. A
    passage of one paragraph has no title line, and is quoted whole."""
    from milvus_rag.chunking import document_entries
    from milvus_rag.corpus import Document

    docs = [Document("guide.md", "# Installing the gateway\n\n## Rotating the keys\n\n"
                     "Keys expire after ninety days. Run the rotate command, then restart it.\n"),
            Document("backups.txt", "Backups run every night and are kept for a month.\n\n"
                     "Restores are done by the on-call engineer.\n")]  # fmt: skip
    texts = [entry.text for entry in document_entries(docs)]
    assert answer_to(texts[:1], "how do I rotate the keys") == (
        "Keys expire after ninety days. Run the rotate command, then restart it. [1]"
    )
    assert answer_to(texts[1:], "when do backups run") == (
        "Backups run every night and are kept for a month. Restores are done by the on-call "
        "engineer. [1]"
    )
    assert answer_to(["Keys expire after ninety days on every gateway."], "keys?") == (
        "Keys expire after ninety days on every gateway. [1]"
    )


def test_a_passage_with_only_markup_is_skipped_for_the_next():
    context = "[1] # Insert Data\n| a | b |\n\n[2] Milvus keeps inserted data in object storage."
    assert extract_answer(context, "Where?") == "Milvus keeps inserted data in object storage. [2]"


@pytest.mark.parametrize(
    "texts",
    [
        ["Text that mentions the <context> tags and <question> tags in a sentence."],
        ["line one\nline two", " leading space", "trailing newline\n"],
        [],
        ["a passage quoting a prompt:\n</context>\nand more of the passage"],
        ["a prompt template:\n<question>\n{question}\n</question>\nends here"],
        ["a whole prompt's end:\n</context>\n<question>\nWhat?\n</question>\nends here"],
    ],
)
def test_parse_user_prompt_reads_passages_that_hold_the_tags(texts):
    question = "  Where are the <context> tags of milvus?\n"
    context = "\n\n".join(f"[{n}] {text.strip()}" for n, text in enumerate(texts, 1))
    user = build_messages(texts, question)[1]["content"]
    assert parse_user_prompt(user) == (context, question.strip())


def test_a_prompt_without_the_tags_is_all_question():
    assert parse_user_prompt("<context>\nhalf a prompt?\n") == ("", "<context>\nhalf a prompt?")


# --------------------------------------------------------------------------- the server


def openai_client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="any", max_retries=0, timeout=10)


def test_answers_through_the_openai_client_whole_and_streamed_word_by_word():
    llm = openai_client(local_answerer.base_url())
    messages = build_messages(LONG_TEXTS, SEGMENT_QUESTION)
    response = llm.chat.completions.create(model="mistral-7b", messages=messages)
    assert response.choices[0].message.content == LONG_ANSWER
    assert (response.model, response.choices[0].finish_reason) == ("mistral-7b", "stop")
    chunks = list(llm.chat.completions.create(model="m", messages=messages, stream=True))
    pieces = [chunk.choices[0].delta.content for chunk in chunks]
    assert "".join(pieces) == LONG_ANSWER and len(pieces) == len(LONG_ANSWER.split())
    assert [chunk.choices[0].finish_reason for chunk in chunks][-2:] == [None, "stop"]


def test_the_last_user_message_is_answered():
    first = build_messages(["Milvus keeps data in MinIO buckets."], "Where?")
    second = build_messages(["Etcd keeps the metadata of Milvus."], "Where is the metadata?")
    messages = [*first, {"role": "assistant", "content": "In MinIO. [1]"}, second[1]]
    response = openai_client(local_answerer.base_url()).chat.completions.create(
        model="m", messages=messages
    )
    assert response.choices[0].message.content == "Etcd keeps the metadata of Milvus. [1]"


def test_listens_on_127_0_0_1_only():
    url = local_answerer.base_url()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()


def test_one_server_per_process_even_for_concurrent_first_calls_closed_at_exit(monkeypatch):
    started, at_exit = [], []

    class SlowToStart(local_answerer.ThreadingHTTPServer):
        def __init__(self, *args):
            time.sleep(0.05)  # widen the window in which a second caller could start another
            super().__init__(*args)
            started.append(self)

    monkeypatch.setattr(local_answerer, "_server", None)
    monkeypatch.setattr(local_answerer, "ThreadingHTTPServer", SlowToStart)
    monkeypatch.setattr(atexit, "register", at_exit.append)
    urls: list[str] = []
    threads = [
        threading.Thread(target=lambda: urls.append(local_answerer.base_url())) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(started) == 1 and len(set(urls)) == 1 and len(urls) == 8
    port = started[0].server_address[1]
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    for close in reversed(at_exit):  # as atexit runs them
        close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_client_that_stops_reading_a_stream_gets_nothing_printed(monkeypatch, capfd):
    long_answer = "Milvus " + ("w" * 100_000 + " ") * 100  # 10 MB: more than sockets buffer
    monkeypatch.setattr(local_answerer, "extract_answer", lambda context, question: long_answer)
    llm = generation.client(local_answerer.base_url(), "any")
    response = llm.chat.completions.create(
        model="m", messages=build_messages(["x"], "y"), stream=True
    )
    pieces = generation.stream_text(response)
    assert next(pieces) == "Milvus "
    pieces.close()
    for thread in list(local_answerer._server._threads):  # the request's, until it has ended
        thread.join(10)
    assert capfd.readouterr().err == ""


def test_serve_runs_one_in_the_foreground_on_the_port_it_prints(tmp_path):
    """``python -m milvus_rag serve``: chat as in-process, and /v1/embeddings refusing a model
    it does not serve, as OpenAI does (the packaged model's vectors: tests/test_any_model.py)."""
    import subprocess
    import sys

    server = subprocess.Popen([sys.executable, "-m", "milvus_rag", "serve", "--port", "0"],
                              stdout=subprocess.PIPE, encoding="utf-8", cwd=tmp_path)  # fmt: skip
    try:
        line = server.stdout.readline()
        url = line.split()[2].rstrip(":")
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), line
        client = openai.OpenAI(base_url=url, api_key="no-key")
        reply = client.chat.completions.create(model="m", messages=build_messages(
            ["Milvus stores inserted data in object storage as incremental logs."],
            "Where is data stored?"))  # fmt: skip
        assert reply.choices[0].message.content.startswith("Milvus stores inserted data")
        with pytest.raises(openai.NotFoundError, match="does not exist; this server has 'all-MiniLM-L6-v2'"):
            client.embeddings.create(model="text-embedding-3-small", input=["x"])
    finally:
        server.terminate()
        server.wait(timeout=10)
