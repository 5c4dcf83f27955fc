"""Rehearse the notebook's Colab path offline: its first cell's clone, installs and ``%cd``.

Run it with the dev environment's Python, from anywhere:

    .venv/bin/python tests/colab/rehearse.py [--keep] [--notebook PATH] [--ref REF]

What it does (tests/colab/README.md says why):

1. Builds, once, a stand-in for Colab's preinstalled packages (``colab-preinstalled.txt``) in a
   cached virtual environment keyed by that file's hash (``.cache/colab-rehearsal/``, or
   ``$COLAB_REHEARSAL_CACHE``). Each run then gets a fresh, empty environment layered on top of
   it (a ``.pth`` file adds the cached site-packages after its own), so the first cell's
   ``%pip install`` lands in the fresh layer and the cached one is never changed.
2. Starts a kernel on that environment with a stub ``google.colab`` loaded (``stub/``), in a
   new temporary folder playing Colab's ``/content``, with git told (in a throwaway global
   config) to fetch the notebook's ``REPO_URL`` from this checkout, and Hugging Face pointed at
   the offline stand-in of the tutorial's model (``tests/support/hf_standin.py``) when it can
   be built.
3. Runs the checkout's notebook top to bottom, with its ``REPO_REF`` set to HEAD's commit (in
   memory; no file is changed), so the clone and install are of the committed code, and checks
   the Colab path: the pinned installs, where the helper package imports from, the working
   folder, every cell.

Exit status 0 when everything passed; otherwise 1, and the last line says what failed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NOTEBOOK = "notebooks/build_RAG_with_milvus_and_lepton.ipynb"
PREINSTALLED = HERE / "colab-preinstalled.txt"
STUB = HERE / "stub"
SHARED_ZIP = REPO.parent / "shared" / "data" / "milvus_docs_2.4.x_en.zip"
CLONE_DIR = "build-rag-with-milvus"
KERNEL_NAME = "colab-rehearsal"
RECIPE = "1"  # bump when the way the cached environment is built changes
PROBE_MARK = "COLAB-REHEARSAL-PROBE "
# Variables of the caller's shell that would change what the notebook does (Colab has none).
SCRUBBED_PREFIXES = ("LLM_", "LEPTONAI_", "MILVUS_", "RAG_", "EMBEDDING_", "HF_", "JUPYTER_")
SCRUBBED = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "IPYTHONDIR",
            "GIT_CONFIG_GLOBAL", "GIT_DIR", "GIT_WORK_TREE", "TRANSFORMERS_CACHE")  # fmt: skip
# pip on this machine warns about its local package folders; Colab has none of them.
MACHINE_NOISE = re.compile(r"^WARNING: Location '.*' is ignored: .*$", re.MULTILINE)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Failure(Exception):
    """A failed step; its message is the one line printed at the end."""


def log(message: str = "") -> None:
    print(message, flush=True)


@contextlib.contextmanager
def phase(name: str, timings: dict[str, float]):
    log(f"== {name}")
    start = time.monotonic()
    try:
        yield
    finally:
        timings[name] = time.monotonic() - start
        log(f"   ({name}: {timings[name]:.1f} s)")


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, capture_output=True, **kwargs)


def git(*args: str, cwd: Path = REPO) -> str:
    result = run(["git", *args], cwd=cwd)
    if result.returncode != 0:
        raise Failure(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout


# -- the notebook and its first cell ------------------------------------------------------------


def string_constant(source: str, name: str) -> re.Match:
    """``NAME = "value"`` on a line of its own in ``source`` (the value is group 2)."""
    match = re.search(rf"^{name}\s*=\s*(['\"])(.*?)\1", source, re.MULTILINE)
    if match is None:
        raise Failure(f"the notebook's first code cell sets no {name} = \"...\"")
    return match


def pinned_installs(source: str) -> dict[str, str]:
    """``name -> version`` for every ``name==version`` on the cell's ``%pip install`` lines."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in source.splitlines():
        words = shlex.split(line.strip(), comments=True) if "%pip" in line else []
        if words[:2] != ["%pip", "install"]:
            continue
        for word in words[2:]:
            if word.startswith("-") or "==" not in word:
                continue
            try:
                requirement = Requirement(word)
            except InvalidRequirement:
                continue
            for spec in requirement.specifier:
                if spec.operator == "==":
                    pins[canonicalize_name(requirement.name)] = spec.version
    if not pins:
        raise Failure("the notebook's first code cell has no `%pip install name==version` line")
    return pins


def load_notebook(path: str | None):
    """The notebook to run (the checkout's unless ``path``) and its first code cell's index."""
    import nbformat

    origin = Path(path).resolve() if path else REPO / NOTEBOOK
    nb = nbformat.read(origin, as_version=4)
    first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), None)
    if first is None or "google.colab" not in nb.cells[first].source:
        raise Failure(f"{origin}: the first code cell is not the Colab set-up cell")
    return nb, first, origin


# -- the cached stand-in for Colab's preinstalled packages --------------------------------------

DIST_SNIPPET = """
import importlib.metadata as m, json, re, sys
out = {}
for d in m.distributions():
    name = re.sub(r"[-_.]+", "-", d.metadata["Name"] or "").lower()
    if name:
        out.setdefault(name, [d.version, str(d.locate_file(""))])
tops = {}
for top, names in m.packages_distributions().items():
    for name in names:
        tops.setdefault(re.sub(r"[-_.]+", "-", name).lower(), []).append(top)
purelib = __import__("sysconfig").get_paths()["purelib"]
print(json.dumps({"dists": out, "tops": tops, "purelib": purelib}))
"""


def inspect_python(python: Path, env: dict | None = None) -> dict:
    """The distributions ``python`` sees (first on its path wins) and its own site-packages."""
    result = run([str(python), "-c", DIST_SNIPPET], env=env)
    if result.returncode != 0:
        raise Failure(f"{python} could not list its packages: {result.stderr.strip()[-300:]}")
    return json.loads(result.stdout)


def pip_install(python: Path, args: list[str], log_file: Path) -> None:
    with log_file.open("a") as out:
        out.write(f"$ {python} -m pip install {' '.join(args)}\n")
        out.flush()
        code = subprocess.call([str(python), "-m", "pip", "install", *args],
                               stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    if code != 0:
        tail = MACHINE_NOISE.sub("", log_file.read_text())
        tail = "\n".join(line for line in tail.splitlines() if line.strip())[-2000:]
        log(tail)
        raise Failure(f"installing Colab's preinstalled packages failed (pip exit {code}); "
                      f"log: {log_file}")  # fmt: skip


def colab_base(cache: Path) -> tuple[Path, dict]:
    """The cached environment holding ``colab-preinstalled.txt``, built if missing."""
    listing = PREINSTALLED.read_bytes()
    key = hashlib.sha256(
        listing + f"|{sys.version_info[:3]}|{RECIPE}".encode()
    ).hexdigest()[:12]
    base = cache / f"colab-base-{key}"
    done = base / "colab-preinstalled.json"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "colab-base.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.is_file():
            log(f"   reusing {base}")
            return base, json.loads(done.read_text())
        shutil.rmtree(base, ignore_errors=True)
        log(f"   building {base} from {PREINSTALLED.name} (a few minutes)")
        subprocess.run([sys.executable, "-m", "venv", str(base)], check=True)
        python = base / "bin" / "python"
        log_file = cache / f"colab-base-{key}.log"
        log_file.write_text("")
        pip_pin = re.search(r"^pip==\S+", listing.decode(), re.MULTILINE)
        if pip_pin:
            pip_install(python, ["--quiet", pip_pin.group(0)], log_file)
        pip_install(python, ["--quiet", "-r", str(PREINSTALLED)], log_file)
        stub_env = {**os.environ, "PYTHONPATH": str(STUB)}
        check = run([str(python), "-c", "import google.colab, google.protobuf, ipykernel"],
                    env=stub_env)  # fmt: skip
        if check.returncode != 0:
            raise Failure("the stub google.colab and site-packages' google.protobuf do not "
                          f"import side by side: {check.stderr.strip()[-300:]}")  # fmt: skip
        snapshot = inspect_python(python)
        done.write_text(json.dumps(snapshot, indent=1, sort_keys=True))
        for old in cache.glob("colab-base-*"):
            if old.is_dir() and old != base:
                shutil.rmtree(old, ignore_errors=True)
                Path(f"{old}.log").unlink(missing_ok=True)
        return base, snapshot


def fresh_runtime(base_snapshot: dict, folder: Path) -> tuple[Path, str]:
    """An empty environment that sees the cached one's packages after its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = inspect_python(python)["purelib"]
    Path(purelib, "00-colab-preinstalled.pth").write_text(
        f"import site; site.addsitedir({base_snapshot['purelib']!r})\n"
    )
    return python, purelib


# -- the Hugging Face hub's stand-in ------------------------------------------------------------


def hf_environment(cache: Path, hf_home: Path) -> tuple[dict[str, str], str]:
    """Variables pointing Hugging Face at a copy of the stand-in cache, and what was used."""
    plain = {"HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub")}
    module_file = REPO / "tests" / "support" / "hf_standin.py"
    if not module_file.is_file():
        return plain, "none (tests/support/hf_standin.py is missing): an empty HF cache"
    sys.path.insert(0, str(module_file.parent))
    try:
        import hf_standin

        export = REPO / "src" / "milvus_rag" / "embedding.py"  # holds the ONNX export it runs
        key = hashlib.sha256(module_file.read_bytes() + export.read_bytes()).hexdigest()[:12]
        built = cache / f"hf-standin-{key}"
        with (cache / "hf-standin.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            hf_standin.build_standin_hf_home(built)
            for old in cache.glob("hf-standin-*"):
                if old.is_dir() and old != built:
                    shutil.rmtree(old, ignore_errors=True)
        shutil.copytree(built, hf_home, symlinks=True)
        return dict(hf_standin.standin_env(hf_home)), f"tests/support/hf_standin.py ({built})"
    except Exception as error:  # noqa: BLE001 - any failure means: run without it, and say so
        return plain, f"none (the stand-in could not be built: {error!r}): an empty HF cache"
    finally:
        sys.path.remove(str(module_file.parent))


# -- the run ------------------------------------------------------------------------------------

# Prints what the checks need from inside the kernel. Before the first cell it looks nothing up
# (the import system must meet milvus_rag first in the notebook, as in Colab).
PROBE = """
import json as _json, os as _os, sys as _sys
_found = {
    "cwd": _os.getcwd(),
    "executable": _sys.executable,
    "colab_loaded": "google.colab" in _sys.modules,
    "shell": str(get_ipython()),
    "modules": sorted({name.partition(".")[0] for name in _sys.modules}),
}
if __LOOKUP__:
    import importlib.util as _util
    _module = _sys.modules.get("milvus_rag")
    _spec = None if _module else _util.find_spec("milvus_rag")
    _found["milvus_rag"] = getattr(_module, "__file__", None) or getattr(_spec, "origin", None)
    del _util, _module, _spec
print(__MARK__ + _json.dumps(_found))
del _json, _os, _sys, _found
""".replace("__MARK__", repr(PROBE_MARK))


def text_of(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif output.get("output_type") == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}\n")
    return "".join(parts)


def probe(client, nb, lookup: bool = True) -> dict:
    """Run the probe in the kernel as an extra cell that is not kept in the notebook."""
    import nbformat

    cell = nbformat.v4.new_code_cell(PROBE.replace("__LOOKUP__", str(lookup)))
    nb.cells.append(cell)
    try:
        client.execute_cell(cell, len(nb.cells) - 1, store_history=False)
    except Exception as error:  # noqa: BLE001
        return {"error": repr(error)}
    finally:
        nb.cells.pop()
    for line in text_of(cell).splitlines():
        if line.startswith(PROBE_MARK):
            return json.loads(line[len(PROBE_MARK):])
    return {"error": f"no probe output: {text_of(cell)[-300:]!r}"}


def execute(nb, first: int, content: Path, timeout: int, timings: dict) -> dict:
    """Run every cell until one fails; probe the kernel after the first cell and at the end."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(
        nb, timeout=timeout, startup_timeout=180, kernel_name=KERNEL_NAME, allow_errors=False,
        coalesce_streams=True, resources={"metadata": {"path": str(content)}},
    )  # fmt: skip
    state: dict = {"failed": None, "probes": {}}
    with client.setup_kernel():
        state["probes"]["before first cell"] = probe(client, nb, lookup=False)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            start = time.monotonic()
            try:
                client.execute_cell(cell, index)
                outcome = "ok"
            except CellExecutionError as error:
                outcome = "FAILED"
                what = f"{error.ename}: {error.evalue}" if getattr(error, "ename", "") else ""
                what = what or str(error).strip().splitlines()[-1]
                state["failed"] = (index, what[:300])
            seconds = time.monotonic() - start
            if index == first:
                timings["first cell"] = seconds
            headline = (cell.source.strip().splitlines() or [""])[0][:70]
            log(f"   cell {index:>2} {seconds:7.1f} s  {outcome:6} {headline}")
            if index == first:
                state["probes"]["after first cell"] = probe(client, nb)
            if state["failed"]:
                break
        state["probes"]["at the end"] = probe(client, nb)
    return state


def kernel_spec(jupyter: Path, python: Path, env: dict[str, str]) -> None:
    folder = jupyter / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True)
    spec = {
        "argv": [str(python), "-m", "colab_kernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (Colab rehearsal)",
        "language": "python",
        "env": env,
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))


def clean_path(path: str) -> str:
    """``$PATH`` without the dev environment's (or any active virtual environment's) bin."""
    drop = {str(REPO / ".venv" / "bin"), str(Path(sys.prefix) / "bin")}
    if os.environ.get("VIRTUAL_ENV"):
        drop.add(str(Path(os.environ["VIRTUAL_ENV"]) / "bin"))
    return os.pathsep.join(p for p in path.split(os.pathsep) if p and p not in drop)


def docs_zip() -> Path:
    configured = os.environ.get("MILVUS_DOCS_ZIP", "").strip()
    candidate = Path(configured) if configured else SHARED_ZIP
    if not candidate.is_file():
        raise Failure(f"the docs zip is missing: put it at {SHARED_ZIP} or set MILVUS_DOCS_ZIP "
                      "to its path (the rehearsal has no network)")  # fmt: skip
    return candidate.resolve()


# -- checks -------------------------------------------------------------------------------------


def check_run(nb, first, state, pins, runtime, base_snapshot, content, commit) -> list[str]:
    """Every check's verdict; returns the failures (empty when all passed)."""
    failures: list[str] = []

    def verdict(ok: bool, what: str, detail: str = "") -> None:
        log(f"   {'PASS' if ok else 'FAIL'}  {what}" + (f": {detail}" if detail else ""))
        if not ok:
            failures.append(f"{what}: {detail}" if detail else what)

    first_out = MACHINE_NOISE.sub("", ANSI.sub("", text_of(nb.cells[first])))
    first_out = "\n".join(line for line in first_out.splitlines() if line.strip())
    log("   first cell's output (less this machine's pip-index warnings):")
    log("\n".join(f"   | {line}" for line in first_out.splitlines()) or "   | (none)")
    errors = [line for line in first_out.splitlines()
              if re.match(r"\s*(ERROR|error|fatal)\b", line)]  # fmt: skip
    verdict(not errors, "the first cell's clone and installs printed no error",
            "; ".join(errors)[:400])  # fmt: skip

    clone = content / CLONE_DIR
    head = run(["git", "-C", str(clone), "rev-parse", "HEAD"]).stdout.strip()
    verdict(head == commit, "the clone came from this checkout, at the expected commit",
            f"{clone} is at {head or 'nothing'}, expected {commit}")  # fmt: skip

    seen = inspect_python(runtime["python"])
    own = runtime["purelib"]
    wrong = {n: seen["dists"].get(n, ["missing", ""])[0] for n, v in pins.items()
             if seen["dists"].get(n, [None])[0] != v}  # fmt: skip
    verdict(not wrong, f"the pinned installs resolved ({', '.join(f'{n}=={v}' for n, v in pins.items())})",
            ", ".join(f"{n} is {v}, pinned {pins[n]}" for n, v in wrong.items()))  # fmt: skip
    helper = seen["dists"].get("milvus-rag", ["missing", ""])
    verdict(helper[1].startswith(own), "the helper package was installed into the runtime",
            f"milvus-rag {helper[0]} at {helper[1]}")  # fmt: skip

    after_first = state["probes"].get("after first cell", {})
    expected_cwd = str((content / CLONE_DIR / "notebooks").resolve())
    cwd_ok = after_first.get("cwd") and str(Path(after_first["cwd"]).resolve()) == expected_cwd
    verdict(bool(cwd_ok), f"the first cell moved into {CLONE_DIR}/notebooks of the temp /content",
            f"cwd was {after_first.get('cwd') or after_first}")  # fmt: skip
    verdict(bool(after_first.get("colab_loaded")) and "google.colab" in after_first.get("shell", ""),
            "the kernel looked like Colab's (google.colab loaded, Colab's shell class)",
            f"{after_first.get('shell') or after_first.get('error')}")  # fmt: skip
    for when, found in state["probes"].items():
        if when == "before first cell":
            continue
        module = found.get("milvus_rag") or ""
        ok = module.startswith(own) and not module.startswith(str(REPO / "src"))
        verdict(ok, f"milvus_rag imports from the runtime's site-packages ({when})",
                module or str(found))  # fmt: skip

    errored = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
               and any(o.get("output_type") == "error" for o in c.get("outputs", []))]  # fmt: skip
    unrun = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and c.get("execution_count") is None]  # fmt: skip
    detail = ""
    if state["failed"]:
        detail = f"cell {state['failed'][0]} raised {state['failed'][1]}"
    elif errored or unrun:
        detail = f"error output in cells {errored}, not run: {unrun}"
    verdict(not (state["failed"] or errored or unrun),
            "every cell ran without error output", detail)  # fmt: skip
    if failures and failures[-1].startswith("every cell") and len(failures) == 1:
        failures[0] = f"the Colab set-up passed, but {detail}"

    # What the first cell changed among Colab's preinstalled packages: in Colab, one already
    # imported when the cell ran keeps its old version until the runtime is restarted.
    changed = {n: (base_snapshot["dists"][n][0], v[0]) for n, v in seen["dists"].items()
               if v[1].startswith(own) and n in base_snapshot["dists"]
               and base_snapshot["dists"][n][0] != v[0]}  # fmt: skip
    added = sorted(n for n, v in seen["dists"].items()
                   if v[1].startswith(own) and n not in base_snapshot["dists"])  # fmt: skip
    log(f"   note  the first cell added {len(added)} packages: {', '.join(added)}")
    loaded = set(state["probes"].get("before first cell", {}).get("modules", []))
    # Colab offers a restart when an install replaces what it preinstalls: none should.
    detail = ", ".join(
        f"{n} {old} -> {new}" + (" (imported before the first cell here)"
                                 if loaded & set(seen["tops"].get(n, [n])) else "")
        for n, (old, new) in sorted(changed.items())
    )  # fmt: skip
    verdict(not changed, "the first cell replaced none of the packages Colab preinstalls, so "
            "the runtime needs no restart", detail)  # fmt: skip
    broken = run([str(runtime["python"]), "-m", "pip", "check"])
    if broken.returncode != 0:
        log("   WARN  pip check after the first cell: "
            + "; ".join(broken.stdout.strip().splitlines())[:600])  # fmt: skip
    return failures


def rehearse(args: argparse.Namespace) -> int:
    timings: dict[str, float] = {}
    cache = Path(args.cache or os.environ.get("COLAB_REHEARSAL_CACHE")
                 or REPO / ".cache" / "colab-rehearsal").resolve()  # fmt: skip
    zip_path = docs_zip()

    with phase("notebook and commit", timings):
        nb, first, origin = load_notebook(args.notebook)
        source = nb.cells[first].source
        repo_url = string_constant(source, "REPO_URL").group(2)
        ref = string_constant(source, "REPO_REF")
        pins = pinned_installs(source)
        if args.ref != "notebook":
            commit = git("rev-parse", f"{args.ref}^{{commit}}").strip()
            nb.cells[first].source = (
                source[: ref.start(2)] + commit + source[ref.end(2):]
            )  # fmt: skip
        else:
            commit = git("rev-parse", f"{ref.group(2)}^{{commit}}").strip()
        log(f"   notebook: {origin}")
        log(f"   REPO_URL {repo_url} -> {REPO}; REPO_REF -> {commit}")
        dirty = git("status", "--porcelain", "--", "src", "pyproject.toml", "data", "notebooks")
        if dirty.strip():
            log("   note  uncommitted changes under src/, data/, notebooks/ or pyproject.toml: "
                "the clone takes the commit, without them")  # fmt: skip

    with phase("Colab environment (cached)", timings):
        base, base_snapshot = colab_base(cache)

    tmp = Path(tempfile.mkdtemp(prefix="colab-rehearsal-")).resolve()
    content = tmp / "content"
    content.mkdir()
    keep = args.keep
    failures: list[str] = []
    try:
        with phase("runtime, kernel, git and HF set-up", timings):
            python, purelib = fresh_runtime(base_snapshot, tmp / "runtime")
            runtime = {"python": python, "purelib": purelib}
            gitconfig = tmp / "gitconfig"
            git("config", "--file", str(gitconfig), f"url.{REPO}.insteadOf", repo_url)
            git("config", "--file", str(gitconfig), "--add", "safe.directory", str(REPO))
            if args.no_hf_standin:
                hf_env = {"HF_HOME": str(tmp / "hf"), "HF_HUB_CACHE": str(tmp / "hf" / "hub")}
                hf_used = "none (--no-hf-standin): an empty HF cache"
            else:
                hf_env, hf_used = hf_environment(cache, tmp / "hf")
            log(f"   Hugging Face stand-in: {hf_used}")
            for name in list(os.environ):
                if name.startswith(SCRUBBED_PREFIXES) or name in SCRUBBED:
                    del os.environ[name]
            os.environ["JUPYTER_PATH"] = str(tmp / "jupyter")
            kernel_spec(tmp / "jupyter", python, {
                "PYTHONPATH": str(STUB),
                "PATH": os.pathsep.join(
                    [str(python.parent), str(base / "bin"), clean_path(os.environ["PATH"])]
                ),
                "GIT_CONFIG_GLOBAL": str(gitconfig),
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_TERMINAL_PROMPT": "0",
                "IPYTHONDIR": str(tmp / "ipython"),
                "MILVUS_DOCS_ZIP": str(zip_path),
                "TOKENIZERS_PARALLELISM": "false",
                "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # ipykernel 6.17's debugger notice
                **hf_env,
            })  # fmt: skip

        with phase("notebook run", timings):
            state = execute(nb, first, content, args.timeout, timings)

        with phase("checks", timings):
            failures = check_run(nb, first, state, pins, runtime, base_snapshot, content, commit)

        import nbformat

        output = cache / "last-run" / Path(NOTEBOOK).name
        output.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, output)
        log(f"   executed notebook: {output}")
    except BaseException:
        keep = True
        raise
    finally:
        log("== timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
        if keep or failures:
            log(f"   kept the temporary /content and runtime: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    if failures:
        more = f" (and {len(failures) - 1} more)" if failures[1:] else ""
        if dirty.strip():
            more += " (the checkout has uncommitted changes; the clone has HEAD's code)"
        raise Failure(failures[0] + more)
    log("colab rehearsal passed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebook", help=f"run this notebook file instead of {NOTEBOOK}")
    parser.add_argument("--ref", default="HEAD",
                        help="the commit the clone checks out (default HEAD); 'notebook' keeps "
                             "the notebook's own REPO_REF")  # fmt: skip
    parser.add_argument("--cache", help="cache folder (default .cache/colab-rehearsal)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--no-hf-standin", action="store_true",
                        help="run with an empty Hugging Face cache (as if the stand-in were "
                             "missing)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
        import packaging  # noqa: F401
    except ImportError as error:
        print(f"colab rehearsal FAILED: run it with the dev environment's Python "
              f"(.venv/bin/python): {error}", file=sys.stderr)  # fmt: skip
        return 1
    try:
        return rehearse(args)
    except Failure as failure:
        print(f"colab rehearsal FAILED: {failure}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
