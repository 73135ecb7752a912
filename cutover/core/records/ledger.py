"""The processed-file ledger: the fence that makes every file count exactly once.

Key: (ingestion id, namespace ``live``|``shadow``, path), unique. A run claims a
file before it reads it, by a unique insert (or by taking over a row whose
state allows it) inside a transaction that serializes claimers:

- PostgreSQL: ``INSERT .. ON CONFLICT DO NOTHING`` and, for an existing row,
  ``SELECT .. FOR UPDATE SKIP LOCKED`` (a row another claimer is deciding on is
  skipped, never waited for);
- SQLite: ``BEGIN IMMEDIATE`` (one writer at a time) and the same unique key.

A claim is held while its run heartbeats; a claim whose ``claimed_at`` is
older than the claim timeout belongs to a dead run and may be taken over.
Completion is conditional on still holding the claim, so a run that lost its
claim cannot mark the file.

Fencing (issue #17): every takeover bumps the row's ``fence`` token, and the
claim carries the token it got. A batch commit re-checks its claims' tokens
(:meth:`Ledger.check_held`) in its commit path -- before its first attempt and in
every retry, pyiceberg's own included -- after loading the table state the attempt
commits against. The run that takes over a staged claim first moves the branch
head (a fence snapshot, ``cutover.core.icebatch.fence_branch``) and only then
looks for the dead run's batch. So a run frozen past its claim timeout either
committed before the fence snapshot (then the taker finds its batch and settles
the file from it) or commits against a head the fence snapshot moved: its
attempt fails on Iceberg's ref assertion, the retry re-checks the token, and it
stops with :class:`ClaimLost`. Never both appends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from sqlalchemy import Engine, and_, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cutover.core.db import write_tx
from cutover.core.validate import clean_message
from cutover.core.autoloader.discovery import DiscoveredFile
from cutover.core.records.tables import processed_files as t_pf
from cutover.core.records.tables import runs as t_runs

PROCESSING = "PROCESSING"
SUCCESS = "SUCCESS"
FAILED = "FAILED"
SKIPPED = "SKIPPED"
STATUSES = (PROCESSING, SUCCESS, FAILED, SKIPPED)
# The etag of a FAILED file re-queued by `cutover ledger retry`: it matches no real file's etag,
# so the next run takes the file over as if its content had changed (the row keeps its error and
# attempts until then).
RETRY_ETAG = "cutover:retry"
NAMESPACES = ("live", "shadow")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)  # SQLite drops the offset; we only ever store UTC
    return dt


class ClaimLost(Exception):
    """The claim was taken over (the run was considered dead); do not mark the file."""


@dataclass(frozen=True)
class Claim:
    row_id: int
    file: DiscoveredFile
    run_id: str
    previous_status: str | None  # None: new row; PROCESSING: taken over from a dead run
    previous_run: str | None
    # the dead run's intent, when it had staged the file in a batch before dying
    previous_batch: str | None = None
    previous_data_files: tuple[str, ...] = ()
    fence: int = 0  # the row's fencing token when this claim was got (bumped by every takeover)


@dataclass(frozen=True)
class LedgerEntry:
    ingestion_id: str
    namespace: str
    path: str
    status: str
    size: int | None
    etag: str | None
    run_id: str | None
    records_ingested: int | None
    bytes_read: int | None
    error: str | None
    snapshot_id: int | None
    attempts: int
    claimed_at: datetime | None
    claimed_by: str | None
    processed_at: datetime | None
    batch_id: str | None = None
    data_files: list[str] | None = None
    fence: int = 0

    @property
    def retry_queued(self) -> bool:
        """A FAILED file re-queued by `cutover ledger retry`, not yet retried."""
        return self.status == FAILED and self.etag == RETRY_ETAG

    def as_dict(self) -> dict:
        d = self.__dict__.copy()
        for k in ("claimed_at", "processed_at"):
            d[k] = d[k].isoformat() if d[k] else None
        d["retry_queued"] = self.retry_queued
        return d


def _entry(row) -> LedgerEntry:
    return LedgerEntry(
        ingestion_id=row.ingestion_id, namespace=row.namespace, path=row.path, status=row.status,
        size=row.size, etag=row.etag, run_id=row.run_id, records_ingested=row.records_ingested,
        bytes_read=row.bytes_read, error=row.error, snapshot_id=row.snapshot_id, batch_id=row.batch_id,
        data_files=list(row.data_files) if row.data_files else None, attempts=row.attempts,
        claimed_at=_aware(row.claimed_at), claimed_by=row.claimed_by, processed_at=_aware(row.processed_at),
        fence=int(getattr(row, "fence", 0) or 0),
    )


class Ledger:
    def __init__(self, engine: Engine, ingestion_id: str, namespace: str, *, claim_timeout: float):
        if namespace not in NAMESPACES:
            raise ValueError(f"namespace must be one of {NAMESPACES}")
        self.engine = engine
        self.ingestion_id = ingestion_id
        self.namespace = namespace
        self.claim_timeout = claim_timeout
        self._pg = engine.dialect.name == "postgresql"

    def _key(self):
        return and_(t_pf.c.ingestion_id == self.ingestion_id, t_pf.c.namespace == self.namespace)

    # -- reading ---------------------------------------------------------------------
    def entries(self, *, status: str | None = None, since: datetime | None = None) -> list[LedgerEntry]:
        q = select(t_pf).where(self._key()).order_by(t_pf.c.path)
        if status:
            q = q.where(t_pf.c.status == status)
        if since is not None:
            q = q.where(t_pf.c.processed_at >= (since.astimezone(timezone.utc) if since.tzinfo else since))
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(q)]

    def counts(self) -> dict[str, int]:
        q = select(t_pf.c.status, func.count()).where(self._key()).group_by(t_pf.c.status)
        with self.engine.connect() as conn:
            return {s: n for s, n in conn.execute(q)}

    def is_stale(self, claimed_at: datetime | None, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return claimed_at is None or _aware(claimed_at) < now - timedelta(seconds=self.claim_timeout)

    def diff(self, files: Iterable[DiscoveredFile]) -> list[DiscoveredFile]:
        """The discovered files this ingestion still has to process, in path order.

        New files; FAILED files whose content changed since (size/etag); claims of
        dead runs. SUCCESS and SKIPPED files are done; a FAILED file that did not
        change is not retried (fix the file, or `cutover ledger retry`).
        """
        with self.engine.connect() as conn:
            known = {r.path: r for r in conn.execute(
                select(t_pf.c.path, t_pf.c.status, t_pf.c.size, t_pf.c.etag, t_pf.c.claimed_at).where(self._key()))}
        now = utcnow()
        out = []
        for f in files:
            row = known.get(f.path)
            if row is None:
                out.append(f)
            elif row.status == FAILED and (row.size, row.etag) != (f.size, f.etag):
                out.append(f)
            elif row.status == PROCESSING and self.is_stale(row.claimed_at, now):
                out.append(f)
        return out

    def requeue_failed(self, paths: Iterable[str]) -> int:
        """Re-queue FAILED files: the next run retries them even if their content did not change.
        Only FAILED rows change (a row claimed or completed meanwhile is left alone); returns how
        many rows were re-queued (already re-queued ones count again: re-running converges)."""
        paths = list(paths)
        n = 0
        with write_tx(self.engine) as conn:
            for i in range(0, len(paths), 500):
                res = conn.execute(update(t_pf).where(self._key(), t_pf.c.status == FAILED,
                                                      t_pf.c.path.in_(paths[i:i + 500])).values(etag=RETRY_ETAG))
                n += res.rowcount
        return n

    def stale_claims(self) -> list[LedgerEntry]:
        cutoff = utcnow() - timedelta(seconds=self.claim_timeout)
        q = select(t_pf).where(self._key(), t_pf.c.status == PROCESSING, t_pf.c.claimed_at < cutoff)
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(q)]

    # -- claiming --------------------------------------------------------------------
    def claim(self, f: DiscoveredFile, run_id: str) -> Claim | None:
        """Claim one file for ``run_id``; None when someone else holds or finished it."""
        now = utcnow()
        with write_tx(self.engine) as conn:
            values = dict(ingestion_id=self.ingestion_id, namespace=self.namespace, path=f.path, size=f.size,
                          etag=f.etag, mtime=f.mtime, status=PROCESSING, run_id=run_id, attempts=1,
                          claimed_at=now, claimed_by=run_id)
            ins = (postgresql.insert(t_pf) if self._pg else sqlite.insert(t_pf)).values(**values)
            ins = ins.on_conflict_do_nothing(index_elements=["ingestion_id", "namespace", "path"]).returning(t_pf.c.id)
            new_id = conn.execute(ins).scalar()
            if new_id is not None:
                return Claim(new_id, f, run_id, None, None)
            q = select(t_pf).where(self._key(), t_pf.c.path == f.path)
            if self._pg:
                q = q.with_for_update(skip_locked=True)
            row = conn.execute(q).first()
            if row is None:  # locked by a concurrent claimer (PostgreSQL): theirs
                return None
            takeover = (
                (row.status == PROCESSING and self.is_stale(row.claimed_at, now))
                or (row.status == FAILED and (row.size, row.etag) != (f.size, f.etag))
            )
            if not takeover:
                return None
            conn.execute(update(t_pf).where(t_pf.c.id == row.id).values(
                status=PROCESSING, run_id=run_id, claimed_at=now, claimed_by=run_id, size=f.size, etag=f.etag,
                mtime=f.mtime, attempts=row.attempts + 1, error=None, fence=row.fence + 1))
            return Claim(row.id, f, run_id, row.status, row.claimed_by,
                         previous_batch=row.batch_id if row.status == PROCESSING else None,
                         previous_data_files=tuple(row.data_files or ()) if row.status == PROCESSING else (),
                         fence=row.fence + 1)

    def claim_many(self, files: Iterable[DiscoveredFile], run_id: str) -> list[Claim]:
        """:meth:`claim` for several files in one transaction (a batch's claims); the ones not got are left out."""
        files = list(files)
        if not files:
            return []
        now = utcnow()
        out: list[Claim] = []
        with write_tx(self.engine) as conn:
            paths = [f.path for f in files]
            existing = {}
            for i in range(0, len(paths), 500):
                q = select(t_pf).where(self._key(), t_pf.c.path.in_(paths[i:i + 500]))
                if self._pg:
                    q = q.with_for_update(skip_locked=True)
                existing.update({r.path: r for r in conn.execute(q)})
            new = [f for f in files if f.path not in existing]
            if new:
                ins = (postgresql.insert(t_pf) if self._pg else sqlite.insert(t_pf))
                ins = ins.on_conflict_do_nothing(index_elements=["ingestion_id", "namespace", "path"]).returning(
                    t_pf.c.id, t_pf.c.path)
                got = {}
                for i in range(0, len(new), 200):
                    chunk = new[i:i + 200]
                    rows = conn.execute(ins.values([dict(
                        ingestion_id=self.ingestion_id, namespace=self.namespace, path=f.path, size=f.size,
                        etag=f.etag, mtime=f.mtime, status=PROCESSING, run_id=run_id, attempts=1,
                        claimed_at=now, claimed_by=run_id) for f in chunk])).all()
                    got.update({r.path: r.id for r in rows})
            else:
                got = {}
            for f in files:
                if f.path in got:
                    out.append(Claim(got[f.path], f, run_id, None, None))
                    continue
                row = existing.get(f.path)
                if row is None:  # inserted (or locked) concurrently by another claimer: theirs
                    continue
                takeover = (
                    (row.status == PROCESSING and self.is_stale(row.claimed_at, now))
                    or (row.status == FAILED and (row.size, row.etag) != (f.size, f.etag))
                )
                if not takeover:
                    continue
                res = conn.execute(update(t_pf).where(
                    t_pf.c.id == row.id, t_pf.c.status == row.status,
                    t_pf.c.claimed_by.is_(None) if row.claimed_by is None else t_pf.c.claimed_by == row.claimed_by,
                    t_pf.c.fence == row.fence,
                ).values(status=PROCESSING, run_id=run_id, claimed_at=now, claimed_by=run_id, size=f.size,
                         etag=f.etag, mtime=f.mtime, attempts=row.attempts + 1, error=None, fence=row.fence + 1))
                # The dead run's intent (batch id, data files) stays on the row until this run
                # stages its own: if this run dies before settling it, the next one still knows
                # which batch to look for.
                if res.rowcount != 1:
                    continue
                out.append(Claim(row.id, f, run_id, row.status, row.claimed_by,
                                 previous_batch=row.batch_id if row.status == PROCESSING else None,
                                 previous_data_files=tuple(row.data_files or ()) if row.status == PROCESSING else (),
                                 fence=row.fence + 1))
        return out

    def heartbeat(self, run_id: str) -> int:
        """Refresh every claim ``run_id`` holds; returns how many it still holds."""
        with write_tx(self.engine) as conn:
            res = conn.execute(update(t_pf).where(t_pf.c.claimed_by == run_id, t_pf.c.status == PROCESSING)
                               .values(claimed_at=utcnow()))
            return res.rowcount

    def holds(self, claim: Claim) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(select(t_pf.c.status, t_pf.c.claimed_by).where(t_pf.c.id == claim.row_id)).first()
        return row is not None and row.status == PROCESSING and row.claimed_by == claim.run_id

    # -- completing ------------------------------------------------------------------
    def complete(self, claim: Claim, *, records: int, bytes_read: int, snapshot_id: int | None,
                 run_id_for_metrics: str | None = None, batch_id: str | None = None,
                 data_files: list[str] | None = None) -> None:
        """Mark SUCCESS (and count it on the run) in one transaction, if the claim is still ours."""
        self._finish(claim, SUCCESS, records=records, bytes_read=bytes_read, snapshot_id=snapshot_id,
                     error=None, metrics_run=run_id_for_metrics or claim.run_id, batch_id=batch_id,
                     data_files=data_files)

    def _lock_held(self, conn, claims: list[Claim], *, lock: bool = True) -> None:
        """Raise :class:`ClaimLost` unless every claim is still held by its run with the fencing
        token it got (inside a write transaction with ``lock``: the rows locked on PostgreSQL;
        SQLite's write lock is already ours)."""
        held: dict[int, tuple[str | None, int]] = {}
        ids = [c.row_id for c in claims]
        runs = {c.run_id for c in claims}
        for i in range(0, len(ids), 500):
            q = select(t_pf.c.id, t_pf.c.claimed_by, t_pf.c.fence).where(
                t_pf.c.id.in_(ids[i:i + 500]), t_pf.c.claimed_by.in_(runs), t_pf.c.status == PROCESSING)
            if self._pg and lock:
                q = q.with_for_update()
            held.update({r.id: (r.claimed_by, int(r.fence or 0)) for r in conn.execute(q)})
        lost = [c for c in claims if held.get(c.row_id) != (c.run_id, c.fence)]
        if lost:
            raise ClaimLost(f"claim on {lost[0].file.path} was taken over"
                            + (f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""))

    def check_held(self, claims: Iterable[Claim]) -> None:
        """The fence of a commit attempt: raise :class:`ClaimLost` unless every claim is still held
        with its fencing token. Called after the attempt's table state is loaded (see the module
        doc for why a plain read suffices there)."""
        claims = list(claims)
        if claims:
            with self.engine.connect() as conn:
                self._lock_held(conn, claims, lock=False)

    def stage(self, batch_id: str, staged: Iterable[tuple[Claim, list[str], int]]) -> None:
        """Write a batch's intent before its Iceberg commit: per claimed file, the batch id,
        its data file paths and records. Also the fence: raises :class:`ClaimLost` (and
        writes nothing) unless every claim is still held by its run."""
        staged = list(staged)
        if not staged:
            return
        stmt = update(t_pf).where(t_pf.c.id == bindparam("rid")).values(
            batch_id=batch_id, data_files=bindparam("dfs", type_=t_pf.c.data_files.type),
            records_ingested=bindparam("recs"))
        with write_tx(self.engine) as conn:
            self._lock_held(conn, [c for c, _, _ in staged])
            conn.execute(stmt, [dict(rid=c.row_id, dfs=list(d), recs=n) for c, d, n in staged])

    def complete_many(self, done: Iterable[tuple[Claim, int, int]], *, snapshot_id: int | None,
                      run_id_for_metrics: str | None = None) -> None:
        """Mark a committed batch SUCCESS ((claim, records, bytes) each) and count it on the run, in one
        transaction; raises :class:`ClaimLost` (changing nothing) if any claim was taken over."""
        done = list(done)
        if not done:
            return
        now = utcnow()
        metrics_run = run_id_for_metrics or done[0][0].run_id
        stmt = update(t_pf).where(t_pf.c.id == bindparam("rid")).values(
            status=SUCCESS, run_id=metrics_run, records_ingested=bindparam("recs"), bytes_read=bindparam("nbytes"),
            snapshot_id=snapshot_id, error=None, processed_at=now, claimed_at=None, claimed_by=None)
        with write_tx(self.engine) as conn:
            self._lock_held(conn, [c for c, _, _ in done])
            conn.execute(stmt, [dict(rid=c.row_id, recs=n, nbytes=b) for c, n, b in done])
            conn.execute(update(t_runs).where(t_runs.c.id == metrics_run).values(
                heartbeat_at=now, files_processed=t_runs.c.files_processed + len(done),
                records_ingested=t_runs.c.records_ingested + sum(r for _, r, _ in done),
                bytes_read=t_runs.c.bytes_read + sum(b for _, _, b in done)))

    def fail(self, claim: Claim, reason: str, *, bytes_read: int | None = None) -> None:
        """Mark FAILED with ``reason`` (one line, control bytes escaped, at most 500 characters)."""
        self._finish(claim, FAILED, records=0, bytes_read=bytes_read or 0, snapshot_id=None,
                     error=clean_message(reason, 500),
                     metrics_run=claim.run_id)

    def _finish(self, claim: Claim, status: str, *, records: int, bytes_read: int, snapshot_id, error,
                metrics_run: str, batch_id: str | None = None, data_files: list[str] | None = None) -> None:
        now = utcnow()
        extra = {}
        if batch_id is not None:
            extra = dict(batch_id=batch_id, data_files=list(data_files or []))
        elif status == FAILED:  # a dead run's intent (taken over, never landed) means nothing now
            extra = dict(batch_id=None, data_files=None)
        with write_tx(self.engine) as conn:
            res = conn.execute(
                update(t_pf)
                .where(t_pf.c.id == claim.row_id, t_pf.c.claimed_by == claim.run_id, t_pf.c.status == PROCESSING,
                       t_pf.c.fence == claim.fence)
                .values(status=status, run_id=metrics_run, records_ingested=records, bytes_read=bytes_read,
                        snapshot_id=snapshot_id, error=error, processed_at=now, claimed_at=None, claimed_by=None,
                        **extra)
            )
            if res.rowcount != 1:
                raise ClaimLost(f"claim on {claim.file.path} was taken over")
            if status == SUCCESS:
                vals = dict(files_processed=t_runs.c.files_processed + 1,
                            records_ingested=t_runs.c.records_ingested + records,
                            bytes_read=t_runs.c.bytes_read + bytes_read)
            else:
                vals = dict(files_failed=t_runs.c.files_failed + 1, bytes_read=t_runs.c.bytes_read + bytes_read)
            conn.execute(update(t_runs).where(t_runs.c.id == metrics_run).values(heartbeat_at=now, **vals))

    def release(self, run_id: str) -> int:
        """Drop every claim ``run_id`` still holds and has not staged: the files become new again.

        A staged claim (batch id + data files written before the commit) is kept: its batch may
        have committed, and the row is the evidence recovery needs. It is settled by the run
        that takes it over once it is stale."""
        with write_tx(self.engine) as conn:
            res = conn.execute(delete(t_pf).where(
                t_pf.c.claimed_by == run_id, t_pf.c.status == PROCESSING, t_pf.c.ingestion_id == self.ingestion_id,
                t_pf.c.namespace == self.namespace, t_pf.c.batch_id.is_(None)))
            return res.rowcount

    def release_batch(self, run_id: str, batch_id: str) -> int:
        """Drop ``run_id``'s staged claims of ``batch_id``: only once the caller knows that batch was
        not committed (its own commit failed or was interrupted before it landed)."""
        with write_tx(self.engine) as conn:
            res = conn.execute(delete(t_pf).where(
                t_pf.c.claimed_by == run_id, t_pf.c.status == PROCESSING, t_pf.c.ingestion_id == self.ingestion_id,
                t_pf.c.namespace == self.namespace, t_pf.c.batch_id == batch_id))
            return res.rowcount

    def mark_vanished(self, entry: LedgerEntry) -> bool:
        """A dead run's claim on a file that is gone from the source: FAILED, with the reason."""
        with write_tx(self.engine) as conn:
            res = conn.execute(update(t_pf).where(
                self._key(), t_pf.c.path == entry.path, t_pf.c.status == PROCESSING,
                t_pf.c.claimed_by == entry.claimed_by).values(
                status=FAILED, error="file no longer in the source; it was claimed by a run that died",
                processed_at=utcnow(), claimed_at=None, claimed_by=None))
            return res.rowcount == 1


# A shadow-ledger row seeded at the shadow fork for a file whose rows were already
# in the branch when it was forked: the shadow must not ingest it again.
BASELINE = "baseline: already in the branch at the shadow fork"


def is_baseline(entry: LedgerEntry) -> bool:
    return entry.status == SKIPPED and (entry.error or "").startswith("baseline")
