"""Shared helpers for the benchmark scripts: the machine, memory, percentiles, tables.

Importing it also puts the repository's ``tests/`` folder on ``sys.path``, so that the scripts
can use the test support code that starts real Milvus servers (``support.milvus_servers``):
benchmark and test infrastructure, not part of the ``milvus_rag`` package.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
"""The repository's checkout."""

SHARED_ZIP = REPO.parent / "shared" / "data" / "milvus_docs_2.4.x_en.zip"
"""Where this project's machines keep the docs zip (the default of ``--docs``)."""

if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))


def _cpuinfo_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _meminfo_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_info() -> dict:
    """Cores (logical, and those this process may use), CPU model, RAM, OS, Python, packages."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("pymilvus", "milvus-lite", "numpy", "onnxruntime", "tokenizers", "torch"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    total_kib = _meminfo_kib("MemTotal")
    return {
        "cpu_model": _cpuinfo_model(),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable,
        "ram_gib": round(total_kib / 1024 / 1024, 1) if total_kib else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": packages,
    }


def print_machine(info: dict | None = None) -> dict:
    info = info or machine_info()
    print("## Machine")
    print(f"- CPU: {info['cpu_model']}")
    print(
        f"- cores: {info['cores_logical']} logical, {info['cores_usable']} usable by this process"
    )
    print(f"- RAM: {info['ram_gib']} GiB")
    print(f"- OS: {info['os']}, Python {info['python']}")
    print("- packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()))
    print(flush=True)
    return info


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, as "0.54/0.92/0.98"."""
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def record(path: str | Path, script: str, figures: dict) -> None:
    """Write ``figures`` as JSON to ``path`` with what they were measured on: the script, the
    UTC time, the commit of the checkout (and whether it had changes), the machine and the load
    average at the end. ``scripts/readme_figures.py`` renders the README's benchmark table from
    the files in ``benchmarks/results/``."""
    import datetime
    import json
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    data = {"script": script,
            "measured": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": git("rev-parse", "--short", "HEAD"), "changed": bool(git("status", "--porcelain", "src")),
            "machine": machine_info(), "load_at_end": load_average(),
            **figures}  # fmt: skip
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"recorded in {path}")


def proc_status_kib(pid: int | str, field: str) -> int | None:
    """A ``/proc/PID/status`` memory field (``VmRSS``, ``VmHWM``) in KiB; None if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def dir_size_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation, like numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
        "max_ms": round(max(ms), 2) if ms else None,
    }


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
