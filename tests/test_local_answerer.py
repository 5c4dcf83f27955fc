"""Tests for the prompts and the local extractive answerer (and its OpenAI-compatible server)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from milvus_rag.local_answerer import (
    MAX_SENTENCES,
    MODEL_NAME,
    NO_ANSWER,
    ExtractiveAnswerer,
    LocalAnswererServer,
    context_sections,
)
from milvus_rag.prompts import (
    SYSTEM_PROMPT,
    USER_PROMPT_TEMPLATE,
    build_messages,
    number_passages,
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
"""The FAQ piece "Where does Milvus store data?" exactly as load_faq_pieces returns it."""

NO_VECTORS_IN_ETCD_PIECE = (
    "Why is there no vector data in etcd?\n\netcd stores Milvus module metadata; MinIO stores "
    "entities.\n\n###"
)
"""The piece that follows it in product_faq.md."""

TUTORIAL_QUESTION = "How is data stored in milvus?"


class KeywordEmbedding:
    """A deterministic stand-in for an embedding: one dimension per keyword."""

    def __init__(self, keywords: list[str]):
        self.keywords = keywords
        self.calls = 0

    def _vector(self, text: str) -> list[float]:
        lowered = text.lower()
        return [float(lowered.count(k)) for k in self.keywords] + [0.01]

    def encode_documents(self, texts):
        self.calls += 1
        return [np.array(self._vector(t)) for t in texts]

    def encode_queries(self, texts):
        self.calls += 1
        return [np.array(self._vector(t)) for t in texts]


# --------------------------------------------------------------------------- prompts


def test_build_messages_uses_the_tutorial_prompts():
    messages = build_messages(["first text", "second text"], "What is Milvus?")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    assert messages[1]["content"] == USER_PROMPT_TEMPLATE.format(
        context="[1] first text\n\n[2] second text", question="What is Milvus?"
    )


@pytest.mark.parametrize(
    "texts",
    [
        ["plain text"],
        ["Text that mentions the <context> tags and <question> tags in a sentence."],
        ["line one\nline two", " leading space", "trailing newline\n"],
        [STORE_DATA_PIECE, NO_VECTORS_IN_ETCD_PIECE],
        ["<context>", "</question>", "a <context> inside"],
        [],
    ],
)
def test_parse_user_prompt_round_trips(texts):
    question = "Where are the <context> tags of milvus?"
    user = build_messages(texts, question)[1]["content"]
    assert parse_user_prompt(user) == (number_passages(texts), question)


def test_parse_user_prompt_strips_the_question():
    user = build_messages(["ctx"], "  How is data stored in milvus?  ")[1]["content"]
    assert parse_user_prompt(user) == ("[1] ctx", "How is data stored in milvus?")


def test_parse_user_prompt_without_tags_is_all_question():
    assert parse_user_prompt("  just a question?\n") == ("", "just a question?")


# --------------------------------------------------------------------------- context_sections


def test_context_sections_drops_markup_and_splits_at_titles():
    context = "\n".join(
        [
            "---",
            "id: product_faq.md",
            "summary: Find answers to frequently asked questions about Milvus.",
            "title: Product FAQ",
            "---",
            "",
            "# Product FAQ",
            "",
            "<div class='note'>html is not a sentence at all</div>",
            "",
            "#### What is Milvus made of?",
            "",
            "Milvus is a vector database built for scale. See [the full docs](https://milvus.io) "
            "for more.",
            "![A diagram of the architecture](img/arch.png)",
            "- Too short.",
            "| a table | is not | prose either |",
            "Milvus is a vector database built for scale.",
            "Is it fast enough for search? Yes, it is built for fast search.",
            " Where does Milvus store data?",
            "",
            "Inserted data are stored as incremental log. Metadata are stored in etcd.",
        ]
    )
    assert context_sections(context) == [
        [
            "Milvus is a vector database built for scale.",
            "See the full docs for more.",
            "A diagram of the architecture",
            "Yes, it is built for fast search.",
        ],
        ["Inserted data are stored as incremental log.", "Metadata are stored in etcd."],
    ]


def test_context_sections_of_the_tutorial_piece():
    assert context_sections(STORE_DATA_PIECE + "\n" + NO_VECTORS_IN_ETCD_PIECE) == [
        [
            "Milvus deals with two types of data, inserted data and metadata.",
            "Inserted data, including vector data, scalar data, and collection-specific "
            "schema, are stored in persistent storage as incremental log.",
            "Milvus supports multiple object storage backends, including MinIO, AWS S3, "
            "Google Cloud Storage (GCS), Azure Blob Storage, Alibaba Cloud OSS, and Tencent "
            "Cloud Object Storage (COS).",
            "Metadata are generated within Milvus.",
            "Each Milvus module has its own metadata that are stored in etcd.",
        ],
        ["etcd stores Milvus module metadata; MinIO stores entities."],
    ]


def test_context_sections_without_sentences():
    assert context_sections("") == []
    assert context_sections("# Title\n\n## What?\n\n---\nid: x.md\n") == []


def test_inline_piece_is_the_real_one(docs_zip, isolated_data_dir):
    from milvus_rag.docs import load_faq_pieces, prepare_docs

    pieces = load_faq_pieces(prepare_docs(str(docs_zip), isolated_data_dir))
    index = pieces.index(STORE_DATA_PIECE)
    assert pieces[index + 1] == NO_VECTORS_IN_ETCD_PIECE


# --------------------------------------------------------------------------- ExtractiveAnswerer


def test_answerer_without_context_or_question():
    embedding = KeywordEmbedding(["milvus"])
    answerer = ExtractiveAnswerer(embedding)
    assert answerer.answer("", "What is Milvus?") == NO_ANSWER
    assert answerer.answer("# Only a heading\n", "What is Milvus?") == NO_ANSWER
    assert answerer.answer(STORE_DATA_PIECE, "   ") == NO_ANSWER
    assert embedding.calls == 0


def test_answerer_quotes_a_short_first_section_whole_without_embedding():
    embedding = KeywordEmbedding(["milvus"])
    answer = ExtractiveAnswerer(embedding).answer(
        STORE_DATA_PIECE + "\n" + NO_VECTORS_IN_ETCD_PIECE, TUTORIAL_QUESTION
    )
    assert answer == " ".join(context_sections(STORE_DATA_PIECE)[0])
    assert "MinIO stores entities" not in answer
    assert embedding.calls == 0


def test_answerer_keeps_the_closest_sentences_in_order():
    sentences = [
        "Alpha words are here today.",
        "Beta words are here today.",
        "Gamma words about storage here.",
        "Delta words are here today.",
        "More storage words about storage here.",
        "Epsilon words are here today.",
    ]
    embedding = KeywordEmbedding(["storage", "alpha"])
    answer = ExtractiveAnswerer(embedding, max_sentences=2).answer(
        " ".join(sentences), "Which storage?"
    )
    assert answer == "Gamma words about storage here. More storage words about storage here."


@pytest.mark.slow
def test_answerer_with_minilm_on_the_tutorial_context(minilm):
    context = "\n".join([STORE_DATA_PIECE, NO_VECTORS_IN_ETCD_PIECE])
    answer = ExtractiveAnswerer(minilm).answer(context, TUTORIAL_QUESTION)
    assert "incremental log" in answer
    assert "etcd" in answer
    sentences = context_sections(context)[0]
    used = [s for s in sentences if s in answer]
    assert 1 <= len(used) <= MAX_SENTENCES
    assert answer == " ".join(used)


@pytest.mark.slow
def test_answerer_with_minilm_trims_to_max_sentences(minilm):
    context = STORE_DATA_PIECE
    sentences = context_sections(context)[0]
    answer = ExtractiveAnswerer(minilm, max_sentences=2).answer(context, TUTORIAL_QUESTION)
    used = [s for s in sentences if s in answer]
    assert len(used) == 2
    assert answer == " ".join(used)  # in the passage's order


# --------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def server(minilm) -> Iterator[LocalAnswererServer]:
    with LocalAnswererServer(minilm) as running:
        yield running


@pytest.fixture(scope="module")
def fake_server() -> Iterator[LocalAnswererServer]:
    with LocalAnswererServer(KeywordEmbedding(["storage"])) as running:
        yield running


LONG_PIECES = [
    STORE_DATA_PIECE.replace(
        "Metadata are generated",
        "Segments are sealed at a size. Indexes are built on sealed segments. Metadata are generated",
    ),
    NO_VECTORS_IN_ETCD_PIECE,
]
LONG_CONTEXT = number_passages(LONG_PIECES)
"""A first passage longer than MAX_SENTENCES, so the embedding decides the answer."""


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_server_listens_on_loopback_only(fake_server):
    assert fake_server.base_url.startswith("http://127.0.0.1:")
    assert fake_server.base_url.endswith("/v1")
    assert fake_server._server.server_address[0] == "127.0.0.1"


def test_server_close_stops_listening():
    server = LocalAnswererServer(KeywordEmbedding(["x"]))
    port = server._server.server_address[1]
    server.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.slow
def test_server_answer_through_openai_client(server, minilm):
    assert len(context_sections(LONG_CONTEXT)[0]) > MAX_SENTENCES
    expected = ExtractiveAnswerer(minilm).answer(LONG_CONTEXT, TUTORIAL_QUESTION)
    assert expected.endswith(" [1]")
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=30)
    response = client.chat.completions.create(
        model="mistral-7b",
        messages=build_messages(LONG_PIECES, TUTORIAL_QUESTION),
    )
    answer = response.choices[0].message.content
    assert answer == expected
    assert "incremental log" in answer
    assert response.model == "mistral-7b"
    assert response.choices[0].finish_reason == "stop"
    assert response.choices[0].message.role == "assistant"
    assert response.usage.completion_tokens == len(answer.split())


@pytest.mark.slow
def test_server_streams_the_same_answer(server, minilm):
    expected = ExtractiveAnswerer(minilm).answer(LONG_CONTEXT, TUTORIAL_QUESTION)
    assert expected.endswith(" [1]")
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=30)
    stream = client.chat.completions.create(
        model=MODEL_NAME,
        messages=build_messages(LONG_PIECES, TUTORIAL_QUESTION),
        stream=True,
    )
    chunks = list(stream)
    assert len(chunks) > 2
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.model == MODEL_NAME for c in chunks)


def test_server_lists_its_model(fake_server):
    client = openai.OpenAI(base_url=fake_server.base_url, api_key="x", max_retries=0, timeout=10)
    assert [model.id for model in client.models.list()] == [MODEL_NAME]


def test_server_answers_no_answer_without_context(fake_server):
    client = openai.OpenAI(base_url=fake_server.base_url, api_key="x", max_retries=0, timeout=10)
    response = client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "What is Milvus?"}]
    )
    assert response.choices[0].message.content == NO_ANSWER
    assert response.model == MODEL_NAME


def test_server_rejects_a_bad_request_through_openai(fake_server):
    client = openai.OpenAI(base_url=fake_server.base_url, api_key="x", max_retries=0, timeout=10)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "system", "content": SYSTEM_PROMPT}]
        )


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"model": "x"}', b'{"messages": []}', b'{"messages": 3}'],
)
def test_server_bad_request_body_is_400(fake_server, body):
    status, payload = post(fake_server.base_url + "/chat/completions", body)
    assert status == 400
    assert payload["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body",
    [
        {"messages": ["hello"]},
        {"messages": [{"role": "user", "content": None}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "What?"}]}]},
    ],
    ids=["message-not-object", "content-null", "content-parts"],
)
def test_server_malformed_messages_get_an_http_answer(fake_server, body):
    status, payload = post(fake_server.base_url + "/chat/completions", json.dumps(body).encode())
    assert status in (200, 400)


def test_server_unknown_paths_are_404(fake_server):
    status, payload = post(fake_server.base_url + "/embeddings", b"{}")
    assert status == 404
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(fake_server.base_url + "/nothing", timeout=10)
    assert info.value.code == 404
