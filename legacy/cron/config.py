"""The crontab side's setup (``$CUTOVER_HOME/cron.json``) and the wrapper's run log."""

from __future__ import annotations

import json
import shlex
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cutover.core.errors import InputError
from cutover.core.osutil import atomic_write, pid_alive as _pid_alive
from cutover.core.records.runs import RunRecord


UTC = timezone.utc
EXIT_SKIPPED = 75  # the wrapper's exit code when the legacy side is paused/fenced (EX_TEMPFAIL)
CONFIG_NAME = "cron.json"


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
