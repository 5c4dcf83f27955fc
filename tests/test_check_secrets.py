"""The secret and machine-path scan that CI runs (scripts/check_secrets.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_secrets.py"


def run(*paths):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, paths)], capture_output=True, text=True
    )


def notebook(path: Path, source: str = "print(1)", output: str = "1\n") -> Path:
    path.write_text(
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "source": [source],
                        "metadata": {},
                        "outputs": [{"output_type": "stream", "name": "stdout", "text": [output]}],
                    }
                ],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    return path


def test_repository_is_clean():
    result = run()
    assert result.returncode == 0, result.stderr
    assert "files clean" in result.stdout


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-abcdefghijklmnopqrstuv",
        "nvapi-abcdefghijklmnopqrstuv",
        "hf_abcdefghijklmnopqrstuvwx",
        "AKIAABCDEFGHIJKLMNOP",
        "Bearer abcdefghijklmnop123456",
    ],
)
def test_keys_in_notebook_outputs_fail(tmp_path, secret):
    result = run(notebook(tmp_path / "n.ipynb", output=f"key is {secret}\n"))
    assert result.returncode == 1
    assert "finding" in result.stderr and secret not in result.stderr


def test_key_in_a_code_file_fails(tmp_path):
    (tmp_path / "settings.py").write_text('API_KEY = "sk-abcdefghijklmnopqrstuvwxyz"\n')
    assert run(tmp_path / "settings.py").returncode == 1


@pytest.mark.parametrize(
    "path",
    ["/home/alice/project/data", "/tmp/x/milvus.db", "/usr/lib/python3/site-packages/tqdm/auto.py",
     "/private/var/folders/x1/ab_c/T/milvus.db", "C:\\Users\\alice\\AppData\\Local\\Temp\\x",
     "C:/Users/alice/project/data", "d:\\users\\alice\\x"],  # macOS, Windows
)
def test_machine_paths_in_notebooks_fail(tmp_path, path):
    result = run(notebook(tmp_path / "n.ipynb", output=f"saved to {path}\n"))
    assert result.returncode == 1 and "path of the machine" in result.stderr


def test_placeholders_and_short_prefixes_pass(tmp_path):
    text = 'Set LLM_API_KEY=sk-... or nvapi-...; a "Bearer" header carries it.\n'
    assert run(notebook(tmp_path / "n.ipynb", output=text)).returncode == 0
