"""Where one command's time goes (``--timings`` or ``RAG_TIMINGS=1``): each step marked as it
ends, the split printed on stderr at the end, so a user can see what is slow on their machine."""

import sys
import time

from milvus_rag import IMPORTED


class Clock:
    """Steps marked as they end; what ran before :meth:`start` counts as ``imports``."""

    def __init__(self) -> None:
        self.enabled, self.steps, self.last = False, {}, IMPORTED

    def start(self, enabled: bool) -> None:
        self.enabled, self.steps = enabled, {}
        self.mark("imports")

    def mark(self, step: str) -> None:
        """The time since the previous mark counts as ``step`` (added to it, if it ran before)."""
        now = time.perf_counter()
        self.steps[step] = self.steps.get(step, 0.0) + now - self.last
        self.last = now

    def split(self) -> str:
        """``Timings: imports 0.61 s, model 0.32 s, ...; total 1.20 s (since milvus_rag's import).``"""
        steps = ", ".join(f"{step} {seconds:.2f} s" for step, seconds in self.steps.items())
        return f"Timings: {steps}; total {sum(self.steps.values()):.2f} s (since milvus_rag's import)."

    def report(self) -> None:
        """Print :meth:`split` on stderr if timings were asked for."""
        if self.enabled:
            print(self.split(), file=sys.stderr, flush=True)


clock = Clock()  # the command line's, one per process
