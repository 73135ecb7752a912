"""Batch ingestion (arrow engine): claim -> recover -> read -> write -> stage -> commit -> complete, per batch.

One Iceberg commit holds a batch of source files, closed at ``[ingest] batch_files``,
``batch_bytes`` (source bytes) or ``batch_seconds`` (reading time), whichever comes
first. Each source file becomes its own data file, so its provenance survives
without per-file snapshots: the ledger row holds the batch id, the data file
path(s) and the records; the snapshot summary holds the batch id.

Exactly-once, step by step (a SIGKILL may land between any two):

1. claim the batch's files in one ledger transaction (the fence against other runs);
2. for a claim taken over from a dead run (the takeover bumped the row's fencing token): if
   the dead run had staged the file (batch id + data files in its ledger row), first move
   the branch head with a fence snapshot (:func:`cutover.core.icebatch.fence_branch`), then
   look those data files up in the branch's state after it
   (:func:`cutover.core.icebatch.find_data_files`): present -> complete the row from them
   (``recovered``), absent -> the dead run's commit never happened and never will (a run
   that was only frozen fails its commit on the moved head, and its retry on the token),
   ingest again;
3. read + fit each file (a bad file fails alone) and write its data file (orphans if we
   die now: no table state refers to them; `cutover table maintain` removes them);
4. stage: write the intent (batch id, data files, records) on every claim, conditional on
   still holding all of them -- the last fence before the commit;
5. commit the batch as one snapshot (conflicts retried, see icebatch), the fencing tokens
   re-checked before every attempt, pyiceberg's own retries included;
6. complete every claim in one transaction.

Memory: a file's rows are held only until its data file is written (groups of at most
``WRITE_GROUP_FILES`` files / ``WRITE_GROUP_BYTES`` bytes, written by pyiceberg's writer
threads while the next group is read, at most ``WRITES_IN_FLIGHT`` groups pending), so a
batch costs its DataFile descriptors, not its rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from cutover.core.autoloader.discovery import DiscoveredFile, filesystem
from cutover.core.autoloader.formats import BadFile, fit_to_table, read_file
from cutover.core.icebatch import (P_FENCE, Present, commit_batch, fence_branch, file_snapshots_flat, find_data_files,
                                   flat_writer, landed, new_batch_id, start_writing)
from cutover.core.iceberg import MAIN, P_FILE, P_INGESTION, P_MODE, P_ORCH, P_RUN, SHADOW_BRANCH
from cutover.core.records import ledger as L

log = logging.getLogger("cutover.ingest")

WRITE_GROUP_FILES = 64
WRITE_GROUP_BYTES = 64 * 1024 * 1024
WRITES_IN_FLIGHT = 2


@dataclass(frozen=True)
class BatchLimits:
    files: int = 1000
    bytes: int = 256 * 1024 * 1024
    seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings) -> "BatchLimits":
        return cls(files=max(1, int(getattr(settings, "batch_files", 1000))),
                   bytes=max(1, int(getattr(settings, "batch_bytes", 256 * 1024 * 1024))),
                   seconds=max(0.0, float(getattr(settings, "batch_seconds", 30.0))))


def branch_for(mode: str) -> str:
    return MAIN if mode == "live" else SHADOW_BRANCH


CrashHook = Callable[[str], None]


def no_crash(name: str) -> None:
    return None


@dataclass
class _Batch:
    batch_id: str
    claims: list = field(default_factory=list)           # claims written to data files
    data_files: list = field(default_factory=list)       # per claim: [DataFile]
    records: list = field(default_factory=list)          # per claim: rows
    pending_tables: list = field(default_factory=list)   # (claim, fitted arrow table) not yet written
    pending_bytes: int = 0
    source_bytes: int = 0
    in_flight: list = field(default_factory=list)        # (group, wait for its DataFiles)
    writer: object = None                                # icebatch.flat_writer, built once per batch
    timings: dict = field(default_factory=lambda: dict.fromkeys(("read", "write", "stage", "commit", "complete"), 0.0))

    def size(self) -> int:
        return len(self.claims) + len(self.pending_tables) + sum(len(g) for g, _ in self.in_flight)


def committed(tbl, branch: str, entries, *, mode: str, ingestion_id: str) -> dict[str, tuple[int, int | None, str | None, list[str] | None]]:
    """Which of these ledger entries / claims (objects with ``path``, ``batch_id``, ``data_files``)
    are already in ``branch``: path -> (records, snapshot id, batch id, data files).

    A staged entry (batch id + data files) counts when ALL its data files are in the branch's
    current state; an entry from before batch commits (no batch id), when a per-file snapshot
    carries its path. Raises :class:`BadFile` for a staged entry whose batch landed but whose data
    files are only partly (or no longer) in the current state: the evidence was rewritten, and
    ingesting the file again could duplicate it."""
    out: dict = {}
    if tbl is None or branch not in tbl.metadata.refs:
        return out
    staged = [e for e in entries if e.batch_id and e.data_files]
    old = {e.path for e in entries if not e.batch_id}
    if staged:
        by_batch: dict[str, set[str]] = {}
        for e in staged:
            by_batch.setdefault(e.batch_id, set()).update(e.data_files)
        found = find_data_files(tbl, branch, by_batch)
        for e in staged:
            hits: list[Present] = [found[p] for p in e.data_files if p in found]
            if len(hits) == len(e.data_files):
                out[e.path] = (sum(h.record_count for h in hits), hits[0].snapshot_id, e.batch_id, list(e.data_files))
            elif hits or landed(tbl, e.batch_id) is not None:
                out[e.path] = BadFile(f"committed in batch {e.batch_id} but {len(e.data_files) - len(hits)} of its "
                                      f"{len(e.data_files)} data file(s) are no longer in {branch}; not ingested again")
    if old:
        for path, info in file_snapshots_flat(tbl, old, mode=mode, ingestion_id=ingestion_id, file_prop=P_FILE,
                                              mode_prop=P_MODE, ingestion_prop=P_INGESTION).items():
            out[path] = (info.added_records, info.snapshot_id, None, None)
    return out


@dataclass(frozen=True)
class _Staged:
    path: str
    batch_id: str | None
    data_files: tuple[str, ...]


class ClaimedBatches:
    """The loop every engine shares: claim a chunk of files, recover what a dead run staged, then
    ingest what is left batch by batch (``_recover`` / ``_one_batch`` / ``_settle_staged`` are the
    engine's; ``ledger``, ``run_id``, ``limits`` and ``crash`` its attributes)."""

    def process(self, files: list[DiscoveredFile], result=None,
                on_file: Callable[[str, str], None] | None = None) -> dict[str, str]:
        """Returns path -> processed | failed | skipped | recovered."""
        outcomes: dict[str, str] = {}

        def note(path: str, outcome: str) -> None:
            outcomes[path] = outcome
            if on_file:
                on_file(path, outcome)

        for i in range(0, len(files), self.limits.files):
            chunk = files[i:i + self.limits.files]
            claims = self.ledger.claim_many(chunk, self.run_id)
            self.crash("after-claim")
            got = {c.file.path for c in claims}
            for f in chunk:
                if f.path not in got:
                    note(f.path, "skipped")
            try:
                todo = self._recover(claims, result, note)
                while todo:
                    todo = self._one_batch(todo, result, note)
            except L.ClaimLost:
                raise
            except BaseException:
                # Give back what was not staged. A staged batch is settled here when the table
                # says whether it landed; otherwise its claims stay PROCESSING (their intent is
                # the evidence recovery needs) for whoever takes them over.
                try:
                    self._settle_staged()
                    self.ledger.release(self.run_id)
                finally:
                    raise
        return outcomes

    def _apply_recovered(self, claims: list, done: dict, result, note) -> list:
        """What the table says of each claim (``done``: path -> (records, snapshot, batch, data
        files) | BadFile, from the engine's ``committed``): complete the ones that landed, fail the
        bad ones; returns the claims still to ingest."""
        todo = []
        for c in claims:
            hit = done.get(c.file.path)
            if hit is None:
                todo.append(c)
            elif isinstance(hit, BadFile):
                self._fail(c, str(hit), result, note)
            else:
                records, sid, batch_id, data_files = hit
                self.ledger.complete(c, records=records, bytes_read=c.file.size or 0, snapshot_id=sid,
                                     run_id_for_metrics=c.previous_run or self.run_id, batch_id=batch_id,
                                     data_files=data_files)
                log.info("recovered %s: already committed (snapshot %s, batch %s) by run %s",
                         c.file.path, sid, batch_id, c.previous_run)
                if result is not None:
                    result.files_recovered += 1
                note(c.file.path, "recovered")
        return todo


class BatchIngest(ClaimedBatches):
    """Runs the steps above for a list of files of one ingestion, in batches."""

    def __init__(self, catalog, ledger: L.Ledger, ing, *, run_id: str, mode: str, orchestrator: str,
                 limits: BatchLimits, commit_retries: int = 12, crash: CrashHook = no_crash):
        self.catalog, self.ledger, self.ing = catalog, ledger, ing
        self.run_id, self.mode, self.orchestrator = run_id, mode, orchestrator
        self.branch = branch_for(mode)
        self.limits = limits
        self.commit_retries = commit_retries
        self.crash = crash
        self.tbl = None
        self._fs = None
        self._staged = None  # (batch,) between its stage and its completion

    def _settle_staged(self) -> None:
        staged, self._staged = self._staged, None
        if staged is None:
            return
        b, = staged
        try:
            sid = landed(self.catalog.load(self.ing.table), b.batch_id)
            if sid is None:
                self.ledger.release_batch(self.run_id, b.batch_id)
            else:
                self.ledger.complete_many([(c, n, c.file.size or 0) for c, n in zip(b.claims, b.records)],
                                          snapshot_id=sid)
        except Exception as e:  # noqa: BLE001 - left to recovery by the next claimer
            log.warning("could not settle batch %s after an interruption (%s); its claims are left to recovery",
                        b.batch_id[:8], type(e).__name__)

    # -- steps ---------------------------------------------------------------------------
    def _recover(self, claims: list, result, note) -> list:
        takeovers = [c for c in claims if c.previous_status == L.PROCESSING]
        if not takeovers:
            return claims
        staged = sorted({c.previous_batch for c in takeovers if c.previous_batch})
        if staged and self.catalog.find(self.ing.table) is not None:
            # the fence: after this snapshot a frozen holder of these claims can no longer land its batch
            self.tbl = fence_branch(self.catalog, self.ing.table, branch=self.branch, fenced=staged,
                                    properties={P_RUN: self.run_id, P_ORCH: self.orchestrator, P_MODE: self.mode,
                                                P_INGESTION: self.ing.id,
                                                P_FENCE: str(max(c.fence for c in takeovers))},
                                    retries=self.commit_retries)
            log.info("%s: fenced %s after taking over %d staged claim(s) of batch(es) %s", self.ing.id, self.branch,
                     sum(1 for c in takeovers if c.previous_batch), ", ".join(b[:8] for b in staged))
        else:
            self.tbl = self.catalog.find(self.ing.table)
        entries = [_Staged(c.file.path, c.previous_batch, c.previous_data_files) for c in takeovers]
        done = committed(self.tbl, self.branch, entries, mode=self.mode, ingestion_id=self.ing.id)
        return self._apply_recovered(claims, done, result, note)

    def _check_fence(self, b: _Batch) -> None:
        """Before each commit attempt: every claim of the batch still ours, with its token."""
        self.ledger.check_held(b.claims)
        self.crash("fence-checked")  # the window between the check and Iceberg's commit (tests freeze here)

    def _fail(self, claim, reason: str, result, note) -> None:
        self.ledger.fail(claim, reason, bytes_read=claim.file.size or 0)
        if result is not None:
            result.failures.append((claim.file.path, reason))
        log.info("%s: %s FAILED: %s", self.ing.id, claim.file.path, reason)
        note(claim.file.path, "failed")

    def _read(self, f: DiscoveredFile):
        if self._fs is None:
            self._fs, _ = filesystem(self.ing.source_uri, self.ing.storage_options())
        data = read_file(self._fs, f.path, self.ing.format, self.ing.options)
        if self.tbl is None:
            self.tbl = self.catalog.find(self.ing.table)
        if self.tbl is None:
            if self.mode != "live":
                raise BadFile(f"table {self.ing.table} does not exist yet; shadow runs never create it")
            self.tbl = self.catalog.load_or_create(self.ing.table, data.schema)
        if self.branch != MAIN and self.branch not in self.tbl.metadata.refs:
            self.tbl = self.catalog.load(self.ing.table)
            if self.branch not in self.tbl.metadata.refs:
                raise BadFile(f"branch {self.branch} of {self.ing.table} does not exist; start the shadow first")
        return fit_to_table(data, self.tbl.schema().as_arrow(), table_name=self.ing.table)

    def _write_pending(self, b: _Batch, *, wait: bool = False) -> None:
        """Start writing the read files (pyiceberg's writer threads) while the next ones are read;
        at most ``WRITES_IN_FLIGHT`` groups (their rows) are held; ``wait``: all written."""
        if b.pending_tables:
            group = b.pending_tables
            first = len(b.claims) + sum(len(g) for g, _ in b.in_flight)
            if b.writer is None:
                b.writer = flat_writer(self.tbl, b.batch_id)
            b.in_flight.append((group, start_writing(self.tbl, [t for _, t in group], b.batch_id, first_task=first,
                                                     writer=b.writer)))
            b.pending_tables, b.pending_bytes = [], 0
        while b.in_flight and (wait or len(b.in_flight) > WRITES_IN_FLIGHT):
            group, result = b.in_flight.pop(0)
            t0 = time.perf_counter()
            written = result()
            b.timings["write"] += time.perf_counter() - t0
            for (claim, t), files in zip(group, written):
                b.claims.append(claim)
                b.data_files.append(files)
                b.records.append(t.num_rows)

    def _one_batch(self, todo: list, result, note) -> list:
        """Ingest a prefix of ``todo`` as one batch; returns the claims left for the next one."""
        b = _Batch(new_batch_id())
        t0 = time.monotonic()
        i = 0
        while i < len(todo):
            if b.size() >= self.limits.files or b.source_bytes >= self.limits.bytes \
                    or (b.size() and time.monotonic() - t0 >= self.limits.seconds):
                break
            claim = todo[i]
            i += 1
            t1 = time.perf_counter()
            try:
                data = self._read(claim.file)
            except BadFile as e:
                self._fail(claim, str(e), result, note)
                continue
            finally:
                b.timings["read"] += time.perf_counter() - t1
            b.pending_tables.append((claim, data))
            b.pending_bytes += data.nbytes
            b.source_bytes += claim.file.size or 0
            if len(b.pending_tables) >= WRITE_GROUP_FILES or b.pending_bytes >= WRITE_GROUP_BYTES:
                self._write_pending(b)
        self._write_pending(b, wait=True)
        if not b.claims:
            return todo[i:]
        self.crash("before-stage")
        t1 = time.perf_counter()
        self.ledger.stage(b.batch_id, [(c, [d.file_path for d in dfs], n)
                                        for c, dfs, n in zip(b.claims, b.data_files, b.records)])
        self._staged = (b,)
        t2 = time.perf_counter()
        self.crash("after-stage")
        props = {P_RUN: self.run_id, P_ORCH: self.orchestrator, P_MODE: self.mode, P_INGESTION: self.ing.id,
                 P_FENCE: str(max(c.fence for c in b.claims))}
        self.tbl, snapshot_id = commit_batch(self.catalog, self.ing.table, self.tbl,
                                             [d for dfs in b.data_files for d in dfs], branch=self.branch,
                                             properties=props, batch_id=b.batch_id, retries=self.commit_retries,
                                             check=lambda: self._check_fence(b))
        t3 = time.perf_counter()
        self.crash("after-commit")
        self.ledger.complete_many([(c, n, c.file.size or 0) for c, n in zip(b.claims, b.records)],
                                  snapshot_id=snapshot_id)
        self._staged = None
        t4 = time.perf_counter()
        b.timings.update(stage=t2 - t1, commit=t3 - t2, complete=t4 - t3)
        log.info("%s: batch %s committed as snapshot %s: %d file(s), %d records; %s", self.ing.id, b.batch_id[:8],
                 snapshot_id, len(b.claims), sum(b.records),
                 ", ".join(f"{k} {v:.2f}s" for k, v in b.timings.items()))
        for c in b.claims:
            note(c.file.path, "processed")
        self.crash("after-batch")
        return todo[i:]
