"""The incident control of a team's RQ schedules (``cutover.protocol.IncidentWriter``, issue #15).

`cutover pause --all` holds the callable jobs imported from a team's RQ (``legacy.rq.teamside``): each
entry leaves the sorted set the team's scheduler reads (RQ's ``rq:scheduled:<queue>``, rq-scheduler's
``rq:scheduler:scheduled_jobs``) for ``cutover:teamhold:<set>``, with its score, as the generic side's
pause does; `cutover resume` puts it back with the exact score:

- snapshot part: ``{"jobs": {job id: {"key", "member", "score", "paused"}}, "cron": [job id],
  "missing": [job id]}`` (scores are Redis doubles: JSON keeps them exactly);
- pause: per entry, a WATCHed MULTI/EXEC (never in both sets, never in neither; an entry the team's
  scheduler enqueues meanwhile is not held);
- restore: the recorded score while it is still ahead (else the next time of the job's schedule from
  now, as the generic side's resume does); an entry held before the pause stays held;
- drift: an entry no longer held with its recorded score (moved back or changed during the incident)
  or gone is reported and left as it is now -- never clobbered;
- RQ cron jobs (``rq cron``) live in the team's cron config, which cutover does not edit: the pause
  reports them as NOT paused (the side's pause stays incomplete, exit 3), naming the fix.

The Redis URL comes from ``CUTOVER_RQ_REDIS_URL`` (the inventory keeps it without its password), as
for every other use of the generic RQ side. No fence. ``available(ws)``: only with imported RQ jobs.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from cutover.core.errors import InputError
from cutover.core.redact import redact_url
from cutover.core.schedule.triggers import build_trigger
from cutover.protocol import Restored, UnfencedIncident

# ``legacy.rq.teamjobs.ORCHESTRATOR`` and ``legacy.rq.teamside.HOLD`` (a test checks they agree): the registry
# loads this module on every `cutover pause` for ``available``, so Redis is imported only when there are jobs
ORCHESTRATOR = "rq"
HOLD = "cutover:teamhold:"
URL_ENV = "CUTOVER_RQ_REDIS_URL"
UTC = timezone.utc


def _team_jobs(ws, ids: list[str] | None = None) -> list:
    wanted = set(ids) if ids is not None else None
    return [j for j in ws.jobs.list() if j.kind == "callable" and j.legacy.get("orchestrator") == ORCHESTRATOR
            and (wanted is None or j.id in wanted)]


class RQTeamIncident(UnfencedIncident):
    name = "rq-jobs"
    label = "team RQ schedules"

    def __init__(self, ws, **_):
        self.ws = ws
        self._conn = None

    @staticmethod
    def available(ws) -> bool:
        return bool(_team_jobs(ws))

    def _jobs(self, ids) -> list:
        """The selection's RQ jobs; InputError when cutover has no URL for their Redis."""
        jobs = _team_jobs(self.ws, list(ids))
        url = os.environ.get(URL_ENV)
        other = sorted({j.legacy.get("redis") for j in jobs} - ({redact_url(url)} if url else set()))
        if other:
            raise InputError(f"{len(jobs)} job(s) run on the team's RQ at {', '.join(map(str, other))}, and cutover has "
                             "no URL for it", fix=f"set {URL_ENV} to that Redis URL (with its password)")
        return jobs

    @property
    def conn(self):
        if self._conn is None:
            import redis

            self._conn = redis.Redis.from_url(os.environ[URL_ENV])
        return self._conn

    # -- reader
    def read(self, ids: list[str]) -> dict:
        jobs, cron, missing = {}, [], []
        for j in self._jobs(ids):
            key, member = j.legacy.get("key"), j.legacy.get("rq_job_id")
            if j.legacy.get("source") == "rq-cron":
                cron.append(j.id)
                continue
            if not key or not member:
                missing.append(j.id)
                continue
            score = self.conn.zscore(key, member)
            held = self.conn.zscore(HOLD + key, member) if score is None else None
            if score is None and held is None:
                missing.append(j.id)
                continue
            jobs[j.id] = {"key": key, "member": member, "score": score if score is not None else held,
                          "paused": score is None}
        return {"jobs": jobs, "cron": sorted(cron), "missing": sorted(missing)}

    def counts(self, state: dict | None) -> dict:
        state = state or {}
        jobs = state.get("jobs") or {}
        out = {"team_rq_jobs": len(jobs), "team_rq_jobs_already_paused": sum(1 for j in jobs.values() if j["paused"])}
        if state.get("cron"):
            out["team_rq_cron_jobs_not_pausable"] = len(state["cron"])
        return out

    def describe_pause(self, state: dict, *, fence: bool) -> list[str]:
        c = self.counts(state)
        line = (f"team RQ: {c['team_rq_jobs']} schedule(s), {c['team_rq_jobs'] - c['team_rq_jobs_already_paused']} "
                "to hold")
        if state.get("cron"):
            line += (f"; {len(state['cron'])} RQ cron job(s) NOT paused ({', '.join(state['cron'][:5])}): "
                     "comment them out in the team's RQ cron config")
        return [line]

    def plan(self, state: dict) -> tuple[list, list[str]]:
        """([(job id, record, job)] to put back, notes) for the entries this pause held."""
        mine = {jid: rec for jid, rec in (state.get("jobs") or {}).items() if not rec["paused"]}
        if not mine:
            return [], []
        jobs = {j.id: j for j in self._jobs(list(mine))}
        todo, notes = [], []
        for jid, rec in mine.items():
            held = self.conn.zscore(HOLD + rec["key"], rec["member"])
            if held is None:
                if self.conn.zscore(rec["key"], rec["member"]) is None:
                    notes.append(f"team RQ job {jid} was removed from {rec['key']} since the snapshot: nothing to restore")
                continue  # back already (a resume cut short), or put back by hand: drift shows it
            if jid not in jobs:
                notes.append(f"team RQ job {jid} was removed from the inventory since the snapshot: left held")
                continue
            if held != rec["score"]:
                notes.append(f"team RQ job {jid} was changed during the pause: left held as it is now (check it, then "
                             f"move {rec['member']} from {HOLD}{rec['key']} back to {rec['key']})")
                continue
            todo.append((jid, rec, jobs[jid]))
        return todo, notes

    def describe_restore(self, state: dict, fence_before: dict | None) -> tuple[list[str], list[str]]:
        todo, notes = self.plan(state)
        kept = sum(1 for r in (state.get("jobs") or {}).values() if r["paused"])
        return [f"team RQ: {len(todo)} schedule(s) to put back at their recorded time, {kept} held before the pause "
                "stay held"], notes

    def drift_items(self, state: dict, out: list[dict]) -> None:
        for jid, rec in (state.get("jobs") or {}).items():
            if not rec["paused"] and self.conn.zscore(rec["key"], rec["member"]) is not None:
                out.append({"kind": "team rq schedule", "ingestion_id": jid, "item": rec["member"],
                            "detail": f"team RQ schedule back in {rec['key']}"})

    # -- writer (no fence: see the module docstring)

    def _move(self, src: str, dst: str, member: str, score: float | None) -> bool:
        """``member`` from ``src`` to ``dst`` atomically (with ``score``, else its score in ``src``); False
        when it is not in ``src`` (any more)."""
        from redis.exceptions import WatchError

        while True:
            with self.conn.pipeline() as pipe:
                try:
                    pipe.watch(src)
                    cur = pipe.zscore(src, member)
                    if cur is None:
                        return False
                    pipe.multi()
                    pipe.zadd(dst, {member: cur if score is None else score}).zrem(src, member)
                    pipe.execute()
                    return True
                except WatchError:
                    continue

    def pause_state(self, state: dict) -> int:
        n = sum(self._move(rec["key"], HOLD + rec["key"], rec["member"], None)
                for rec in state["jobs"].values() if not rec["paused"])
        if state.get("cron"):
            raise RuntimeError(f"{len(state['cron'])} RQ cron job(s) not paused ({', '.join(state['cron'][:5])}): "
                               "cutover does not edit the team's RQ cron config; comment them out there "
                               f"({n} other schedule(s) held)")
        return n

    def restore(self, state: dict, *, progress_stream=None) -> Restored:
        out = Restored({"team_rq_jobs_restored": 0,
                        "team_rq_jobs_kept_paused": sum(1 for r in (state.get("jobs") or {}).values() if r["paused"])},
                       [], [])
        todo, out.notes = self.plan(state)
        now = datetime.now(UTC)
        for jid, rec, job in todo:
            try:
                score = rec["score"]
                if score <= now.timestamp():
                    trig = build_trigger(job.schedule, job.timezone)
                    nxt = trig.get_next_fire_time(None, now) if trig is not None else None
                    if nxt is None:
                        out.notes.append(f"team RQ job {jid} will never run again (its schedule is over): left held")
                        continue
                    score = nxt.timestamp()
                if self._move(HOLD + rec["key"], rec["key"], rec["member"], score):
                    out.changes["team_rq_jobs_restored"] += 1
            except Exception as e:  # noqa: BLE001 - collected; resume is re-runnable
                out.errors.append(f"team RQ job {jid}: {type(e).__name__}")
        return out

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
