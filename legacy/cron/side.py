"""The crontab legacy orchestrator: cron lines that run a wrapper script, as an orchestrator adapter.

A crontab here is a FILE, never the machine's crontab: cutover reads and edits the
file you point it at. The mapping to the real thing::

    crontab -l > /srv/cron/etl.crontab        # export the installed crontab
    cutover cron import --crontab /srv/cron/etl.crontab
    cutover cron pause medallion-bronze       # edits the file (backup first)
    crontab /srv/cron/etl.crontab             # install it again (or pass --install)

Lines
-----
``15 * * * * /srv/etl/run_step.py bronze >> /var/log/etl/bronze.log 2>&1 # cutover: ingestion=medallion-bronze``

- schedule: the 5 cron fields (or an ``@hourly``-style macro), read with *standard
  (Vixie/Debian) cron semantics*: 0 and 7 are Sunday, and when day-of-month and
  day-of-week are both restricted (neither starts with ``*``) a day matches if
  EITHER matches. In the inventory such a schedule is ``{"crontab": "15 * * * *"}``
  -- never ``{"cron": ...}``, which in this code base means APScheduler's
  ``CronTrigger.from_crontab`` (0 = Monday, day AND weekday).
- ingestion: the marker comment ``# cutover: ingestion=<id>`` at the end of the
  line (``sh`` ignores it: it is a comment to the shell), or a mapping given to
  ``cutover cron import --map``, which then writes the marker.

Ownership: the managed block
----------------------------
cutover changes only lines between ``# BEGIN cutover managed`` and
``# END cutover managed``. Every other byte of the file is left as it is.
``cutover cron import`` adopts marked lines into the block (moved verbatim).
Pause comments a line out (``#cutover-paused# <the line>``), resume restores it
byte for byte; ``ensure_job`` adds or updates a line (a paused line stays paused),
``remove_job`` deletes it.

Every write: under an exclusive lock (``<file>.lock``), re-read, a backup copy of the
file as it was (``<file>.bak.<UTC timestamp>``, the last :data:`KEEP_BACKUPS` kept),
then the new text to a temp file in the same directory, fsync, ``os.replace`` (atomic),
file mode kept. Nothing changes -> nothing is written (idempotent).

Runs
----
The wrapper (``legacy.cron.medallion``) appends JSON lines to its run log: one
``RUNNING`` line when a run starts and a final one (``SUCCESS``/``PARTIAL``/``FAILED``,
or ``SKIPPED`` when the legacy side is paused or fenced) with ``run_id, job,
ingestion_id, trigger, start, end, status, records, files_processed, files_failed,
bytes_read, error, host, pid``. :meth:`CronAdapter.read_runs` folds them (last line per
run id wins) into ``cutover.core.records.runs.RunRecord`` (orchestrator ``legacy``, mode ``live``);
a ``RUNNING`` run whose process is gone on this host reads as ``CRASHED``. The run id
is also the id of the run record the ingestion service writes in the autoloader DB.

Fire times come from ``cronsim`` (a Debian-cron simulator, including its DST rules:
a fixed-time job in the skipped hour runs at the jump, and once in the repeated
hour; hourly-style jobs run in both repeated hours).

Modules
-------
``crontab`` (the file: lines, managed block, locked atomic edits), ``config`` (cron.json, the
wrapper's run log), ``adapter`` (:class:`CronAdapter`), ``importer`` (`cutover cron import`), and
this module: the engine's legacy side, and every public name of the package in one import.

The cutover engine
------------------
:class:`CronLegacySide` is the engine's legacy side with the crontab in it (composed by
``cutover.registry``, which also has ``CronLiveSides``): a crontab ingestion's handoff pauses its
line (and sets the batch flag the wrapper honours), its rollback restores the line byte for byte. APScheduler never gets a
job for a crontab ingestion: ``build_trigger`` returns a ``VixieCronTrigger``
(``cutover.core.schedule.cronexpr``) that refuses to be pickled into its job store.
"""

from __future__ import annotations

from cutover.core.schedule.cronexpr import VixieCronTrigger, fields, fire_times, next_fire_time, normalize_expr
from cutover.protocol import UNCHANGED, Health, JobInfo
from legacy.cron.adapter import CronAdapter, CronJob
from legacy.cron.config import CONFIG_NAME, EXIT_SKIPPED, CronConfig, parse_ts, read_run_log, run_record
from legacy.cron.crontab import (BEGIN, END, KEEP_BACKUPS, MARKER, PAUSED, CrontabFile, Line, edit_lines, env_of,
                                 local_timezone, parse_crontab, to_crontab_expr)
from legacy.cron.importer import ImportItem, ImportPlan, apply_import, plan_import


# -- the engine's legacy side with the crontab in it --------------------------------------------


def is_crontab(ing) -> bool:
    return bool(ing.schedule) and "crontab" in ing.schedule


class CronLegacySide:
    """The cutover engine's legacy side for a workspace whose
    legacy orchestrator includes a crontab: ingestions with a ``{"crontab": ...}`` schedule are
    paused/resumed by commenting/uncommenting their line in the managed block AND by the batch
    flag (which the wrapper honours, so even a run started by a stale installed crontab is
    skipped); every other ingestion goes to the APScheduler/batch side as before. Never creates
    an APScheduler job for a crontab ingestion (cron runs it). ``base`` is the side it wraps
    (``cutover.registry.sides.LegacySide``: the registry composes them)."""

    name = "legacy"

    def __init__(self, ws, cron: CronAdapter | None = None, *, base):
        self.ws = ws
        self.base = base
        self.cron = cron or CronAdapter(ws)
        self.batch = base.batch
        self.aps = base.aps

    def _crontab(self, iid: str) -> bool:
        return is_crontab(self.ws.ingestions.get(iid))

    def ensure_job(self, ing) -> str:
        return self.cron.ensure_job(ing) if is_crontab(ing) else self.base.ensure_job(ing)

    def pause(self, iid: str) -> bool:
        if not self._crontab(iid):
            return self.base.pause(iid)
        a = self.cron.pause(iid) if self.cron.is_paused(iid) is not None else False
        b = self.batch.pause(iid)
        return a or b

    def resume(self, iid: str) -> bool:
        if not self._crontab(iid):
            return self.base.resume(iid)
        ing = self.ws.ingestions.get(iid)
        a = False
        if self.cron.is_paused(iid) is None:  # the line was removed: put it back from the inventory
            a = self.cron.ensure_job(ing) != UNCHANGED
        a = self.cron.resume(iid) or a
        b = self.batch.resume(iid)
        return a or b

    def run_now(self, iid: str, *, trigger: str = "manual") -> str:
        """A crontab ingestion runs as cron runs it: its line's command (the wrapper), waited for;
        any other ingestion as the base legacy side runs it. Returns the run id."""
        if not self._crontab(iid):
            return self.base.run_now(iid, trigger=trigger)
        return self.cron.trigger(iid, trigger=trigger)

    def list_jobs(self) -> list[JobInfo]:
        return self.base.list_jobs() + self.cron.list_jobs()

    def health(self):
        h = self.base.health()
        c = self.cron.health()
        return Health(h.ok and c.ok, f"{h.detail}; {c.detail}")

    def live_state(self) -> dict[str, dict]:
        out = self.base.live_state()
        lines = {j.ingestion_id: j for j in self.cron.jobs()}
        for ing in self.ws.ingestions.list():
            if not is_crontab(ing):
                continue
            j = lines.get(ing.id)
            if j is None:
                out[ing.id] = {"live": False, "text": f"no line in {self.cron.file.path}"}
            else:
                live = not j.paused and not ing.batch_paused
                out[ing.id] = {"live": live, "text": "cron line active" if live else "paused"}
        return out


# the crontab side in one import (the CLI, the demos and the tests use these names from here)
__all__ = [
    "BEGIN", "CONFIG_NAME", "END", "EXIT_SKIPPED", "KEEP_BACKUPS", "MARKER", "PAUSED", "CronAdapter", "CronConfig",
    "CronJob", "CronLegacySide", "CrontabFile", "ImportItem", "ImportPlan", "Line", "VixieCronTrigger", "apply_import",
    "edit_lines", "env_of", "fields", "fire_times", "is_crontab", "local_timezone", "next_fire_time", "normalize_expr",
    "parse_crontab", "parse_ts", "plan_import", "read_run_log", "run_record", "to_crontab_expr",
]
