"""The side registry: every side by name, loaded only when it is used.

- ``cutover.registry.sides``: the legacy side and the Prefect writers composed for the engine
  (``LiveSides``, ``LegacySide`` …); importing it imports the sides;
- here: the sides' own CLI verbs (``side_commands``, ``load_side_command``), the incident controls
  (``incident_controls``) and the parity hooks, each named as ``"module:attribute"`` and imported
  on first use, so `cutover --help` and `cutover pause` load only what they run.
"""

from __future__ import annotations

import importlib

from cutover.core.errors import CutoverError, InputError, OrchestratorError

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
    _load_target("legacy.rq.cli:use_import")(_load_target("cutover.registry.sides:plan_rq_import"),
                                               _load_target("cutover.registry.sides:apply_rq_import"))


# verb -> what the registry hands a side's verbs that spans another side
SIDE_WIRING = {"rq": _wire_rq}

# -- incident controls (cutover.protocol.IncidentWriter), by name ------------------------------------

# name -> "module:Class"; in this order the fences go up and come down (the Prefect work pool last
# on resume: late runs are handled before it). A class with an ``available(ws)`` static method is
# used only where it says so (RQ: only with an RQ setup).
INCIDENT_SIDES: dict[str, str] = {
    "legacy": "legacy.apscheduler.incident:LegacyIncident",
    "rq": "legacy.rq.incident:RQIncident",
    # a team's own jobs (issue #15), one control per source (sides never import each other); each is
    # available only when the workspace holds jobs imported from that source
    "apscheduler-jobs": "legacy.apscheduler.teamincident:TeamAPSchedulerIncident",
    "cron-jobs": "legacy.cron.jobincident:CronJobsIncident",
    "rq-jobs": "legacy.rq.teamincident:RQTeamIncident",
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


# -- runs that crashed before their run record, read from the orchestrators (issue #17) ----------------

# name -> "module:function" (ws, *, since, ingestion_ids) -> list[cutover.protocol.OrphanRun] | None
ORPHAN_RUN_READERS: dict[str, str] = {
    "prefect": "flows.adapter:read_orphan_runs",
    "cron": "legacy.cron.adapter:read_orphan_runs",
    "apscheduler": "legacy.apscheduler.events:read_orphan_runs",
}


def orphan_runs(ws, *, since, ingestion_ids: list[str], names: list[str] | None = None) -> tuple[list, list[str]]:
    """Every side's runs that left no run record, for parity's runs check: (orphan runs, notes).
    A side not set up here is skipped; one that does not answer is a note (parity says it could not
    look there), never a crash of the parity run."""
    found, notes = [], []
    for name, spec in ORPHAN_RUN_READERS.items():
        if names is not None and name not in names:
            continue
        try:
            got = _load(spec)(ws, since=since, ingestion_ids=list(ingestion_ids))
        except (CutoverError, OrchestratorError, OSError) as e:
            one = e.one_line() if hasattr(e, "one_line") else str(e)
            notes.append(f"{name}: not read ({one.splitlines()[0] if one else type(e).__name__})")
            continue
        if got:
            found += got
    return found, notes
# -- generic sides (issue #15): a team's own jobs (callables, commands), one adapter per orchestrator ----

# name -> "module:Class" of a cutover.protocol.OrchestratorWriter over the generic jobs of one source
# (ids: cutover job ids). APScheduler: the callable jobs of a team job store (url, table); cron: the
# command jobs of a crontab FILE (crontab).
GENERIC_SIDES: dict[str, str] = {
    "apscheduler": "legacy.apscheduler.teamside:TeamAPSchedulerAdapter",
    "cron": "legacy.cron.jobside:CronJobsAdapter",
    "rq": "legacy.rq.teamside:RQTeamAdapter",
}


def generic_side(name: str, ws, *args, **kwargs):
    """The generic side ``name`` of :data:`GENERIC_SIDES` over a workspace (loaded on first use)."""
    try:
        spec = GENERIC_SIDES[name]
    except KeyError:
        raise InputError(f"no generic side {name!r}", fix=f"use one of {', '.join(GENERIC_SIDES)}") from None
    return _load(spec)(ws, *args, **kwargs)


def generic_side_for(ws, job):
    """The generic side that runs ``job`` on the legacy side, from where it was imported (its ``legacy``)."""
    src = job.legacy or {}
    if src.get("orchestrator") == "apscheduler":
        return generic_side("apscheduler", ws, src["jobstore"], src.get("table", "apscheduler_jobs"))
    if src.get("orchestrator") == "cron":
        return generic_side("cron", ws, src["crontab"])
    return None  # RQ: the Redis URL is not stored with its password: generic_side("rq", ws, url)
