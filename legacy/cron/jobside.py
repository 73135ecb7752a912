"""The generic crontab side: a team's command lines, wrapped by `cutover cron exec` (issue #15).

``cutover.protocol.OrchestratorWriter`` over the command jobs of one crontab FILE (ids: cutover job
ids), registered in ``cutover.registry.GENERIC_SIDES["cron"]``:

- a job's line is the line ``cutover cron import --jobs`` wrapped in place (``--job ID`` names it),
  or one :meth:`CronJobsAdapter.ensure_job` appends at the end of the file;
- pause comments the line out (``#cutover-paused# <the line>``), resume restores it byte for byte;
- a run now (:meth:`trigger`) runs the line as cron would -- its shell, its environment lines, its
  stdin -- through the same wrapper (trigger ``manual``), and waits;
- runs come from the records ``cutover cron exec`` writes (``cutover.core.records.jobruns``).

Every write goes through ``legacy.cron.crontab.CrontabFile.edit`` (lock, re-read, backup, atomic
replace); no other line changes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from cutover.core.errors import InputError, NotFound
from cutover.core.osutil import pid_alive
from cutover.core.records.jobruns import RUNNING, JobRunStore, effective_status
from cutover.core.schedule.cronexpr import next_fire_time
from cutover.protocol import CREATED, UNCHANGED, UPDATED, Health, JobInfo, OrchestratorError
from legacy.cron.crontab import CrontabFile, to_crontab_expr
from legacy.cron.generic import PAUSED, exec_prefix, read_lines, split_percent, wrap_line
from legacy.cron.jobimport import ORCHESTRATOR

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.records.jobs import Job

UTC = timezone.utc


def encode_command(shell: str, stdin: str | None) -> str:
    """The crontab command text cron reads as ``shell`` with ``stdin`` (the inverse of
    ``legacy.cron.generic.split_percent``): ``%`` escaped, stdin after a ``%`` with newlines as ``%``."""
    if "\n" in shell:
        raise InputError("a crontab command cannot hold a newline", fix="put the command in a script")
    text = shell.replace("%", "\\%")
    if stdin is None:
        return text
    data = stdin[:-1] if stdin.endswith("\n") else stdin
    return text + "%" + data.replace("%", "\\%").replace("\n", "%")


class CronJobsAdapter:
    """The command jobs of one crontab FILE."""

    name = "cron-jobs"

    def __init__(self, ws, crontab: str | Path, *, python: str | None = None, timeout: float = 3600):
        self.ws = ws
        self.file = CrontabFile(crontab)
        self.python = python or sys.executable
        self.timeout = timeout
        self.runs = JobRunStore(ws.autoloader_engine)

    # -- reading ------------------------------------------------------------------------------
    def _mine(self) -> dict[str, "Job"]:
        return {j.id: j for j in self.ws.jobs.list() if j.kind == "command"
                and j.legacy.get("orchestrator") == ORCHESTRATOR and j.legacy.get("crontab") == str(self.file.path)}

    def _read(self):
        try:
            return read_lines(self.file.read_text())
        except OSError as e:
            raise OrchestratorError(f"crontab {self.file.path} cannot be read ({e.strerror})") from None

    def _line(self, jid: str):
        for ln in self._read():
            if ln.kind == "wrapped" and ln.job_id == jid:
                return ln
        return None

    def _job(self, jid: str) -> "Job":
        job = self._mine().get(jid)
        if job is None:
            raise NotFound(f"no command job {jid!r} from crontab {self.file.path}",
                           fix="`cutover ingestion list` shows the jobs")
        return job

    def list_jobs(self) -> list[JobInfo]:
        mine = self._mine()
        now = datetime.now(UTC)
        out = []
        for ln in self._read():
            if ln.kind != "wrapped" or ln.job_id not in mine:
                continue
            job = mine[ln.job_id]
            tz = job.schedule_timezone
            out.append(JobInfo(ingestion_id=ln.job_id, orchestrator="cron", job_id=f"{self.file.path}:{ln.n}",
                               schedule=f"crontab {ln.expr} ({tz})", paused=ln.paused,
                               next_run_time=None if ln.paused else next_fire_time(ln.expr, tz, now)))
        return out

    def read_runs(self, *, since: datetime | None = None, ingestion_id: str | None = None):
        ids = [ingestion_id] if ingestion_id else list(self._mine())
        return [replace(r.run, status=effective_status(r.run)) for r in self.runs.list(since=since, job_ids=ids)]

    def read_ledger(self, ingestion_id: str, namespace: str, *, since: datetime | None = None) -> list:
        return []  # a command writes no cutover ledger (unless it uses cutover.sdk)

    def health(self) -> Health:
        try:
            n = sum(1 for ln in self._read() if ln.kind == "wrapped")
        except (OrchestratorError, NotFound) as e:
            return Health(False, str(e))
        return Health(True, f"crontab {self.file.path}: {n} wrapped line(s)")

    # -- writing ------------------------------------------------------------------------------
    def _wanted_line(self, job: "Job") -> str:
        if job.kind != "command":
            raise InputError(f"job {job.id} is a {job.kind} job", fix="the crontab side runs command jobs")
        expr = to_crontab_expr(job.schedule, job.schedule_timezone)
        if job.shell is not None:
            shell = job.shell
        else:
            import shlex

            shell = shlex.join(job.argv or ())
        env_lines = "".join(f"{k}={v}\n" for k, v in sorted(job.env.items()) if k == "SHELL")
        text = f"{expr} {encode_command(shell, job.stdin)}"
        ln = read_lines(env_lines + text)[-1]
        return wrap_line(ln, job.id, exec_prefix(self.python, str(self.ws.settings.home)))

    def ensure_job(self, job: "Job") -> str:
        """Add the job's wrapped line at the end of the file, or update it in place (a paused line
        stays paused); created|updated|unchanged."""
        want = self._wanted_line(job)
        if job.legacy.get("wrapped") and job.legacy.get("crontab") == str(self.file.path) and \
                job.schedule == {"crontab": read_lines(job.legacy["text"])[-1].expr}:
            want = job.legacy["wrapped"]  # an imported line keeps its own form

        def change(text, _lines):
            lines = text.split("\n")
            for i, ln in enumerate(read_lines(text)):
                if ln.kind == "wrapped" and ln.job_id == job.id:
                    new = (PAUSED + want) if ln.paused else want
                    if lines[i] == new:
                        return text, UNCHANGED
                    lines[i] = new
                    return "\n".join(lines), UPDATED
            body = text if text.endswith("\n") or not text else text + "\n"
            return body + want + "\n", CREATED

        _, result = self.file.edit(change)
        cur = self.ws.jobs.find(job.id)
        legacy = {**job.legacy, "orchestrator": ORCHESTRATOR, "crontab": str(self.file.path), "wrapped": want}
        legacy.setdefault("text", want)
        new = replace(job, legacy=legacy)
        if cur is None or cur != replace(new, prefect_deployment_id=cur.prefect_deployment_id,
                                         prefect_flow_id=cur.prefect_flow_id):
            self.ws.jobs.upsert([new], replace_existing=True, taken={i.id for i in self.ws.ingestions.list()})
        return result

    def remove_job(self, jid: str) -> bool:
        def change(text, _lines):
            lines = text.split("\n")
            doomed = [i for i, ln in enumerate(read_lines(text)) if ln.kind == "wrapped" and ln.job_id == jid]
            for i in reversed(doomed):
                del lines[i]
            return "\n".join(lines), bool(doomed)

        return self.file.edit(change)[1]

    def _set_paused(self, jid: str, paused: bool) -> bool:
        self._job(jid)

        def change(text, _lines):
            lines = text.split("\n")
            for i, ln in enumerate(read_lines(text)):
                if ln.kind == "wrapped" and ln.job_id == jid:
                    if ln.paused == paused:
                        return text, False
                    lines[i] = PAUSED + lines[i] if paused else lines[i][len(PAUSED):]
                    return "\n".join(lines), True
            raise NotFound(f"job {jid} has no line in {self.file.path}", fix="run `cutover cron import --jobs` again")

        return self.file.edit(change)[1]

    def pause(self, jid: str) -> bool:
        return self._set_paused(jid, True)

    def resume(self, jid: str) -> bool:
        return self._set_paused(jid, False)

    def trigger(self, jid: str, *, wait: bool = True) -> str:
        """Run the job's line now as cron would (its shell, environment lines and stdin) through the
        wrapper, trigger ``manual``; returns the run id (waits for the end unless ``wait`` is False)."""
        self._job(jid)
        ln = self._line(jid)
        if ln is None:
            raise NotFound(f"job {jid} has no line in {self.file.path}", fix="run `cutover cron import --jobs` again")
        import shlex

        shell_part, stdin = split_percent(ln.command_raw or "")
        argv = shlex.split(shell_part)
        at = argv.index("--job")
        run_id = uuid.uuid4().hex
        argv = argv[:at] + ["--trigger", "manual", "--run-id", run_id] + argv[at:]
        env = {**os.environ, **ln.env}
        env.setdefault("SHELL", "/bin/sh")
        import cutover

        root = str(Path(cutover.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env, cwd=ln.env.get("HOME") or os.path.expanduser("~"), start_new_session=True)
        if wait:
            proc.communicate((stdin or "").encode(), timeout=self.timeout)
        else:
            proc.stdin.write((stdin or "").encode())
            proc.stdin.close()
        return run_id

    def cancel_running(self, jid: str) -> int:
        """SIGTERM to the wrappers of the job's running runs on this host (they pass it on)."""
        n = 0
        for r in self.runs.list(job_id=jid):
            if r.run.status == RUNNING and pid_alive(r.run.pid):
                try:
                    os.kill(r.run.pid, signal.SIGTERM)
                    n += 1
                except (ProcessLookupError, PermissionError):
                    pass
        return n
