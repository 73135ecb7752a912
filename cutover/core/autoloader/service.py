"""The ingestion service: discover -> diff the ledger -> claim -> process -> complete.

Both orchestrators call this, the legacy ones directly and the Prefect flow
through tasks wrapping the same steps, so any difference parity finds is an
orchestration difference, not a re-implementation bug.

Exactly-once across the ledger and Iceberg (arrow engine: see
``cutover.core.autoloader.batching`` for the batch commit, one snapshot per batch):
- a file is processed only under a claim (the ledger fences concurrent runs);
- its rows are its own data file(s), recorded in its ledger row with the batch id
  before the batch's one Iceberg commit (summary ``cutover.batch``);
- the claims are completed after the commit, conditional on still holding them;
- when a dead run's claim is taken over, its recorded data files are looked up
  in the branch's current state: if the dead run had committed, the ledger is
  completed from them instead of appending the rows again.

``[ingest] engine = "spark"``: the same batches, run by
``cutover.core.autoloader.spark_batching`` (one Spark write = one Iceberg commit per
batch; read, write and the recovery lookup by ``cutover.core.spark.engine.SparkProcessor``;
see those modules for the differences and the local-catalog mode's limits).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from cutover.core.autoloader.batching import BatchIngest, BatchLimits, committed
from cutover.core.autoloader.batching import branch_for  # noqa: F401 (re-exported: callers ask the service)
from cutover.core.autoloader.discovery import DiscoveredFile, discover, filesystem
from cutover.core.autoloader.formats import fit_to_table, read_file  # noqa: F401 (re-exported)
from cutover.core.db import ensure_schema, get_engine
from cutover.core.iceberg import Catalog
from cutover.core.records import ledger as L, runs as R
from cutover.core.records.ingestions import Ingestion
from cutover.core.redact import redact_text
from cutover.core.autoloader.spark_batching import SparkBatchIngest
from cutover.core.spark.engine import SparkProcessor

log = logging.getLogger("cutover.ingest")


@dataclass
class RunResult:
    run_id: str
    ingestion_id: str
    status: str
    discovered: int = 0
    files_processed: int = 0
    files_failed: int = 0
    files_skipped: int = 0
    files_recovered: int = 0
    records_ingested: int = 0
    bytes_read: int = 0
    duration_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict:
        d = self.__dict__.copy()
        d["failures"] = [{"file": f, "reason": r} for f, r in self.failures]
        return d


class Heartbeat(threading.Thread):
    """Keeps a run's claims and run record fresh while it works."""

    def __init__(self, ledger: L.Ledger, runs: R.RunStore, run_id: str, interval: float):
        super().__init__(daemon=True, name=f"heartbeat-{run_id[:8]}")
        self.ledger, self.runs, self.run_id, self.interval = ledger, runs, run_id, interval
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.wait(self.interval):
            try:
                self.runs.heartbeat(self.run_id)
                self.ledger.heartbeat(self.run_id)
            except Exception as e:  # noqa: BLE001 - a missed beat is retried next interval
                log.warning("heartbeat for run %s failed: %s", self.run_id, redact_text(str(e)))

    def stop(self) -> None:
        self._stop_evt.set()


def processor_for(settings):
    """The file processor ``[ingest] engine`` selects: None for arrow (pyarrow + pyiceberg, built in),
    a ``cutover.core.spark.engine.SparkProcessor`` for spark (read + append through Spark Connect)."""
    if getattr(settings, "engine", "arrow") != "spark":
        return None
    return SparkProcessor.from_settings(settings)


class IngestionService:
    def __init__(self, engine, catalog: Catalog, *, claim_timeout: float, processor=None,
                 batch_limits: BatchLimits | None = None):
        self.engine = engine
        self.batch_limits = batch_limits or BatchLimits()
        self.catalog = catalog
        self.claim_timeout = claim_timeout
        self.runs = R.RunStore(engine)
        # None: read with pyarrow, append with pyiceberg. Otherwise the Spark engine
        # (cutover.core.spark.engine.SparkProcessor: committed / prepare / write_batch).
        self.processor = processor

    @classmethod
    def from_settings(cls, settings) -> "IngestionService":
        ensure_schema(settings)
        return cls(get_engine(settings.autoloader_url), Catalog.from_settings(settings),
                   claim_timeout=settings.claim_timeout, processor=processor_for(settings),
                   batch_limits=BatchLimits.from_settings(settings))

    def ledger(self, ingestion_id: str, namespace: str) -> L.Ledger:
        return L.Ledger(self.engine, ingestion_id, namespace, claim_timeout=self.claim_timeout)

    # -- the steps (the Prefect flow calls them one by one as tasks) ------------------
    def start_run(self, ing: Ingestion, *, orchestrator: str, mode: str, trigger: str,
                  external_id: str | None = None, run_id: str | None = None) -> str:
        self.runs.reap_stale(ing.id, self.claim_timeout)
        return self.runs.start(ing.id, orchestrator=orchestrator, mode=mode, trigger=trigger,
                               external_id=external_id, prefect_deployment_id=ing.prefect_deployment_id,
                               run_id=run_id)

    def discover(self, ing: Ingestion) -> list[DiscoveredFile]:
        return discover(ing.source_uri, ing.pattern, ing.storage_options())

    def pending(self, ing: Ingestion, mode: str, files: list[DiscoveredFile]) -> list[DiscoveredFile]:
        """Files still to process; also settles dead runs' claims on files that left the source."""
        ledger = self.ledger(ing.id, mode)
        present = {f.path for f in files}
        gone = [e for e in ledger.stale_claims() if e.path not in present]
        if gone:
            if self.processor is None:
                done = committed(self.catalog.find(ing.table), branch_for(mode), gone, mode=mode, ingestion_id=ing.id)
            else:
                done = self.processor.committed(ing.table, branch_for(mode), gone, mode=mode, ingestion_id=ing.id)
            for entry in gone:
                if entry.path not in done:  # a committed one is settled by the next claimer... if it comes back
                    ledger.mark_vanished(entry)
        return ledger.diff(files)

    def batch_ingest(self, ing: Ingestion, *, run_id: str, mode: str, orchestrator: str) -> BatchIngest:
        return BatchIngest(self.catalog, self.ledger(ing.id, mode), ing, run_id=run_id, mode=mode,
                           orchestrator=orchestrator, limits=self.batch_limits,
                           commit_retries=self.catalog.commit_retries, crash=_crash_point)

    def spark_batch_ingest(self, ing: Ingestion, *, run_id: str, mode: str, orchestrator: str) -> SparkBatchIngest:
        return SparkBatchIngest(self.processor, self.ledger(ing.id, mode), ing, run_id=run_id, mode=mode,
                                orchestrator=orchestrator, limits=self.batch_limits, crash=_crash_point)

    def process_files(self, ing: Ingestion, files: list[DiscoveredFile], *, run_id: str, mode: str,
                      orchestrator: str, result: RunResult | None = None,
                      on_file: Callable[[str, str], None] | None = None) -> dict[str, str]:
        """Claim and ingest ``files`` in batches (one commit per batch, either engine).
        Returns path -> processed | failed | skipped | recovered."""
        if self.processor is None:
            return self.batch_ingest(ing, run_id=run_id, mode=mode, orchestrator=orchestrator).process(
                files, result, on_file)
        return self.spark_batch_ingest(ing, run_id=run_id, mode=mode, orchestrator=orchestrator).process(
            files, result, on_file)

    def process_file(self, ing: Ingestion, f: DiscoveredFile, *, run_id: str, mode: str,
                     orchestrator: str, result: RunResult | None = None) -> str:
        """Claim and ingest one file (a batch of one). Returns processed | failed | skipped | recovered."""
        return self.process_files(ing, [f], run_id=run_id, mode=mode, orchestrator=orchestrator, result=result)[f.path]

    def finish_run(self, run_id: str, result: RunResult | None = None, *, error: str | None = None) -> R.RunRecord:
        rec = self.runs.get(run_id)
        if error:
            status = R.FAILED
        elif rec.files_failed and not rec.files_processed:
            status = R.FAILED
        elif rec.files_failed:
            status = R.PARTIAL
        else:
            status = R.SUCCESS
        if error is None and rec.files_failed:
            error = f"{rec.files_failed} file(s) failed"
        return self.runs.finish(run_id, status, error=error)

    # -- the whole run -----------------------------------------------------------------
    def run(self, ing: Ingestion, *, orchestrator: str = "legacy", mode: str = "live", trigger: str = "manual",
            external_id: str | None = None, run_id: str | None = None,
            on_file: Callable[[str, str], None] | None = None) -> RunResult:
        t0 = time.monotonic()
        run_id = self.start_run(ing, orchestrator=orchestrator, mode=mode, trigger=trigger,
                                external_id=external_id, run_id=run_id)
        result = RunResult(run_id=run_id, ingestion_id=ing.id, status=R.RUNNING)
        ledger = self.ledger(ing.id, mode)
        hb = Heartbeat(ledger, self.runs, run_id, interval=max(0.5, min(30.0, self.claim_timeout / 3)))
        hb.start()
        error = None
        try:
            files = self.discover(ing)
            result.discovered = len(files)
            todo = self.pending(ing, mode, files)
            outcomes = self.process_files(ing, todo, run_id=run_id, mode=mode, orchestrator=orchestrator,
                                          result=result, on_file=on_file)
            result.files_skipped += sum(1 for o in outcomes.values() if o == "skipped")
        except L.ClaimLost as e:
            error = f"{e}: this run was considered dead (no heartbeat within the claim timeout)"
            log.warning("%s: run %s stopped: %s", ing.id, run_id, error)
        except Exception as e:  # noqa: BLE001 - recorded on the run, re-raised as InputError by callers
            error = redact_text(f"{type(e).__name__}: {e}".splitlines()[0])
            ledger.release(run_id)
        finally:
            hb.stop()
        self.runs.add_skipped(run_id, result.files_skipped)
        rec = self.finish_run(run_id, result, error=error)
        result.status = rec.status
        result.files_processed = rec.files_processed
        result.files_failed = rec.files_failed
        result.records_ingested = rec.records_ingested
        result.bytes_read = rec.bytes_read
        result.error = rec.error
        result.duration_s = time.monotonic() - t0
        return result


def _crash_point(name: str) -> None:
    """Test hooks: ``CUTOVER_TEST_CRASH_AT=after-commit:3`` SIGKILLs this process at the 3rd hit;
    ``CUTOVER_TEST_STOP_AT=after-stage:1`` SIGSTOPs it there once (a frozen run: the test resumes
    it with SIGCONT); ``CUTOVER_TEST_SLOW_AT=after-commit:0.5`` sleeps 0.5 s at every hit (a run
    that is surely still working when a test cancels it, on a machine of any speed)."""
    slow = os.environ.get("CUTOVER_TEST_SLOW_AT")
    if slow and slow.partition(":")[0] == name:
        time.sleep(float(slow.partition(":")[2] or 1))
    for var, sig in (("CUTOVER_TEST_CRASH_AT", "SIGKILL"), ("CUTOVER_TEST_STOP_AT", "SIGSTOP")):
        spec = os.environ.get(var)
        if not spec:
            continue
        point, _, nth = spec.partition(":")
        if point != name:
            continue
        key = f"_cutover_{sig}_{name}"
        count = globals().get(key, 0) + 1
        globals()[key] = count
        if count == int(nth or 1) or (sig == "SIGKILL" and count > int(nth or 1)):
            import signal

            os.kill(os.getpid(), getattr(signal, sig))
