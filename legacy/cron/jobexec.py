"""`cutover cron exec --job ID -- CMD ...`: run one crontab command and record the run (issue #15).

A wrapper in the manner of ``runitor`` or ``cronitor exec``: `cutover cron import` puts it around
each adopted line (``legacy.cron.generic``), so cron keeps running the team's command exactly as
before -- same stdin (the ``%`` part of the line), same stdout/stderr (passed through, so cron's
mail and the line's redirections see the same bytes), same exit code -- and cutover gets:

- a start record (status RUNNING, the wrapper's pid, the command redacted) before the command runs;
- an end record: exit code, signal (killed), duration, the last :data:`TAIL_BYTES` of the output
  with secrets masked, status SUCCESS when the exit code is one of the job's ``ok_exit_codes``
  (default 0), else FAILED.

A wrapper killed with SIGKILL leaves the start without an end: readers show that run CRASHED once
its process is gone (``cutover.core.records.jobruns.effective_status``). SIGTERM/SIGINT/SIGHUP are
passed on to the command and its end is recorded with the signal.

The records store being unreachable never stops the team's command: the wrapper says so on
stderr (one line, no secret) and runs it anyway, with the command's own exit code.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from collections import deque
from typing import Sequence

from cutover.core.records.jobruns import FAILED, SUCCESS, JobRunStore, redact_output, secret_values, tail

TAIL_BYTES = 4096
_FORWARD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Tail:
    """The last bytes of a stream, kept while the bytes are passed through."""

    def __init__(self, limit: int):
        self.limit = limit
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.lock = threading.Lock()

    def add(self, b: bytes) -> None:
        with self.lock:
            self.chunks.append(b)
            self.size += len(b)
            while self.size - len(self.chunks[0]) >= self.limit and len(self.chunks) > 1:
                self.size -= len(self.chunks.popleft())

    def bytes(self) -> bytes:
        with self.lock:
            return b"".join(self.chunks)


def _pump(src, dst, keep: _Tail) -> None:
    fd = src.fileno()
    while True:
        try:
            b = os.read(fd, 65536)
        except OSError:
            break
        if not b:
            break
        keep.add(b)
        try:
            dst.write(b)
            dst.flush()
        except (OSError, ValueError):
            pass


def open_records(settings):
    """The records store's engine for a run: the tables are checked, not migrated, when they are
    there (cron starts a wrapper per run: no alembic on that path); a workspace without them is
    brought to head first (``cutover.core.db.ensure_schema``)."""
    from sqlalchemy import inspect

    from cutover.core.db import ensure_schema, get_engine

    engine = get_engine(settings.autoloader_url)
    with engine.connect() as conn:
        ready = inspect(conn).has_table("job_run_output")
    if not ready:
        ensure_schema(settings)
    return engine


def _store(ws):
    try:
        return JobRunStore(ws.autoloader_engine)
    except Exception as e:  # noqa: BLE001 - the command runs anyway
        _warn(f"cannot open the records store ({type(e).__name__}): this run is not recorded")
        return None


def _warn(msg: str) -> None:
    try:
        sys.stderr.write(f"cutover cron exec: {redact_output(msg)}\n")
        sys.stderr.flush()
    except OSError:
        pass


def run_and_record(ws, job_id: str, argv: Sequence[str], *, trigger: str = "scheduled", run_id: str | None = None,
                   tail_bytes: int = TAIL_BYTES, stdout=None, stderr=None) -> int:
    """Run ``argv`` (stdin inherited, stdout/stderr passed through and kept) with a start and an end
    record for job ``job_id``; returns the exit code to exit with (128+N when killed by signal N).
    ``ws``: anything with ``autoloader_engine`` and ``jobs`` (a Workspace, or :class:`Records`)."""
    stdout = stdout or sys.stdout.buffer
    stderr = stderr or sys.stderr.buffer
    ok_codes, secrets = (0,), list(secret_values(dict(os.environ)))
    store = _store(ws)
    job = None
    if store is not None:
        try:
            job = ws.jobs.find(job_id)
        except Exception as e:  # noqa: BLE001
            _warn(f"cannot read job {job_id} ({type(e).__name__}): this run is not recorded")
            store = None
    if job is not None:
        ok_codes = job.ok_exit_codes
        secrets += secret_values(job.env)
    shown = redact_output(shlex.join(argv), secrets)
    wanted, run_id = run_id, None
    if store is not None:
        try:
            run_id = store.start(job_id, trigger=trigger, command=shown[:2000], run_id=wanted)
        except Exception as e:  # noqa: BLE001
            _warn(f"cannot record the start of job {job_id} ({type(e).__name__}): running it unrecorded")
    keep = _Tail(tail_bytes)
    try:
        proc = subprocess.Popen(list(argv), stdin=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        msg = f"cannot start {argv[0]!r}: {e.strerror}"
        _warn(msg)
        if store is not None and run_id is not None:
            store.finish(run_id, FAILED, exit_code=127, output_tail=redact_output(msg, secrets), error=msg)
        return 127

    previous = {}

    def forward(signum, _frame):
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    for s in _FORWARD:
        try:
            previous[s] = signal.signal(s, forward)
        except ValueError:  # not the main thread
            pass
    threads = [threading.Thread(target=_pump, args=(proc.stdout, stdout, keep), daemon=True),
               threading.Thread(target=_pump, args=(proc.stderr, stderr, keep), daemon=True)]
    for t in threads:
        t.start()
    try:
        rc = proc.wait()
        for t in threads:
            t.join()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    sig = -rc if rc < 0 else None
    code = 128 + sig if sig is not None else rc
    status = SUCCESS if sig is None and rc in ok_codes else FAILED
    error = None
    if sig is not None:
        error = f"killed by signal {signal.Signals(sig).name}" if sig in signal.Signals._value2member_map_ else f"killed by signal {sig}"
    elif status == FAILED:
        error = f"exit code {rc} (accepted: {', '.join(str(c) for c in ok_codes)})"
    if store is not None and run_id is not None:
        try:
            store.finish(run_id, status, exit_code=None if sig is not None else rc, signal=sig,
                         output_tail=redact_output(tail(keep.bytes(), tail_bytes), secrets), error=error)
        except Exception as e:  # noqa: BLE001
            _warn(f"cannot record the end of job {job_id} ({type(e).__name__})")
    return code


class Records:
    """What a run needs of a workspace (the records store only), without opening the rest of it."""

    def __init__(self, settings):
        from cutover.core.records.jobs import JobRepo

        self.autoloader_engine = open_records(settings)
        self.jobs = JobRepo(self.autoloader_engine)
