"""Rehearse what readers do with the notebook in JupyterLab, in a real (headless) browser.

Run it with the dev environment's Python, from anywhere (``make rehearse`` runs it in CI):

    .venv/bin/python tests/browser/rehearse.py [--notebook PATH] [--keep] [--timeout SECONDS]

It needs Debian's Chromium (``apt-get install -y chromium``; ``$CHROMIUM`` may name another
binary) and the Python package ``playwright`` in that environment (requirements-dev.txt), which
drives that binary; Playwright's own browsers are never downloaded. It works offline.

What it does:

1. Copies the notebook (the checkout's, or ``--notebook``) into a new temporary folder and starts
   JupyterLab on it, with every Jupyter, IPython, Matplotlib, Hugging Face, Milvus and home path
   inside that folder, and the kernel offline: the docs zip from ``$MILVUS_DOCS_ZIP`` or
   ``../shared/data`` beside the checkout, the packaged MiniLM model, Milvus Lite in the folder,
   no LLM endpoint (the local answerer), progress bars in their default (widgets). The copy
   finds the helper package and its data through the editable install; the checkout's notebook
   is never written.
2. Opens it in headless Chromium and does what a reader does, with the menus and the keyboard,
   finding cells by their nbformat ids (read from JupyterLab's notebook model, so cells added
   later change nothing). One function per check:

   opens-unmodified  JupyterLab does not mark the notebook modified just by opening it (it
                     rewrites a kernelspec other than "Python 3 (ipykernel)", name python3).
   run-all           Edit > Clear Outputs, Run > Run All Cells: every code cell runs, none has
                     error output, and the progress bars of the cells ``insert`` and
                     ``evaluate`` render as ipywidgets (``.widget-hprogress``) while they run.
   come-back         Kernel > Restart Kernel and Clear Outputs, then only the cells
                     parameters, errors, docs, model, connect, search (Shift+Enter each):
                     no error output, and ``search`` prints hits.
   skip-evaluation   Restart and clear, Run All Above ``evaluate``, then Run Selected Cell and
                     All Below from the cell after ``default``: no error output.
   reopen            File > Save, File > Close and Shut Down Notebook, reopen it from the file
                     browser: no "Error displaying widget" anywhere, and not marked modified.

   Error output, as counted here: an output of type ``error`` (an exception reached the cell:
   what JupyterLab shows as a traceback, or the helper's one-sentence error), or a stderr stream
   (both render as ``.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]``;
   the notebook model tells them apart) holding a traceback, a line ``SomeError: ...`` /
   ``SomeException: ...``, or a log record at ERROR or CRITICAL level; and "Error displaying
   widget" in a cell's output. Other stderr text (a warning, a text progress bar) is not a
   failure but is printed as a note, since the reader sees it as a pink strip.
3. Prints one line per check (PASS or FAIL, its time, what failed: the cell id and the text
   seen), and on a failure saves screenshots, the page's text and the cells' state under
   ``.cache/browser-rehearsal/`` (git ignores it) and prints that folder.

Exit status 0 when every check passed, 1 when one failed, 2 when it could not start (no
Chromium, no playwright, no docs zip). The whole run is bounded by ``--timeout`` (default 12
minutes); JupyterLab, its kernels and Chromium are stopped on every way out, and the temporary
folder is removed (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "build_RAG_with_milvus_and_lepton.ipynb"
SHARED_ZIP = REPO.parent / "shared" / "data" / "milvus_docs_2.4.x_en.zip"
EVIDENCE = REPO / ".cache" / "browser-rehearsal"

PROGRESS_CELLS = ("insert", "evaluate")  # their progress bars must be widgets while they run
COME_BACK_CELLS = ("parameters", "errors", "docs", "model", "connect", "search")
SKIPPED_SECTION = ("evaluate", "plot", "default", "abstention")  # "How good is the retrieval?"
EXPECTED_KERNELSPEC = {
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
    "name": "python3",
}

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# Variables of the caller's shell that would change what the notebook or Jupyter does.
SCRUBBED_PREFIXES = ("LLM_", "LEPTONAI_", "MILVUS_", "RAG_", "EMBEDDING_", "HF_", "JUPYTER")
SCRUBBED = ("IPYTHONDIR", "MPLCONFIGDIR", "PYTHONPATH", "PYTHONSTARTUP", "TRANSFORMERS_CACHE")

# Waits: generous, for a loaded 2-core machine (a Run All takes 30-60 s there).
START_S = 180  # JupyterLab answering; the notebook open with its kernel idle
RUN_ALL_S = 480
CELL_S = 240  # one cell, or a part of the notebook
SETTLE_S = 3  # quiet time before "opened and not modified" / "widgets rendered" is judged

ERROR_TEXT = re.compile(
    r"Traceback \(most recent call last\)"
    r"|^\s*[A-Za-z_][\w.]*(?:Error|Exception)\b[^\n]*:"
    r"|\b(?:ERROR|CRITICAL)\b",
    re.MULTILINE,
)

# Runs in the page before JupyterLab loads (and again after any reload). ``state`` reads the
# notebook model (and tags each cell's node with data-cell-id, which JupyterLab does not set);
# a 100 ms sampler records, for the watched cells, what their output shows while they run.
# Text is read as textContent: JupyterLab skips the rendering of off-screen cells
# (content-visibility), and their innerText is empty.
PAGE_HELPERS = r"""
(() => {
  const PROGRESS = '.widget-hprogress, .widget-vprogress';  // ipywidgets 8's progress views
  const R = window.__rehearsal = {watch: [], progress: {}};
  R.panel = (path) => {
    const app = window.jupyterapp;
    if (!app) return null;
    return [...app.shell.widgets('main')].find(w => w.context && w.context.path === path) || null;
  };
  R.tag = (panel) => {
    for (const w of panel.content.widgets) w.node.dataset.cellId = w.model.id;
  };
  const text = (o) => {
    const t = o.text !== undefined ? o.text : (o.data && o.data['text/plain']) || '';
    return Array.isArray(t) ? t.join('') : String(t);
  };
  R.state = (path) => {
    const panel = R.panel(path);
    if (!panel) return null;
    R.tag(panel);
    const cells = panel.content.widgets.map(w => {
      const prompt = w.node.querySelector('.jp-InputPrompt');
      const cell = {id: w.model.id, type: w.model.type, prompt: prompt ? prompt.textContent.trim() : ''};
      if (w.model.type === 'code') {
        cell.count = w.model.executionCount;
        cell.outputs = w.model.outputs.toJSON().map(o => ({
          type: o.output_type, name: o.name || '', text: text(o).slice(0, 4000),
          ename: o.ename || '', evalue: o.evalue || '', mimes: Object.keys(o.data || {})}));
        cell.shown = [...w.node.querySelectorAll('.jp-OutputArea-output')].map(e => ({
          mime: e.dataset.mimeType || '', text: e.textContent.slice(0, 4000)}));
      }
      return cell;
    });
    const model = panel.context.model;
    return {status: panel.sessionContext.kernelDisplayStatus, dirty: model.dirty,
            kernelspec: model.getMetadata('kernelspec') || null, cells};
  };
  setInterval(() => {
    for (const id of R.watch) {
      const node = document.querySelector(`.jp-Cell[data-cell-id="${id}"]`);
      const prompt = node && node.querySelector('.jp-InputPrompt');
      if (!prompt || !prompt.textContent.includes('*')) continue;
      const seen = R.progress[id] || (R.progress[id] = {running: true, widget: false, states: [], broken: ''});
      const area = node.querySelector('.jp-Cell-outputArea');
      if (!area) continue;
      const bar = area.querySelector(PROGRESS);
      if (bar) {
        seen.widget = true;
        const box = bar.closest('.widget-hbox') || bar;
        const fill = bar.querySelector('.progress-bar');
        const s = `${box.textContent.replace(/\s+/g, ' ').trim()} (bar ${fill ? fill.style.width : '?'})`;
        if (s && !seen.states.includes(s) && seen.states.length < 200) seen.states.push(s);
      }
      if (area.textContent.includes('Error displaying widget')) seen.broken = area.textContent.slice(0, 300);
    }
  }, 100);
})();
"""


class Failure(Exception):
    """A check failed; the message names the cell and what it showed."""


class Unavailable(Exception):
    """The rehearsal cannot start here (no Chromium, no playwright, no docs zip)."""


class OutOfTime(Exception):
    """The overall --timeout ran out."""


def log(message: str = "") -> None:
    print(message, flush=True)


def excerpt(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- what a cell shows ---------------------------------------------------------------------


def error_outputs(cell: dict) -> list[str]:
    """The error outputs of a code cell (see the module docstring), each as the text seen."""
    found = []
    for out in cell.get("outputs", []):
        if out["type"] == "error":
            found.append(f"{out['ename']}: {out['evalue']}" if out["evalue"] else out["ename"])
        elif out["type"] == "stream" and out["name"] == "stderr" and ERROR_TEXT.search(out["text"]):
            found.append(f"stderr: {excerpt(out['text'])}")
    for shown in cell.get("shown", []):
        if "Error displaying widget" in shown["text"]:
            found.append(excerpt(shown["text"]))
    return found


def stderr_notes(cell: dict) -> list[str]:
    """stderr text that is not an error (a warning, a text progress bar): a pink strip."""
    return [
        excerpt(out["text"], 160)
        for out in cell.get("outputs", [])
        if out["type"] == "stream"
        and out["name"] == "stderr"
        and not ERROR_TEXT.search(out["text"])
    ]


def code_ids(state: dict) -> list[str]:
    return [cell["id"] for cell in state["cells"] if cell["type"] == "code"]


def cell_of(state: dict, cell_id: str) -> dict:
    for cell in state["cells"]:
        if cell["id"] == cell_id:
            return cell
    raise Failure(
        f"the notebook has no cell with id {cell_id!r} (ids: {[c['id'] for c in state['cells']]})"
    )


def judge(state: dict, expected: list[str], notes: list[str]) -> None:
    """Fail unless every cell in ``expected`` ran, without error output; collect stderr notes."""
    problems = []
    for cell_id in expected:
        cell = cell_of(state, cell_id)
        for error in error_outputs(cell):
            problems.append(f"cell `{cell_id}` shows error output: {error}")
        notes.extend(
            f"cell `{cell_id}` has stderr text (a pink strip): {n}" for n in stderr_notes(cell)
        )
    not_run = [cell_id for cell_id in expected if cell_of(state, cell_id).get("count") is None]
    if not_run:
        problems.append(f"cells that never ran (the run stopped): {', '.join(not_run)}")
    if problems:
        raise Failure("; ".join(problems))


# --- the browser session -------------------------------------------------------------------


class Lab:
    """JupyterLab in a browser page, with the notebook ``name`` open in it."""

    def __init__(self, page, base_url: str, name: str, evidence: Path):
        self.page, self.base_url, self.name, self.evidence = page, base_url, name, evidence
        self.console_errors: list[str] = []
        page.on("pageerror", lambda err: self.console_errors.append(f"pageerror: {err}"))
        page.on("console", lambda msg: msg.type == "error" and self.console_errors.append(msg.text))

    def state(self) -> dict:
        state = self.page.evaluate("(path) => window.__rehearsal.state(path)", self.name)
        if state is None:
            raise Failure(f"{self.name} is not open in JupyterLab")
        return state

    def wait_open(self) -> dict:
        """Wait until the notebook is open, its cells shown and its kernel idle."""
        deadline = time.monotonic() + START_S
        state = None
        while time.monotonic() < deadline:
            state = self.page.evaluate(
                "(path) => window.__rehearsal && window.__rehearsal.state(path)", self.name
            )
            if state and state["cells"] and state["status"] == "idle":
                return state
            time.sleep(0.5)
        status = state["status"] if state else "not open"
        raise Failure(
            f"{self.name} did not open with an idle kernel in {START_S} s (kernel: {status})"
        )

    def wait_kernel_idle(self) -> dict:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            state = self.state()
            if state["status"] == "idle":
                return state
            time.sleep(0.5)
        raise Failure(
            f"the kernel was not idle {START_S} s after starting (status: {state['status']})"
        )

    def wait_run(self, expected: list[str], timeout: float) -> dict:
        """Wait until no cell is queued or running and the kernel is idle: 1 s of quiet once
        every ``expected`` cell has an execution count, 5 s while some have none (a run that
        stopped at an error, or one that has yet to start)."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            state = self.state()
            busy = state["status"] != "idle" or any("*" in c["prompt"] for c in state["cells"])
            if busy:
                quiet_since = None
            else:
                quiet_since = quiet_since or time.monotonic()
                done = all(cell_of(state, cell_id).get("count") is not None for cell_id in expected)
                if time.monotonic() - quiet_since >= (1 if done else 5):
                    return state
            time.sleep(0.25)
        running = [c["id"] for c in state["cells"] if "*" in c["prompt"]]
        raise Failure(f"the run did not finish in {timeout:.0f} s (still queued or running: "
                      f"{', '.join(running) or 'none'}; kernel {state['status']})")  # fmt: skip

    def menu(self, top: str, command: str) -> None:
        """Click ``top`` in the menu bar, then the item that runs JupyterLab's ``command``."""
        self.page.locator(".lm-MenuBar-item", has_text=re.compile(rf"^\s*{top}\s*$")).click()
        self.page.locator(f'.lm-Menu-item[data-command="{command}"]').click()

    def accept_dialog(self) -> None:
        self.page.locator(".jp-Dialog .jp-mod-accept").click(timeout=30_000)
        self.page.locator(".jp-Dialog").wait_for(state="detached", timeout=30_000)

    def select(self, cell_id: str) -> None:
        """Click the cell's prompt area: the cell is selected, in command mode."""
        self.state()  # tags the cells' nodes with their ids
        self.page.locator(f'.jp-Cell[data-cell-id="{cell_id}"] .jp-InputPrompt').first.click()

    def restart_and_clear(self) -> None:
        self.menu("Kernel", "kernelmenu:restart-and-clear")
        self.accept_dialog()
        time.sleep(1)  # the restart begins
        self.wait_kernel_idle()

    def watch_progress(self, cell_ids: tuple[str, ...]) -> None:
        self.page.evaluate("(ids) => { window.__rehearsal.watch = ids; window.__rehearsal.progress = {}; }",
                           list(cell_ids))  # fmt: skip

    def progress_seen(self) -> dict:
        return self.page.evaluate("() => window.__rehearsal.progress")

    def save_evidence(self, check: str, cell_id: str | None = None) -> None:
        """Screenshots, the page's text, the cells' state and the browser's console errors."""
        self.evidence.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            if cell_id:
                cell = self.page.locator(f'.jp-Cell[data-cell-id="{cell_id}"]').first
                cell.scroll_into_view_if_needed(timeout=5_000)
                cell.screenshot(path=self.evidence / f"{check}-cell-{cell_id}.png", timeout=10_000)
        with contextlib.suppress(Exception):
            self.page.screenshot(path=self.evidence / f"{check}.png", timeout=10_000)
        with contextlib.suppress(Exception):
            text = self.page.evaluate("() => document.body.innerText")
            (self.evidence / f"{check}-page.txt").write_text(text, encoding="utf-8")
        with contextlib.suppress(Exception):
            state = self.page.evaluate("(path) => window.__rehearsal.state(path)", self.name)
            (self.evidence / f"{check}-cells.json").write_text(
                json.dumps(state, indent=1), encoding="utf-8"
            )
        (self.evidence / "console-errors.txt").write_text(
            "\n".join(self.console_errors), encoding="utf-8"
        )


# --- the checks, one function each ---------------------------------------------------------


def check_opens_unmodified(lab: Lab, saved_kernelspec: dict | None, notes: list[str]) -> None:
    """Opening the notebook does not mark it modified: JupyterLab rewrites any kernelspec but
    the one it writes itself (EXPECTED_KERNELSPEC) when the kernel starts."""
    lab.wait_kernel_idle()
    time.sleep(SETTLE_S)
    state = lab.state()
    if state["dirty"]:
        written = state["kernelspec"]
        if written != saved_kernelspec:
            why = f"the file's kernelspec {saved_kernelspec} became {written}"
        else:
            why = "its kernelspec is unchanged, so something else changed"
        lab.save_evidence("opens-unmodified")
        raise Failure(f"JupyterLab marked the notebook modified just by opening it: {why}")
    if saved_kernelspec != EXPECTED_KERNELSPEC:
        notes.append(f"the file's kernelspec {saved_kernelspec} differs from {EXPECTED_KERNELSPEC}")


def check_run_all(lab: Lab, notes: list[str]) -> None:
    """Run All in the fresh kernel: every code cell runs without error output, and the
    progress bars render as widgets while their cells run."""
    lab.menu("Edit", "editmenu:clear-all")
    lab.watch_progress(PROGRESS_CELLS)
    lab.menu("Run", "runmenu:run-all")
    expected = code_ids(lab.state())
    state = lab.wait_run(expected, RUN_ALL_S)
    problems = []
    try:
        judge(state, expected, notes)
    except Failure as failure:
        problems.append(str(failure))
    seen = lab.progress_seen()
    for cell_id in PROGRESS_CELLS:
        record = seen.get(cell_id)
        cell = cell_of(state, cell_id)
        shown = excerpt(" / ".join(s["text"] for s in cell.get("shown", [])), 200)
        if cell.get("count") is None:
            continue  # it never ran: said above
        if record is None:
            problems.append(f"cell `{cell_id}` was never seen running")
        elif record["broken"]:
            problems.append(f"cell `{cell_id}` showed while running: {excerpt(record['broken'])}")
        elif not record["widget"]:
            problems.append(f"cell `{cell_id}` showed no progress-bar widget (.widget-hprogress) "
                            f"while it ran; its output now: {shown or 'none'}")  # fmt: skip
        else:
            states = record["states"]
            notes.append(f"cell `{cell_id}`: a widget progress bar while it ran, {len(states)} "
                         f"states seen, {states[0]!r} … {states[-1]!r}; after it: {shown!r}")  # fmt: skip
    if problems:
        lab.save_evidence("run-all", first_cell_named(problems))
        raise Failure("; ".join(problems))


def check_come_back(lab: Lab, notes: list[str]) -> None:
    """Restart the kernel, then run only the setup, connect and search cells, one at a time
    (the collection built by the earlier run is there): no error output, and hits."""
    lab.restart_and_clear()
    for cell_id in COME_BACK_CELLS:
        lab.select(cell_id)
        lab.page.keyboard.press("Shift+Enter")
        state = lab.wait_run([cell_id], CELL_S)
        try:
            judge(state, [cell_id], notes)
        except Failure:
            lab.save_evidence("come-back", cell_id)
            raise
    search = cell_of(state, "search")
    printed = "".join(
        o["text"] for o in search["outputs"] if o["type"] in ("stream", "execute_result")
    )
    if not re.search(r"\d\.\d+", printed) or printed.strip() in ("", "[]"):
        lab.save_evidence("come-back", "search")
        raise Failure(f"cell `search` printed no hits (no scores): {excerpt(printed) or 'nothing'}")
    notes.append(f"cell `search` printed: {excerpt(printed, 120)}")


def check_skip_evaluation(lab: Lab, notes: list[str]) -> None:
    """Restart, run everything but the evaluation section (Run All Above its first cell, then
    Run Selected Cell and All Below from the cell after it): no error output."""
    lab.restart_and_clear()
    state = lab.state()
    ids = [cell["id"] for cell in state["cells"]]
    first, last = ids.index(SKIPPED_SECTION[0]), ids.index(SKIPPED_SECTION[-1])
    skipped = [c["id"] for c in state["cells"][first : last + 1] if c["type"] == "code"]
    if sorted(skipped) != sorted(SKIPPED_SECTION):
        raise Failure(
            f"the evaluation section's code cells are {skipped}, not {list(SKIPPED_SECTION)}"
        )
    before = [c for c in code_ids(state) if ids.index(c) < first]
    after = [c for c in code_ids(state) if ids.index(c) > last]
    lab.select(SKIPPED_SECTION[0])
    lab.menu("Run", "notebook:run-all-above")
    state = lab.wait_run(before, RUN_ALL_S)
    try:
        judge(state, before, notes)
        if last + 1 < len(ids):
            lab.select(ids[last + 1])
            lab.menu("Run", "notebook:run-all-below")
            state = lab.wait_run(after, RUN_ALL_S)
            judge(state, after, notes)
    except Failure as failure:
        lab.save_evidence("skip-evaluation", first_cell_named([str(failure)]))
        raise
    ran = [
        cell_id for cell_id in SKIPPED_SECTION if cell_of(state, cell_id).get("count") is not None
    ]
    if ran:
        raise Failure(f"cells of the skipped section ran anyway: {', '.join(ran)}")


def check_reopen(lab: Lab, copy: Path, notes: list[str]) -> None:
    """Save, close and shut down the notebook, reopen it from the file browser: no widget
    errors anywhere, and not marked modified by opening."""
    lab.menu("File", "docmanager:save")
    deadline = time.monotonic() + 60
    while lab.state()["dirty"] and time.monotonic() < deadline:
        time.sleep(0.5)
    saved = json.loads(copy.read_text(encoding="utf-8"))
    views = [
        cell.get("id") for cell in saved["cells"] for out in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in out.get("data", {})
    ]  # fmt: skip
    has_state = "application/vnd.jupyter.widget-state+json" in saved["metadata"].get("widgets", {})
    if views:
        notes.append(
            f"saved widget views in cells {sorted(set(views))}; widget state saved: {has_state}"
        )
    lab.menu("File", "filemenu:close-and-cleanup")
    lab.accept_dialog()
    lab.page.wait_for_function(
        "(path) => !window.__rehearsal.panel(path)", arg=lab.name, timeout=60_000
    )
    item = lab.page.locator(".jp-DirListing-item", has=lab.page.locator(
        ".jp-DirListing-itemText", has_text=re.compile(rf"^{re.escape(lab.name)}$")))  # fmt: skip
    item.first.dblclick()
    state = lab.wait_open()
    time.sleep(SETTLE_S)  # the widget manager renders the saved views
    state = lab.state()
    problems = []
    for cell in state["cells"]:
        for shown in cell.get("shown", []):
            if "Error displaying widget" in shown["text"]:
                problems.append(f"cell `{cell['id']}` shows: {excerpt(shown['text'], 200)}")
    page_text = lab.page.evaluate(
        "() => (document.querySelector('.jp-LabShell') || document.body).textContent"
    )
    if not problems and "Error displaying widget" in page_text:
        problems.append("the page shows 'Error displaying widget' (outside the notebook's cells)")
    if state["dirty"]:
        problems.append(f"reopened, it is marked modified (kernelspec now {state['kernelspec']})")
    if problems:
        lab.save_evidence("reopen", first_cell_named(problems))
        raise Failure("; ".join(problems))


def first_cell_named(problems: list[str]) -> str | None:
    match = re.search(r"cells? `([^`]+)`", " ".join(problems))
    return match.group(1) if match else None


# --- set-up and tear-down ------------------------------------------------------------------


def chromium_binary() -> str:
    path = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not path:
        raise Unavailable(
            "no Chromium: install Debian's (apt-get install -y chromium) or set $CHROMIUM"
        )
    return path


def docs_zip() -> Path:
    path = Path(os.environ.get("MILVUS_DOCS_ZIP") or SHARED_ZIP)
    if not path.is_file():
        raise Unavailable(f"no docs zip at {path}: set MILVUS_DOCS_ZIP to the Milvus docs zip")
    return path.resolve()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lab_environment(tmp: Path, zip_path: Path) -> dict:
    """The environment of JupyterLab and so of its kernels: every path in ``tmp``, offline."""
    env = {
        name: value for name, value in os.environ.items()
        if not name.startswith(SCRUBBED_PREFIXES) and name not in SCRUBBED
    }  # fmt: skip
    env.update(
        HOME=str(tmp / "home"), XDG_CACHE_HOME=str(tmp / "home" / ".cache"),
        XDG_CONFIG_HOME=str(tmp / "home" / ".config"), XDG_DATA_HOME=str(tmp / "home" / ".local"),
        JUPYTER_CONFIG_DIR=str(tmp / "jupyter" / "config"), JUPYTER_DATA_DIR=str(tmp / "jupyter" / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "jupyter" / "runtime"), IPYTHONDIR=str(tmp / "ipython"),
        MPLCONFIGDIR=str(tmp / "matplotlib"), JUPYTER_PLATFORM_DIRS="1",
        MILVUS_DOCS_ZIP=str(zip_path), MILVUS_LITE_PATH=str(tmp / "milvus_demo.db"),
        MILVUS_RAG_DATA_DIR=str(tmp / "data"), MILVUS_RAG_MODEL_CACHE=str(tmp / "models"),
        EMBEDDING_MODEL="minilm", HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf"),
        TOKENIZERS_PARALLELISM="false", PYTHONDONTWRITEBYTECODE="1",
    )  # fmt: skip
    return env


def write_lab_settings(config_dir: Path) -> None:
    """User settings a tester would set: no news or update checks (offline, no pop-ups)."""
    settings = config_dir / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}), encoding="utf-8"
    )


def start_lab(tmp: Path, env: dict, port: int, token: str) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp / 'work'}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the cells' ids and state
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")
    log_file = (tmp / "jupyterlab.log").open("w")
    proc = subprocess.Popen(
        args, env=env, cwd=tmp / "work", stdout=log_file, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failure(f"JupyterLab exited ({proc.returncode}): {tail(tmp / 'jupyterlab.log')}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5)
            return proc
        time.sleep(0.5)
    raise Failure(f"JupyterLab did not answer in {START_S} s: {tail(tmp / 'jupyterlab.log')}")


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


class Processes:
    """Every process this run started (JupyterLab, its kernels and their children, Chromium),
    found as descendants of this one or by the temporary folder in their command line, so
    that each can be ended by its id."""

    def __init__(self, tmp: Path):
        import psutil

        self.psutil, self.tmp, self.seen = psutil, str(tmp), {}

    def snapshot(self) -> None:
        psutil = self.psutil
        me = psutil.Process()
        found = me.children(recursive=True)
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error, TypeError):
                if proc.pid != me.pid and self.tmp in " ".join(proc.info["cmdline"] or ()):
                    found.append(proc)
        for proc in found:
            self.seen.setdefault(proc.pid, proc)

    def end(self, grace: float = 10) -> list[int]:
        """Terminate what is still running of what was seen, then kill what is left."""
        self.snapshot()
        alive = [p for p in self.seen.values() if p.is_running()]
        for proc in alive:
            with contextlib.suppress(self.psutil.Error):
                proc.terminate()
        _, left = self.psutil.wait_procs(alive, timeout=grace)
        for proc in left:
            with contextlib.suppress(self.psutil.Error):
                proc.kill()
        return [p.pid for p in left]


def stop_lab(proc: subprocess.Popen | None, processes: Processes) -> None:
    """SIGTERM to JupyterLab (it shuts its kernels down), then end whatever is left."""
    processes.snapshot()  # kernels are JupyterLab's children only while it runs
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    processes.end()


# --- the run -------------------------------------------------------------------------------


def rehearse(args: argparse.Namespace, tmp: Path, processes: Processes) -> int:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        raise Unavailable(f"Python playwright is missing from this environment: {error}") from error
    chromium = chromium_binary()
    zip_path = docs_zip()
    source = Path(args.notebook).resolve() if args.notebook else NOTEBOOK
    name = NOTEBOOK.name
    (tmp / "work").mkdir()
    copy = tmp / "work" / name
    shutil.copyfile(source, copy)
    saved_kernelspec = json.loads(copy.read_text(encoding="utf-8"))["metadata"].get("kernelspec")
    env = lab_environment(tmp, zip_path)
    write_lab_settings(Path(env["JUPYTER_CONFIG_DIR"]))
    evidence = EVIDENCE / time.strftime("%Y%m%d-%H%M%S")
    log(f"browser rehearsal: {source.relative_to(REPO) if source.is_relative_to(REPO) else source} "
        f"in JupyterLab, driven by {chromium}; temporary folder {tmp}")  # fmt: skip

    results: list[tuple[str, float, str | None, list[str]]] = []
    lab_proc = None
    try:
        started = time.monotonic()
        port, token = free_port(), secrets.token_hex(16)
        lab_proc = start_lab(tmp, env, port, token)
        log(f"  JupyterLab answered in {time.monotonic() - started:.1f} s")
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp / "chromium"), executable_path=chromium, headless=True,
                args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000},
                env={**env, "HOME": str(tmp / "home")},
            )  # fmt: skip
            try:
                context.add_init_script(PAGE_HELPERS)
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(60_000)
                lab = Lab(page, f"http://127.0.0.1:{port}", name, evidence)
                started = time.monotonic()
                page.goto(f"{lab.base_url}/lab/tree/{name}?token={token}", timeout=START_S * 1000)
                lab.wait_open()
                log(
                    f"  the notebook opened with an idle kernel in {time.monotonic() - started:.1f} s"
                )
                checks = [
                    ("opens-unmodified", lambda notes: check_opens_unmodified(lab, saved_kernelspec, notes)),
                    ("run-all", lambda notes: check_run_all(lab, notes)),
                    ("come-back", lambda notes: check_come_back(lab, notes)),
                    ("skip-evaluation", lambda notes: check_skip_evaluation(lab, notes)),
                    ("reopen", lambda notes: check_reopen(lab, copy, notes)),
                ]  # fmt: skip
                for check, function in checks:
                    notes: list[str] = []
                    started = time.monotonic()
                    try:
                        function(notes)
                        failure = None
                    except Failure as error:
                        failure = str(error)
                    except OutOfTime as error:
                        log(f"FAIL {check} ({time.monotonic() - started:.1f} s): {error}")
                        lab.save_evidence(check)
                        log(f"evidence (screenshots, page text, cells' state): {evidence}")
                        raise
                    except Exception as error:  # a Playwright timeout: the page did not do it
                        failure = f"{type(error).__name__}: {excerpt(str(error), 400)}"
                        lab.save_evidence(check)
                    elapsed = time.monotonic() - started
                    results.append((check, elapsed, failure, notes))
                    log(f"{'FAIL' if failure else 'PASS'} {check} ({elapsed:.1f} s)"
                        + (f": {failure}" if failure else ""))  # fmt: skip
                    for note in notes:
                        log(f"     note: {note}")
            finally:
                with contextlib.suppress(Exception):
                    context.close()
    finally:
        stop_lab(lab_proc, processes)
    failed = [check for check, _, failure, _ in results if failure]
    if failed:
        if evidence.exists():
            log(f"evidence (screenshots, page text, cells' state): {evidence}")
        log(f"browser rehearsal FAILED: {', '.join(failed)}")
        return 1
    log("browser rehearsal passed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--notebook", help=f"rehearse this notebook file instead of {NOTEBOOK.relative_to(REPO)}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--timeout", type=int, default=720, help="seconds for the whole run (default 720)"
    )
    args = parser.parse_args(argv)
    try:
        import psutil  # noqa: F401
    except ImportError as error:
        print(f"browser rehearsal cannot start: run it with the dev environment's Python "
              f"(.venv/bin/python): {error}", file=sys.stderr)  # fmt: skip
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="browser-rehearsal-"))
    processes = Processes(tmp)

    def out_of_time(signum, _frame):
        if signum == signal.SIGTERM:
            raise OutOfTime("stopped by SIGTERM")
        raise OutOfTime(f"the rehearsal ran past its --timeout of {args.timeout} s")

    def hard_stop():  # when even stopping hangs: end our processes by id and leave
        print(f"browser rehearsal FAILED: still running {args.timeout + 120} s after it started; "
              f"stopped", file=sys.stderr, flush=True)  # fmt: skip
        processes.end(grace=5)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        os._exit(1)

    watchdog = threading.Timer(args.timeout + 120, hard_stop)
    watchdog.daemon = True
    watchdog.start()
    signal.signal(signal.SIGALRM, out_of_time)
    signal.signal(signal.SIGTERM, out_of_time)
    signal.alarm(args.timeout)
    try:
        return rehearse(args, tmp, processes)
    except Unavailable as error:
        print(f"browser rehearsal cannot start: {error}", file=sys.stderr, flush=True)
        return 2
    except (Failure, OutOfTime) as error:
        print(f"browser rehearsal FAILED: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.alarm(0)
        processes.end()
        watchdog.cancel()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
