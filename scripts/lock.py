"""Write requirements-lock.txt: the exact version and hashes of everything `make install` and CI
install, for Linux, macOS and Windows and every Python from requires-python's lowest up.

    .venv/bin/python scripts/lock.py        # or: make lock

It resolves requirements-dev.txt (which takes in requirements.txt and requirements-offline.txt)
with uv, newest versions within their ranges, hashes from PyPI. One package is left out: torch.
PyPI's Linux torch is a CUDA build of several GB, while the CPU build that `make install` takes
(`torch==2.13.0`, its own pin in requirements-offline.txt) has other files and so other hashes.
Its dependencies are locked all the same, as the installed CPU build declares them, so
`make install` puts torch in last with `--no-deps` and nothing else is resolved at install time.
"""

import re
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements-lock.txt"
UNLOCKED = "torch"  # installed on its own pin (see above)
LOWEST_PYTHON = "3.11"  # pyproject.toml's requires-python
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._\-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def lock_pins(text: str) -> list[tuple[str, str, str]]:
    """``(name, version, marker)`` for each pin of a lock file this script wrote."""
    return [m.groups(default="") for line in text.splitlines() if (m := PIN.match(line))]


def unlocked_dependencies() -> list[str]:
    """torch's own requirements (not its extras'), as the installed build declares them."""
    try:
        needs = requires(UNLOCKED) or []
    except PackageNotFoundError:
        raise SystemExit(f"error: {UNLOCKED} is not installed here: run `make lock`.") from None
    return [need for need in needs if not re.search(r"\bextra\s*==", need)]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="lock-") as tmp:
        inputs, excludes = Path(tmp, "lock.in"), Path(tmp, "excludes.txt")
        inputs.write_text("\n".join([f"-r {REPO / 'requirements-dev.txt'}",
                                     *unlocked_dependencies()]) + "\n", encoding="utf-8")  # fmt: skip
        excludes.write_text(UNLOCKED + "\n", encoding="utf-8")
        command = [
            sys.executable, "-m", "uv", "pip", "compile", str(inputs), "--universal",
            "--python-version", LOWEST_PYTHON, "--generate-hashes", "--excludes", str(excludes),
            "--no-emit-package", "milvus-rag", "--annotation-style", "line", "--no-header",
            "--quiet", "-o", str(Path(tmp, "lock.txt")),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=REPO, capture_output=True, encoding="utf-8")
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            raise SystemExit(f"error: uv pip compile failed (exit {done.returncode}).")
        body = Path(tmp, "lock.txt").read_text(encoding="utf-8").replace(str(inputs), "lock inputs")
    LOCK.write_text(
        "# Exact versions and hashes of what `make install` and CI install (written by `make lock`,\n"
        "# i.e. scripts/lock.py, from requirements-dev.txt; never edit by hand). torch is the one\n"
        "# package left out: `make install` adds torch==2.13.0 (requirements-offline.txt) last.\n"
        + body,
        encoding="utf-8",
    )
    print(f"{LOCK.name}: {len(lock_pins(body))} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
