"""ledger retry: re-queue FAILED files so that the next run retries them.

A FAILED file is retried on its own only when its content changes (size or etag). When the
cause was elsewhere — a schema fixed in the table, a credential renewed, a reader option
corrected — `cutover ledger retry ID (--file PATH … | --status FAILED)` re-queues it: the row
stays FAILED (with its error and attempts) until the next run of that namespace takes it over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cutover.commands.result import Result
from cutover.core.errors import InputError, NotFound
from cutover.core.records.ledger import FAILED, NAMESPACES
from cutover.core.state import audit, lock
from cutover.core.workspace import Workspace


@dataclass
class Retry(Result):
    ingestion_id: str
    namespace: str
    files: list[str] = field(default_factory=list)  # the FAILED files re-queued (or that would be)
    already_queued: int = 0  # of them, re-queued before and not yet retried
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {"ingestion": self.ingestion_id, "namespace": self.namespace, "dry_run": self.dry_run,
                "files": self.files, "count": len(self.files), "already_queued": self.already_queued}


def _ledger_path(given: str, known: dict) -> str:
    if given in known:
        return given
    if "://" not in given:
        p = Path(given).expanduser()
        for candidate in (str(p.absolute()), str(p.resolve())):
            if candidate in known:
                return candidate
    return given


def ledger_retry(ws: Workspace, ingestion_id: str, *, files=(), status: str | None = None, namespace: str = "live",
                 dry_run: bool = False, reason: str = "") -> Retry:
    """Re-queue the named FAILED files (or every FAILED file with ``status="FAILED"``) of one
    ingestion and namespace, behind the operator lock, recorded in the audit log."""
    files = list(files)
    if bool(files) == bool(status):
        raise InputError("name the files to retry with --file PATH (one or more), or all FAILED ones with --status FAILED",
                         fix=f"e.g. cutover ledger retry {ingestion_id} --status FAILED")
    if status and status.upper() != FAILED:
        raise InputError(f"--status {status}: only FAILED files are retried", fix="use --status FAILED")
    if namespace not in NAMESPACES:
        raise InputError(f"--namespace {namespace!r} is not one of {', '.join(NAMESPACES)}", fix="use live or shadow")
    ws.ingestions.get(ingestion_id)
    led = ws.ledger(ingestion_id, namespace)
    if files:
        entries = {e.path: e for e in led.entries()}
        chosen = []
        for f in files:
            path = _ledger_path(f, entries)
            e = entries.get(path)
            if e is None:
                raise NotFound(f"{f} is not in the {namespace} ledger of {ingestion_id}",
                               fix=f"give a path as `cutover ledger {ingestion_id} --status FAILED` lists it")
            if e.status != FAILED:
                raise InputError(f"{e.path} is {e.status}, not FAILED: only FAILED files are retried",
                                 fix=f"see `cutover ledger {ingestion_id} --status FAILED`")
            chosen.append(e)
    else:
        chosen = led.entries(status=FAILED)
    res = Retry(ingestion_id, namespace, [e.path for e in chosen], sum(1 for e in chosen if e.retry_queued), dry_run)
    if dry_run or not chosen:
        return res
    with lock.locked(ws.state_engine, f"ledger retry {ingestion_id}"):
        led.requeue_failed(res.files)
        audit.record(ws.state_engine, "ledger-retry", target=ingestion_id, reason=reason or None,
                     detail={"namespace": namespace, "count": len(res.files), "files": res.files[:100]})
    return res
