"""Batch ingestion with the Spark engine: one Spark write (one Iceberg commit) per batch of files.

The same batches as the arrow engine (:class:`cutover.core.autoloader.batching.BatchLimits`:
closed at ``batch_files``, ``batch_bytes`` or ``batch_seconds``) and the same ledger protocol,
with one difference forced by Spark: the data file paths are chosen by the executors during
the write, which is also the commit, so they are recorded right AFTER it. Per batch:

1. claim the batch's files (one ledger transaction; the fence against other runs);
2. recover claims taken over from a dead run (:meth:`SparkProcessor.committed`: the batch's
   data files in the branch's current ``files`` metadata table, never the snapshot ancestry);
3. read and fit each file on its own, counting rows and nulls of up to
   :data:`PREPARE_GROUP_FILES` files in one Spark job (``prepare_many``: every field is
   parsed; if that job fails, file by file) -- a bad file fails alone here, before the write;
4. stage: batch id + each file's partition marker (``spark-partition:<i>``) + records on
   every claim, conditional on still holding them all;
5. write the batch as ONE DataFrame, file i alone in Spark partition i (so one data file
   per source file), one Iceberg commit whose summary carries ``cutover.batch`` = batch id;
6. record each file's data file paths (read back from the new snapshot's ``entries``;
   local catalog mode: the table's new files) and complete every claim.

A write that fails for a file's content (``prepare`` parses every field, so this is rare)
is retried file by file, each as its own batch, so only the bad file fails.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from cutover.core.autoloader.batching import BatchLimits, ClaimedBatches, branch_for, no_crash
from cutover.core.autoloader.formats import BadFile
from cutover.core.icebatch import P_BATCH, P_BATCH_FILES, new_batch_id
from cutover.core.iceberg import P_INGESTION, P_MODE, P_ORCH, P_RUN
from cutover.core.records import ledger as L
from cutover.core.spark.engine import is_file_error, reason
from cutover.core.spark.metadata import StagedEntry, marker

log = logging.getLogger("cutover.ingest")

PREPARE_GROUP_FILES = 64  # files counted in one Spark job (prepare_many) before the limits are checked again


class SparkBatchIngest(ClaimedBatches):
    """Runs the steps above for a list of files of one ingestion (``processor``: a SparkProcessor)."""

    def __init__(self, processor, ledger: L.Ledger, ing, *, run_id: str, mode: str, orchestrator: str,
                 limits: BatchLimits, crash: Callable[[str], None] = no_crash):
        self.processor, self.ledger, self.ing = processor, ledger, ing
        self.run_id, self.mode, self.orchestrator = run_id, mode, orchestrator
        self.branch = branch_for(mode)
        self.limits = limits
        self.crash = crash
        self._staged: tuple[str, list] | None = None  # (batch id, claims) between stage and completion

    def _settle_staged(self) -> None:
        """After an error: a staged batch whose write did not land is given back; one that may have
        landed keeps its claims (the evidence) for recovery by whoever takes them over."""
        staged, self._staged = self._staged, None
        if staged is None:
            return
        batch_id, claims = staged
        try:
            entries = [StagedEntry(c.file.path, batch_id, (marker(i),)) for i, c in enumerate(claims)]
            if not self.processor.iceberg or not self.processor.committed(
                    self.ing.table, self.branch, entries, mode=self.mode, ingestion_id=self.ing.id):
                self.ledger.release_batch(self.run_id, batch_id)
        except Exception as e:  # noqa: BLE001 - left to recovery by the next claimer
            log.warning("could not settle batch %s after an interruption (%s); its claims are left to recovery",
                        batch_id[:8], type(e).__name__)

    def _fail(self, claim, why: str, result, note) -> None:
        self.ledger.fail(claim, why, bytes_read=claim.file.size or 0)
        if result is not None:
            result.failures.append((claim.file.path, why))
        log.info("%s: %s FAILED: %s", self.ing.id, claim.file.path, why)
        note(claim.file.path, "failed")

    def _recover(self, claims: list, result, note) -> list:
        takeovers = [c for c in claims if c.previous_status == L.PROCESSING]
        if not takeovers:
            return claims
        entries = [StagedEntry(c.file.path, c.previous_batch or "", c.previous_data_files) for c in takeovers]
        done = self.processor.committed(self.ing.table, self.branch, entries, mode=self.mode,
                                        ingestion_id=self.ing.id)
        return self._apply_recovered(claims, done, result, note)

    def _one_batch(self, todo: list, result, note) -> list:
        """Prepare a prefix of ``todo`` and write it as one batch; returns the claims left."""
        t0 = time.monotonic()
        claims, prepared, size, i = [], [], 0, 0
        while i < len(todo):
            if len(claims) >= self.limits.files or size >= self.limits.bytes \
                    or (claims and time.monotonic() - t0 >= self.limits.seconds):
                break
            group, group_size = [], size
            while i < len(todo) and len(group) < PREPARE_GROUP_FILES and len(claims) + len(group) < self.limits.files \
                    and group_size < self.limits.bytes:
                group.append(todo[i])
                group_size += todo[i].file.size or 0
                i += 1
            results = self.processor.prepare_many(self.ing, [c.file for c in group], mode=self.mode,
                                                  branch=self.branch)
            for claim, r in zip(group, results):
                if isinstance(r, BadFile):
                    self._fail(claim, str(r), result, note)
                    continue
                claims.append(claim)
                prepared.append(r)
                size += claim.file.size or 0
        t1 = time.monotonic()
        if claims:
            try:
                self._write(claims, prepared, result, note)
            except _FileErrorInBatch:
                for c, p in zip(claims, prepared):  # isolate the bad file: each file its own batch
                    try:
                        self._write([c], [p], result, note)
                    except _FileErrorInBatch as e:
                        self._fail(c, e.reason, result, note)
            log.info("%s: %d file(s) in %.2f s (prepare %.2f s, write+record %.2f s)", self.ing.id, len(claims),
                     time.monotonic() - t0, t1 - t0, time.monotonic() - t1)
        return todo[i:]

    def _write(self, claims: list, prepared: list, result, note) -> None:
        batch_id = new_batch_id()
        self.crash("before-stage")
        self.ledger.stage(batch_id, [(c, [marker(i)], p.records) for i, (c, p) in enumerate(zip(claims, prepared))])
        self._staged = (batch_id, claims)
        self.crash("after-stage")
        props = {P_RUN: self.run_id, P_ORCH: self.orchestrator, P_MODE: self.mode, P_INGESTION: self.ing.id,
                 P_BATCH: batch_id, P_BATCH_FILES: str(len(claims))}
        try:
            written, snapshot_id = self.processor.write_batch(self.ing, prepared, branch=self.branch,
                                                              properties=props)
        except Exception as e:  # noqa: BLE001 - the file's fault -> isolate it; anything else propagates
            if not is_file_error(e):
                raise
            # nothing was written (a write is atomic); the claims stay held: the caller
            # stages them again one by one under new batch ids, or fails them
            self._staged = None
            raise _FileErrorInBatch(f"cannot write as {self.ing.format}: {reason(e)}") from None
        self.crash("after-commit")
        self.ledger.stage(batch_id, [(c, files, n) for c, (n, files) in zip(claims, written)])
        self.ledger.complete_many([(c, n, c.file.size or 0) for c, (n, _) in zip(claims, written)],
                                  snapshot_id=snapshot_id)
        self._staged = None
        log.info("%s: batch %s written (snapshot %s): %d file(s), %d records", self.ing.id, batch_id[:8],
                 snapshot_id, len(claims), sum(n for n, _ in written))
        for c in claims:
            note(c.file.path, "processed")
        self.crash("after-batch")


class _FileErrorInBatch(Exception):
    def __init__(self, why: str):
        super().__init__(why)
        self.reason = why
