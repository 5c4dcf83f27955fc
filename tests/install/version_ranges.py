"""Both ends of the requirements' ranges, installed and tested before users get them.

    .venv/bin/python tests/install/version_ranges.py [--lowest] [--keep]

`make install` and CI install requirements-lock.txt exactly; `pip install -r requirements.txt`
gives a user whatever is newest that day within its ranges (the drift this checks), and an older
environment such as Colab's keeps what it has where the ranges allow. So this script installs
into a scratch venv either the newest versions the ranges allow (`pip install -r
requirements.txt` as the README says, then requirements-dev.txt, with the pip a new venv ships
and the machine's pip settings as they are), or with ``--lowest`` every
direct requirement at its lower bound (uv's ``lowest-direct`` resolution; torch, which has one
exact pin, through pip as `make install` does). It prints every version that differs from the
lock, then runs the fast tier and the notebook with that venv. Exit 0 when both pass; 1 with the
step that failed: the fix is then a code change or a bound in requirements*.txt (then `make
lock`), so that no install within the ranges yields a failing set. Run by `make rehearse` (and so
by CI); needs PyPI.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = "notebooks/build_RAG_with_milvus_and_lepton.ipynb"
# The lock's writer, which also reads it and names the one package outside it (torch).
_spec = importlib.util.spec_from_file_location("lock", REPO / "scripts" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)
LOCK, UNLOCKED = lock.LOCK, lock.UNLOCKED
# Evaluated inside the scratch venv: which of the lock's pins apply there (markers), and what
# pip installed. Prints {"locked": {name: version}, "installed": {name: version}}.
VERSIONS = """
import json, sys
from importlib.metadata import distributions
from packaging.markers import Marker
from packaging.utils import canonicalize_name
locked = {}
for name, version, marker in json.loads(sys.argv[1]):
    if not marker or Marker(marker).evaluate():
        locked[canonicalize_name(name)] = version
installed = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}
print(json.dumps({"locked": locked, "installed": installed}))
"""


def differences(locked: dict[str, str], installed: dict[str, str]) -> list[str]:
    """One line per package whose installed version is not the lock's (or is not in it)."""
    lines = []
    for name in sorted(installed):
        if name in {"pip", "setuptools", "wheel", "milvus-rag", UNLOCKED} and name not in locked:
            continue  # the venv's own tools, this project, and torch (scripts/lock.py: why)
        if name not in locked:
            lines.append(f"  {name} {installed[name]} (not in the lock)")
        elif installed[name].split("+")[0] != locked[name].split("+")[0]:
            lines.append(f"  {name} {locked[name]} -> {installed[name]}")
    missing = sorted(locked.keys() - installed.keys())
    return lines + [f"  {name} {locked[name]} (locked, not installed)" for name in missing]


def step(what: str, command: list[str], **kwargs) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    print(f"{what}: exit {done.returncode} in {time.monotonic() - started:.0f} s", flush=True)
    if done.returncode != 0:
        print(done.stdout[-6000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"error: {what} failed (exit {done.returncode}) at an end of the "
                         "ranges: fix the code, or move the bound of the package that broke it.")
    return done


def main() -> int:
    lowest = "--lowest" in sys.argv
    work = Path(tempfile.mkdtemp(prefix="version-ranges-"))
    try:
        venv = work / "venv"
        step("python3 -m venv", [sys.executable, "-m", "venv", str(venv)])
        python = str(venv / "bin" / "python")
        if lowest:
            with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=work, delete=False) as file:
                file.write(UNLOCKED + "\n")
            step("uv pip install --resolution lowest-direct -r requirements-dev.txt",
                 [sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", python,
                  "--resolution", "lowest-direct", "--excludes", file.name,
                  "-r", "requirements-dev.txt"], cwd=REPO)  # fmt: skip
            step(f"pip install {UNLOCKED} (its pin)", [python, "-m", "pip", "install", "--quiet",
                 "-r", "requirements-offline.txt"], cwd=REPO)  # fmt: skip
        else:  # first the README's install for notebook users alone, then the test tools
            pip = step("pip --version", [python, "-m", "pip", "--version"]).stdout.split()[1]
            for name in ("requirements.txt", "requirements-dev.txt"):
                step(f"pip {pip} install -r {name} (newest allowed)",
                     [python, "-m", "pip", "install", "--quiet", "-r", name], cwd=REPO)  # fmt: skip
        pins = json.dumps(lock.lock_pins(LOCK.read_text()))
        found = json.loads(step("versions", [python, "-c", VERSIONS, pins]).stdout)
        drift = differences(found["locked"], found["installed"])
        print(f"{len(drift)} versions differ from {LOCK.name}" + (":" if drift else ""))
        print("\n".join(drift), flush=True)
        env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        env.pop("VIRTUAL_ENV", None)
        tests = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        for what, selection in (("fast tier", ["-m", "not slow"]), ("the notebook", [NOTEBOOK])):
            print(step(what, [*tests, *selection], cwd=REPO, env=env).stdout.splitlines()[-1])
    finally:
        if "--keep" in sys.argv:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("2 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
