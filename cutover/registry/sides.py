"""The sides composed as the engine sees them: one legacy writer, one Prefect writer per mode.

This module imports the sides; ``cutover.registry`` itself only names them (so `cutover --help`
and the path of `cutover pause` to its fences load none of them).

The registry composes the sides; no side imports it. The legacy side is the APScheduler jobs
plus the batch flags (:class:`LegacySide`), wrapped by the crontab side when the workspace has
a crontab (``cron.json``) and by the RQ side when it has RQ workflows (``rq.json``): each
wrapper receives the side it wraps in its constructor.
"""

from __future__ import annotations

from cutover.core.workflow import RQ_CONFIG_NAME
from cutover.registry.jobsides import JobsLegacySide
from cutover.protocol import JobInfo, run_legacy_now
from flows.adapter import PrefectAdapter
from legacy.apscheduler.adapters import APSchedulerAdapter
from legacy.apscheduler.scheduler import JobSync
from legacy.batch.adapter import BatchAdapter
from legacy.batch.orchestrator import BatchOrchestrator
from legacy.cron.config import CONFIG_NAME as CRON_CONFIG_NAME
from legacy.cron.side import CronLegacySide
from legacy.rq import setup as rq_setup
from legacy.rq.side import RQLegacySide

__all__ = ["CronLiveSides", "LegacySide", "LiveSides", "RQLiveSides", "apply_rq_import", "legacy_side",
           "plan_rq_import", "run_legacy_now"]


class LegacySide:
    """The legacy side of one workspace: the APScheduler job (when the ingestion has a
    schedule) and the batch orchestrator's paused flag, paused and resumed together so
    that neither a scheduled nor a manual legacy run can start while paused."""

    name = "legacy"

    def __init__(self, ws):
        self.ws = ws
        self.aps = APSchedulerAdapter(ws)
        self.batch = BatchAdapter(ws)

    def _has_job(self, iid: str) -> bool:
        return self.aps.jobs.is_paused(iid) is not None

    def ensure_job(self, ing) -> str:
        return self.aps.ensure_job(ing)

    def pause(self, iid: str) -> bool:
        a = self.aps.pause(iid) if self._has_job(iid) else False
        b = self.batch.pause(iid)
        return a or b

    def resume(self, iid: str) -> bool:
        ing = self.ws.ingestions.get(iid)
        a = False
        if ing.schedule is not None:
            if not self._has_job(iid):
                self.aps.ensure_job(ing)
                a = True
            a = self.aps.resume(iid) or a
        b = self.batch.resume(iid)
        return a or b

    def run_now(self, iid: str, *, trigger: str = "manual") -> str:
        """Run the ingestion on the legacy side now and wait for it; returns the run id (the run
        record's). Raises IngestionPaused when the legacy side is paused or fenced."""
        return BatchOrchestrator(self.ws).run_ingestion(iid, trigger=trigger).run_id

    def list_jobs(self) -> list[JobInfo]:
        return self.aps.list_jobs() + self.batch.list_jobs()

    def health(self):
        return self.aps.health()

    def live_state(self) -> dict[str, dict]:
        """Per ingestion: {'live': bool, 'text': str} as the legacy side would behave now."""
        jobs = {j.ingestion_id: j for j in self.aps.list_jobs()}
        out = {}
        for ing in self.ws.ingestions.list():
            job = jobs.get(ing.id)
            if ing.batch_paused and (job is None or job.paused):
                out[ing.id] = {"live": False, "text": "paused"}
            elif job is not None:
                live = not job.paused and not ing.batch_paused
                out[ing.id] = {"live": live, "text": "scheduled" if live else "paused"}
            elif ing.schedule is not None:
                out[ing.id] = {"live": not ing.batch_paused, "text": "no job (run `cutover legacy sync`)"}
            else:
                out[ing.id] = {"live": not ing.batch_paused, "text": "manual"}
        return out


class LiveSides:
    def __init__(self, ws, *, prefect_api_url: str | None = None, start_prefect: bool = True,
                 prefect_worker: bool = True):
        """``start_prefect``: start the embedded Prefect server when it is the selected one and not
        running (read-only commands pass False: they start nothing); ``prefect_worker``: with its
        worker (only where a flow must run)."""
        self.ws = ws
        self._legacy = None
        self._prefect: dict[str, object] = {}
        self.prefect_api_url = prefect_api_url
        self.start_prefect = start_prefect
        self.prefect_worker = prefect_worker

    def legacy(self):
        if self._legacy is None:
            self._legacy = legacy_side(self.ws)
        return self._legacy

    def prefect(self, mode: str):
        if mode not in self._prefect:
            self._prefect[mode] = PrefectAdapter(self.ws, self.prefect_api_url, mode=mode, start=self.start_prefect,
                                              worker=self.prefect_worker)
        return self._prefect[mode]


def legacy_side(ws, *, cron=None, rq=None, with_cron: bool | None = None, with_rq: bool | None = None):
    """The workspace's legacy side: :class:`LegacySide`, wrapped by the crontab side when a crontab
    is configured (its ingestions pause/resume by their cron line) and by the RQ side when RQ
    workflows are (theirs by the RQ hold). ``with_cron``/``with_rq`` force a wrapper in or out;
    ``cron``/``rq`` are the adapters to use (default: the workspace's)."""
    home = ws.settings.home
    side = LegacySide(ws)
    if with_cron if with_cron is not None else (home / CRON_CONFIG_NAME).exists():
        side = CronLegacySide(ws, cron, base=side)
    if with_rq if with_rq is not None else (home / RQ_CONFIG_NAME).exists():
        side = RQLegacySide(ws, rq, base=side)
    return JobsLegacySide(ws, side)  # a team's own jobs go to the side they were imported from


class _WithLegacy:
    """LiveSides whose legacy side is given."""

    def __init__(self, ws, legacy, **kw):
        self._sides = LiveSides(ws, **kw)
        self.ws = ws
        self._legacy = legacy

    def legacy(self):
        return self._legacy

    def prefect(self, mode: str):
        return self._sides.prefect(mode)


class CronLiveSides(_WithLegacy):
    """:class:`LiveSides` with the crontab side (over APScheduler/batch) as the legacy side."""

    def __init__(self, ws, *, cron=None, **kw):
        super().__init__(ws, legacy_side(ws, cron=cron, with_cron=True, with_rq=False), **kw)


class RQLiveSides(_WithLegacy):
    """:class:`LiveSides` with the RQ side as the legacy side (over the crontab side when a crontab
    is configured, else over APScheduler/batch)."""

    def __init__(self, ws, *, rq=None, **kw):
        super().__init__(ws, legacy_side(ws, rq=rq, with_rq=True), **kw)


# -- `cutover rq import`: the RQ setup takes over ingestions from APScheduler -------------------


def plan_rq_import(ws, path, *, read_inventory: bool = True, **kw):
    """``legacy.rq.setup.plan_import`` with the APScheduler jobs of the workspace read here (the RQ
    side does not read the APScheduler job store): an ingestion RQ takes over loses its job."""
    aps_jobs: set[str] = set()
    if read_inventory:
        js = JobSync(ws.settings)
        if js.exists():
            aps_jobs = {j.ingestion_id for j in js.jobs()}
    return rq_setup.plan_import(ws, path, read_inventory=read_inventory, apscheduler_jobs=aps_jobs, **kw)


def apply_rq_import(ws, plan) -> None:
    """``legacy.rq.setup.apply_import``, removing the APScheduler jobs of the ingestions RQ now runs."""
    js = None

    def remove(iid: str) -> None:
        nonlocal js
        js = js or JobSync(ws.settings)
        js.remove(iid)

    rq_setup.apply_import(ws, plan, remove_apscheduler_job=remove)
