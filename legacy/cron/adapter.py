"""The crontab orchestrator adapter (``cutover.protocol.OrchestratorWriter``) over one crontab file."""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from cutover.core.errors import IngestionPaused, InputError, NotFound
from cutover.core.records.reader import LegacyReader
from cutover.core.records.runs import RunRecord
from cutover.core.schedule.cronexpr import next_fire_time
from cutover.protocol import CREATED, UNCHANGED, UPDATED, Health, JobInfo, OrchestratorError, OrphanRun
from legacy.cron.config import EXIT_SKIPPED, CronConfig, infer_from_wrapper, read_run_log, run_record
from legacy.cron.crontab import (PAUSED, CrontabFile, Line, edit_lines, env_of, local_timezone, parse_crontab,
                                 replace_schedule, to_crontab_expr)

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.workspace import Workspace
    from cutover.core.records.ingestions import Ingestion
    from cutover.core.records.ledger import LedgerEntry

UTC = timezone.utc


# -- the adapter ---------------------------------------------------------------------------


@dataclass
class CronJob:
    ingestion_id: str
    line: Line
    paused: bool
    managed: bool


class CronAdapter:
    """The crontab orchestrator (``cutover.protocol.OrchestratorWriter``) over one crontab file."""

    name = "cron"
    removes_jobs = True

    def __init__(self, workspace: "Workspace", config: CronConfig | None = None, *, crontab: str | Path | None = None,
                 run_log: str | Path | None = None, wrapper: str | None = None, timezone: str | None = None,
                 output_dir: str | Path | None = None, install: bool | None = None, trigger_timeout: float = 3600):
        cfg = config or CronConfig.load(workspace.settings)
        if cfg is None or (crontab is not None and Path(cfg.crontab).expanduser().absolute()
                           != Path(crontab).expanduser().absolute()):
            cfg = CronConfig(crontab=str(crontab or ""))  # another file: the saved settings are not its
        over = {"crontab": crontab, "run_log": run_log, "wrapper": wrapper, "timezone": timezone,
                "output_dir": output_dir, "install": install}
        cfg = replace(cfg, **{k: (str(v) if isinstance(v, Path) else v) for k, v in over.items() if v is not None})
        if not cfg.crontab:
            raise InputError("no crontab file given", fix="pass --crontab FILE (or run `cutover cron import --crontab FILE`)")
        self.ws = workspace
        self.config = cfg
        self.file = CrontabFile(cfg.crontab)
        self.trigger_timeout = trigger_timeout

    # -- reading ---------------------------------------------------------------------------
    @property
    def run_log(self) -> Path | None:
        if self.config.run_log:
            return Path(self.config.run_log)
        for ln in self._lines_or_empty():
            if ln.ingestion_id:
                inferred = infer_from_wrapper(ln.command).get("run_log")
                if inferred:
                    return Path(inferred)
        return None

    def _lines_or_empty(self) -> list[Line]:
        try:
            return self.file.lines()
        except (InputError, OrchestratorError):
            return []

    def timezone_for(self, lines: list[Line] | None = None) -> str:
        """CRON_TZ in the file (cronie), else the configured zone, else the machine's."""
        env = env_of(lines if lines is not None else self.file.lines())
        tz = env.get("CRON_TZ") or self.config.timezone or local_timezone()
        try:
            ZoneInfo(tz)
        except Exception:  # noqa: BLE001
            raise InputError(f"crontab timezone {tz!r} is not known", fix="use an IANA name such as UTC") from None
        return tz

    def jobs(self, lines: list[Line] | None = None) -> list[CronJob]:
        """Every line that runs an ingestion (managed or not)."""
        lines = self.file.lines() if lines is None else lines
        out: dict[str, CronJob] = {}
        for ln in lines:
            if ln.kind not in ("job", "paused") or not ln.ingestion_id:
                continue
            job = CronJob(ln.ingestion_id, ln, ln.kind == "paused", ln.in_block)
            prev = out.get(ln.ingestion_id)
            if prev is None or (job.managed and not prev.managed):
                out[ln.ingestion_id] = job
        return sorted(out.values(), key=lambda j: j.ingestion_id)

    def list_jobs(self) -> list[JobInfo]:
        lines = self.file.lines()
        tz = self.timezone_for(lines)
        now = datetime.now(UTC)
        out = []
        for j in self.jobs(lines):
            nrt = None if j.paused else next_fire_time(j.line.expr, tz, now)
            out.append(JobInfo(ingestion_id=j.ingestion_id, orchestrator=self.name, job_id=j.ingestion_id,
                               schedule=f"crontab {j.line.expr} ({tz})", paused=j.paused, next_run_time=nrt))
        return out

    def read_log(self) -> list[dict[str, Any]]:
        """Every run-log entry (silver/gold steps and skipped runs included), folded by run id."""
        try:
            return read_run_log(self.run_log)
        except OSError as e:
            raise OrchestratorError(f"run log {self.run_log} cannot be read ({e.strerror})") from None

    def read_runs(self, *, since: datetime | None = None, ingestion_id: str | None = None) -> list["RunRecord"]:
        since_u = since.astimezone(UTC) if since is not None and since.tzinfo else (
            since.replace(tzinfo=UTC) if since is not None else None)
        out = []
        for d in self.read_log():
            if not d.get("ingestion_id") or d.get("status") == "SKIPPED" or not d.get("start"):
                continue
            if ingestion_id and d["ingestion_id"] != ingestion_id:
                continue
            rec = run_record(d)
            if since_u is not None and rec.started_at < since_u:
                continue
            out.append(rec)
        out.sort(key=lambda r: r.started_at, reverse=True)
        return out

    def read_ledger(self, ingestion_id: str, namespace: str, *, since: datetime | None = None) -> list["LedgerEntry"]:
        return LegacyReader(self.ws).read_ledger(ingestion_id, namespace, since=since)

    def health(self) -> Health:
        try:
            lines = self.file.lines()
        except (InputError, OrchestratorError) as e:
            return Health(False, e.one_line() if hasattr(e, "one_line") else str(e))
        log = self.run_log
        if log is None:
            return Health(False, f"crontab {self.file.path}: no run log configured (pass --run-log)")
        if log.exists() and not os.access(log, os.R_OK):
            return Health(False, f"run log {log} is not readable")
        if not log.exists() and not os.access(log.parent if log.parent.exists() else log.parent.parent, os.W_OK):
            return Health(False, f"run log {log} does not exist and its directory is not writable")
        jobs = self.jobs(lines)
        paused = sum(1 for j in jobs if j.paused)
        unmanaged = [j.ingestion_id for j in jobs if not j.managed]
        detail = (f"crontab {self.file.path}: {len(jobs)} job(s), {paused} paused; run log {log}"
                  f"{'' if log.exists() else ' (no run yet)'}")
        if unmanaged:
            detail += f"; outside the managed block: {', '.join(unmanaged)}"
        return Health(True, detail)

    # -- writing ---------------------------------------------------------------------------
    def _after_write(self, written: bool) -> None:
        if written and self.config.install:
            r = subprocess.run(["crontab", str(self.file.path)], capture_output=True, text=True)
            if r.returncode != 0:
                raise OrchestratorError(f"`crontab {self.file.path}` failed: {(r.stderr or r.stdout).strip()[:300]}")

    def _managed_index(self, lines: list[Line], ingestion_id: str) -> int | None:
        for i, ln in enumerate(lines):
            if ln.managed and ln.ingestion_id == ingestion_id:
                return i
        return None

    def _require_managed(self, lines: list[Line], ingestion_id: str) -> int:
        i = self._managed_index(lines, ingestion_id)
        if i is not None:
            return i
        outside = [ln for ln in lines if ln.kind == "job" and ln.ingestion_id == ingestion_id]
        if outside:
            raise InputError(f"{self.file.path} line {outside[0].n} runs {ingestion_id} outside the managed block",
                             fix=f"adopt it first: cutover cron import --crontab {self.file.path}")
        raise NotFound(f"ingestion {ingestion_id} has no line in {self.file.path}",
                       fix="import it (`cutover cron import`) or create it with ensure_job")

    def new_line(self, ing: "Ingestion", expr: str) -> str:
        if not self.config.wrapper:
            raise InputError(f"no wrapper command configured to run {ing.id} from {self.file.path}",
                             fix="pass --wrapper (the script cron runs: `<wrapper> ingest <id>`)")
        cmd = f"{self.config.wrapper} ingest {shlex.quote(ing.id)}"
        if self.config.output_dir:
            cmd += f" >> {shlex.quote(str(Path(self.config.output_dir) / f'{ing.id}.log'))} 2>&1"
        return f"{expr} {cmd} # cutover: ingestion={ing.id}"

    def plan_job(self, ing: "Ingestion", lines: list[Line] | None = None) -> tuple[str, int | None, str | None]:
        """(created|updated|unchanged, index of the managed line, its new text or None to delete)."""
        lines = self.file.lines() if lines is None else lines
        i = self._managed_index(lines, ing.id)
        if ing.schedule is None:
            return (UPDATED, i, None) if i is not None else (UNCHANGED, None, None)
        expr = to_crontab_expr(ing.schedule, self.timezone_for(lines))
        if i is None:
            outside = [ln for ln in lines if ln.kind == "job" and ln.ingestion_id == ing.id]
            if outside:
                raise InputError(f"{self.file.path} line {outside[0].n} runs {ing.id} outside the managed block",
                                 fix=f"adopt it first: cutover cron import --crontab {self.file.path}")
            return CREATED, None, self.new_line(ing, expr)
        ln = lines[i]
        if ln.expr == expr:
            return UNCHANGED, i, ln.text
        job = replace_schedule(ln.job_text, ln.sched_text, expr)
        return UPDATED, i, (PAUSED + job) if ln.kind == "paused" else job

    def ensure_job(self, ingestion: "Ingestion") -> str:
        """Add or update the ingestion's line in the managed block (a paused line stays paused;
        the command of an existing line is kept). No schedule: the line is removed."""
        def change(text, lines):
            action, i, new = self.plan_job(ingestion, lines)
            if action == UNCHANGED:
                return text, action
            if action == CREATED:
                return edit_lines(text, lines, append=[new]), action
            return edit_lines(text, lines, replace_at={i: new}), action

        written, action = self.file.edit(change)
        self._after_write(written)
        return action

    def remove_job(self, ingestion_id: str) -> bool:
        def change(text, lines):
            i = self._managed_index(lines, ingestion_id)
            if i is None:
                return text, False
            return edit_lines(text, lines, replace_at={i: None}), True

        written, removed = self.file.edit(change)
        self._after_write(written)
        return removed

    def _set_paused(self, ingestion_id: str, paused: bool) -> bool:
        def change(text, lines):
            i = self._require_managed(lines, ingestion_id)
            ln = lines[i]
            if (ln.kind == "paused") == paused:
                return text, False
            return edit_lines(text, lines, replace_at={i: PAUSED + ln.text if paused else ln.job_text}), True

        written, changed = self.file.edit(change)
        self._after_write(written)
        return changed

    def pause(self, ingestion_id: str) -> bool:
        """Comment the line out (persistently); True if it changed anything."""
        return self._set_paused(ingestion_id, True)

    def resume(self, ingestion_id: str) -> bool:
        return self._set_paused(ingestion_id, False)

    def is_paused(self, ingestion_id: str) -> bool | None:
        for j in self.jobs():
            if j.ingestion_id == ingestion_id:
                return j.paused
        return None

    def adopt(self, mapping: dict[str, str] | None = None, *, dry_run: bool = False) -> list[dict[str, Any]]:
        """Move marked lines (and lines mapped {exact line text: ingestion id}, which get the marker)
        from outside into the managed block, verbatim. Returns what was (or would be) moved."""
        mapping = dict(mapping or {})

        def change(text, lines):
            moved, remove, append = [], [], []
            managed = {ln.ingestion_id for ln in lines if ln.managed}
            for i, ln in enumerate(lines):
                if ln.in_block or ln.kind != "job":
                    continue
                iid = ln.ingestion_id or mapping.get(ln.text)
                if not iid:
                    continue
                if iid in managed:
                    raise InputError(f"{self.file.path} line {ln.n} runs {iid}, which already has a managed line",
                                     fix="delete one of the two lines by hand")
                managed.add(iid)
                new = ln.text if ln.ingestion_id else f"{ln.text.rstrip()} # cutover: ingestion={iid}"
                moved.append({"line": ln.n, "ingestion_id": iid, "text": new})
                remove.append(i)
                append.append(new)
            if not moved or dry_run:
                return text, moved
            return edit_lines(text, lines, append=append, remove_outside=remove), moved

        if dry_run:
            text = self.file.read_text()
            return change(text, parse_crontab(text, where=str(self.file.path)))[1]
        written, moved = self.file.edit(change)
        self._after_write(written)
        return moved

    def trigger(self, ingestion_id: str, *, wait: bool = True, trigger: str = "manual") -> str:
        """Run the line's command now (``sh -c``, with the crontab's variables, like cron);
        returns the run id. Refused while the line is paused. With ``wait`` (default) it
        returns when the wrapper has finished; the run's outcome is in the run log."""
        lines = self.file.lines()
        i = self._require_managed(lines, ingestion_id)
        ln = lines[i]
        if ln.kind == "paused":
            raise IngestionPaused(f"the crontab line of {ingestion_id} is paused",
                                  fix=f"resume it with `cutover cron resume {ingestion_id}`")
        run_id = uuid.uuid4().hex
        env = dict(os.environ)
        env.update(env_of(lines))
        env.pop("CRON_TZ", None)
        env["CUTOVER_CRON_RUN_ID"] = run_id
        env["CUTOVER_CRON_TRIGGER"] = trigger
        shell = env.get("SHELL") or "/bin/sh"
        command = ln.command.replace("\\%", "\0").split("%", 1)[0].replace("\0", "%")  # cron: % starts stdin
        if not wait:
            subprocess.Popen([shell, "-c", command], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
            return run_id
        try:
            r = subprocess.run([shell, "-c", command], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=self.trigger_timeout)
        except subprocess.TimeoutExpired:
            raise OrchestratorError(f"the cron command of {ingestion_id} did not finish within "
                                    f"{self.trigger_timeout:.0f}s (run {run_id})") from None
        if r.returncode == EXIT_SKIPPED:
            entry = next((d for d in self.read_log() if d.get("run_id") == run_id), {})
            raise IngestionPaused(f"the wrapper did not run {ingestion_id}: {entry.get('error') or 'paused'}",
                                  fix=f"resume it with `cutover legacy resume {ingestion_id}`")
        if not any(d.get("run_id") == run_id for d in self.read_log()):
            tail = (r.stderr or r.stdout or b"").decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise OrchestratorError(f"the cron command of {ingestion_id} exited with {r.returncode} without "
                                    f"writing run {run_id} to {self.run_log} ({tail[0][:200]})")
        return run_id

    def cancel_running(self, ingestion_id: str) -> int:
        """Wrapper runs are processes of their own that cannot be interrupted safely from here
        (as with the other legacy adapters): the handoff waits for them, the ledger fences."""
        return 0


def read_orphan_runs(ws, *, since: datetime | None, ingestion_ids: list[str]) -> list[OrphanRun] | None:
    """Wrapper runs in the run log that started an ingestion and ended CRASHED (a start with no end
    whose process is gone) or FAILED, with no run record of that id: the wrapper died before the
    ingestion service wrote one (`cutover.protocol.OrphanRun`). None without a crontab setup."""
    cfg = CronConfig.load(ws.settings)
    if cfg is None:
        return None
    ad = CronAdapter(ws, cfg)
    wanted = set(ingestion_ids)
    since_u = since.astimezone(timezone.utc) if since is not None and since.tzinfo else since
    out = []
    for d in ad.read_log():
        iid = d.get("ingestion_id")
        if not iid or iid not in wanted or d.get("status") not in ("CRASHED", "FAILED") or not d.get("start"):
            continue
        rec = run_record(d)
        if since_u is not None and rec.started_at < since_u:
            continue
        if ws.runs.find(rec.id) is not None:
            continue  # the service wrote its record: the runs check judges it from there
        end = "no end" if not d.get("end") else f"ended {d.get('end')}"
        out.append(OrphanRun(ingestion_id=iid, orchestrator="cron", side_run_id=rec.id, status=rec.status,
                             at=rec.started_at, mode="live",
                             detail=f"cron wrapper run {rec.id} (job {d.get('job') or '?'}) started {d.get('start')}, "
                                    f"{end}, {rec.status}" + (f": {rec.error}" if rec.error else "")))
    return out
