"""The crontab file: lines, the managed block, and every edit (locked, backed up, atomic).

See ``legacy.cron.side`` for the semantics (Vixie cron, the managed block, pause/resume).
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from cutover.core.errors import InputError, NotFound
from cutover.core.osutil import atomic_write
from cutover.core.validate import show_bytes
from cutover.core.schedule.cronexpr import normalize_expr
from cutover.core.schedule.translate import translate, zone_offsets
from cutover.core.schedule.triggers import schedule_timezone
from cutover.protocol import OrchestratorError


UTC = timezone.utc
BEGIN = "# BEGIN cutover managed"
END = "# END cutover managed"
PAUSED = "#cutover-paused# "
MARKER = re.compile(r"#\s*cutover:\s*ingestion=([A-Za-z0-9_\-]+)")
_ENV_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
KEEP_BACKUPS = 50


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


def replace_schedule(job_text: str, sched_text: str, expr: str) -> str:
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
        except UnicodeDecodeError as e:
            raise InputError(f"crontab file {self.path} is not UTF-8 text (undecodable byte "
                             f"{show_bytes(e.object[e.start:e.start + 1], 1)} at offset {e.start})",
                             fix="give a crontab file (text), e.g. from `crontab -l > FILE`") from None
        except IsADirectoryError:
            raise InputError(f"crontab file {self.path} is a directory", fix="give the path of a crontab file") from None
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
