"""The legacy side's incident control (``cutover.protocol.IncidentWriter``): APScheduler jobs,
batch flags and the legacy fence row.

- fence: the legacy fence row (``cutover.core.state.fence``): ``run_scheduled`` and
  ``BatchOrchestrator.run_ingestion`` check it before any legacy run starts; it can be limited
  to a selection, so it goes up for ``--select`` too;
- snapshot part: ``{"jobs": {ingestion: {"paused", "next_run_time"}}, "batch": {ingestion: paused}}``;
- durable pause / restore: many jobs in ONE transaction each side (below).

Pausing / restoring many jobs: ``JobSync.pause`` / ``JobSync.resume`` and
``IngestionRepo.set_batch_paused`` do one write transaction per job: 1,000 of them cost seconds
of CPU, which, during a mass pause, this process would spend competing with the Prefect server
for the same cores while the server is the bottleneck. :func:`pause_jobs`, :func:`restore_jobs`
and :func:`set_batch_flags` do exactly what those methods do, row by row, inside ONE write
transaction (SQLite ``BEGIN IMMEDIATE``, PostgreSQL ``SELECT .. FOR UPDATE``), on the same table,
in APScheduler's own format:

- pause: ``next_run_time`` NULL, the pickled state's ``next_run_time`` None (an unreadable
  state gets the column alone, as ``JobSync.pause`` does);
- resume: the next fire time of the job's trigger from now (a job whose trigger will never fire
  again is removed, as APScheduler's ``resume_job`` and ``JobSync.resume`` do);
- batch flags: one UPDATE.

They use JobSync's table plumbing (its transaction, select and write methods): if JobSync grows
bulk methods, these should call them instead.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import delete, update

from cutover.core.records.tables import ingestions as t_ingestions
from cutover.core.state import fence as legacy_fence
from cutover.protocol import FenceHeld, Restored
from legacy.apscheduler.scheduler import JobSync


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


# -- many jobs in one transaction ------------------------------------------------------------------

def pause_jobs(settings, ids: list[str]) -> int:
    """Pause the APScheduler jobs of these ingestions; returns how many changed."""
    js = JobSync(settings)
    if not ids or not js.exists():
        return 0
    wanted = set(ids)
    n = 0
    with js._tx() as conn:
        for row in js._select(conn, lock=True):
            if row.id not in wanted or row.paused:
                continue
            if row.state is None:
                conn.execute(update(js.table).where(js.table.c.id == row.id).values(next_run_time=None))
            else:
                js._write(conn, {**row.state, "next_run_time": None}, new=False)
            n += 1
    return n


def restore_jobs(settings, paused: dict[str, bool]) -> tuple[int, int, list[str]]:
    """Each job to its paused flag: resumed at its next fire time from now, or paused.
    Returns (resumed, paused, problems)."""
    js = JobSync(settings)
    if not paused or not js.exists():
        return 0, 0, []
    resumed = repaused = 0
    problems: list[str] = []
    now = datetime.now(timezone.utc)
    with js._tx() as conn:
        for row in js._select(conn, lock=True):
            want = paused.get(row.id)
            if want is None or row.paused == want:
                continue
            if want:
                if row.state is None:
                    conn.execute(update(js.table).where(js.table.c.id == row.id).values(next_run_time=None))
                else:
                    js._write(conn, {**row.state, "next_run_time": None}, new=False)
                repaused += 1
                continue
            if row.state is None:
                problems.append(f"APScheduler job {row.id} cannot be read ({row.error}): re-create it with "
                                "`cutover legacy sync`")
                continue
            nxt = row.state["trigger"].get_next_fire_time(None, now)
            if nxt is None:
                conn.execute(delete(js.table).where(js.table.c.id == row.id))
            else:
                js._write(conn, {**row.state, "next_run_time": nxt}, new=False)
            resumed += 1
    return resumed, repaused, problems


def set_batch_flags(ws, flags: dict[str, bool]) -> int:
    """Each ingestion's batch flag to the given value, in one transaction; returns how many changed."""
    if not flags:
        return 0
    t = t_ingestions
    now = datetime.now(timezone.utc)
    n = 0
    with ws.autoloader_engine.begin() as conn:
        for value in (True, False):
            ids = [i for i, v in flags.items() if v is value]
            for k in range(0, len(ids), 500):
                chunk = ids[k:k + 500]
                n += conn.execute(update(t).where(t.c.id.in_(chunk), t.c.batch_paused.is_not(value))
                                  .values(batch_paused=value, updated_at=now)).rowcount
    return n


# -- the incident control ------------------------------------------------------------------------

class LegacyIncident:
    """APScheduler jobs + batch flags + the legacy fence row of one workspace."""

    name = "legacy"
    label = "APScheduler jobs and batch flags"
    fence_label = "legacy fence (one row every legacy run checks)"
    fence_selective = True

    def __init__(self, ws, **_):
        self.ws = ws

    # -- reader
    def read_fence(self) -> dict:
        return {}

    def read(self, ids: list[str]) -> dict:
        wanted = set(ids)
        jobs = {j.ingestion_id: {"paused": j.paused, "next_run_time": _iso(j.next_run_time)}
                for j in JobSync(self.ws.settings).jobs() if j.ingestion_id in wanted}
        batch = {i.id: bool(i.batch_paused) for i in self.ws.ingestions.list() if i.id in wanted}
        return {"jobs": jobs, "batch": batch}

    def counts(self, state: dict | None) -> dict:
        state = state or {}
        jobs, batch = state.get("jobs") or {}, state.get("batch") or {}
        return {"apscheduler_jobs": len(jobs),
                "apscheduler_jobs_already_paused": sum(1 for j in jobs.values() if j["paused"]),
                "batch_flags": len(batch), "batch_flags_already_set": sum(1 for v in batch.values() if v)}

    def describe_pause(self, state: dict, *, fence: bool) -> list[str]:
        c = self.counts(state)
        return [f"APScheduler: {c['apscheduler_jobs']} job(s), "
                f"{c['apscheduler_jobs'] - c['apscheduler_jobs_already_paused']} to pause; "
                f"batch: {c['batch_flags'] - c['batch_flags_already_set']} flag(s) to set"]

    def changes(self, state: dict) -> tuple[list, list, list[str]]:
        """([(job id, paused)], [(ingestion id, batch paused)], notes) to restore the snapshot part."""
        now = self.read(list(state["batch"].keys() | state["jobs"].keys()))
        jobs, flags, notes = [], [], []
        for iid, j in state["jobs"].items():
            c = now["jobs"].get(iid)
            if c is None:
                notes.append(f"APScheduler job {iid} was removed since the snapshot: nothing to restore")
            elif c["paused"] != j["paused"]:
                jobs.append((iid, j["paused"]))
        for iid, was in state["batch"].items():
            if iid not in now["batch"]:
                notes.append(f"ingestion {iid} was removed since the snapshot")
            elif now["batch"][iid] != was:
                flags.append((iid, was))
        return jobs, flags, notes

    def describe_restore(self, state: dict, fence_before: dict | None) -> tuple[list[str], list[str]]:
        jobs, flags, notes = self.changes(state)
        return ([f"APScheduler: {sum(1 for _, p in jobs if not p)} job(s) to resume, {sum(1 for _, p in jobs if p)} "
                 f"to re-pause; batch: {len(flags)} flag(s) to restore"], notes)

    def drift(self, state: dict | None, *, snapshot_id: str, fence_before: dict | None) -> list[dict]:
        out: list[dict] = []
        if fence_before is not None:
            f = legacy_fence.read(self.ws.state_engine)
            if f is None or f["snapshot"] != snapshot_id:
                out.append({"kind": "legacy fence", "ingestion_id": None, "item": "legacy-fence",
                            "detail": "the legacy fence was lifted"})
        if state:
            now = self.read(list(state.get("batch", {}).keys() | state.get("jobs", {}).keys()))
            for iid in state.get("jobs", {}):
                j = now["jobs"].get(iid)
                if j is not None and not j["paused"]:
                    out.append({"kind": "apscheduler job", "ingestion_id": iid, "item": iid,
                                "detail": f"APScheduler job resumed (next run {j['next_run_time']})"})
            for iid in state.get("batch", {}):
                if iid in now["batch"] and not now["batch"][iid]:
                    out.append({"kind": "batch flag", "ingestion_id": iid, "item": iid, "detail": "batch flag cleared"})
        return out

    # -- writer
    def fence(self, snapshot_id: str, *, ids: list[str] | None, reason: str | None) -> None:
        try:
            legacy_fence.raise_fence(self.ws.state_engine, snapshot_id, reason=reason, ids=ids)
        except ValueError as e:
            raise FenceHeld(str(e)) from None

    def unfence(self, snapshot_id: str, before: dict) -> dict:
        return {"legacy_fence_lifted": legacy_fence.lift(self.ws.state_engine, snapshot_id)}

    def pause_many(self, ids: list[str], state: dict | None, *, store: Callable[[dict], None],
                   progress_stream=None) -> int:
        if state is None:
            state = self.read(ids)
            store(state)  # stored before anything changes
        n, errors = 0, []
        try:  # both are tried: a batch flag set is a pause even when the job store fails
            n += pause_jobs(self.ws.settings, list(state["jobs"]))
        except Exception as e:  # noqa: BLE001 - reported below; the pause is re-runnable
            errors.append(f"APScheduler jobs: {type(e).__name__}: {e}")
        try:
            n += set_batch_flags(self.ws, {iid: True for iid in state["batch"]})
        except Exception as e:  # noqa: BLE001
            errors.append(f"batch flags: {type(e).__name__}: {e}")
        if errors:
            raise RuntimeError("; ".join(errors))
        return n

    def complete(self, state: dict | None) -> bool:
        return state is not None

    def restore(self, state: dict, *, progress_stream=None) -> Restored:
        out = Restored({"jobs_resumed": 0, "jobs_repaused": 0, "batch_flags_restored": 0}, [], [])
        jobs, flags, out.notes = self.changes(state)
        try:
            resumed, repaused, problems = restore_jobs(self.ws.settings, dict(jobs))
            out.changes["jobs_resumed"], out.changes["jobs_repaused"] = resumed, repaused
            out.errors += problems
        except Exception as e:  # noqa: BLE001 - collected; resume is re-runnable
            out.errors.append(f"APScheduler jobs: {type(e).__name__}: {e}")
        try:
            out.changes["batch_flags_restored"] = set_batch_flags(self.ws, dict(flags))
        except Exception as e:  # noqa: BLE001
            out.errors.append(f"batch flags: {type(e).__name__}: {e}")
        return out

    def close(self) -> None:
        pass
