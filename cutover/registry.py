"""The two sides as the engine sees them: one legacy writer, one Prefect writer per mode."""

from __future__ import annotations

import importlib

from cutover.protocol import JobInfo


class LegacySide:
    """The legacy side of one workspace: the APScheduler job (when the ingestion has a
    schedule) and the batch orchestrator's paused flag, paused and resumed together so
    that neither a scheduled nor a manual legacy run can start while paused."""

    name = "legacy"

    def __init__(self, ws):
        from legacy.apscheduler.adapters import APSchedulerAdapter, BatchAdapter

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
        from legacy.batch.orchestrator import BatchOrchestrator

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


def run_legacy_now(side, iid: str, *, trigger: str = "manual") -> str:
    """Run ``iid`` now on the legacy ``side`` as its orchestrator runs it (``side.run_now``: the
    batch orchestrator, a crontab line's wrapper ...) and wait; returns the run id. A wrapping
    side without ``run_now`` hands the run to the side it wraps (``base``), down to the batch
    orchestrator of :class:`LegacySide`."""
    s = side
    while not hasattr(s, "run_now"):
        s = getattr(s, "base", None)
        if s is None:
            raise TypeError(f"the legacy side {type(side).__name__} cannot run an ingestion now (no run_now)")
    return s.run_now(iid, trigger=trigger)


class LiveSides:
    def __init__(self, ws, *, prefect_api_url: str | None = None, start_prefect: bool = True):
        self.ws = ws
        self._legacy = None
        self._prefect: dict[str, object] = {}
        self.prefect_api_url = prefect_api_url
        self.start_prefect = start_prefect

    def legacy(self):
        if self._legacy is None:
            from legacy.cron.side import CONFIG_NAME
            from legacy.rq.model import CONFIG_NAME as RQ_CONFIG_NAME

            side = LegacySide(self.ws)
            if (self.ws.settings.home / CONFIG_NAME).exists():
                # a crontab is part of the legacy side: its ingestions pause/resume by their cron line
                from legacy.cron.side import CronLegacySide

                side = CronLegacySide(self.ws, base=side)
            if (self.ws.settings.home / RQ_CONFIG_NAME).exists():
                # RQ workflows are part of the legacy side: their ingestions pause/resume by the RQ hold
                from legacy.rq.side import RQLegacySide

                side = RQLegacySide(self.ws, base=side)
            self._legacy = side
        return self._legacy

    def prefect(self, mode: str):
        if mode not in self._prefect:
            from flows.adapter import PrefectAdapter

            self._prefect[mode] = PrefectAdapter(self.ws, self.prefect_api_url, mode=mode, start=self.start_prefect)
        return self._prefect[mode]


# -- incident controls (cutover.protocol.IncidentWriter), by name ------------------------------------

# name -> "module:Class"; in this order the fences go up and come down (the Prefect work pool last
# on resume: late runs are handled before it). A class with an ``available(ws)`` static method is
# used only where it says so (RQ: only with an RQ setup).
INCIDENT_SIDES: dict[str, str] = {
    "legacy": "legacy.apscheduler.incident:LegacyIncident",
    "rq": "legacy.rq.incident:RQIncident",
    "prefect": "flows.incident:PrefectIncident",
}
# Third-party sides would come from an entry-point group ("cutover.sides"); not loaded: scanning the
# installed distributions costs ~0.2 s, on the path of `cutover pause` to its fence (< 2 s).


def _load(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def incident_sides() -> dict[str, str]:
    """The name table of the incident controls."""
    return dict(INCIDENT_SIDES)


def incident_controls(ws, *, start_prefect: bool = True, names: list[str] | None = None) -> list:
    """The incident controls of this workspace's sides, in fence order (each an
    ``IncidentWriter``; the engine's dry runs and `cutover status` use them as ``IncidentReader``)."""
    out = []
    for name, spec in incident_sides().items():
        if names is not None and name not in names:
            continue
        cls = _load(spec)
        available = getattr(cls, "available", None)
        if available is not None and not available(ws):
            continue
        out.append(cls(ws, start=start_prefect))
    return out


# -- parity results (the checks side), for the engine's gates and reports ---------------------------

def parity_streak(engine, ingestion_id: str) -> int:
    """Consecutive clean parity verdicts of the ingestion, newest first (``checks.parity.streak``)."""
    return _load("checks.parity:streak")(engine, ingestion_id)


def parity_history(engine, ingestion_id: str | None = None, limit: int = 50) -> list[dict]:
    """The ingestion's parity verdicts, newest first (``checks.parity.history``)."""
    return _load("checks.parity:history")(engine, ingestion_id, limit)
