"""The GitHub Actions workflow (.github/workflows/tests.yml): valid where actionlint is installed,
run on the three systems and the three Pythons, and made of the README's commands without make,
so that the two cannot drift apart."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from milvus_rag import config

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "tests.yml"
README_STEPS = ("install", "lint", "fast-tests", "notebook")  # the steps that run README commands
NOT_ON_GITHUB = re.compile(  # README commands CI leaves out, each for a reason
    r"-r requirements\.txt"  # the unpinned install: CI installs the lock (what is tested here)
    r"|requirements-offline\.txt|torch"  # the offline model: the hub is reachable on GitHub
    r"|^python -m pytest$"  # every test: the slow ones need the offline model
)


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def job() -> dict:
    (only,) = workflow()["jobs"].values()
    return only


def readme_blocks() -> dict[str, list[str]]:
    """The README's ``### Without make``: each code block's language -> its command lines."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^### Without make\n(.*?)(?=^#{1,3} |\Z)", text, re.S | re.M)
    assert section, "README.md has no section '### Without make'"
    blocks: dict[str, list[str]] = {}
    for language, body in re.findall(r"^```(\w+)\n(.*?)^```", section[1], re.S | re.M):
        lines = (re.sub(r"\s+#.*", "", line).strip() for line in body.splitlines())
        blocks.setdefault(language, []).extend(line for line in lines if line)
    return blocks


def run_lines(step: dict) -> list[str]:
    return [line.strip() for line in step.get("run", "").splitlines() if line.strip()]


def test_actionlint_finds_nothing_wrong():
    """actionlint (requirements-dev.txt) in this environment's scripts folder or on PATH."""
    scripts = Path(sys.executable).parent
    found = shutil.which("actionlint", path=os.pathsep.join([str(scripts), os.environ.get("PATH", "")]))
    if found is None:  # the lock installs it; by hand, a venv may lack it
        if os.environ.get("CI"):
            pytest.fail("actionlint is not installed: install requirements-lock.txt")
        pytest.skip("actionlint is not installed here")
    done = subprocess.run([found, str(WORKFLOW)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_matrix_is_three_systems_by_three_pythons_on_every_push_and_pull_request():
    data = workflow()
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as True
    assert {"push", "pull_request"} <= set(triggers)
    strategy = job()["strategy"]
    assert strategy["fail-fast"] is False
    assert set(strategy["matrix"]["os"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
    assert strategy["matrix"]["python"] == ["3.11", "3.12", "3.13"]  # strings: 3.10 is no 3.1
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pythons = strategy["matrix"]["python"]  # requires-python admits exactly the ones tested
    newest = pythons[-1].split(".")
    assert project["requires-python"] == f">={pythons[0]},<{newest[0]}.{int(newest[1]) + 1}"
    assert [c.rsplit(" ", 1)[-1] for c in project["classifiers"] if "Python :: 3." in c] == pythons
    assert job()["runs-on"] == "${{ matrix.os }}"
    steps = job()["steps"]
    setup = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "${{ matrix.python }}"
    for step in steps:  # every action pinned to a major version, none to a moving branch
        assert "uses" not in step or re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), step


def test_the_workflow_runs_the_readmes_commands_without_make():
    """Each command of the install, lint, test and notebook steps is one the README gives for
    both shells; each README command but those CI leaves out (NOT_ON_GITHUB) is run; and none
    needs bash, so that Windows users can paste them into PowerShell."""
    blocks = readme_blocks()
    assert any(".venv/bin/activate" in line for line in blocks.get("bash", []))
    assert any(r".venv\Scripts\Activate.ps1" in line for line in blocks.get("powershell", []))
    readme = blocks.get("shell", [])  # the commands that read the same in both shells
    steps = {step.get("id"): step for step in job()["steps"]}
    ran = [line for name in README_STEPS for line in run_lines(steps[name])]
    assert ran and [line for line in ran if line not in readme] == []
    assert [line for line in readme if line not in ran and not NOT_ON_GITHUB.search(line)] == []
    assert [line for line in readme if re.search(r"[$`\\]|&&|\|\||^export ", line)] == []
    assert 'python -m pytest -m "not slow"' in ran


def test_the_cached_docs_zip_is_the_one_the_notebook_downloads_into_data():
    """The workflow downloads config.DOCS_URL with the package's own code into data/ (where the
    notebook looks first, and the tests after MILVUS_DOCS_ZIP and ../shared/data), and caches it."""
    steps = job()["steps"]
    name = Path(urlparse(config.DOCS_URL).path).name
    cached = [step["with"]["path"] for step in steps if step.get("uses", "").startswith("actions/cache@")]
    assert f"data/{name}" in cached
    assert any("corpus.fetch_zip(config.DOCS_URL, config.data_dir())" in step.get("run", "") for step in steps)
