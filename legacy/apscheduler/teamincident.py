"""The incident control of a team's APScheduler jobs (``cutover.protocol.IncidentWriter``, issue #15).

`cutover pause --all` pauses the callable jobs imported from a team's job store
(``legacy.apscheduler.teamside``) in that store, and `cutover resume` puts each back exactly:

- snapshot part: ``{"jobs": {job id: {"paused", "next_run_time", "paused_sha"}}, "missing": [job id]}``:
  whether the row was paused before, its ``next_run_time`` column (the exact instant) and the SHA-256
  of the row's ``job_state`` as the pause writes it (for drift). No URL, no argument value: the store
  is found again through the inventory (``job.legacy["jobstore"]``);
- pause: ``next_run_time`` NULL, the pickled state's ``next_run_time`` None (APScheduler's own
  pause), every job of one store in ONE write transaction;
- restore: the recorded instant while it is still ahead (else the next fire time from now, as
  ``Scheduler.resume_job`` does), one write transaction per store; a job paused before the pause
  stays paused;
- drift: a job whose row is no longer the one the pause wrote (changed or resumed by someone during
  the incident) or that was removed is reported and left as it is now -- never clobbered.

No fence: a team's scheduler checks no cutover switch (its jobs call the team's code directly), so
the durable pause is the stop. ``available(ws)``: only when the workspace holds such jobs.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from cutover.core.redact import redact_text
from cutover.protocol import Restored, UnfencedIncident

# ``legacy.apscheduler.teamstore.ORCHESTRATOR`` (a test checks they agree): the registry loads this module on
# every `cutover pause` for ``available``, so the job store code is imported only when there are jobs
ORCHESTRATOR = "apscheduler"


def _team_jobs(ws, ids: list[str] | None = None) -> list:
    wanted = set(ids) if ids is not None else None
    return [j for j in ws.jobs.list() if j.legacy.get("orchestrator") == ORCHESTRATOR and j.legacy.get("jobstore")
            and (wanted is None or j.id in wanted)]


def _sha(blob) -> str:
    return hashlib.sha256(bytes(blob)).hexdigest()


class TeamAPSchedulerIncident(UnfencedIncident):
    name = "apscheduler-jobs"
    label = "team APScheduler jobs"

    def __init__(self, ws, **_):
        self.ws = ws
        self._stores: dict = {}

    @staticmethod
    def available(ws) -> bool:
        return bool(_team_jobs(ws))

    def _store(self, job):
        from legacy.apscheduler.teamside import TeamStore

        key = (job.legacy["jobstore"], job.legacy.get("table", "apscheduler_jobs"))
        if key not in self._stores:
            self._stores[key] = TeamStore(*key)
        return self._stores[key]

    def _by_store(self, ids) -> dict:
        """{store: [(job, store job id)]} of these job ids."""
        out: dict = {}
        for j in _team_jobs(self.ws, list(ids)):
            out.setdefault(self._store(j), []).append((j, j.legacy.get("job_id") or j.id))
        return out

    # -- reader
    def read(self, ids: list[str]) -> dict:
        from legacy.apscheduler.jobstore import dump_job_state

        jobs, missing = {}, []
        for store, pairs in self._by_store(ids).items():
            rows = {r.id: r for r in store.rows()}
            for job, sid in pairs:
                r = rows.get(sid)
                if r is None:
                    missing.append(job.id)
                    continue
                paused_blob = r.blob if r.paused or r.state is None else \
                    dump_job_state({**r.state, "next_run_time": None})
                jobs[job.id] = {"paused": r.paused, "next_run_time": r.next_run_time, "paused_sha": _sha(paused_blob)}
        return {"jobs": jobs, "missing": sorted(missing)}

    def counts(self, state: dict | None) -> dict:
        jobs = (state or {}).get("jobs") or {}
        return {"team_apscheduler_jobs": len(jobs),
                "team_apscheduler_jobs_already_paused": sum(1 for j in jobs.values() if j["paused"])}

    def describe_pause(self, state: dict, *, fence: bool) -> list[str]:
        c = self.counts(state)
        extra = f"; {len(state.get('missing') or [])} imported job(s) not in their store" if state.get("missing") else ""
        return [f"team APScheduler: {c['team_apscheduler_jobs']} job(s), "
                f"{c['team_apscheduler_jobs'] - c['team_apscheduler_jobs_already_paused']} to pause{extra}"]

    def plan(self, state: dict) -> tuple[list, list[str]]:
        """([(job, store, store job id, recorded)] to resume, notes) for the jobs this pause paused."""
        mine = {jid: rec for jid, rec in (state.get("jobs") or {}).items() if not rec["paused"]}
        found = {job.id: (job, store, sid) for store, pairs in self._by_store(mine).items() for job, sid in pairs}
        rows: dict = {}  # store -> {store job id: row}, one read per store
        todo, notes = [], []
        for jid, rec in mine.items():
            if jid not in found:
                notes.append(f"team APScheduler job {jid} was removed from the inventory since the snapshot: "
                             "nothing to restore")
                continue
            job, store, sid = found[jid]
            if store not in rows:
                rows[store] = {r.id: r for r in store.rows()}
            row = rows[store].get(sid)
            if row is None:
                notes.append(f"team APScheduler job {jid} was removed from its job store since the snapshot: "
                             "nothing to restore")
            elif not row.paused:
                continue  # restored already (a resume cut short), or resumed by hand: drift shows it
            elif _sha(row.blob) != rec["paused_sha"]:
                notes.append(f"team APScheduler job {jid} was changed in its job store during the pause: left paused "
                             f"as it is now (check it, then resume it in the team's scheduler)")
            else:
                todo.append((job, store, sid, rec))
        return todo, notes

    def describe_restore(self, state: dict, fence_before: dict | None) -> tuple[list[str], list[str]]:
        todo, notes = self.plan(state)
        kept = sum(1 for r in (state.get("jobs") or {}).values() if r["paused"])
        return [f"team APScheduler: {len(todo)} job(s) to resume at their recorded next run time, "
                f"{kept} paused before the pause stay paused"], notes

    def drift_items(self, state: dict, out: list[dict]) -> None:
        mine = [jid for jid, rec in (state.get("jobs") or {}).items() if not rec["paused"]]
        for store, pairs in self._by_store(mine).items():
            rows = {r.id: r for r in store.rows()}
            for job, sid in pairs:
                r = rows.get(sid)
                if r is not None and not r.paused:
                    out.append({"kind": "team apscheduler job", "ingestion_id": job.id, "item": sid,
                                "detail": "team APScheduler job resumed in its job store"})

    # -- writer (no fence: see the module docstring)
    def pause_state(self, state: dict) -> int:
        mine = [jid for jid, rec in state["jobs"].items() if not rec["paused"]]
        n, errors = 0, []
        for st, pairs in self._by_store(mine).items():
            try:
                n += _pause_rows(st, [sid for _, sid in pairs])
            except Exception as e:  # noqa: BLE001 - the other stores are paused all the same; re-runnable
                errors.append(f"job store of {', '.join(j.id for j, _ in pairs[:3])}: {type(e).__name__}")
        if errors:
            raise RuntimeError("; ".join(errors))
        return n

    def restore(self, state: dict, *, progress_stream=None) -> Restored:
        out = Restored({"team_apscheduler_jobs_resumed": 0,
                        "team_apscheduler_jobs_kept_paused": sum(1 for r in (state.get("jobs") or {}).values()
                                                                 if r["paused"])}, [], [])
        todo, out.notes = self.plan(state)
        by_store: dict = {}
        for job, st, sid, rec in todo:
            by_store.setdefault(st, []).append((job.id, sid, rec))
        for st, items in by_store.items():
            try:
                resumed, never, problems = _resume_rows(st, items)
            except Exception as e:  # noqa: BLE001 - collected; resume is re-runnable
                out.errors.append(f"team APScheduler job store of {', '.join(i[0] for i in items[:3])}: "
                                  f"{type(e).__name__}: {redact_text(str(e))[:200]}")
                continue
            out.changes["team_apscheduler_jobs_resumed"] += resumed
            out.notes += [f"team APScheduler job {jid} will never fire again (its trigger is over): left paused"
                          for jid in never]
            out.errors += problems
        return out

    def close(self) -> None:
        for st in self._stores.values():
            st.close()
        self._stores.clear()


def _pause_rows(st, sids: list[str]) -> int:
    """Pause these rows of one team store in one write transaction; returns how many changed."""
    from sqlalchemy import update

    from cutover.core.db import write_tx

    n = 0
    if not sids or not st.exists():
        return 0
    with write_tx(st.engine) as conn:
        for sid in sids:
            row = st.row(sid, conn)
            if row is None or row.paused:
                continue
            if row.state is None:  # unreadable state: the column alone pauses it for APScheduler
                conn.execute(update(st.table).where(st.table.c.id == sid).values(next_run_time=None))
            else:
                st._write(conn, {**row.state, "next_run_time": None}, new=False)
            n += 1
    return n


def _resume_rows(st, items: list[tuple[str, str, dict]]) -> tuple[int, list[str], list[str]]:
    """Each (job id, store job id, recorded) row of one team store back to its recorded instant while ahead
    (else the next fire time from now), in one write transaction; a row no longer as the pause wrote it is
    left alone. Returns (resumed, job ids whose trigger will never fire again: left paused, problems)."""
    from cutover.core.db import write_tx
    from legacy.apscheduler.jobstore import UTC, utcnow

    n, never, problems = 0, [], []
    now = utcnow()
    with write_tx(st.engine) as conn:
        for jid, sid, rec in items:
            row = st.row(sid, conn)
            if row is None or not row.paused or _sha(row.blob) != rec["paused_sha"]:
                continue  # changed since the plan (its note was given) or restored already
            if row.state is None:
                problems.append(f"team APScheduler job {jid}: its state cannot be read ({row.error}): re-create it "
                                "in the team's scheduler")
                continue
            trig = row.state["trigger"]
            recorded = rec.get("next_run_time")
            if recorded is not None and recorded > now.timestamp():
                nrt = datetime.fromtimestamp(recorded, UTC)
                tz = getattr(trig, "timezone", None)
                nrt = nrt.astimezone(tz) if tz is not None else nrt
            else:
                nrt = trig.get_next_fire_time(None, now)
            if nrt is None:
                never.append(jid)
                continue
            st._write(conn, {**row.state, "next_run_time": nrt}, new=False)
            n += 1
    return n, never, problems
