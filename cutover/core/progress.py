"""A progress line on stderr for the mass operations (pause, resume)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``label done/total rate`` on stderr: redrawn in place on a terminal, every 10% otherwise."""

    def __init__(self, label: str, total: int, stream=None):
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.monotonic()
        self.last = 0.0
        self.step = max(1, total // 10)
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.tty:
            if now - self.last < 0.2 and done < self.total:
                return
            self.last = now
            width = 30
            filled = int(width * done / self.total) if self.total else width
            rate = done / max(now - self.t0, 1e-6)
            self.stream.write(f"\r  {self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                              f"{rate:.0f}/s")
            self.stream.flush()
        elif done == self.total or done % self.step == 0:
            self.stream.write(f"  {self.label}: {done}/{self.total}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()
