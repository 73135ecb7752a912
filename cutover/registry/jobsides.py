"""The legacy side as the engine sees it, with a team's own jobs in it (issue #15).

:class:`JobsLegacySide` wraps the workspace's legacy side (``cutover.registry.sides.legacy_side``):
an id that names a generic job goes to the generic side it was imported from
(:func:`cutover.registry.generic_side_for`: the team's APScheduler job store, a crontab file);
every other id goes to the side it wraps. So `shadow start`, `execute` (pause the legacy job),
`rollback` (resume it), `shadow run --once` (run it now) and `status` (is it live?) treat a
callable in a team job store or a command in a crontab like an ingestion.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

from cutover.core.errors import InputError, NotFound
from cutover.core.redact import redact_url
from cutover.protocol import run_legacy_now
from cutover.registry import generic_side, generic_side_for

RQ_URL_ENV = "CUTOVER_RQ_REDIS_URL"
RUN_WAIT_S = 600.0  # how long `run_now` waits for the team's scheduler to run a one-off run


class JobsLegacySide:
    name = "legacy"

    def __init__(self, ws, base):
        self.ws = ws
        self.base = base
        self._sides: dict[tuple, object] = {}

    def _job_side(self, iid: str):
        """(job, its generic side) for a job id; (None, None) for anything else."""
        job = self.ws.jobs.find(iid) if self.ws.ingestions.find(iid) is None else None
        if job is None:
            return None, None
        src = job.legacy or {}
        key = (src.get("orchestrator"), src.get("jobstore"), src.get("table"), src.get("crontab"), src.get("redis"),
               src.get("key_prefix"))
        if key not in self._sides:
            self._sides[key] = self._rq_side(iid, src) if src.get("orchestrator") == "rq" \
                else generic_side_for(self.ws, job)
        side = self._sides[key]
        if side is None:
            raise NotFound(f"job {iid} has no legacy orchestrator cutover can drive ({src.get('orchestrator')!r})",
                           fix="import it with `cutover legacy import --jobs` or `cutover cron import --jobs`")
        return job, side

    def _rq_side(self, iid: str, src: dict):
        """An RQ job's side: its Redis URL is not stored (it holds the password), so it comes from
        ``CUTOVER_RQ_REDIS_URL`` -- which must name the Redis the job was imported from."""
        url = os.environ.get(RQ_URL_ENV)
        if not url or redact_url(url) != src.get("redis"):
            raise InputError(f"job {iid} runs on the team's RQ at {src.get('redis')}, and cutover has no URL for it",
                             fix=f"set {RQ_URL_ENV} to that Redis URL (with its password) in the environment")
        return generic_side("rq", self.ws, url, prefix=src.get("key_prefix") or "rq")

    def _every_job_side(self) -> list:
        for job in self.ws.jobs.list():
            try:
                self._job_side(job.id)
            except NotFound:
                continue
        return [s for s in self._sides.values() if s is not None]

    # -- writer ------------------------------------------------------------------------------
    def ensure_job(self, item) -> str:
        _, side = self._job_side(item.id)
        return (side or self.base).ensure_job(item)

    def pause(self, iid: str) -> bool:
        _, side = self._job_side(iid)
        return side.pause(iid) if side is not None else self.base.pause(iid)

    def resume(self, iid: str) -> bool:
        _, side = self._job_side(iid)
        return side.resume(iid) if side is not None else self.base.resume(iid)

    def run_now(self, iid: str, *, trigger: str = "manual") -> str:
        """Run ``iid`` now on its legacy orchestrator and wait; returns its run record's id. A job of
        a team job store runs in the team's scheduler (a one-off run it picks up): its record is
        waited for."""
        job, side = self._job_side(iid)
        if side is None:
            return run_legacy_now(self.base, iid, trigger=trigger)
        since = datetime.now(timezone.utc) - timedelta(minutes=5)
        ref = side.trigger(iid)
        deadline = time.monotonic() + RUN_WAIT_S
        while time.monotonic() < deadline:  # the side's own reading of its runs (RQ: from its registries)
            recs = [r for r in side.read_runs(since=since, ingestion_id=iid) if r.id == ref or r.external_id == ref]
            if recs and recs[0].status != "RUNNING":
                return recs[0].id
            time.sleep(0.5)
        raise TimeoutError(f"the legacy run {ref} of {iid} did not end within {RUN_WAIT_S:.0f}s "
                           "(is the team's scheduler running, with cutover's run listeners?)")

    def cancel_running(self, iid: str) -> int:
        _, side = self._job_side(iid)
        return side.cancel_running(iid) if side is not None else self.base.cancel_running(iid)

    # -- reader ------------------------------------------------------------------------------
    def list_jobs(self):
        out = list(self.base.list_jobs())
        for side in self._every_job_side():
            out.extend(side.list_jobs())
        return out

    def health(self):
        return self.base.health()

    def live_state(self) -> dict[str, dict]:
        out = dict(self.base.live_state())
        for side in self._every_job_side():
            for j in side.list_jobs():
                out[j.ingestion_id] = {"live": not j.paused, "text": "paused" if j.paused else "scheduled"}
        for job in self.ws.jobs.list():
            out.setdefault(job.id, {"live": False, "text": "absent from its legacy orchestrator"})
        return out

    def __getattr__(self, name: str):
        return getattr(self.base, name)
