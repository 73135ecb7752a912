"""Backfill: a Prefect flow that ingests a date range chunk by chunk, resumably.

``backfill(ingestion_id, start, end, chunk="daily"|"weekly"|"monthly", mode="live")``

Semantics (one, for every ingestion -- a crontab/medallion pipeline's bronze step is a
file ingestion too):

- The range is ``start`` .. ``end``, both dates, both *included*, in the ingestion's
  timezone. Chunks are calendar days, weeks (Monday..Sunday) or months, clipped to the range.
- A file belongs to the chunk of its *date*: the first valid date in its file name
  (``events-2026-11-01T10.csv``, ``part_20261101.parquet``), else in its path below the
  source root (``dt=2026-11-01/part-0.csv``, ``2026/11/01/x.csv``), else its modification
  time in the ingestion's timezone. Files outside the range are never touched.
- Each chunk is one task and one run record (orchestrator ``prefect``, trigger
  ``backfill``, the given mode) processing the chunk's files through the legacy ingestion
  service -- claims, ledger, one Iceberg snapshot per file -- so a file already in the
  ledger (SUCCESS, by either side, any earlier run) is skipped: a backfill never
  duplicates a file, and running it twice is harmless.
- A chunk is ``done`` when every file of it is SUCCESS (or SKIPPED) in the ledger of that
  mode; ``failed`` otherwise (the failed files and reasons are kept); ``empty`` without files.
- Progress is recorded per chunk in ``$CUTOVER_HOME/backfill/<ingestion>.<mode>.json``
  (atomic writes under a file lock; one file per ingestion and mode, whatever the range).
  Running the same backfill again skips the chunks already ``done`` and retries the
  others: resumable after a crash or a failure. A FAILED file is retried by the ledger
  only when its content changed (fix the file) or after ``cutover ledger retry``.
- At the end the flow logs (and returns) a summary with the failed chunks; its final
  state is Failed when any chunk failed.

Run it in-process (``cutover backfill ID --start D --end D --local``) or on a worker
through the deployment ``cutover-backfill/backfill`` (created on demand; tags
``cutover-backfill``, not ``cutover``: it is not an ingestion deployment).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from cutover.core.autoloader.discovery import filesystem
from cutover.core.autoloader.service import Heartbeat, RunResult
from cutover.core.config import job_env
from cutover.core.errors import InputError
from cutover.core.osutil import atomic_write
from cutover.core.records import runs as R
from cutover.core.redact import redact_text
from cutover.core.shadowfork import ensure_fork
from flows.deploy import REPO_ROOT
from flows.ingest import workspace
from flows.local import ensure_work_pool

FLOW_NAME = "cutover-backfill"
DEPLOYMENT_NAME = "backfill"
ENTRYPOINT = "flows/backfill.py:backfill"
TAG = "cutover-backfill"
CHUNKS = ("daily", "weekly", "monthly")
DONE, FAILED, EMPTY, RUNNING = "done", "failed", "empty", "running"
_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})[-_/.]?(0[1-9]|1[0-2])[-_/.]?(0[1-9]|[12]\d|3[01])(?!\d)")


# -- chunks and file dates (no Prefect, no I/O) --------------------------------------------


def parse_date(value: str | date, what: str = "date") -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise InputError(f"{what} {value!r} is not a date", fix="write it as YYYY-MM-DD") from None


def chunk_ranges(start: date, end: date, chunk: str) -> list[tuple[date, date]]:
    """Calendar chunks [first, last] (both included) covering start..end, clipped to it."""
    if chunk not in CHUNKS:
        raise InputError(f"chunk {chunk!r} is not one of {', '.join(CHUNKS)}", fix="pass --chunk daily|weekly|monthly")
    if end < start:
        raise InputError(f"the range ends ({end}) before it starts ({start})", fix="swap --start and --end")
    out = []
    d = start
    while d <= end:
        if chunk == "daily":
            last = d
        elif chunk == "weekly":
            last = d + timedelta(days=6 - d.weekday())
        else:
            nxt = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
            last = nxt - timedelta(days=1)
        last = min(last, end)
        out.append((d, last))
        d = last + timedelta(days=1)
    return out


def chunk_key(first: date, last: date) -> str:
    return f"{first.isoformat()}..{last.isoformat()}"


def _valid(y: str, m: str, d: str) -> date | None:
    try:
        return date(int(y), int(m), int(d))
    except ValueError:
        return None


def file_date(path: str, root: str | None, mtime: float | None, tz: str) -> tuple[date | None, str]:
    """(the file's date, where it came from: name | path | mtime)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    for m in _DATE.finditer(name):
        d = _valid(*m.groups())
        if d:
            return d, "name"
    rel = path[len(root):] if root and path.startswith(root) else path
    found = [d for d in (_valid(*m.groups()) for m in _DATE.finditer(rel)) if d]
    if found:
        return found[-1], "path"
    if mtime is not None:
        return datetime.fromtimestamp(mtime, ZoneInfo(tz)).date(), "mtime"
    return None, "none"


@dataclass
class Chunk:
    first: date
    last: date
    files: list = field(default_factory=list)  # DiscoveredFile

    @property
    def key(self) -> str:
        return chunk_key(self.first, self.last)


def assign(files, chunks: list[Chunk], *, root: str | None, tz: str) -> tuple[list[Chunk], list[str]]:
    """Put each file in its chunk; returns (chunks, paths without a date)."""
    undated = []
    for f in files:
        d, _ = file_date(f.path, root, f.mtime, tz)
        if d is None:
            undated.append(f.path)
            continue
        for c in chunks:
            if c.first <= d <= c.last:
                c.files.append(f)
                break
    return chunks, undated


def plan(ws, ingestion_id: str, start, end, chunk: str = "daily") -> tuple[Any, list[Chunk], list[str]]:
    """(ingestion, chunks with their files, undated paths): discovery only, nothing written."""
    ing = ws.ingestions.get(ingestion_id)
    s, e = parse_date(start, "--start"), parse_date(end, "--end")
    chunks = [Chunk(a, b) for a, b in chunk_ranges(s, e, chunk)]
    files = ws.service.discover(ing)
    _, root = filesystem(ing.source_uri, ing.storage_options())
    return (ing, *assign(files, chunks, root=str(root).rstrip("/") + "/", tz=ing.schedule_timezone))


# -- progress ----------------------------------------------------------------------------------


class Progress:
    """Per-chunk progress of the backfills of one ingestion and mode: a JSON file in the workspace."""

    def __init__(self, settings, ingestion_id: str, mode: str):
        self.path = Path(settings.home) / "backfill" / f"{ingestion_id}.{mode}.json"
        self.ingestion_id, self.mode = ingestion_id, mode

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"ingestion_id": self.ingestion_id, "mode": self.mode, "chunks": {}}
        except ValueError:
            raise InputError(f"backfill progress {self.path} is not valid JSON",
                             fix="move it away to start the backfill over (the ledger still prevents duplicates)") from None
        data.setdefault("chunks", {})
        return data

    def chunks(self) -> dict[str, dict[str, Any]]:
        return self.read()["chunks"]

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def mark(self, key: str, **values: Any) -> dict[str, Any]:

        with self._locked():
            data = self.read()
            entry = {**data["chunks"].get(key, {}), **values, "updated_at": datetime.now(timezone.utc).isoformat()}
            data["chunks"][key] = entry
            atomic_write(self.path, json.dumps(data, indent=2, default=str) + "\n")
        return entry


# -- the flow ----------------------------------------------------------------------------------


def _workspace():
    return workspace()


def _chunk_outcome(ws, ing, mode: str, files) -> tuple[str, list[dict[str, str]]]:
    """done | failed, from the ledger state of the chunk's files (whoever processed them)."""
    entries = {e.path: e for e in ws.ledger(ing.id, mode).entries()}
    failed = []
    for f in files:
        e = entries.get(f.path)
        if e is None or e.status not in ("SUCCESS", "SKIPPED"):
            failed.append({"file": f.path, "status": e.status if e else "NOT PROCESSED",
                           "reason": (e.error if e else None) or "not processed"})
    return (FAILED if failed else DONE), failed


@task(name="backfill-chunk", task_run_name="chunk {key}", cache_policy=NO_CACHE, persist_result=False)
def run_chunk(ingestion_id: str, key: str, files: list, mode: str, flow_run_id: str | None) -> dict[str, Any]:
    """Ingest the chunk's pending files in one run record; record the chunk's outcome."""
    ws = _workspace()
    progress = Progress(ws.settings, ingestion_id, mode)
    ing = ws.ingestions.get(ingestion_id)
    if mode == "shadow":
        ensure_fork(ws, ing)
    progress.mark(key, status=RUNNING, files=len(files), flow_run_id=flow_run_id)
    run_id = ws.service.start_run(ing, orchestrator="prefect", mode=mode, trigger="backfill",
                                  external_id=flow_run_id, run_id=uuid.uuid4().hex)
    ledger = ws.ledger(ing.id, mode)
    hb = Heartbeat(ledger, ws.runs, run_id, interval=max(0.5, min(30.0, ws.settings.claim_timeout / 3)))
    hb.start()
    res = RunResult(run_id=run_id, ingestion_id=ing.id, status="RUNNING")
    error = None
    skipped = 0
    try:
        outcomes = ws.service.process_files(ing, ws.service.pending(ing, mode, files), run_id=run_id, mode=mode,
                                            orchestrator="prefect", result=res)  # in batches: one commit each
        skipped += sum(1 for o in outcomes.values() if o == "skipped")
    except Exception as e:  # noqa: BLE001 - recorded on the run and the chunk; the flow goes on
        error = redact_text(f"{type(e).__name__}: {e}".splitlines()[0])
        with contextlib.suppress(Exception):
            ledger.release(run_id)
    finally:
        hb.stop()
    ws.runs.add_skipped(run_id, skipped)
    rec = ws.service.finish_run(run_id, error=error)
    status, failed = _chunk_outcome(ws, ing, mode, files)
    if error:
        status = FAILED
    entry = progress.mark(key, status=status, files=len(files), processed=rec.files_processed,
                          records=rec.records_ingested, failed_files=failed, run_id=run_id, error=error)
    return {"key": key, **entry}


@flow(name=FLOW_NAME, flow_run_name="backfill-{ingestion_id}-{mode}-{start}-{end}-{chunk}", persist_result=False,
      validate_parameters=True)
def backfill(ingestion_id: str, start: str, end: str, chunk: str = "daily", mode: str = "live"):
    """Backfill start..end (dates, both included) chunk by chunk; skips chunks already done."""
    from prefect.runtime import flow_run

    if mode not in R.MODES:
        raise ValueError(f"mode must be one of {R.MODES}, got {mode!r}")
    logger = get_run_logger()
    ws = _workspace()
    ing, chunks, undated = plan(ws, ingestion_id, start, end, chunk)
    progress = Progress(ws.settings, ingestion_id, mode)
    before = progress.chunks()
    summary: dict[str, Any] = {"ingestion_id": ingestion_id, "mode": mode, "start": str(start), "end": str(end),
                               "chunk": chunk, "chunks": len(chunks), "done": 0, "skipped": 0, "empty": 0,
                               "failed": 0, "failed_chunks": [], "undated_files": undated[:20],
                               "progress_file": str(progress.path), "flow_run_id": flow_run.id}
    for c in chunks:
        if before.get(c.key, {}).get("status") in (DONE, EMPTY):
            summary["skipped"] += 1
            logger.info("chunk %s: already done, skipped", c.key)
            continue
        if not c.files:
            progress.mark(c.key, status=EMPTY, files=0)
            summary["empty"] += 1
            continue
        state = run_chunk(ingestion_id, c.key, c.files, mode, flow_run.id, return_state=True)
        if state.is_completed():
            out = state.result()
        else:  # the task itself crashed: the chunk stays failed, the flow goes on
            msg = state.message or state.type.value
            out = progress.mark(c.key, status=FAILED, error=msg, files=len(c.files))
        if out.get("status") == DONE:
            summary["done"] += 1
            logger.info("chunk %s: done (%s file(s), %s record(s))", c.key, out.get("processed"), out.get("records"))
        else:
            summary["failed"] += 1
            summary["failed_chunks"].append({"chunk": c.key, "error": out.get("error"),
                                             "failed_files": out.get("failed_files") or []})
            logger.warning("chunk %s: FAILED (%s)", c.key, out.get("error") or
                           f"{len(out.get('failed_files') or [])} file(s) not ingested")
    text = format_summary(summary)
    for line in text.splitlines():
        logger.info(line)
    if summary["failed"]:
        return Failed(message=f"{summary['failed']} chunk(s) failed: "
                              f"{', '.join(c['chunk'] for c in summary['failed_chunks'])}", data=summary)
    return summary


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"backfill {s['ingestion_id']} ({s['mode']}) {s['start']}..{s['end']} {s['chunk']}: {s['chunks']} chunk(s): "
             f"{s['done']} done, {s['skipped']} already done (skipped), {s['empty']} empty, {s['failed']} failed"]
    for c in s["failed_chunks"]:
        lines.append(f"  FAILED chunk {c['chunk']}: {c.get('error') or ''}".rstrip())
        for f in c["failed_files"][:10]:
            lines.append(f"    {f['file']}: {f['status']} {f.get('reason') or ''}".rstrip())
    if s.get("undated_files"):
        lines.append(f"  {len(s['undated_files'])} file(s) without a date were left out, e.g. {s['undated_files'][0]}")
    if s["failed"]:
        lines.append(f"  fix the files (or `cutover ledger retry`), then run the same backfill again: "
                     f"done chunks are skipped (progress: {s['progress_file']})")
    return "\n".join(lines)


def status_of_range(progress: Progress, start, end, chunk: str) -> list[dict[str, Any]]:
    """The recorded status of every chunk of start..end (``pending`` when never run)."""
    recorded = progress.chunks()
    out = []
    for a, b in chunk_ranges(parse_date(start, "--start"), parse_date(end, "--end"), chunk):
        key = chunk_key(a, b)
        out.append({"chunk": key, "status": "pending", **recorded.get(key, {})})
    return out


# -- the deployment (worker runs) --------------------------------------------------------------


def ensure_deployment(client, ws) -> str:
    """Create or update the deployment cutover-backfill/backfill (idempotent upsert); returns its id."""
    from prefect.utilities.callables import parameter_schema

    ensure_work_pool(str(client.api_url).rstrip("/"), ws.settings.prefect_work_pool)
    flow_id = client.create_flow_from_name(FLOW_NAME)
    env, _ = job_env(ws.settings)
    dep_id = client.create_deployment(
        flow_id=flow_id, name=DEPLOYMENT_NAME, work_pool_name=ws.settings.prefect_work_pool, work_queue_name="default",
        tags=[TAG], parameters={}, entrypoint=ENTRYPOINT,
        pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}],
        job_variables={"env": env}, parameter_openapi_schema=parameter_schema(backfill).model_dump(exclude_unset=True),
        enforce_parameter_schema=True, description="cutover: backfill a date range of an ingestion, chunk by chunk")
    return str(dep_id)


def submit(client, ws, ingestion, *, start: str, end: str, chunk: str, mode: str) -> str:
    """A flow run of the backfill deployment on the ingestion's work queue; returns its id."""
    dep_id = ensure_deployment(client, ws)
    fr = client.create_flow_run_from_deployment(
        dep_id, parameters={"ingestion_id": ingestion.id, "start": start, "end": end, "chunk": chunk, "mode": mode},
        tags=[TAG, f"ingestion:{ingestion.id}"], work_queue_name=ingestion.work_queue)
    return str(fr.id)


if __name__ == "__main__":  # pragma: no cover - python flows/backfill.py ID START END [CHUNK]
    import sys

    print(backfill(*sys.argv[1:5]))
