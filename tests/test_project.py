"""The project's own files agree with each other: requirements, pyproject, Colab pins."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]


def requirement_lines(name: str) -> dict[str, str]:
    """package name (with extras) -> its version spec, for one requirements file."""
    found = {}
    for line in (REPO / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)\s*(.*)", line)
        found[match.group(1).lower()] = match.group(2).replace(" ", "")
    return found


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


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


def _closure(names) -> set[str]:
    """The installed distributions ``names`` pull in, themselves included (normalized names)."""
    from importlib.metadata import PackageNotFoundError, requires

    seen, todo = set(), [re.sub(r"[-_.]+", "-", n.split("[")[0]).lower() for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            continue
        for need in needs:
            extra = re.search(r"extra\s*==\s*[\"']([^\"']+)", need)
            if extra is None or extra.group(1) in ("model", "milvus-lite"):  # the extras we ask for
                todo.append(re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", need).group()).lower())
    return seen


def test_every_module_the_notebook_and_package_import_is_installed_by_the_requirements():
    """`pip install -r requirements.txt` (and -offline) must bring every third-party module the
    notebook's cells and the helper package import; a new import without its requirement fails."""
    import ast
    import sys
    from importlib.metadata import packages_distributions

    sources = [c.source for c in nbformat.read(REPO / "notebooks" /
               "build_RAG_with_milvus_and_lepton.ipynb", 4).cells if c.cell_type == "code"]  # fmt: skip
    sources = [re.sub(r"^(\s*)[!%].*$", r"\1pass", s, flags=re.M) for s in sources]  # magics
    sources += [p.read_text(encoding="utf-8") for p in (REPO / "src" / "milvus_rag").glob("*.py")]
    modules = set()
    for tree in map(ast.parse, sources):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - {"milvus_rag", "__future__", "google"}
    installed = _closure([*requirement_lines("requirements.txt"),
                          *requirement_lines("requirements-offline.txt")])  # fmt: skip
    distributions = packages_distributions()
    for module in sorted(third_party):  # one not installed (torch, where the offline extras are
        # left out, as on GitHub) stands for a distribution of its own name
        names = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(module, [module])}
        assert names & installed, f"{module} is imported but no requirement installs it"
    assert {"jupyterlab", "nbmake", "papermill", "pymilvus", "milvus-lite", "openai", "tqdm"} <= installed


def test_colab_pins_fall_within_the_tested_ranges():
    from packaging.specifiers import SpecifierSet

    notebook = nbformat.read(REPO / "notebooks" / "build_RAG_with_milvus_and_lepton.ipynb", 4)
    pins = dict(re.findall(r'"([a-z\-]+)(?:\[[^\]]+\])?==([0-9.]+)"', notebook.cells[1].source))
    assert set(pins) == {"pymilvus", "milvus-lite"}  # Colab's own openai and tqdm stay
    required = {
        name.split("[")[0]: spec for name, spec in requirement_lines("requirements.txt").items()
    }
    for name, version in pins.items():
        assert version in SpecifierSet(required[name]), (name, version, required[name])


def test_executed_copies_of_the_notebook_are_neither_committed_nor_collected():
    """`papermill ... executed.ipynb` (the README's by-hand command) and `make run` write executed
    copies next to the notebook: git ignores them and pytest never runs them as tests."""
    import ast
    from fnmatch import fnmatch

    text = (REPO / "conftest.py").read_text(encoding="utf-8")
    globs = ast.literal_eval(re.search(r"collect_ignore_glob = (\[.*?\])", text).group(1))
    for path in ("notebooks/executed.ipynb", "notebooks/executed/build_RAG_with_milvus_and_lepton.ipynb"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert ignored.returncode == 0, f"git would commit {path}"
        assert any(fnmatch(path, glob) for glob in globs), path
    testpaths = pyproject()["tool"]["pytest"]["ini_options"]["testpaths"]
    assert "notebooks" not in testpaths  # only the notebook itself, not the folder's copies


def test_importing_the_package_loads_no_heavy_library_and_leaves_the_environment_alone():
    """Every module imports in a fresh process without pymilvus (which reads MILVUS_URI at
    import and refuses a path there), the LLM client, the model's runtimes or the notebook's
    display libraries, and without touching ``os.environ``: each loads those when it needs them."""
    modules = sorted(p.stem for p in (REPO / "src" / "milvus_rag").glob("*.py") if p.stem != "__main__")
    heavy = ("pymilvus", "openai", "torch", "onnxruntime", "transformers", "tokenizers",
             "matplotlib", "tqdm", "IPython")  # fmt: skip
    script = (
        "import importlib, os, sys\n"
        "before = dict(os.environ)\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('milvus_rag' if name == '__init__' else 'milvus_rag.' + name)\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules), dict(os.environ) == before)\n"
    )
    env = {**os.environ, "MILVUS_URI": "./milvus_demo.db"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=120, check=True)  # fmt: skip
    assert done.stdout.strip() == "[] True", done.stdout + done.stderr


# --------------------------------------------------------------------------- the lock and the ranges


def _script(path: str):
    """A module of ``tests/install`` or ``scripts``, loaded from its file (they are scripts)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _locked() -> dict[str, list[tuple[str, str]]]:
    """normalized name -> [(version, marker)] of requirements-lock.txt."""
    found: dict[str, list[tuple[str, str]]] = {}
    pins = _script("scripts/lock.py").lock_pins((REPO / "requirements-lock.txt").read_text())
    for name, version, marker in pins:
        found.setdefault(re.sub(r"[-_.]+", "-", name).lower(), []).append((version, marker))
    return found


def _ranges() -> dict[str, str]:
    """normalized name -> range, of every requirement file a user or CI installs."""
    ranges = {}
    for file in ("requirements.txt", "requirements-offline.txt", "requirements-dev.txt"):
        for name, spec in requirement_lines(file).items():
            ranges[re.sub(r"[-_.]+", "-", name.split("[")[0])] = spec
    return ranges


def test_the_lock_pins_every_requirement_within_its_range_with_hashes_but_torch():
    from packaging.markers import Marker
    from packaging.specifiers import SpecifierSet

    locked, text = _locked(), (REPO / "requirements-lock.txt").read_text()
    assert "torch" not in locked and "milvus-rag" not in locked and "-e " not in text
    for name, spec in _ranges().items():
        if name == "torch":
            continue  # installed on its own pin after the lock (scripts/lock.py says why)
        versions = [v for v, marker in locked[name] if not marker or Marker(marker).evaluate()]
        assert len(versions) == 1 and versions[0] in SpecifierSet(spec), (name, versions, spec)
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 3)[3])
    assert len(entries) == sum(map(len, locked.values())) > 100
    assert all("--hash=sha256:" in entry for entry in entries)
    # torch's own dependencies are locked, so that `make install` adds torch with --no-deps
    assert {"sympy", "networkx", "filelock", "fsspec", "jinja2"} <= locked.keys()


def test_every_range_has_an_upper_bound_just_above_the_locked_major():
    """Lower bounds may reach back; no upper bound admits a major release nobody here ran."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    locked = _locked()
    for name, spec in _ranges().items():
        if spec.startswith("=="):
            continue
        uppers = [s for s in SpecifierSet(spec) if s.operator in ("<", "<=")]
        assert len(uppers) == 1, f"{name}{spec}: no upper bound"
        newest = max(Version(v) for v, _ in locked[name])
        assert Version(uppers[0].version).major == newest.major + 1, (name, spec, str(newest))


def test_colab_keeps_its_preinstalled_openai_and_tqdm():
    """The Colab cell pins only what Colab lacks: its own openai and tqdm satisfy the ranges, so
    the installs replace nothing already imported and Colab needs no restart."""
    from packaging.specifiers import SpecifierSet

    preinstalled = requirement_lines("tests/colab/colab-preinstalled.txt")
    required = requirement_lines("requirements.txt")
    for name in ("openai", "tqdm"):
        assert preinstalled[name].removeprefix("==") in SpecifierSet(required[name]), name


def test_the_drift_report_names_each_version_that_differs_from_the_lock():
    differences = _script("tests/install/version_ranges.py").differences
    locked = {"openai": "3.63.0", "tqdm": "4.70.1", "numpy": "2.4.6", "uv": "0.13.9"}
    installed = {"openai": "3.64.0", "tqdm": "4.70.1", "numpy": "2.4.6", "distro": "1.9.0",
                 "pip": "23.2.1", "milvus-rag": "0.2.0", "torch": "2.13.0+cpu"}  # fmt: skip
    assert differences(locked, installed) == [
        "  distro 1.9.0 (not in the lock)",
        "  openai 3.63.0 -> 3.64.0",
        "  uv 0.13.9 (locked, not installed)",
    ]
    assert differences(locked, {**locked, "torch": "2.13.0+cpu"}) == []


def test_the_lock_takes_in_torchs_own_requirements_but_not_its_extras(monkeypatch):
    lock = _script("scripts/lock.py")
    declared = ["filelock", "sympy>=1.13.3", 'setuptools>=77; python_version >= "3.12"',
                'optree>=0.13.0; extra == "optree"', 'pyyaml ; extra=="pyyaml"']  # fmt: skip
    monkeypatch.setattr(lock, "requires", lambda name: declared if name == "torch" else None)
    assert lock.unlocked_dependencies() == declared[:3]
