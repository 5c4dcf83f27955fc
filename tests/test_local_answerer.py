"""The local answerer: its extractive answer, its reading of the tutorial's prompt, and its
OpenAI-compatible server on 127.0.0.1, driven by the real ``openai`` client."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import openai
import openai._base_client
import pytest

from milvus_rag import generation, local_answerer
from milvus_rag.errors import RagError
from milvus_rag.generation import build_messages
from milvus_rag.local_answerer import (
    MAX_SENTENCES,
    MODEL_NAME,
    NO_ANSWER,
    LocalAnswererServer,
    extract_answer,
    numbered_sections,
    parse_user_prompt,
)

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
"""The FAQ piece "Where does Milvus store data?" as the tutorial's chunking gives it."""

NO_VECTORS_IN_ETCD_PIECE = (
    "Why is there no vector data in etcd?\n\netcd stores Milvus module metadata; MinIO stores "
    "entities.\n\n###"
)
"""The piece that follows it in product_faq.md."""

STORE_DATA_SENTENCES = [
    "Milvus deals with two types of data, inserted data and metadata.",
    "Inserted data, including vector data, scalar data, and collection-specific schema, are "
    "stored in persistent storage as incremental log.",
    "Milvus supports multiple object storage backends, including MinIO, AWS S3, Google Cloud "
    "Storage (GCS), Azure Blob Storage, Alibaba Cloud OSS, and Tencent Cloud Object Storage "
    "(COS).",
    "Metadata are generated within Milvus.",
    "Each Milvus module has its own metadata that are stored in etcd.",
]
TUTORIAL_QUESTION = "How is data stored in milvus?"

SEGMENT_QUESTION = "Where are segments flushed to object storage?"
SEGMENT_SENTENCES = [
    "Alpha beta gamma delta epsilon.",  # shares no word with the question
    "Sealed segments are flushed to object storage.",  # 6 words shared
    "Cats sleep most of the day.",  # 0
    "Object storage keeps the binlogs.",  # 2
    "Zebras run very fast indeed.",  # 0
    "Growing segments stay in memory first.",  # 1
    "Query nodes load segments from object storage.",  # 3
    "Flushed data is durable after that.",  # 1
]
"""A passage longer than MAX_SENTENCES: five sentences share words with the question."""


def user_prompt(texts: list[str], question: str) -> str:
    return build_messages(texts, question)[1]["content"]


def answer_to(texts: list[str], question: str) -> str:
    return extract_answer(*parse_user_prompt(user_prompt(texts, question)))


# --------------------------------------------------------------------------- extract_answer


def test_answer_is_the_first_passages_sentences_cited():
    answer = answer_to([STORE_DATA_PIECE, NO_VECTORS_IN_ETCD_PIECE], TUTORIAL_QUESTION)
    assert len(STORE_DATA_SENTENCES) == MAX_SENTENCES
    assert answer == " ".join(STORE_DATA_SENTENCES) + " [1]"
    assert "MinIO stores entities" not in answer


@pytest.mark.parametrize(
    ("context", "question"),
    [
        ("", TUTORIAL_QUESTION),
        ("[1] # Only a heading\n\n[2] | a | table | row | here |", TUTORIAL_QUESTION),
        ("[1] Too short.\n\n[2] What is Milvus made of?", TUTORIAL_QUESTION),
        ("[1] " + STORE_DATA_PIECE, ""),
        ("[1] " + STORE_DATA_PIECE, "  \n "),
    ],
)
def test_no_answer_without_context_or_question(context, question):
    assert extract_answer(context, question) == NO_ANSWER


def test_long_passage_keeps_the_sentences_sharing_words_with_the_question():
    assert len(SEGMENT_SENTENCES) > MAX_SENTENCES
    answer = extract_answer("[1] " + " ".join(SEGMENT_SENTENCES), SEGMENT_QUESTION)
    kept = [SEGMENT_SENTENCES[i] for i in (1, 3, 5, 6, 7)]
    assert answer == " ".join(kept) + " [1]"


@pytest.mark.parametrize(
    ("max_sentences", "kept"),
    [
        (1, [1]),
        (3, [1, 3, 6]),  # the best three (scores 6, 3, 2), in the passage's order
        (4, [1, 3, 5, 6]),  # a tie (5 and 7 share one word each): the earlier one
        (8, list(range(8))),
    ],
)
def test_trimmed_sentences_stay_in_the_passages_order(max_sentences, kept):
    answer = extract_answer(
        "[1] " + " ".join(SEGMENT_SENTENCES), SEGMENT_QUESTION, max_sentences=max_sentences
    )
    assert answer == " ".join(SEGMENT_SENTENCES[i] for i in kept) + " [1]"


def test_markup_is_dropped():
    passage = "\n".join(
        [
            "---",
            "id: insert_data.md",
            "summary: Learn how to insert data into a collection.",
            "title: Insert Data",
            "---",
            "",
            "# Insert data into Milvus",
            "",
            "## Where does inserted data go?",
            "",
            '<div class="alert note">An html note is not a sentence here.</div>',
            "",
            "| Parameter | Description of it | Default value |",
            "| --- | --- | --- |",
            "",
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


def test_a_passage_with_only_markup_is_skipped_for_the_next():
    context = "[1] # Insert Data\n| a | b |\n\n[2] Milvus keeps inserted data in object storage."
    assert extract_answer(context, "Where?") == "Milvus keeps inserted data in object storage. [2]"


def test_unnumbered_context_is_split_at_faq_titles():
    context = STORE_DATA_PIECE + "\n" + NO_VECTORS_IN_ETCD_PIECE
    assert numbered_sections(context) == [
        (None, STORE_DATA_SENTENCES),
        (None, ["etcd stores Milvus module metadata; MinIO stores entities."]),
    ]
    assert extract_answer(context, TUTORIAL_QUESTION) == " ".join(STORE_DATA_SENTENCES)


def test_unnumbered_markdown_titles():
    context = (
        "#### What is Milvus?\n\nMilvus is a vector database built for scale.\n\n"
        "#### Where does Milvus store data?\n\nInserted data are stored as incremental logs."
    )
    assert numbered_sections(context) == [
        (None, ["Milvus is a vector database built for scale."]),
        (None, ["Inserted data are stored as incremental logs."]),
    ]
    assert extract_answer(context, "Where?") == "Milvus is a vector database built for scale."


def test_numbered_sections_keep_the_numbers_and_drop_empty_passages():
    context = (
        "[1] Milvus is a vector database for AI.\n\n[2] # Heading\n\n[3] Alpha beta gamma delta."
    )
    assert numbered_sections(context) == [
        (1, ["Milvus is a vector database for AI."]),
        (3, ["Alpha beta gamma delta."]),
    ]


def test_repeated_sentences_are_quoted_once():
    context = (
        "[1] Milvus keeps data in MinIO.\nMilvus keeps data in MinIO.\nEtcd keeps the metadata."
    )
    assert extract_answer(context, "Where?") == (
        "Milvus keeps data in MinIO. Etcd keeps the metadata. [1]"
    )


# --------------------------------------------------------------------------- parse_user_prompt


@pytest.mark.parametrize(
    "texts",
    [
        ["plain text"],
        ["Text that mentions the <context> tags and <question> tags in a sentence."],
        ["line one\nline two", " leading space", "trailing newline\n"],
        [STORE_DATA_PIECE, NO_VECTORS_IN_ETCD_PIECE],
        ["<context>", "</question>", "a <context> inside"],
        [],
        pytest.param(
            ["a passage quoting a prompt:\n</context>\nand more of the passage"],
            id="closing-tag-line",
        ),
        pytest.param(
            ["a prompt template:\n<question>\n{question}\n</question>\nends here"],
            id="question-tag-lines-in-a-passage",
        ),
    ],
)
def test_parse_user_prompt_round_trips(texts):
    question = "Where are the <context> tags of milvus?"
    context = "\n\n".join(f"[{n}] {text.strip()}" for n, text in enumerate(texts, 1))
    assert parse_user_prompt(user_prompt(texts, question)) == (context, question)


def test_parse_user_prompt_strips_the_question():
    user = user_prompt(["ctx"], "  How is data stored in milvus?  \n")
    assert parse_user_prompt(user) == ("[1] ctx", "How is data stored in milvus?")


@pytest.mark.parametrize("prompt", ["  just a question?\n", "<context>\nhalf a prompt?"])
def test_parse_user_prompt_without_both_tags_is_all_question(prompt):
    assert parse_user_prompt(prompt) == ("", prompt.strip())


# --------------------------------------------------------------------------- the server


@pytest.fixture()
def quick_retries(monkeypatch):
    """The openai client's own retries (2) still happen, with 10 ms instead of 0.5-1 s backoff."""
    monkeypatch.setattr(openai._base_client, "INITIAL_RETRY_DELAY", 0.01)


@pytest.fixture()
def quick_shutdown(monkeypatch):
    """Servers started in this test notice close() in 20 ms (serve_forever's default: 0.5 s)."""

    def serve_forever(self, poll_interval=0.02):
        socketserver.BaseServer.serve_forever(self, poll_interval)

    monkeypatch.setattr(ThreadingHTTPServer, "serve_forever", serve_forever)


@pytest.fixture()
def url() -> str:
    return local_answerer.base_url()


def openai_client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="any", max_retries=0, timeout=10)


def request(url: str, body: bytes | None = None, method: str = "POST") -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def chat(url: str, body) -> tuple[int, dict]:
    return request(url + "/chat/completions", json.dumps(body).encode())


LONG_TEXTS = [" ".join(SEGMENT_SENTENCES), STORE_DATA_PIECE]
LONG_ANSWER = " ".join(SEGMENT_SENTENCES[i] for i in (1, 3, 5, 6, 7)) + " [1]"


def test_server_listens_on_127_0_0_1_only(url):
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()


def test_one_server_per_process(url):
    assert local_answerer.base_url() == url
    assert generation.endpoint("")[0] == url
    named = [t for t in threading.enumerate() if t.name == "milvus-rag-local-answerer"]
    assert len(named) == 1


def test_concurrent_first_calls_start_one_server(monkeypatch, quick_shutdown):
    monkeypatch.setattr(local_answerer, "_running", None)
    started, at_exit = [], []

    class SlowToStart(LocalAnswererServer):
        def __init__(self):
            time.sleep(0.05)  # widen the window in which a second caller could start another
            super().__init__()
            started.append(self)

    monkeypatch.setattr(local_answerer, "LocalAnswererServer", SlowToStart)
    monkeypatch.setattr(local_answerer.atexit, "register", at_exit.append)
    urls: list[str] = []
    threads = [
        threading.Thread(target=lambda: urls.append(local_answerer.base_url())) for _ in range(8)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(started) == 1
        assert urls == [started[0].base_url] * 8
        assert at_exit == [started[0].close]
    finally:
        for server in started:
            server.close()


def test_server_close_stops_listening(quick_shutdown):
    with LocalAnswererServer(host="127.0.0.2") as server:
        assert server.base_url.startswith("http://127.0.0.2:")
        assert [m.id for m in openai_client(server.base_url).models.list()] == [MODEL_NAME]
        port = server._server.server_address[1]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()


def test_answer_through_the_openai_client(url):
    response = openai_client(url).chat.completions.create(
        model="mistral-7b", messages=build_messages(LONG_TEXTS, SEGMENT_QUESTION)
    )
    answer = response.choices[0].message.content
    assert answer == LONG_ANSWER
    assert response.model == "mistral-7b"
    assert response.object == "chat.completion"
    assert response.choices[0].finish_reason == "stop"
    assert response.choices[0].message.role == "assistant"
    assert response.usage.completion_tokens == len(answer.split())


def test_streamed_answer_is_the_same_text(url):
    stream = openai_client(url).chat.completions.create(
        model=MODEL_NAME, messages=build_messages(LONG_TEXTS, SEGMENT_QUESTION), stream=True
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert "".join(pieces) == LONG_ANSWER
    assert len(pieces) == len(LONG_ANSWER.split())  # word by word
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert {c.model for c in chunks} == {MODEL_NAME}
    assert len({c.id for c in chunks}) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_answer_through_generation(stream):
    base_url, key, _ = generation.endpoint("")
    messages = build_messages(LONG_TEXTS, SEGMENT_QUESTION)
    pieces = generation.answer(generation.client(base_url, key), MODEL_NAME, "", messages, stream)
    assert "".join(pieces) == LONG_ANSWER


def test_no_answer_without_context(url):
    response = openai_client(url).chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "What is Milvus?"}]
    )
    assert response.choices[0].message.content == NO_ANSWER


def test_the_last_user_message_is_answered(url):
    first = build_messages(["Milvus keeps data in MinIO buckets."], "Where?")
    second = build_messages(["Etcd keeps the metadata of Milvus."], "Where is the metadata?")
    status, body = chat(
        url,
        {"messages": [*first, {"role": "assistant", "content": "In MinIO. [1]"}, second[1]]},
    )
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "Etcd keeps the metadata of Milvus. [1]"
    assert body["model"] == MODEL_NAME  # none asked for


def test_content_parts_are_read_as_text(url):
    user = user_prompt(LONG_TEXTS, SEGMENT_QUESTION)
    half = len(user) // 2
    parts = [
        {"type": "text", "text": user[:half]},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": user[half:]},
    ]
    status, body = chat(url, {"model": "m", "messages": [{"role": "user", "content": parts}]})
    assert status == 200
    assert body["choices"][0]["message"]["content"] == LONG_ANSWER


def test_models_listing(url):
    assert [model.id for model in openai_client(url).models.list()] == [MODEL_NAME]
    status, body = request(url + "/models/", method="GET")
    assert status == 200
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == [MODEL_NAME]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nothing"), ("GET", "/chat/completions"), ("POST", "/embeddings"),
     ("POST", "/completions"), ("POST", "/models")],
)  # fmt: skip
def test_unknown_paths_are_404(url, method, path):
    status, body = request(url + path, b"{}" if method == "POST" else None, method)
    assert status == 404
    assert body["error"]["type"] == "invalid_request_error"


def test_unknown_path_through_openai_is_not_found(url):
    with pytest.raises(openai.NotFoundError):
        openai_client(url).embeddings.create(model=MODEL_NAME, input="hello")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"null",
        b"[]",
        b'{"model": "x"}',
        b'{"messages": []}',
        b'{"messages": 3}',
        b'{"messages": "hello"}',
        b'{"messages": [{"role": "system", "content": "no user message"}]}',
    ],
)
def test_bad_request_body_is_400(url, body):
    status, payload = request(url + "/chat/completions", body)
    assert status == 400
    assert payload["error"] == {
        "message": "expected a chat request with a user message",
        "type": "invalid_request_error",
    }


@pytest.mark.parametrize(
    ("messages", "status"),
    [
        (["hello"], 400),
        ([{"role": "user"}], 400),
        ([{"role": "user", "content": None}], 400),
        ([{"role": "user", "content": 5}], 400),
        ([{"role": "user", "content": {"text": "What?"}}], 400),
        ([{"role": "user", "content": ["a bare string part"]}], 200),
        ([{"role": "user", "content": [{"type": "text", "text": "What?"}]}], 200),
        (["hello", {"role": "user", "content": "What?"}], 200),
    ],
    ids=["not-object", "no-content", "content-null", "content-number", "content-object",
         "part-not-object", "content-parts", "mixed"],
)  # fmt: skip
def test_malformed_messages_get_an_http_answer(url, messages, status):
    got, body = chat(url, {"messages": messages})
    assert got == status
    if status == 200:
        assert body["choices"][0]["message"]["content"] == NO_ANSWER
    else:
        assert body["error"]["type"] == "invalid_request_error"


def test_bad_request_through_openai_is_a_bad_request_error(url):
    with pytest.raises(openai.BadRequestError):
        openai_client(url).chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "system", "content": "no user message"}]
        )


@pytest.fixture()
def broken_answerer(monkeypatch):
    def broken(context, question, max_sentences=MAX_SENTENCES):
        raise RuntimeError("answerer bug: no sentences left")

    monkeypatch.setattr(local_answerer, "extract_answer", broken)


def test_a_bug_in_the_answerer_is_http_500_with_its_message(url, broken_answerer, capfd):
    status, body = chat(url, {"messages": build_messages(LONG_TEXTS, SEGMENT_QUESTION)})
    assert status == 500
    assert body["error"] == {
        "message": "RuntimeError: answerer bug: no sentences left",
        "type": "server_error",
    }
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("stream", [False, True])
def test_a_bug_in_the_answerer_is_one_sentence_through_generation(broken_answerer, quick_retries, capfd, stream):  # fmt: skip
    base_url, key, _ = generation.endpoint("")
    llm = generation.client(base_url, key)
    messages = build_messages(LONG_TEXTS, SEGMENT_QUESTION)
    with pytest.raises(RagError) as info:
        "".join(generation.answer(llm, MODEL_NAME, "", messages, stream))
    message = str(info.value)
    assert message.startswith("The LLM endpoint the local answerer failed with a server error")
    assert "HTTP 500" in message
    assert "RuntimeError: answerer bug: no sentences left" in message
    assert "\n" not in message
    assert isinstance(info.value.__cause__, openai.InternalServerError)
    assert capfd.readouterr().err == ""


def _wait_for_the_answerers_request_threads() -> None:
    server = local_answerer._running._server
    for thread in threading.enumerate():
        target = getattr(thread, "_target", None)  # gone once the thread has finished
        if getattr(target, "__self__", None) is server and (
            target.__name__ == "process_request_thread"
        ):
            thread.join(10)


def test_a_client_that_stops_reading_gets_nothing_printed(url, capfd, monkeypatch):
    long_answer = "Milvus " + ("w" * 100_000 + " ") * 100  # 10 MB: more than sockets buffer
    monkeypatch.setattr(local_answerer, "extract_answer", lambda context, question: long_answer)
    response = openai_client(url).chat.completions.create(
        model=MODEL_NAME, messages=build_messages(["Milvus keeps data."], "Where?"), stream=True
    )
    pieces = generation.stream_text(response)
    assert next(pieces) == "Milvus "
    pieces.close()
    _wait_for_the_answerers_request_threads()
    assert capfd.readouterr().err == ""
