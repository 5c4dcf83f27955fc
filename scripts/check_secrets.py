"""Fail when a tracked file holds something shaped like a key, or a path of a machine.

    python scripts/check_secrets.py [PATH ...]

Scans every file git tracks (or the given paths): notebook sources *and* outputs, code,
docs. Key shapes: OpenAI ``sk-``, NVIDIA ``nvapi-``, Hugging Face ``hf_``, AWS ``AKIA``,
and ``Bearer`` tokens. In notebooks, also absolute paths of the machine that executed them
(home folders of Linux, macOS and Windows, /tmp, macOS's /var/folders, /work, site-packages).
Exit 1 with one line per finding.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

KEY_PATTERNS = {
    "OpenAI key": re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}"),
    "NVIDIA key": re.compile(r"\bnvapi-[A-Za-z0-9_-]{16,}"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{20,}"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "Bearer token": re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]{16,}"),
}
MACHINE_PATH = re.compile(
    r"(/home/[^/\s\"']+/|/Users/[^/\s\"']+/|/root/|/tmp/|/var/folders/|/work/|site-packages"
    r"|(?i:[a-z]:[\\/]+users[\\/]))"  # C:\Users\... (Windows' temporary folders too), C:/Users/
)
ALLOWED = {
    # files that hold these shapes on purpose: the checks themselves and their tests
    "scripts/check_secrets.py",
    "tests/test_check_secrets.py",
    "tests/support/endpoints.py",
}


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return [REPO / name for name in out.stdout.decode().split("\0") if name]


def notebook_text(path: Path) -> str:
    """Sources and outputs of every cell, one block per cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    parts = []
    for cell in nb.get("cells", []):
        parts.append("".join(cell.get("source", [])))
        for output in cell.get("outputs", []):
            parts.append(json.dumps(output))
    parts.append(json.dumps(nb.get("metadata", {})))
    return "\n".join(parts)


def findings(path: Path, text: str) -> list[str]:
    found = []
    for line_no, line in enumerate(text.splitlines(), 1):
        for label, pattern in KEY_PATTERNS.items():
            if pattern.search(line):
                found.append(f"{path}: {label} (line {line_no})")
        if path.suffix == ".ipynb" and MACHINE_PATH.search(line):
            found.append(f"{path}: a path of the machine that ran it (block {line_no})")
    return found


def scan(paths: list[Path]) -> list[str]:
    results = []
    for path in paths:
        rel = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
        if rel in ALLOWED or not path.is_file():
            continue
        try:
            text = notebook_text(path) if path.suffix == ".ipynb" else path.read_text("utf-8")
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # binary or not a notebook: nothing to read
        results.extend(findings(Path(rel), text))
    return results


def main(argv: list[str]) -> int:
    paths = [Path(p).resolve() for p in argv] or tracked_files()
    results = scan(paths)
    for line in results:
        print(f"secret check: {line}", file=sys.stderr)
    if results:
        print(
            f"secret check: {len(results)} finding(s): remove them (and rotate any real key).",
            file=sys.stderr,
        )
        return 1
    print(f"secret check: {len(paths)} files clean.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
