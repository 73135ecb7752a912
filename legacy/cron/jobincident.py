"""The incident control of a team's crontab command jobs (``cutover.protocol.IncidentWriter``, issue #15).

`cutover pause --all` comments out the wrapped line of every command job imported from a crontab
(``legacy.cron.jobside``: ``#cutover-paused# <the line>``, the form its pause uses, which cron
ignores), and `cutover resume` takes the marker off again, so the file is back byte for byte:

- snapshot part: ``{"lines": {job id: {"crontab", "paused", "sha"}}, "missing": [job id]}``: the file,
  whether the line was paused before, and the SHA-256 of the line as it was (no command text: a
  command line may hold a secret);
- pause / restore: one ``CrontabFile.edit`` per file (lock, re-read, backup, atomic replace), every
  other line untouched; a line paused before the pause stays paused;
- drift: a line that is no longer ``#cutover-paused# `` + the recorded line (edited or un-commented
  during the incident) or that is gone is reported and left as it is now -- never clobbered.

No fence: cron checks no cutover switch; commenting the lines out is the stop (one file write).
``available(ws)``: only when the workspace holds command jobs from a crontab.
"""

from __future__ import annotations

import hashlib

from cutover.core.errors import NotFound
from cutover.protocol import Restored, UnfencedIncident

# ``legacy.cron.jobimport.ORCHESTRATOR`` and ``legacy.cron.generic.PAUSED`` (a test checks they agree): the
# registry loads this module on every `cutover pause` for ``available``, so the crontab code is imported
# only when there are jobs (in the methods below)
ORCHESTRATOR = "cron"
PAUSED = "#cutover-paused# "


def CrontabFile(path):  # noqa: N802 - the class it builds
    from legacy.cron.crontab import CrontabFile as cls

    return cls(path)


def read_lines(text: str):
    from legacy.cron.generic import read_lines as read

    return read(text)


def _team_jobs(ws, ids: list[str] | None = None) -> list:
    wanted = set(ids) if ids is not None else None
    return [j for j in ws.jobs.list() if j.kind == "command" and j.legacy.get("orchestrator") == ORCHESTRATOR
            and j.legacy.get("crontab") and (wanted is None or j.id in wanted)]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _wrapped(text: str) -> dict[str, tuple[int, object]]:
    """{job id: (index, line)} of the wrapped lines of a crontab text."""
    return {ln.job_id: (i, ln) for i, ln in enumerate(read_lines(text)) if ln.kind == "wrapped"}


class CronJobsIncident(UnfencedIncident):
    name = "cron-jobs"
    label = "team crontab lines"

    def __init__(self, ws, **_):
        self.ws = ws

    @staticmethod
    def available(ws) -> bool:
        return bool(_team_jobs(ws))

    def _by_file(self, ids) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for j in _team_jobs(self.ws, list(ids)):
            out.setdefault(j.legacy["crontab"], []).append(j.id)
        return out

    # -- reader
    def read(self, ids: list[str]) -> dict:
        lines, missing = {}, []
        for path, jids in self._by_file(ids).items():
            try:
                found = _wrapped(CrontabFile(path).read_text())
            except NotFound:
                found = {}
            for jid in jids:
                if jid not in found:
                    missing.append(jid)
                    continue
                _, ln = found[jid]
                orig = ln.text[len(PAUSED):] if ln.paused else ln.text
                lines[jid] = {"crontab": path, "paused": ln.paused, "sha": _sha(orig)}
        return {"lines": lines, "missing": sorted(missing)}

    def counts(self, state: dict | None) -> dict:
        lines = (state or {}).get("lines") or {}
        return {"team_crontab_lines": len(lines),
                "team_crontab_lines_already_paused": sum(1 for v in lines.values() if v["paused"])}

    def describe_pause(self, state: dict, *, fence: bool) -> list[str]:
        c = self.counts(state)
        extra = f"; {len(state.get('missing') or [])} imported job(s) without their line" if state.get("missing") else ""
        return [f"team crontab: {c['team_crontab_lines']} line(s), "
                f"{c['team_crontab_lines'] - c['team_crontab_lines_already_paused']} to comment out{extra}"]

    def _mine(self, state: dict) -> dict[str, list[tuple[str, dict]]]:
        """{crontab: [(job id, record)]} of the lines this pause paused."""
        out: dict[str, list] = {}
        for jid, rec in (state.get("lines") or {}).items():
            if not rec["paused"]:
                out.setdefault(rec["crontab"], []).append((jid, rec))
        return out

    def plan_text(self, text: str, recs: list[tuple[str, dict]]) -> tuple[str, int, list[str]]:
        """(the text with the lines of ``recs`` restored, how many, notes) -- the restore of one file."""
        lines = text.split("\n")
        found = _wrapped(text)
        n, notes = 0, []
        for jid, rec in recs:
            if jid not in found:
                notes.append(f"the crontab line of job {jid} was removed since the snapshot: nothing to restore")
                continue
            i, ln = found[jid]
            if not ln.paused:
                continue  # restored already (a resume cut short), or un-commented by hand: drift shows it
            if _sha(ln.text[len(PAUSED):]) != rec["sha"]:
                notes.append(f"the crontab line of job {jid} was changed during the pause: left commented out as it is "
                             f"now (check it, then take the `#cutover-paused# ` marker off by hand)")
                continue
            lines[i] = ln.text[len(PAUSED):]
            n += 1
        return "\n".join(lines), n, notes

    def describe_restore(self, state: dict, fence_before: dict | None) -> tuple[list[str], list[str]]:
        n, notes = 0, []
        for path, recs in self._mine(state).items():
            try:
                text = CrontabFile(path).read_text()
            except NotFound:
                notes.append(f"crontab {path} is gone: its {len(recs)} line(s) cannot be restored")
                continue
            _, k, more = self.plan_text(text, recs)
            n += k
            notes += more
        kept = sum(1 for v in (state.get("lines") or {}).values() if v["paused"])
        return [f"team crontab: {n} line(s) to un-comment, {kept} paused before the pause stay paused"], notes

    def drift_items(self, state: dict, out: list[dict]) -> None:
        for path, recs in self._mine(state).items():
            found = _wrapped(CrontabFile(path).read_text())
            for jid, _ in recs:
                if jid in found and not found[jid][1].paused:
                    out.append({"kind": "team crontab line", "ingestion_id": jid, "item": f"{path}:{jid}",
                                "detail": "crontab line un-commented"})

    # -- writer (no fence: see the module docstring)
    def pause_state(self, state: dict) -> int:
        n, errors = 0, []
        for path, recs in self._mine(state).items():
            wanted = {jid for jid, _ in recs}

            def change(text, _lines, wanted=wanted):
                lines = text.split("\n")
                k = 0
                for jid, (i, ln) in _wrapped(text).items():
                    if jid in wanted and not ln.paused:
                        lines[i] = PAUSED + ln.text
                        k += 1
                return "\n".join(lines), k

            try:
                n += CrontabFile(path).edit(change)[1]
            except Exception as e:  # noqa: BLE001 - the other files are paused all the same; re-runnable
                errors.append(f"crontab {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        if errors:
            raise RuntimeError("; ".join(errors))
        return n

    def restore(self, state: dict, *, progress_stream=None) -> Restored:
        kept = sum(1 for v in (state.get("lines") or {}).values() if v["paused"])
        out = Restored({"team_crontab_lines_restored": 0, "team_crontab_lines_kept_paused": kept}, [], [])
        for path, recs in self._mine(state).items():
            notes: list[str] = []

            def change(text, _lines, recs=recs, notes=notes):
                new, k, more = self.plan_text(text, recs)
                notes[:] = more
                return new, k

            try:
                out.changes["team_crontab_lines_restored"] += CrontabFile(path).edit(change)[1]
            except NotFound:
                out.notes.append(f"crontab {path} is gone: its {len(recs)} line(s) cannot be restored")
                continue
            except Exception as e:  # noqa: BLE001 - collected; resume is re-runnable
                out.errors.append(f"crontab {path}: {type(e).__name__}")
                continue
            out.notes += notes
        return out
