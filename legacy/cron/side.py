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

The cutover engine
------------------
:class:`CronLegacySide` is the engine's legacy side with the crontab in it (composed by
``cutover.registry``, which also has ``CronLiveSides``): a crontab ingestion's handoff pauses its line (and sets the batch flag the
wrapper honours), its rollback restores the line byte for byte. APScheduler never gets a
job for a crontab ingestion: ``build_trigger`` returns a ``VixieCronTrigger``
(``cutover.core.schedule.cronexpr``) that refuses to be pickled into its job store.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import socket
import subprocess
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable
from zoneinfo import ZoneInfo

from cutover.core.errors import IngestionPaused, InputError, NotFound
from cutover.core.osutil import atomic_write, pid_alive as _pid_alive
from cutover.core.records.ingestions import validate, values_of
from cutover.core.records.reader import LegacyReader
from cutover.core.records.runs import RunRecord
from cutover.core.schedule.cronexpr import VixieCronTrigger, fields, fire_times, next_fire_time, normalize_expr
from cutover.core.schedule.translate import translate, zone_offsets
from cutover.core.schedule.triggers import check_timezone, describe, schedule_timezone
from cutover.protocol import CREATED, UNCHANGED, UPDATED, Health, JobInfo, OrchestratorError

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.workspace import Workspace
    from cutover.core.records.ingestions import Ingestion
    from cutover.core.records.ledger import LedgerEntry

UTC = timezone.utc
BEGIN = "# BEGIN cutover managed"
END = "# END cutover managed"
PAUSED = "#cutover-paused# "
MARKER = re.compile(r"#\s*cutover:\s*ingestion=([A-Za-z0-9_\-]+)")
_ENV_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
KEEP_BACKUPS = 50
EXIT_SKIPPED = 75  # the wrapper's exit code when the legacy side is paused/fenced (EX_TEMPFAIL)
CONFIG_NAME = "cron.json"


def to_crontab_expr(spec: dict | None, tz: str) -> str:
    """The crontab line schedule for an ingestion schedule, in the crontab's zone ``tz``.

    ``{"crontab": e}``: ``e`` itself. Other forms (frequency, APScheduler cron/trigger) go
    through the Prefect translation and are accepted only when they come out as one plain
    cron in the crontab's zone that Vixie cron reads the same way; anything else is refused.
    """
    if spec is None:
        raise InputError("a manual ingestion has no crontab line", fix="give it a schedule")
    spec_tz = schedule_timezone(spec, tz)
    if "crontab" in spec:
        if _same_zone(spec_tz, tz):
            return normalize_expr(spec["crontab"])
        raise InputError(f"the schedule runs in {spec_tz} but the crontab runs in {tz}",
                         fix="import the ingestion with the crontab's timezone, or run it from a crontab in that zone")
    tr = translate(spec, spec_tz)
    if tr.kind != "cron" or not _same_zone(tr.timezone, tz):
        raise InputError(f"schedule {tr.describe()} cannot be written as a crontab line running in {tz}",
                         fix="give the ingestion a crontab schedule ({\"crontab\": \"...\"})")
    m, h, dom, mon, dow = tr.cron.split()
    restricted = dom != "*" and dow != "*"
    if restricted and not tr.day_or:
        raise InputError(f"schedule {tr.describe()} needs day-of-month AND weekday, which cron cannot express",
                         fix="split it into separate jobs, or keep it on APScheduler")
    if restricted:  # Vixie ORs only when neither starts with '*': spell steps out
        dom = dom.replace("*/", "1-31/") if dom.startswith("*/") else dom
        dow = dow.replace("*/", "0-6/") if dow.startswith("*/") else dow
    return normalize_expr(" ".join([m, h, dom, mon, dow]))


def _same_zone(a: str, b: str) -> bool:
    if a == b:
        return True
    utcish = {"UTC", "Etc/UTC", "Etc/GMT", "GMT", "Universal", "Zulu", "Etc/Universal", "Etc/Zulu"}
    if a in utcish and b in utcish:
        return True
    try:
        return zone_offsets(a) == zone_offsets(b) == frozenset({0})
    except Exception:  # noqa: BLE001
        return False


def local_timezone() -> str:
    """The machine's zone: the zone cron itself runs in."""
    try:
        import tzlocal

        name = tzlocal.get_localzone_name()
        if name:
            ZoneInfo(name)
            return name
    except Exception:  # noqa: BLE001 - fall back to UTC
        pass
    return "UTC"


# -- the crontab file ----------------------------------------------------------------------


@dataclass
class Line:
    """One line of a crontab file (without its newline)."""

    n: int  # 1-based line number
    text: str
    kind: str  # blank | comment | env | job | paused | begin | end
    in_block: bool = False
    expr: str | None = None  # canonical 5 fields (job/paused)
    sched_text: str | None = None  # the schedule as written (5 fields or macro)
    command: str | None = None  # everything after the schedule, verbatim
    ingestion_id: str | None = None

    @property
    def job_text(self) -> str:
        """The active form of a job line (a paused line without its prefix)."""
        return self.text[len(PAUSED):] if self.kind == "paused" else self.text

    @property
    def managed(self) -> bool:
        return self.in_block and self.kind in ("job", "paused") and self.ingestion_id is not None

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.n, "kind": self.kind, "managed": self.managed, "ingestion_id": self.ingestion_id,
                "schedule": self.expr, "command": self.command, "paused": self.kind == "paused", "text": self.text}


def _parse_job(text: str) -> tuple[str, str, str] | None:
    """(schedule as written, canonical expr, command) of an active job line, else None."""
    s = text.strip()
    if not s or s.startswith("#") or _ENV_LINE.match(s):
        return None
    if s.startswith("@"):
        head, _, rest = s.partition(" ")
        sched, command = head, rest.lstrip(" \t")
    else:
        parts = s.split(None, 5)
        if len(parts) < 6:
            return None
        sched = " ".join(parts[:5])
        command = parts[5]
    try:
        expr = normalize_expr(sched)
    except InputError:
        return None
    return sched, expr, command


def parse_crontab(text: str, *, where: str = "crontab") -> list[Line]:
    """Every line, classified. Raises InputError for a broken managed block or a duplicate id in it."""
    out: list[Line] = []
    in_block = False
    begins = ends = 0
    for n, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if s == BEGIN:
            begins += 1
            if in_block or begins > 1:
                raise InputError(f"{where} line {n}: a second '{BEGIN}'", fix="keep one managed block; fix the file by hand")
            in_block = True
            out.append(Line(n, raw, "begin", True))
            continue
        if s == END:
            ends += 1
            if not in_block:
                raise InputError(f"{where} line {n}: '{END}' without '{BEGIN}'", fix="fix the managed block by hand")
            in_block = False
            out.append(Line(n, raw, "end", True))
            continue
        if in_block and raw.startswith(PAUSED):
            job = _parse_job(raw[len(PAUSED):])
            if job is not None:
                m = MARKER.search(job[2])
                out.append(Line(n, raw, "paused", True, job[1], job[0], job[2], m.group(1) if m else None))
                continue
        job = _parse_job(raw)
        if job is not None:
            m = MARKER.search(job[2])
            out.append(Line(n, raw, "job", in_block, job[1], job[0], job[2], m.group(1) if m else None))
        elif not s:
            out.append(Line(n, raw, "blank", in_block))
        elif s.startswith("#"):
            out.append(Line(n, raw, "comment", in_block))
        elif _ENV_LINE.match(s):
            out.append(Line(n, raw, "env", in_block))
        else:
            out.append(Line(n, raw, "comment", in_block))  # unparseable: never touched
    if in_block:
        raise InputError(f"{where}: '{BEGIN}' without '{END}'", fix="add the END line or remove the block by hand")
    seen: dict[str, int] = {}
    for ln in out:
        if ln.managed:
            if ln.ingestion_id in seen:
                raise InputError(f"{where}: ingestion {ln.ingestion_id} has two lines in the managed block "
                                 f"(lines {seen[ln.ingestion_id]} and {ln.n})", fix="delete one of them by hand")
            seen[ln.ingestion_id] = ln.n
    return out


def env_of(lines: Iterable[Line]) -> dict[str, str]:
    """Variable assignments of the crontab (SHELL, PATH, CRON_TZ ...), in order."""
    env = {}
    for ln in lines:
        if ln.kind == "env":
            m = _ENV_LINE.match(ln.text.strip())
            if m:
                v = m.group(2).strip()
                if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                    v = v[1:-1]
                env[m.group(1)] = v
    return env


def _with_schedule(job_text: str, sched_text: str, expr: str) -> str:
    """The job line with its schedule replaced, the command kept verbatim."""
    s = job_text
    lead = s[: len(s) - len(s.lstrip())]
    body = s.lstrip()
    if body.startswith("@"):
        rest = body.partition(" ")[2].lstrip(" \t")
    else:
        rest = body.split(None, 5)[5]
    return f"{lead}{expr} {rest}"


class CrontabFile:
    """A crontab file edited safely: lock, re-read, backup, atomic replace."""

    def __init__(self, path: Path | str, *, keep_backups: int = KEEP_BACKUPS):
        self.path = Path(path).expanduser().absolute()
        self.keep_backups = keep_backups

    def read_text(self) -> str:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            raise NotFound(f"crontab file {self.path} does not exist",
                           fix="export the installed one with `crontab -l > FILE`, or create it") from None
        except OSError as e:
            raise OrchestratorError(f"crontab file {self.path} cannot be read ({e.strerror})") from None

    def lines(self) -> list[Line]:
        return parse_crontab(self.read_text(), where=str(self.path))

    @contextlib.contextmanager
    def locked(self):
        lock = self.path.with_name(self.path.name + ".lock")
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def backups(self) -> list[Path]:
        return sorted(self.path.parent.glob(self.path.name + ".bak.*"))

    def edit(self, change) -> tuple[bool, Any]:
        """Apply ``change(text, lines) -> (new_text, result)`` under the lock; write only if the
        text changed (backup first, atomic replace). Returns (written, result)."""
        with self.locked():
            old = self.read_text()
            new, result = change(old, parse_crontab(old, where=str(self.path)))
            if new == old:
                return False, result
            parse_crontab(new, where=str(self.path))  # never write a file we could not read back
            self._backup(old)
            self._replace(new)
            return True, result

    def _backup(self, old: str) -> Path:
        ts = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        dest = self.path.with_name(f"{self.path.name}.bak.{ts}")
        n = 0
        while dest.exists():
            n += 1
            dest = self.path.with_name(f"{self.path.name}.bak.{ts}-{n}")
        atomic_write(dest, old, mode=self.path.stat().st_mode & 0o777)
        for extra in self.backups()[:-self.keep_backups] if self.keep_backups > 0 else []:
            with contextlib.suppress(OSError):
                extra.unlink()
        return dest

    def _replace(self, new: str) -> None:
        atomic_write(self.path, new, mode=self.path.stat().st_mode & 0o777)


def _join(lines: list[str], trailing_newline: bool = True) -> str:
    return "\n".join(lines) + ("\n" if trailing_newline and lines else "")


def _block_bounds(lines: list[Line]) -> tuple[int, int] | None:
    """Indexes (begin, end) of the managed block in ``lines``."""
    b = next((i for i, ln in enumerate(lines) if ln.kind == "begin"), None)
    e = next((i for i, ln in enumerate(lines) if ln.kind == "end"), None)
    return (b, e) if b is not None and e is not None else None


def edit_lines(text: str, lines: list[Line], *, replace_at: dict[int, str | None] | None = None,
               append: list[str] | None = None, remove_outside: Iterable[int] = ()) -> str:
    """Rebuild the text: ``replace_at`` {index: new text or None (delete)} on managed lines,
    ``append`` new lines at the end of the managed block (created at the end of the file if
    missing), ``remove_outside`` indexes of lines moved into the block (adoption)."""
    replace_at = replace_at or {}
    remove = set(remove_outside)
    texts: list[str] = []
    bounds = _block_bounds(lines)
    for i, ln in enumerate(lines):
        if i in remove:
            continue
        if bounds is not None and i == bounds[1] and append:
            texts.extend(append)
        if i in replace_at:
            if replace_at[i] is not None:
                texts.append(replace_at[i])
            continue
        texts.append(ln.text)
    if bounds is None and append:
        if texts and texts[-1].strip():
            texts.append("")
        texts.extend([BEGIN, *append, END])
    return _join(texts, trailing_newline=True) if texts else ""


# -- configuration -------------------------------------------------------------------------


@dataclass
class CronConfig:
    """Where the legacy cron setup lives. Saved by `cutover cron import` in $CUTOVER_HOME/cron.json."""

    crontab: str
    run_log: str | None = None  # JSON lines the wrapper appends
    wrapper: str | None = None  # command that starts a step: new lines run "<wrapper> ingest <id>"
    timezone: str | None = None  # the zone cron runs in (default: CRON_TZ in the file, else the machine's)
    output_dir: str | None = None  # new lines append their output to <output_dir>/<id>.log
    install: bool = False  # run `crontab FILE` after every write (installs it for this user)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def path(cls, settings) -> Path:
        return Path(settings.home) / CONFIG_NAME

    @classmethod
    def load(cls, settings) -> "CronConfig | None":
        p = cls.path(settings)
        if not p.exists():
            return None
        try:
            data = json.loads(p.read_text())
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (ValueError, TypeError) as e:
            raise InputError(f"{p} is not a valid cron config ({e})", fix="run `cutover cron import` again") from None

    def save(self, settings) -> Path:
        p = self.path(settings)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, json.dumps(self.as_dict(), indent=2) + "\n")
        return p


def infer_from_wrapper(command: str | None) -> dict[str, str]:
    """run_log / wrapper from a generated wrapper's pipeline.json (``legacy.cron.medallion``), if any."""
    if not command:
        return {}
    try:
        first = shlex.split(command, comments=True)[0]
    except (ValueError, IndexError):
        return {}
    cfg = Path(first).with_name("pipeline.json")
    if not cfg.exists():
        return {}
    try:
        data = json.loads(cfg.read_text())
    except ValueError:
        return {}
    out = {"wrapper": first}
    if data.get("run_log"):
        out["run_log"] = str(data["run_log"])
    if data.get("output_dir"):
        out["output_dir"] = str(data["output_dir"])
    return out


# -- the run log ---------------------------------------------------------------------------


def parse_ts(value) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def read_run_log(path: Path | str | None) -> list[dict[str, Any]]:
    """The run log folded by run id (the last line of a run wins), oldest first. Bad lines are skipped."""
    if path is None:
        return []
    p = Path(path)
    if not p.exists():
        return []
    runs: dict[str, dict[str, Any]] = {}
    with open(p, "r", errors="replace") as fh:
        for raw in fh:
            raw = raw.strip()
            if not raw:
                continue
            try:
                d = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(d, dict) or not d.get("run_id"):
                continue
            rid = str(d["run_id"])
            runs[rid] = {**runs.get(rid, {}), **d}
    host = socket.gethostname()
    out = []
    for d in runs.values():
        if d.get("status") == "RUNNING" and d.get("host") == host and not _pid_alive(d.get("pid")):
            d = {**d, "status": "CRASHED", "error": d.get("error") or "the wrapper process is gone (killed?)"}
        out.append(d)
    out.sort(key=lambda d: (parse_ts(d.get("start")) or datetime.min.replace(tzinfo=UTC)))
    return out


def run_record(d: dict[str, Any]) -> "RunRecord":
    start = parse_ts(d.get("start"))
    end = parse_ts(d.get("end"))
    dur = d.get("duration_s")
    if dur is None and start and end:
        dur = (end - start).total_seconds()
    trig = d.get("trigger") or "scheduled"
    return RunRecord(
        id=str(d["run_id"]), ingestion_id=str(d.get("ingestion_id") or ""), orchestrator="legacy", mode="live",
        trigger=trig if trig in ("scheduled", "manual", "backfill") else "scheduled",
        status=str(d.get("status") or "RUNNING"), started_at=start, ended_at=end, heartbeat_at=end or start,
        files_processed=int(d.get("files_processed") or 0), files_failed=int(d.get("files_failed") or 0),
        files_skipped=int(d.get("files_skipped") or 0), records_ingested=int(d.get("records") or 0),
        bytes_read=int(d.get("bytes_read") or 0), duration_s=float(dur) if dur is not None else None,
        error=d.get("error"), external_id=f"cron:{d.get('job')}" if d.get("job") else None,
        prefect_deployment_id=None, host=d.get("host"), pid=d.get("pid"))


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
        job = _with_schedule(ln.job_text, ln.sched_text, expr)
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


# -- import ----------------------------------------------------------------------------------


@dataclass
class ImportItem:
    line: int
    ingestion_id: str
    expr: str
    command: str
    action: str  # create | update | unchanged (the ingestion in the inventory)
    line_action: str  # adopt (moved into the managed block) | managed (already there)
    ingestion: "Ingestion"
    changes: list[str] = field(default_factory=list)
    by_mapping: bool = False
    text: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "ingestion_id": self.ingestion_id, "schedule": f"crontab {self.expr}",
                "timezone": self.ingestion.timezone, "command": self.command, "action": self.action,
                "line_action": self.line_action, "changes": self.changes, "by_mapping": self.by_mapping}


@dataclass
class ImportPlan:
    crontab: str
    timezone: str
    items: list[ImportItem]
    config: CronConfig
    warnings: list[str] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)  # job lines that run no ingestion

    def as_dict(self) -> dict[str, Any]:
        return {"crontab": self.crontab, "timezone": self.timezone, "items": [i.as_dict() for i in self.items],
                "config": self.config.as_dict(), "warnings": self.warnings, "ignored": self.ignored}


def _definitions_from_wrapper(command: str) -> dict[str, dict]:
    try:
        first = shlex.split(command, comments=True)[0]
    except (ValueError, IndexError):
        return {}
    cfg = Path(first).with_name("pipeline.json")
    try:
        data = json.loads(cfg.read_text()) if cfg.exists() else {}
    except ValueError:
        return {}
    return {d["id"]: d for d in data.get("ingestions") or [] if isinstance(d, dict) and d.get("id")}


def plan_import(ws, crontab: str | Path, *, mapping: dict[str, str] | None = None,
                definitions: Iterable["Ingestion"] = (), timezone: str | None = None, replace_existing: bool = False,
                run_log: str | None = None, wrapper: str | None = None, output_dir: str | None = None,
                read_inventory: bool = True) -> ImportPlan:
    """What `cutover cron import` would do (reads only).

    Jobs: every job line with a marker, and unmarked job lines outside the managed block whose
    command contains a ``mapping`` key (``{"run_step.py bronze": "medallion-bronze"}``).
    Each becomes an ingestion with schedule ``{"crontab": <the 5 fields>}`` in the crontab's
    timezone: an ingestion already in the inventory keeps its definition (only schedule and
    timezone follow the crontab); a new one needs its definition -- from ``definitions`` or
    from the generated wrapper's pipeline.json."""
    cf = CrontabFile(crontab)
    lines = cf.lines()
    env = env_of(lines)
    tz = env.get("CRON_TZ") or timezone or local_timezone()
    check_timezone(tz)
    mapping = dict(mapping or {})
    defs = {d.id: d for d in definitions}
    items: list[ImportItem] = []
    ignored: list[dict[str, Any]] = []
    used_maps: dict[str, int] = {}
    seen: dict[str, int] = {}
    warnings: list[str] = []
    for ln in lines:
        if ln.kind not in ("job", "paused"):
            continue
        iid, by_map = ln.ingestion_id, False
        if iid is None and not ln.in_block:
            hits = [(k, v) for k, v in mapping.items() if k in (ln.command or "")]
            if len(hits) > 1:
                raise InputError(f"{cf.path} line {ln.n} matches several --map entries ({', '.join(k for k, _ in hits)})",
                                 fix="make the --map texts specific to one line")
            if hits:
                key, iid = hits[0]
                by_map = True
                if key in used_maps:
                    raise InputError(f"--map {key!r} matches lines {used_maps[key]} and {ln.n} of {cf.path}",
                                     fix="make the --map text specific to one line")
                used_maps[key] = ln.n
        if iid is None:
            if ln.kind == "job":
                ignored.append({"line": ln.n, "schedule": ln.expr, "command": ln.command,
                                "why": "no '# cutover: ingestion=<id>' marker and no --map entry"})
            continue
        if iid in seen:
            raise InputError(f"{cf.path}: ingestion {iid} runs from lines {seen[iid]} and {ln.n}",
                             fix="one line per ingestion: delete or re-mark one of them")
        seen[iid] = ln.n
        cur = ws.ingestions.find(iid) if read_inventory else None
        schedule = {"crontab": ln.expr}
        if iid in defs:
            base = defs[iid]
        elif cur is not None:
            base = cur
        else:
            raw = _definitions_from_wrapper(ln.command).get(iid)
            if raw is None:
                raise InputError(f"{cf.path} line {ln.n} runs ingestion {iid}, which is not in the inventory and has "
                                 f"no definition", fix="pass --definitions FILE (YAML/JSON as `cutover ingestion add "
                                                       "--from-file` takes) or add it first")
            base = validate(raw, where=f"{ln.command.split()[0]} pipeline.json")
        want = replace(base, schedule=schedule, timezone=tz)
        if cur is None:
            action, changes = "create", []
        else:
            a, b = values_of(cur), values_of(want)
            changes = sorted(k for k in b if a.get(k) != b.get(k))
            action = "unchanged" if not changes else "update"
            other = [c for c in changes if c not in ("schedule", "timezone")]
            if other and not replace_existing:
                raise InputError(f"ingestion {iid} already exists with another definition ({', '.join(other)})",
                                 fix="pass --replace to update it")
            if cur.schedule is not None and "crontab" not in cur.schedule:
                warnings.append(f"{iid}: its schedule was '{_describe(cur.schedule)}'; from now on cron runs it "
                                f"('crontab {ln.expr}'): remove any APScheduler job of it (`cutover legacy sync` "
                                f"reports it)")
        items.append(ImportItem(ln.n, iid, ln.expr, ln.command, action, "managed" if ln.in_block else "adopt",
                                want, changes, by_map, ln.text))
    inferred: dict[str, str] = {}
    for it in items:
        inferred = infer_from_wrapper(it.command)
        if inferred:
            break
    cfg = CronConfig(crontab=str(cf.path), run_log=run_log or inferred.get("run_log"),
                     wrapper=wrapper or inferred.get("wrapper"), timezone=tz,
                     output_dir=output_dir or inferred.get("output_dir"))
    if cfg.run_log is None:
        warnings.append("no run log known: pass --run-log FILE (the JSON lines the wrapper appends), "
                        "else run records cannot be read from the cron side")
    unused = sorted(set(mapping) - set(used_maps))
    if unused:
        raise InputError(f"--map {', '.join(repr(u) for u in unused)} matches no unmarked line outside the managed "
                         f"block of {cf.path}", fix="check the text (it is matched against the command)")
    return ImportPlan(str(cf.path), tz, items, cfg, warnings, ignored)


def _describe(spec) -> str:
    return describe(spec)


def apply_import(ws, plan: ImportPlan) -> ImportPlan:
    """Write the plan: ingestions (one transaction), then adopt the lines (one crontab write, backup
    first), then save the cron config. Idempotent: importing again changes nothing."""
    todo = [it.ingestion for it in plan.items if it.action != "unchanged"]
    if todo:
        ws.ingestions.upsert(todo, replace_existing=True)
    adapter = CronAdapter(ws, plan.config)
    mapping = {it.text: it.ingestion_id for it in plan.items if it.by_mapping and it.line_action == "adopt"}
    if any(it.line_action == "adopt" for it in plan.items):
        adapter.adopt(mapping)
    plan.config.save(ws.settings)
    return plan


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
    (``cutover.registry.LegacySide``: the registry composes them)."""

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


__all__ = [
    "BEGIN", "END", "PAUSED", "CronAdapter", "CronConfig", "CronLegacySide", "CrontabFile", "Line",
    "VixieCronTrigger", "apply_import", "fields", "fire_times", "next_fire_time", "normalize_expr", "parse_crontab",
    "plan_import", "read_run_log", "to_crontab_expr",
]
