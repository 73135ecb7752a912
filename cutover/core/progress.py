"""Progress on stderr for every wait over a second: the one helper cutover's commands use.

- :class:`Progress` -- work with a known size (bar, ``40/100``, elapsed): mass pause and resume,
  schedules verify over many ingestions, parity over many ingestions, imports.
- :func:`waiting` -- a wait of unknown length (spinner, label, elapsed, the latest state): a server
  starting, a flow run finishing, a lock. Nothing is printed if it ends within ``after`` seconds
  (default 1 s).
- :func:`track` -- an iterable with a :class:`Progress`.

On a terminal it is drawn with rich (``rich.progress``), transient: the live line disappears when
the work ends and one plain summary line stays (``label: 20/20 in 3s``, ``label: done after 12s``).
rich is imported only then, so a command that draws nothing (``cutover --help``) never loads it.
Into a pipe or file, a few plain lines instead (every 10 %, or the start and the end of a wait),
so logs stay short. stdout is never touched.

Callers: ``flows/local.py`` (server start), ``commands.migration.wait_flow_run`` (flow runs),
``checks/parity.py`` (parity over many ingestions), the importers (``legacy/*/importer.py``,
``legacy/cron/jobimport.py``), ``flows/incident.py`` (mass pause), ``schedules verify``, ``inventory``.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, TypeVar

T = TypeVar("T")
REFRESH_PER_SECOND = 8


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{seconds:.0f}s"


def _live(stream, columns_of, label: str, total: int | None, since: float, *, expand: bool = False,
          **fields) -> tuple[Any, Any]:
    """A started, transient ``rich.progress.Progress`` drawing ``label`` on ``stream`` (a terminal),
    its elapsed time counted from ``since`` (``time.monotonic()``); returns (progress, task id).
    Writes to sys.stderr meanwhile (``info`` lines) are printed above it; stdout is left alone."""
    from rich.console import Console
    from rich.progress import Progress as RichProgress

    console = Console(file=stream, force_terminal=True, highlight=False)
    bar = RichProgress(*columns_of(), console=console, transient=True, refresh_per_second=REFRESH_PER_SECOND,
                       redirect_stdout=False, redirect_stderr=stream is sys.stderr, expand=expand,
                       get_time=time.monotonic)
    task = bar.add_task(label, total=total, start=False, **fields)
    bar.tasks[0].start_time = since  # the work started before it was worth drawing
    bar.start()
    return bar, task


def _counted_columns():
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.table import Column

    return (TextColumn("  {task.description}", table_column=Column(no_wrap=True, overflow="ellipsis")),
            BarColumn(bar_width=30), MofNCompleteColumn(), TimeElapsedColumn())


def _spinner_columns():
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Column

    # fixed columns first: a long label or note is cut (…), the spinner and the time always show
    return (TextColumn(" "), SpinnerColumn(), TimeElapsedColumn(),
            TextColumn("{task.description} {task.fields[note]}",
                       table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)))


class Progress:
    """``label``, a bar, ``done/total`` and the elapsed time on stderr: drawn with rich on a
    terminal, a plain line every 10% otherwise. With ``after`` > 0 nothing is shown until that
    many seconds have passed (short work stays quiet)."""

    def __init__(self, label: str, total: int, stream=None, *, after: float = 0.0):
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = _is_tty(self.stream)
        self.t0 = time.monotonic()
        self.after = after
        self.step = max(1, total // 10)
        self.done = 0
        self.shown = False
        self._rich: Any = None
        self._task: Any = None

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.t0 < self.after:
            return
        if self.tty:
            if self._rich is None:
                if self.shown:  # closed already
                    return
                self._rich, self._task = _live(self.stream, _counted_columns, self.label, self.total or None, self.t0,
                                               completed=done)
                # a caller that never reaches close() (an exception mid-loop) must not leave the
                # terminal with a hidden cursor and a display still redrawing
                atexit.register(self.close)
                self.shown = True
            self._rich.update(self._task, completed=done)
        elif done == self.total or done % self.step == 0 or not self.shown:
            self.stream.write(f"  {self.label}: {done}/{self.total}\n")
            self.stream.flush()
            self.shown = True

    def close(self) -> None:
        if self._rich is not None:
            atexit.unregister(self.close)
            self._rich.stop()
            self._rich = None
            self.stream.write(f"  {self.label}: {self.done}/{self.total} in "
                              f"{_elapsed(time.monotonic() - self.t0)}\n")
            self.stream.flush()

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
    """The handle :func:`waiting` yields: ``note(text)`` shows the latest state next to the time;
    ``live`` says whether it is being drawn in place on a terminal (then a caller's own periodic
    "still waiting" lines are redundant)."""

    def __init__(self, label: str, stream, after: float, *, plain: bool = True):
        self.label, self.stream, self.after, self.plain = label, stream, after, plain
        self.tty = _is_tty(stream)
        self.t0 = time.monotonic()
        self.state = ""
        self.outcome = "done"  # the word of the summary line when the block ends normally ("COMPLETED")
        self.shown = False
        self._rich: Any = None
        self._task: Any = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"progress: {label}", daemon=True)

    @property
    def live(self) -> bool:
        return self._rich is not None

    def note(self, text: str) -> None:
        self.state = text
        with self._lock:
            if self._rich is not None:
                self._rich.update(self._task, note=self._note())

    def _note(self) -> str:
        return f"({self.state})" if self.state else ""

    def _run(self) -> None:
        if self._stop.wait(self.after):
            return
        with self._lock:
            if self._stop.is_set():
                return
            if self.tty:
                self._rich, self._task = _live(self.stream, _spinner_columns, self.label, None, self.t0,
                                               expand=True, note=self._note())
            elif self.plain:
                self.stream.write(f"  {self.label} ...\n")
                self.stream.flush()
            else:
                return
            self.shown = True

    def finish(self, outcome: str) -> None:
        self._stop.set()
        with self._lock:
            if self._rich is not None:
                self._rich.stop()
                self._rich = None
            if self.shown and self.plain:
                state = f" ({self.state})" if self.state and outcome in ("failed", "interrupted") else ""
                self.stream.write(f"  {self.label}: {outcome} after {_elapsed(time.monotonic() - self.t0)}{state}\n")
                self.stream.flush()
        self._thread.join(timeout=1)


@contextmanager
def waiting(label: str, *, stream=None, after: float = 1.0, plain: bool = True) -> Iterator[Waiter]:
    """Show ``label`` with the elapsed time while the block runs, once it has run ``after`` seconds.
    ``plain`` False: the caller prints its own lines (progress, the outcome): only the live display
    on a terminal, nothing else (``Waiter.live`` tells the caller when its periodic lines are redundant)."""
    w = Waiter(label, stream or sys.stderr, after, plain=plain)
    w._thread.start()
    try:
        yield w
    except Exception:
        w.finish("failed")
        raise
    except BaseException:
        w.finish("interrupted")
        raise
    w.finish(w.outcome)
