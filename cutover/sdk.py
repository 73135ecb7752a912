"""cutover.sdk: what a team's own job imports to be shadow-safe and parity-visible.

A job declared ``shadow: sdk`` runs unchanged on its legacy scheduler (live) and in the
Prefect shadow flow (shadow); this module tells it which one it is in and writes where that
mode writes::

    from cutover import sdk

    def load_orders(source="/data/orders"):
        with sdk.Run("orders-load") as run:               # job id = the ledger key
            for f in run.files(source, "*.csv"):          # what the ledger has not seen yet
                if run.claim(f):                          # the fence: never processed twice
                    table = pyarrow.csv.read_csv(f.path)
                    run.append("acme.orders", table, file=f)
        # leaving the block commits every append (one Iceberg snapshot per table) and
        # marks the files SUCCESS; an exception gives the unfinished claims back

What it gives the job:

- :func:`mode` (``live`` | ``shadow``), :func:`branch` (``main`` | ``cutover-shadow``),
  :func:`ledger_namespace` (``live`` | ``shadow``), :func:`output_prefix` and
  :func:`output_path` (a production path re-rooted under the shadow prefix in shadow),
  all from the ``CUTOVER_*`` variables the side running the job sets
  (:mod:`cutover.core.jobenv`);
- :class:`Run`: claim / finish files in the processed-file ledger (the same ledger, rows and
  fence as the reference ingestions, in the mode's namespace), and :meth:`Run.append` an
  Arrow table to the mode's branch of an Iceberg table, committed as one batch per table
  whose snapshot carries ``cutover.run-id``, ``cutover.orchestrator``, ``cutover.mode`` and
  ``cutover.batch``, with each file's data files recorded in its ledger row first. Parity's
  ledger and counts checks therefore read an sdk job exactly like a reference ingestion.

The workspace (ledger DB, catalog) is the one ``CUTOVER_HOME`` / ``cutover.toml`` names, as
for every cutover command. The run record is the one the side opened: ``CUTOVER_RUN_ID`` (the
Prefect flows set it), else a RUNNING legacy record of this job opened by this process or its
parent (APScheduler's run listener, ``cutover cron exec``); else the Run opens and closes its own.

Shadow safety: in shadow a Run never creates a table nor writes ``main`` or the live ledger
(:func:`cutover.core.jobenv.read` refuses inconsistent variables); the branch must exist
(``cutover shadow start`` forks it).
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from cutover.core import jobenv
from cutover.core.autoloader.batching import committed
from cutover.core.autoloader.discovery import DiscoveredFile, discover, filesystem, ledger_path
from cutover.core.autoloader.formats import BadFile, fit_to_table
from cutover.core.autoloader.service import Heartbeat
from cutover.core.errors import InputError
from cutover.core.icebatch import commit_batch, new_batch_id, start_writing
from cutover.core.iceberg import MAIN, P_INGESTION, P_MODE, P_ORCH, P_RUN
from cutover.core.records import ledger as L
from cutover.core.records import runs as R
from cutover.core.workspace import Workspace

__all__ = ["Run", "mode", "is_shadow", "branch", "ledger_namespace", "output_prefix", "output_path", "environment",
           "job_id", "BadFile"]

log = logging.getLogger("cutover.sdk")
RECORDER_WAIT_S = 5.0
_ATTACHED: set[str] = set()  # legacy run records a Run of this process already attached to


# -- where am I --------------------------------------------------------------------------------


def environment() -> jobenv.JobEnv:
    """Every ``CUTOVER_*`` variable of this run, checked (InputError when they contradict each other)."""
    return jobenv.read()


def mode() -> str:
    """``live`` or ``shadow`` (``CUTOVER_MODE``; live when unset: the legacy scheduler's runs)."""
    return environment().mode


def is_shadow() -> bool:
    return environment().shadow


def branch() -> str:
    """The Iceberg branch this run writes: ``main`` live, ``cutover-shadow`` in shadow."""
    return environment().branch


def ledger_namespace() -> str:
    """The processed-file ledger namespace of this run: ``live`` or ``shadow``."""
    return environment().namespace


def output_prefix() -> str | None:
    """Where shadow runs write files (``CUTOVER_OUTPUT_PREFIX``); None live."""
    return environment().output_prefix


def output_path(path: str | os.PathLike) -> Path:
    """``path`` as this run must write it: unchanged live, re-rooted under the output prefix in
    shadow (``/srv/reports/x.csv`` -> ``<prefix>/srv/reports/x.csv``). Parent directories are not created."""
    return jobenv.redirect(path, environment().output_prefix)


def job_id() -> str | None:
    """The job id the running side passed (``CUTOVER_JOB_ID``), if any."""
    return environment().job_id


# -- the ledger and the table ------------------------------------------------------------------


def describe_file(path: str | os.PathLike, storage_options: dict | None = None) -> DiscoveredFile:
    """A file as the ledger keys it (path, size, etag, mtime), read like discovery reads it."""
    fs, p = filesystem(str(path), storage_options)
    try:
        info = fs.info(p)
    except FileNotFoundError:
        raise InputError(f"file {path} does not exist", fix="claim files that exist") from None
    size = info.get("size")
    mtime = None
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        v = info.get(key)
        if isinstance(v, (int, float)):
            mtime = float(v)
            break
        if v is not None and hasattr(v, "timestamp"):
            mtime = v.timestamp()
            break
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or f"{size}-{mtime}"
    return DiscoveredFile(path=ledger_path(fs, p), size=size, etag=str(etag).strip('"'), mtime=mtime)


@dataclass
class _Staged:
    claim: L.Claim
    table: object  # pyarrow.Table, fitted at commit


@dataclass
class Summary:
    """What a Run did: counts as the run record has them."""

    run_id: str
    job_id: str
    mode: str
    claimed: int = 0
    processed: int = 0
    failed: int = 0
    skipped: int = 0
    records: int = 0
    snapshots: dict[str, int] = field(default_factory=dict)  # table -> snapshot id of this run's batch


class Run:
    """One run of a job: claims in the ledger, appends staged per table, committed on :meth:`commit`
    (and on leaving the ``with`` block). Not thread-safe: one Run per thread."""

    def __init__(self, job_id: str | None = None, *, run_id: str | None = None, trigger: str = "scheduled",
                 workspace: Workspace | None = None, environ=None):
        env = jobenv.read(environ)
        jid = job_id or env.job_id
        if not jid:
            raise InputError("cutover.sdk.Run needs the job id (the ledger key)",
                             fix="pass it: sdk.Run('my-job'), or run the job through cutover (it sets CUTOVER_JOB_ID)")
        if env.job_id and job_id and env.job_id != job_id:
            raise InputError(f"cutover runs job {env.job_id} but the code opened sdk.Run({job_id!r})",
                             fix=f"use the job's id {env.job_id} (or sdk.Run() without an id)")
        if trigger not in R.TRIGGERS:
            raise InputError(f"trigger {trigger!r} is not one of {', '.join(R.TRIGGERS)}", fix="pick one")
        self.env = env
        self.job_id = jid
        self.mode = env.mode
        self.branch = env.branch
        self.ws = workspace or Workspace()
        self.ledger = self.ws.ledger(jid, env.namespace)
        self.run_id = run_id or env.run_id or self._legacy_record(jid, env) or uuid.uuid4().hex
        self._own_record = self.ws.runs.find(self.run_id) is None
        if self._own_record:
            self.ws.runs.start(jid, orchestrator=env.orchestrator, mode=env.mode, trigger=trigger, run_id=self.run_id)
        self._claims: dict[str, L.Claim] = {}
        self._staged: dict[str, list[_Staged]] = {}
        self.summary = Summary(self.run_id, jid, env.mode)
        self._closed = False
        # claims and the run record stay fresh while the job works (a silent run is taken for dead)
        self._hb = Heartbeat(self.ledger, self.ws.runs, self.run_id,
                             interval=max(0.5, min(30.0, self.ws.settings.claim_timeout / 3)))
        self._hb.start()

    def _legacy_record(self, jid: str, env: jobenv.JobEnv) -> str | None:
        """The run record a legacy side opened for this very run, when it could not pass its id:
        APScheduler's listener (same process) or ``cutover cron exec`` (the parent process) record a
        RUNNING run with their pid before the job starts. None: the Run opens its own."""
        if env.orchestrator != "legacy" or env.mode != "live":
            return None
        import socket

        import time

        host, pids = socket.gethostname(), {os.getpid(), os.getppid()}
        # APScheduler's listener hears of the run just after the job started: give it a moment
        deadline = time.monotonic() + (RECORDER_WAIT_S if os.environ.get(jobenv.RECORDER) else 0)
        while True:
            for r in self.ws.runs.list(ingestion_id=jid, orchestrator="legacy", mode="live", limit=20):
                if r.status == R.RUNNING and r.host == host and r.pid in pids and r.id not in _ATTACHED:
                    _ATTACHED.add(r.id)
                    return r.id
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    # -- files ---------------------------------------------------------------------------
    def files(self, source_uri: str, pattern: str = "*", *, storage_options: dict | None = None) -> list[DiscoveredFile]:
        """The files of ``source_uri`` matching ``pattern`` that this namespace's ledger still has to
        process (new, changed after a failure, or held by a dead run), oldest path first."""
        return self.ledger.diff(discover(source_uri, pattern, storage_options))

    def claim(self, file: DiscoveredFile | str | os.PathLike) -> bool:
        """Claim ``file`` for this run (the fence); False when another run holds or finished it."""
        f = file if isinstance(file, DiscoveredFile) else describe_file(file)
        c = self.ledger.claim(f, self.run_id)
        if c is None:
            self.summary.skipped += 1
            return False
        self._claims[f.path] = c
        self.summary.claimed += 1
        return True

    def append(self, table: str, data, *, file: DiscoveredFile | str | os.PathLike) -> bool:
        """Stage ``data`` (a ``pyarrow.Table``) as the rows of the claimed ``file`` in Iceberg
        ``table`` (namespace.name) on this run's branch; committed by :meth:`commit`. Live, the
        table is created from the first batch's schema when missing; in shadow it must exist.

        False (nothing staged) when the claim was taken over from a run that died after its
        commit: the file is completed from the data files that run committed, never appended twice."""
        path = file.path if isinstance(file, DiscoveredFile) else describe_file(file).path
        c = self._claims.get(path)
        if c is None:
            raise InputError(f"{path} is not claimed by this run", fix="call run.claim(file) first and append only when it returns True")
        if any(s.claim.file.path == path for staged in self._staged.values() for s in staged):
            raise InputError(f"{path} is already staged in this run", fix="append each file's rows once (concatenate them first)")
        if c.previous_batch and c.previous_data_files and self._recovered(table, c):
            return False
        self._staged.setdefault(table, []).append(_Staged(c, data))
        return True

    def _recovered(self, table: str, c: L.Claim) -> bool:
        tbl = self.ws.catalog.find(table)
        hit = committed(tbl, self.branch, [_Prev(c.file.path, c.previous_batch, c.previous_data_files)],
                        mode=self.mode, ingestion_id=self.job_id).get(c.file.path)
        if hit is None:
            return False
        self._claims.pop(c.file.path, None)
        if isinstance(hit, BadFile):
            self.ledger.fail(c, str(hit), bytes_read=c.file.size or 0)
            self.summary.failed += 1
            return True
        records, sid, batch_id, data_files = hit
        self.ledger.complete(c, records=records, bytes_read=c.file.size or 0, snapshot_id=sid,
                             run_id_for_metrics=c.previous_run or self.run_id, batch_id=batch_id, data_files=data_files)
        log.info("%s: %s was committed by run %s before it died; completed from its data files",
                 self.job_id, c.file.path, c.previous_run)
        return True

    def finish(self, file: DiscoveredFile | str | os.PathLike, *, records: int = 0, error: str | None = None) -> None:
        """Finish a claimed file that is not appended to Iceberg (written elsewhere, or bad):
        SUCCESS with ``records``, or FAILED with ``error`` (retried only once the file changes)."""
        path = file.path if isinstance(file, DiscoveredFile) else describe_file(file).path
        c = self._claims.pop(path, None)
        if c is None:
            raise InputError(f"{path} is not claimed by this run (or already finished)", fix="claim it first")
        if error is not None:
            self.ledger.fail(c, str(error).splitlines()[0][:500], bytes_read=c.file.size or 0)
            self.summary.failed += 1
        else:
            self.ledger.complete(c, records=int(records), bytes_read=c.file.size or 0, snapshot_id=None)
            self.summary.processed += 1
            self.summary.records += int(records)

    # -- commit --------------------------------------------------------------------------
    def commit(self) -> dict[str, int]:
        """Commit every staged append: per table one snapshot on the run's branch, the intent
        (batch id + data files per file) written to the ledger before it, the files SUCCESS
        after it. Returns table -> snapshot id."""
        out = {}
        for name in sorted(self._staged):
            staged = self._staged[name]
            if staged:
                out[name] = self._commit_table(name, staged)
            del self._staged[name]
        return out

    def _table(self, name: str, schema):
        tbl = self.ws.catalog.find(name)
        if tbl is None:
            if self.env.shadow:
                raise InputError(f"table {name} does not exist: a shadow run never creates it",
                                 fix="let the legacy (live) side write it first, then start the shadow")
            tbl = self.ws.catalog.load_or_create(name, schema)
        if self.branch != MAIN and self.branch not in tbl.metadata.refs:
            raise InputError(f"branch {self.branch} of {name} does not exist",
                             fix=f"start the shadow first (cutover shadow start {self.job_id})")
        return tbl

    def _commit_table(self, name: str, staged: list[_Staged]) -> int:
        tbl = self._table(name, staged[0].table.schema)
        target = tbl.schema().as_arrow()
        good: list[_Staged] = []
        fitted = []
        for s in staged:
            try:
                fitted.append(fit_to_table(s.table, target, table_name=name))
                good.append(s)
            except BadFile as e:
                self.ledger.fail(s.claim, str(e), bytes_read=s.claim.file.size or 0)
                self._claims.pop(s.claim.file.path, None)
                self.summary.failed += 1
        if not good:
            return 0
        batch_id = new_batch_id()
        written = start_writing(tbl, fitted, batch_id)()
        intent = [(s.claim, [d.file_path for d in dfs], t.num_rows) for s, dfs, t in zip(good, written, fitted)]
        self.ledger.stage(batch_id, intent)  # the fence: raises ClaimLost (nothing committed) if fenced
        props = {P_RUN: self.run_id, P_ORCH: self.env.orchestrator, P_MODE: self.mode, P_INGESTION: self.job_id}
        _, sid = commit_batch(self.ws.catalog, name, tbl, [d for dfs in written for d in dfs], branch=self.branch,
                              properties=props, batch_id=batch_id, retries=self.ws.catalog.commit_retries)
        self.ledger.complete_many([(s.claim, t.num_rows, s.claim.file.size or 0) for s, t in zip(good, fitted)],
                                  snapshot_id=sid, run_id_for_metrics=self.run_id)
        for s, t in zip(good, fitted):
            self._claims.pop(s.claim.file.path, None)
            self.summary.processed += 1
            self.summary.records += t.num_rows
        self.summary.snapshots[name] = sid
        log.info("%s: committed %d file(s), %d records to %s@%s (snapshot %s)", self.job_id, len(good),
                 sum(t.num_rows for t in fitted), name, self.branch, sid)
        return sid

    # -- the end -------------------------------------------------------------------------
    def close(self, error: BaseException | None = None) -> Summary:
        """Commit (unless ``error``), give back unfinished claims, and close the run record if this Run opened it."""
        if self._closed:
            return self.summary
        self._closed = True
        err = None
        try:
            if error is None:
                self.commit()
        except BaseException as e:
            err = e
            raise
        finally:
            self._hb.stop()
            self._staged.clear()
            if self._claims:
                self.ledger.release(self.run_id)  # unstaged claims: the files are new again
                self._claims.clear()
            if self._own_record:
                failure = error or err
                if self.summary.skipped:
                    self.ws.runs.add_skipped(self.run_id, self.summary.skipped)
                if failure is not None:
                    self.ws.runs.finish(self.run_id, R.FAILED, error=f"{type(failure).__name__}: {failure}".splitlines()[0][:500])
                elif self.summary.failed:
                    self.ws.runs.finish(self.run_id, R.PARTIAL if self.summary.processed else R.FAILED,
                                        error=f"{self.summary.failed} file(s) failed")
                else:
                    self.ws.runs.finish(self.run_id, R.SUCCESS)
        return self.summary

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc)


@dataclass(frozen=True)
class _Prev:
    path: str
    batch_id: str | None
    data_files: tuple[str, ...]


