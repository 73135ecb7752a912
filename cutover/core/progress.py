"""Progress on stderr for every wait over a second: the one helper cutover's commands use.

- :class:`Progress` -- work with a known size (``label [####....] 40/100 12/s``): mass pause and
  resume, schedules verify over many ingestions, parity over many ingestions, imports.
- :func:`waiting` -- a wait of unknown length (``label ... 3s``): a server starting, a flow run
  finishing, a lock. Nothing is printed if it ends within ``after`` seconds (default 1 s).
- :func:`track` -- an iterable with a :class:`Progress`.

On a terminal the line is redrawn in place; into a pipe or file, a few plain lines (every 10 %,
or the start and the end of a wait), so logs stay short. stdout is never touched.

Where to call it (code owned elsewhere): ``flows/local.py`` server start (``with waiting("starting
the Prefect server"):``), ``flows/http.py`` / ``commands.migration.wait_flow_run`` (``waiting(f"flow run
{id}")`` with ``w.note(state)``), ``checks/parity.py`` (``track(ingestions, "parity")``), the importers
(``legacy/*/importer.py``: ``track(jobs, "importing")``).
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
SPIN = "|/-\\"


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{seconds:.0f}s"


class Progress:
    """``label done/total rate`` on stderr: redrawn in place on a terminal, every 10% otherwise.
    With ``after`` > 0 nothing is shown until that many seconds have passed (short work stays quiet)."""

    def __init__(self, label: str, total: int, stream=None, *, after: float = 0.0):
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = _is_tty(self.stream)
        self.t0 = time.monotonic()
        self.after = after
        self.last = 0.0
        self.step = max(1, total // 10)
        self.done = 0
        self.shown = False

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.t0 < self.after:
            return
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
            self.shown = True
        elif done == self.total or done % self.step == 0 or not self.shown:
            self.stream.write(f"  {self.label}: {done}/{self.total}\n")
            self.stream.flush()
            self.shown = True

    def close(self) -> None:
        if self.tty and self.total and self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[T], label: str, *, total: int | None = None, stream=None,
          after: float = 1.0) -> Iterator[T]:
    """Iterate ``items`` with a :class:`Progress` (shown once the work passes ``after`` seconds)."""
    if total is None:
        items = list(items)
        total = len(items)
    bar = Progress(label, total, stream, after=after)
    try:
        for n, item in enumerate(items, 1):
            yield item
            bar.update(n)
    finally:
        bar.close()


class Waiter:
    """The handle :func:`waiting` yields: ``note(text)`` shows the latest state next to the time."""

    def __init__(self, label: str, stream, after: float):
        self.label, self.stream, self.after = label, stream, after
        self.tty = _is_tty(stream)
        self.t0 = time.monotonic()
        self.state = ""
        self.shown = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"progress: {label}", daemon=True)

    def note(self, text: str) -> None:
        self.state = text

    def _line(self, spin: str = "") -> str:
        state = f" ({self.state})" if self.state else ""
        return f"  {self.label} {spin}{_elapsed(time.monotonic() - self.t0)}{state}"

    def _run(self) -> None:
        if self._stop.wait(self.after):
            return
        i = 0
        while True:
            with self._lock:
                if self._stop.is_set():
                    return
                if self.tty:
                    self.stream.write("\r" + self._line(SPIN[i % 4] + " ") + "\033[K")
                    self.stream.flush()
                elif not self.shown:
                    self.stream.write(f"  {self.label} ...\n")
                    self.stream.flush()
                self.shown = True
            i += 1
            if self._stop.wait(0.25):
                return

    def finish(self, outcome: str) -> None:
        self._stop.set()
        with self._lock:
            if self.shown:
                end = f"  {self.label}: {outcome} after {_elapsed(time.monotonic() - self.t0)}"
                self.stream.write(("\r" + end + "\033[K\n") if self.tty else end + "\n")
                self.stream.flush()
        self._thread.join(timeout=1)


@contextmanager
def waiting(label: str, *, stream=None, after: float = 1.0) -> Iterator[Waiter]:
    """Show ``label`` with the elapsed time while the block runs, once it has run ``after`` seconds."""
    w = Waiter(label, stream or sys.stderr, after)
    w._thread.start()
    try:
        yield w
    except BaseException:
        w.finish("failed")
        raise
    w.finish("done")
