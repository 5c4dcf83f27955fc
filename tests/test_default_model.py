"""The tutorial's own model (``DefaultEmbeddingFunction``) through the command line, loaded by
its real code from a stand-in Hugging Face cache (tests/support/hf_standin.py): the path every
Colab user takes, with no network. The notebook runs on it under nbmake (see ../conftest.py)."""

import json
import os
import subprocess
import sys

import pytest
from support.hf_standin import standin_env

pytestmark = pytest.mark.slow


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milvus_rag", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **env})  # fmt: skip


def test_ingest_and_ask_with_the_tutorials_model(standin_hf_home, tmp_path):
    env = {**standin_env(standin_hf_home), "EMBEDDING_MODEL": "default",
           "MILVUS_LITE_PATH": str(tmp_path / "default.db")}  # fmt: skip
    ingested = cli("ingest", env=env)
    assert ingested.returncode == 0, ingested.stderr
    assert "Embedding model: default (paraphrase-albert-small-v2, ONNX)" in ingested.stderr
    assert json.loads(ingested.stdout)["added"] == 305  # 61 entries and 4 phrasings each
    asked = cli("ask", "How is data stored in milvus?", "--json", env=env)
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["hits"][0]["title"] == "Where does Milvus store data?"


@pytest.mark.parametrize("hub_offline", [True, False])
def test_auto_picks_the_cached_tutorial_model(standin_hf_home, tmp_path, hub_offline):
    """With HF_HUB_OFFLINE=1, and without it (the hub unreachable): no 50 s of retries."""
    env = {**standin_env(standin_hf_home, hub_offline=hub_offline), "EMBEDDING_MODEL": "auto",
           "MILVUS_LITE_PATH": str(tmp_path / "auto.db")}  # fmt: skip
    asked = cli("ask", "Where does Milvus store data?", "--json", env=env)
    assert asked.returncode == 0, asked.stderr
    assert "default (paraphrase-albert-small-v2, ONNX)" in asked.stderr
    assert "auto: the tutorial's model loaded" in asked.stderr
