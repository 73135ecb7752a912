"""Every line of a crontab as cron reads it, and the team's commands as generic jobs (issue #15).

`cutover cron import` used to take only lines that run a cutover ingestion; the other job lines
are a team's own commands (``/opt/etl/bin/sync_customers.sh --full``, ``spark-submit ...``). Each
becomes a ``command`` job (``cutover.core.records.jobs``) and its line is *wrapped in place* with
``cutover cron exec --job ID -- SHELL -c '<the command>'`` (``legacy.cron.jobexec`` records its
runs). Nothing else in the file changes: blank lines, comments, environment lines and every line
not adopted stay byte-identical; :func:`unwrap_text` puts the original bytes of each wrapped line
back (the job keeps the original text in ``legacy.text``).

Cron's rules, as Vixie/Debian cron (and cronie) apply them:

- an environment line (``NAME = value``, value optionally quoted) applies to the job lines after it
  (each entry gets the environment as it stands when the line is read); ``SHELL`` picks the shell
  (default ``/bin/sh``), ``CRON_TZ`` the zone of the schedules after it (cronie), ``MAILTO`` where
  the output is mailed (recorded on the job: Prefect does not mail it);
- ``@yearly``/``@annually``/``@monthly``/``@weekly``/``@daily``/``@midnight``/``@hourly`` are
  their 5-field forms; ``@reboot`` runs once when cron starts: not a schedule, listed with that
  reason and left alone;
- in the command, the first ``%`` not escaped as ``\\%`` ends the command; what follows is the
  command's stdin, each further unescaped ``%`` a newline (and a final newline added), ``\\%`` a
  literal ``%`` (:func:`split_percent`). The job stores the command and the stdin as the shell and
  the command receive them;
- ``#`` inside a command is the shell's business (a quoted ``#`` is data, an unquoted one after a
  blank starts a shell comment): the command is handed to the shell unchanged, so either way it
  behaves as before.

Wrapping keeps cron's reading of the line exactly: the schedule part is kept byte for byte, the
command's raw text is put inside single quotes (``'`` as ``'"'"'``) -- cron's ``%`` processing
commutes with that, since it only looks at ``\\`` and ``%`` -- and the raw ``%...`` stdin part is
appended unchanged, so cron still feeds the same stdin (to the wrapper, which passes it on).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cutover.core.errors import InputError
from cutover.core.records.jobs import unique_id
from cutover.core.schedule.cronexpr import MACROS, normalize_expr

_ENV_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_SLUG = re.compile(r"[^a-z0-9]+")
EXEC_VERB = "cron exec"
_WRAPPED = re.compile(r"\bcron exec\b.*? --job ([a-z0-9][a-z0-9_\-]{0,127}) -- ")
PAUSED = "#cutover-paused# "
DEFAULT_SHELL = "/bin/sh"
CRON_ONLY = ("CRON_TZ", "MAILTO")  # read by cron itself, not passed on by cutover's Prefect side


@dataclass
class CronLine:
    """One line of a crontab as cron reads it."""

    n: int  # 1-based
    text: str  # without its newline
    kind: str  # blank | comment | env | job | reboot | invalid | wrapped
    env: dict[str, str] = field(default_factory=dict)  # the environment in effect (job lines)
    sched_text: str | None = None  # as written
    expr: str | None = None  # 5 fields (macros expanded)
    command_raw: str | None = None  # the line from the command on, verbatim
    command_at: int | None = None  # index of the command in text
    reason: str | None = None  # invalid / reboot: why it is not a job cutover can schedule
    job_id: str | None = None  # wrapped: the job it runs
    paused: bool = False  # wrapped and commented out by cutover

    @property
    def shell_part(self) -> str:
        return split_percent(self.command_raw or "")[0]

    @property
    def stdin(self) -> str | None:
        return split_percent(self.command_raw or "")[1]

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.n, "kind": self.kind, "schedule": self.sched_text, "expr": self.expr,
                "command": self.command_raw, "reason": self.reason, "job_id": self.job_id, "paused": self.paused}


def split_percent(command: str) -> tuple[str, str | None]:
    """(what the shell gets, the stdin or None) of a crontab command, as cron splits it."""
    out: list[str] = []
    escaped = False
    rest = None
    for i, ch in enumerate(command):
        if escaped:
            escaped = False
            if ch == "%":
                out[-1] = "%"
                continue
            out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            out.append(ch)
            continue
        if ch == "%":
            rest = command[i + 1:]
            break
        out.append(ch)
    if rest is None:
        return "".join(out), None
    data: list[str] = []
    escaped = need_newline = False
    for ch in rest:
        if escaped:
            if ch != "%":
                data.append("\\")
        elif ch == "%":
            ch = "\n"
        escaped = ch == "\\"
        if not escaped:
            data.append(ch)
            need_newline = ch != "\n"
    if escaped:
        data.append("\\")
    if need_newline:
        data.append("\n")
    return "".join(out), "".join(data)


def raw_split(command: str) -> tuple[str, str | None]:
    """(raw text before the first unescaped ``%``, raw text after it or None): nothing decoded."""
    escaped = False
    for i, ch in enumerate(command):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            return command[:i], command[i + 1:]
    return command, None


def _env_value(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        v = v[1:-1]
    return v


def _split_job(text: str) -> tuple[str, int] | None:
    """(schedule as written, index where the command starts) of a job-looking line."""
    s = text.lstrip()
    lead = len(text) - len(s)
    if s.startswith("@"):
        m = re.match(r"(@\S+)[ \t]+", s)
        if not m:
            return None
        return m.group(1), lead + m.end()
    m = re.match(r"(\S+[ \t]+\S+[ \t]+\S+[ \t]+\S+[ \t]+\S+)[ \t]+(?=\S)", s)
    if not m:
        return None
    return m.group(1), lead + m.end()


def read_lines(text: str) -> list[CronLine]:
    """Every line of a crontab, classified, with the environment in effect at each job line."""
    env: dict[str, str] = {}
    out: list[CronLine] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        paused = raw.startswith(PAUSED) and bool(_WRAPPED.search(raw))
        body = raw[len(PAUSED):] if paused else raw
        s = body.strip()
        if not s:
            out.append(CronLine(n, raw, "blank"))
            continue
        if s.startswith("#"):
            out.append(CronLine(n, raw, "comment"))
            continue
        m = _ENV_LINE.match(s)
        if m and not paused and not re.match(r"^\S+\s+\S+\s+\S+\s+\S+\s+\S+\s", s):
            env[m.group(1)] = _env_value(m.group(2))
            out.append(CronLine(n, raw, "env"))
            continue
        job = _split_job(body)
        if job is None:
            out.append(CronLine(n, raw, "comment" if paused else "invalid",
                                reason=None if paused else "neither a job, an environment line nor a comment"))
            continue
        sched_text, at = job
        command = body[at:]
        line = CronLine(n, raw, "job", dict(env), sched_text, None, command, at + (len(PAUSED) if paused else 0))
        if sched_text.lower() == "@reboot":
            line.kind, line.reason = "reboot", "@reboot runs once when cron starts, not on a schedule"
            out.append(line)
            continue
        try:
            line.expr = normalize_expr(sched_text if sched_text.startswith("@") else sched_text)
        except InputError as e:
            line.kind, line.reason = "invalid", e.message
            out.append(line)
            continue
        w = _WRAPPED.search(command)
        if w:
            line.kind, line.job_id, line.paused = "wrapped", w.group(1), paused
        out.append(line)
    return out


def job_id_for(line: CronLine, taken: set[str]) -> str:
    """A job id from the command's program name (``sync_customers.sh --full`` -> ``sync-customers``),
    made unique against ``taken`` (which it joins)."""
    try:
        words = shlex.split(line.shell_part, comments=True)
    except ValueError:
        words = line.shell_part.split()
    words = [w for w in words if not _ENV_LINE.match(w)] or ["job"]
    prog = Path(words[0]).name
    if prog in ("sh", "bash", "python", "python3", "spark-submit", "env", "nice", "ionice", "flock", "timeout") \
            and len(words) > 1:
        rest = [w for w in words[1:] if not w.startswith("-")]
        prog = Path(rest[-1] if prog == "flock" and rest else (rest[0] if rest else words[1])).name
    stem = prog.rsplit(".", 1)[0] if "." in prog[1:] else prog
    if stem in ("echo", "printf", "cat", "date", "curl", "wget", "sleep", "true", "test", "find", "rm", "mail"):
        plain = [w for w in words[1:] if re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,30}", w)]
        stem = f"{stem}-{plain[0]}" if plain else stem
    return unique_id(_SLUG.sub("-", stem.lower()).strip("-")[:100], taken)


def wrap_line(line: CronLine, job_id: str, exec_prefix: str) -> str:
    """The line with its command wrapped by ``cutover cron exec`` (see the module doc)."""
    if line.command_raw is None or line.command_at is None:
        raise ValueError("not a job line")
    shell = line.env.get("SHELL") or DEFAULT_SHELL
    before, after = raw_split(line.command_raw)
    quoted = "'" + before.replace("'", "'\"'\"'") + "'"
    head = line.text[:line.command_at]
    cmd = f"{exec_prefix} --job {job_id} -- {_cron_escape(shlex.quote(shell))} -c {quoted}"
    return head + cmd + ("%" + after if after is not None else "")


def _cron_escape(text: str) -> str:
    """Text written into a crontab command that cron must pass on unchanged: ``%`` as ``\\%``."""
    if "\\" in text:
        raise InputError(f"{text!r} contains a backslash, which cron would read", fix="use a path without '\\'")
    return text.replace("%", "\\%")


def exec_prefix(python: str, home: str) -> str:
    """``<python> -m cutover cron exec --home <home>`` quoted for the shell and escaped for cron."""
    return " ".join(_cron_escape(shlex.quote(p)) for p in (python, "-m", "cutover", "cron", "exec", "--home", home))


def unwrap_text(text: str, lines: dict[str, tuple[str, str]]) -> str:
    """``text`` with wrapped lines put back: {job id: (wrapped text, original text)}, each found by
    its text (paused or not), wherever it is now. A job whose line is neither the wrapped nor the
    original text any more (edited by hand since) is refused, nothing changed."""
    out = text.split("\n")
    for jid, (wrapped, original) in lines.items():
        at = [i for i, t in enumerate(out) if t in (wrapped, PAUSED + wrapped)]
        if at:
            for i in at:
                out[i] = original
        elif original not in out:
            raise InputError(f"the crontab line of job {jid} is no longer the line cutover wrote",
                             fix="put the original line back by hand (`cutover ingestion show` shows it as legacy.text)")
    return "\n".join(out)


__all__ = ["CronLine", "MACROS", "PAUSED", "exec_prefix", "job_id_for", "raw_split", "read_lines", "split_percent",
           "unwrap_text", "wrap_line"]
