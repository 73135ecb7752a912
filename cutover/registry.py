"""The two sides as the engine sees them: one legacy writer, one Prefect writer per mode.

The registry composes the sides; no side imports it. The legacy side is the APScheduler jobs
plus the batch flags (:class:`LegacySide`), wrapped by the crontab side when the workspace has
a crontab (``cron.json``) and by the RQ side when it has RQ workflows (``rq.json``): each
wrapper receives the side it wraps in its constructor.
"""

from __future__ import annotations

import importlib

from cutover.core.workflow import RQ_CONFIG_NAME
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
    def __init__(self, ws, *, prefect_api_url: str | None = None, start_prefect: bool = True):
        self.ws = ws
        self._legacy = None
        self._prefect: dict[str, object] = {}
        self.prefect_api_url = prefect_api_url
        self.start_prefect = start_prefect

    def legacy(self):
        if self._legacy is None:
            self._legacy = legacy_side(self.ws)
        return self._legacy

    def prefect(self, mode: str):
        if mode not in self._prefect:
            self._prefect[mode] = PrefectAdapter(self.ws, self.prefect_api_url, mode=mode, start=self.start_prefect)
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
    return side


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

# == The sides' own verbs on the command line (issue #13) ==================================
# Each side brings its click group in a `cli` module of its package; the root CLI lists them by
# the names and help texts below (so `cutover --help` imports none of them) and loads one by
# module name when it is used. A third-party side adds verbs with an entry point in the group
# "cutover.commands": `name = "package.module:click_command"`.

ENTRY_POINT_GROUP = "cutover.commands"

# verb -> (module:attribute of its click command, one-line help)
SIDE_COMMANDS: dict[str, tuple[str, str]] = {
    "legacy": ("legacy.apscheduler.cli:legacy",
               "The legacy side: run, scheduler, jobs, pause/resume, import."),
    "cron": ("legacy.cron.cli:cron",
             "The crontab legacy side: import lines, jobs, pause/resume, run, runs."),
    "rq": ("legacy.rq.cli:rq",
           "Redis RQ workflows: import, sync, jobs, run, runs, pause/resume, status, worker."),
    "prefect": ("flows.cli:prefect", "Prefect side: local server up/down/status, deploy, runs."),
    "backfill": ("flows.cli:backfill", "Backfill a date range in chunks with a Prefect flow (resumable)."),
}

# verbs one side adds to another side's group: (group, verb) -> module:attribute
SIDE_SUBCOMMANDS: dict[tuple[str, str], str] = {
    ("legacy", "run"): "legacy.batch.cli:run",  # the batch orchestrator's run, next to APScheduler's verbs
}


def _entry_points() -> list[tuple[str, str, str]]:
    """(name, module:attribute, distribution) of every "cutover.commands" entry point installed.

    Read from the ``entry_points.txt`` of each distribution on ``sys.path`` directly: importing
    ``importlib.metadata`` alone costs more than all of `cutover --help` (~50 ms)."""
    import os
    import sys

    found = []
    for base in sys.path:
        try:
            names = os.listdir(base or ".")
        except OSError:
            continue
        for d in names:
            if not d.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(base or ".", d, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            if ENTRY_POINT_GROUP not in text:
                continue
            section = None
            for raw in text.splitlines():
                line = raw.strip()
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1].strip()
                elif section == ENTRY_POINT_GROUP and "=" in line and not line.startswith(("#", ";")):
                    name, _, value = line.partition("=")
                    found.append((name.strip(), value.split("[", 1)[0].strip(), d.split("-", 1)[0]))
    return found


def side_commands() -> dict[str, tuple[str, str]]:
    """Every side verb: name -> (module:attribute, one-line help); nothing is imported. Verbs of
    installed third-party sides (entry points "cutover.commands") come after the built-in ones,
    which they cannot replace."""
    out = dict(SIDE_COMMANDS)
    for name, target, dist in _entry_points():
        out.setdefault(name, (target, f"Added by {dist}."))
    return out


def _load_target(target: str):
    import importlib

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def load_side_command(name: str):
    """The click command of side verb ``name`` (its module imported now), with the verbs other
    sides add to it; KeyError for an unknown name."""
    target = side_commands()[name][0]
    cmd = _load_target(target)
    for (group, verb), sub in SIDE_SUBCOMMANDS.items():
        if group == name and hasattr(cmd, "add_command") and verb not in cmd.commands:
            cmd.add_command(_load_target(sub), verb)
    wire = SIDE_WIRING.get(name)
    if wire is not None:
        wire()
    return cmd


def _wire_rq() -> None:
    """`cutover rq import` with the APScheduler part (read the job store, remove taken-over jobs)."""
    _load_target("legacy.rq.cli:use_import")(plan_rq_import, apply_rq_import)


# verb -> what the registry hands a side's verbs that spans another side
SIDE_WIRING = {"rq": _wire_rq}

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
