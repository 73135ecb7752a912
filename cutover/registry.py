"""The two sides as the engine sees them: one legacy writer, one Prefect writer per mode."""

from __future__ import annotations

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
    return cmd
