"""Test-session set-up shared by the unit tests (tests/) and the notebook run (nbmake).

The notebook reads its parameters from environment variables, so a test session points them
at the shared docs zip and at temporary folders before anything runs, and removes any LLM or
Milvus settings of the developer's shell, so that tests are offline, repeatable and never touch
a real endpoint or the checkout's data/.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
SHARED_ZIP = REPO.parent / "shared" / "data" / "milvus_docs_2.4.x_en.zip"
DOWNLOADED_ZIP = REPO / "data" / SHARED_ZIP.name  # where the notebook and the CLI download it
collect_ignore_glob = ["notebooks/executed*", "notebooks/*executed*.ipynb"]
"""Executed copies of the notebook (``make run``, papermill by hand) are outputs, not tests."""

_SCRATCH = os.path.realpath(tempfile.mkdtemp(prefix="milvus-rag-tests-"))  # macOS: /private/var
"""Everything a test session writes: tmp_path folders, caches, kernels' and servers' files
(TMPDIR points here). Removed when the session ends, so nothing is left behind."""


def shared_docs_zip() -> Path | None:
    """The docs zip for the tests: $MILVUS_DOCS_ZIP if it is a file, else ../shared/data's, else
    the one the notebook downloaded into data/ (on GitHub: the workflow's)."""
    configured = os.environ.get("MILVUS_DOCS_ZIP", "")
    return next((p for p in ([Path(configured)] if configured else [SHARED_ZIP, DOWNLOADED_ZIP])
                 if p.is_file()), None)  # fmt: skip


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    scratch = Path(_SCRATCH)
    if config.option.basetemp is None:
        config.option.basetemp = str(scratch / "pytest")
    for name, folder in (("TMPDIR", "tmp"), ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "mpl"),
                         ("JUPYTER_RUNTIME_DIR", "jupyter-runtime")):  # fmt: skip
        (scratch / folder).mkdir(exist_ok=True)
        os.environ[name] = str(scratch / folder)
    tempfile.tempdir = str(scratch / "tmp")
    for name in (
        "LLM_BASE_URL", "LLM_API_KEY", "LEPTONAI_TOKEN", "LLM_MODEL", "LLM_MAX_TOKENS",
        "LLM_TEMPERATURE", "LLM_TIMEOUT", "MILVUS_TOKEN", "MILVUS_COLLECTION", "RAG_QUESTION",
        "RAG_TOP_K", "RAG_EVAL_QUESTIONS", "EMBEDDING_MODEL", "EMBEDDING_BASE_URL", "EMBEDDING_API_KEY",
        "MILVUS_URI", "RAG_MY_DOCS",
    ):  # fmt: skip
        os.environ.pop(name, None)
    zip_path = shared_docs_zip()
    if zip_path is not None:
        os.environ["MILVUS_DOCS_ZIP"] = str(zip_path)
    os.environ["MILVUS_LITE_PATH"] = str(Path(_SCRATCH) / "notebook_milvus.db")
    os.environ["MILVUS_RAG_DATA_DIR"] = str(Path(_SCRATCH) / "data")
    os.environ["MILVUS_RAG_MODEL_CACHE"] = str(Path(_SCRATCH) / "models")  # converted once a session
    os.environ["RAG_PROGRESS"] = "text"  # saved outputs hold text bars, not widgets
    os.environ["HF_HOME"] = str(Path(_SCRATCH) / "hf-home")  # never the developer's cache
    os.environ["MILVUS_RAG_TEST_SCRATCH"] = _SCRATCH
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_unconfigure(config):
    shutil.rmtree(_SCRATCH, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """The notebook run (nbmake) is a slow test; without the docs zip it cannot run at all:
    say so plainly (and fail in CI)."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
    if shared_docs_zip() is None and any(item.path.suffix == ".ipynb" for item in items):
        message = (
            f"the docs zip is missing: put it at {SHARED_ZIP} or set MILVUS_DOCS_ZIP to its path"
        )
        if os.environ.get("CI"):
            raise SystemExit(f"error: {message}")
        for item in items:
            if item.path.suffix == ".ipynb":
                item.add_marker(pytest.mark.skip(reason=message))


_standin_ready = False


def pytest_runtest_setup(item):
    """The nbmake run uses the tutorial's model (``EMBEDDING_MODEL=default``), loaded by its own
    code from a stand-in Hugging Face cache (tests/support/hf_standin.py): so the notebook runs
    once on the path Colab users take and once (tests/test_notebook.py) on the offline one."""
    global _standin_ready
    if item.path.suffix != ".ipynb" or _standin_ready:
        return
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from support.hf_standin import build_standin_hf_home, standin_env

    hf_home = build_standin_hf_home(Path(_SCRATCH) / "hf-standin")
    os.environ.update({**standin_env(hf_home), "EMBEDDING_MODEL": "default"})
    _standin_ready = True
