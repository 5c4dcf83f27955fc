"""The project's own files agree with each other: requirements, pyproject, Colab pins."""

import re
import tomllib
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]


def requirement_lines(name: str) -> dict[str, str]:
    """package name (with extras) -> its version spec, for one requirements file."""
    found = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)\s*(.*)", line)
        found[match.group(1).lower()] = match.group(2).replace(" ", "")
    return found


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_runtime_ranges_match_between_requirements_and_pyproject():
    required = requirement_lines("requirements.txt")
    for dependency in pyproject()["project"]["dependencies"]:
        name, spec = re.match(r"([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)(.*)", dependency).groups()
        if name.lower() in required:
            assert required[name.lower()] == spec, name


def test_offline_extra_matches_requirements_offline():
    offline = requirement_lines("requirements-offline.txt")
    extra = {}
    for dependency in pyproject()["project"]["optional-dependencies"]["offline"]:
        name, spec = re.match(r"([A-Za-z0-9_.\-]+)(.*)", dependency).groups()
        extra[name.lower()] = spec
    assert extra == offline
    assert offline["torch"] == "==2.13.0"  # the CPU build on disk; unpinned pulls a CUDA build


def test_card_packages_are_all_required():
    required = requirement_lines("requirements.txt")
    for package in (
        "jupyterlab",
        "pymilvus[model,milvus-lite]",
        "milvus-lite",
        "openai",
        "tqdm",
        "nbmake",
        "papermill",
    ):
        assert package in required, package


def test_colab_pins_fall_within_the_tested_ranges():
    from packaging.specifiers import SpecifierSet

    notebook = nbformat.read(REPO / "notebooks" / "build_RAG_with_milvus_and_lepton.ipynb", 4)
    pins = dict(re.findall(r'"([a-z\-]+)(?:\[[^\]]+\])?==([0-9.]+)"', notebook.cells[1].source))
    assert set(pins) == {"pymilvus", "milvus-lite", "openai", "tqdm"}
    required = {
        name.split("[")[0]: spec for name, spec in requirement_lines("requirements.txt").items()
    }
    for name, version in pins.items():
        assert version in SpecifierSet(required[name]), (name, version, required[name])
