"""`cutover watch`: rollback triggers for every ingestion in CUTOVER (the bake period).

Four triggers per ingestion, thresholds from ``[watch]`` in cutover.toml:

- ``failure_rate``: share of FAILED/CRASHED among the finished Prefect live runs
  started in the window (and after the cutover) above ``failure_rate``;
- ``parity``: the last stored parity verdict, recorded after the cutover, is ``fail``;
- ``prefect_unreachable``: the Prefect API has been unreachable for longer than
  ``unreachable_after``. The first failed health check is recorded in the audit
  log (``watch-prefect-down``) and cleared by the first healthy one
  (``watch-prefect-up``), so successive ``watch --once`` calls from cron add up;
- ``duration_regression``: median duration of the successful Prefect live runs in
  the window above the median of the last legacy live runs before the cutover by
  more than ``duration_regression`` (0.5 = +50%).

No false alarms: a side with fewer than ``min_runs`` runs is not judged, nor a
legacy median below ``min_duration`` (sub-second runs are noise).

Evaluation is read-only except for the unreachable marker. :func:`act` turns a
fired evaluation into alerts (a WARNING line per trigger on stderr) or, with
``auto_rollback``, into ``cutover rollback`` run in-process; every firing episode
is recorded in the audit log (``watch-fired`` when a trigger starts firing for an
ingestion, ``watch-cleared`` when it stops), and every auto-rollback attempt too
(``watch-rollback``). An auto-rollback that did not complete (the rollback command
exited non-zero, e.g. Prefect down: legacy resumed, Prefect steps held) is run again
by every following round until it completes, even when no trigger fires any more
(the legacy side is already live again: leaving the Prefect side live too is not an
option). During an operator pause nothing is rolled back automatically.
"""

from __future__ import annotations

import logging
import shlex
import statistics
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import select

from cutover.core.errors import EXIT_FAIL, EXIT_OK, EXIT_PARTIAL, CutoverError, InputError
from cutover.core.records.tables import runs as t_runs
from cutover.core.output import human_duration
from cutover.core.redact import redact_text
from cutover.core.state import audit
from cutover.core.state import states
from cutover.core.state.models import audit_log as t_audit
from cutover.core.state.models import cutover_states as t_states
from cutover.engine.rollback import print_report, rollback as engine_rollback
from cutover.engine.status import active_pause
from cutover.registry import parity_history
from cutover.registry.sides import LiveSides

log = logging.getLogger("cutover.engine.watch")

TRIGGERS = ("failure_rate", "parity", "prefect_unreachable", "duration_regression")
FAILED_STATUSES = ("FAILED", "CRASHED")
OK_STATUSES = ("SUCCESS", "PARTIAL")
BASELINE_RUNS = 20  # legacy live runs before the cutover that make the duration baseline

A_FIRED, A_CLEARED, A_ROLLBACK = "watch-fired", "watch-cleared", "watch-rollback"
A_DOWN, A_UP = "watch-prefect-down", "watch-prefect-up"
PREFECT_TARGET = "prefect"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


@dataclass(frozen=True)
class Thresholds:
    failure_rate: float = 0.05
    window: float = 86400.0
    unreachable_after: float = 900.0
    duration_regression: float = 0.5
    auto_rollback: bool = False
    min_runs: int = 3
    min_duration: float = 5.0

    @classmethod
    def from_settings(cls, settings) -> "Thresholds":
        w = dict(getattr(settings, "watch", None) or {})
        th = cls(**{k: w[k] for k in cls.__dataclass_fields__ if k in w})
        th.validate()
        return th

    def validate(self) -> None:
        if not 0 <= self.failure_rate < 1:
            raise InputError(f"watch.failure_rate must be in [0, 1), got {self.failure_rate}",
                             fix="e.g. failure_rate = 0.05 in [watch] of cutover.toml")
        if self.duration_regression < 0:
            raise InputError(f"watch.duration_regression must not be negative, got {self.duration_regression}",
                             fix="e.g. duration_regression = 0.5 (+50%)")
        if self.min_runs < 1:
            raise InputError(f"watch.min_runs must be at least 1, got {self.min_runs}", fix="e.g. min_runs = 3")
        if self.window <= 0:
            raise InputError("watch.window must be positive", fix='e.g. window = "24h"')


@dataclass
class Trigger:
    name: str
    fired: bool = False
    judged: bool = True  # False: not enough data to say (never fires)
    value: float | None = None
    threshold: float | None = None
    detail: str = ""


@dataclass
class IngestionEval:
    id: str
    state: str
    cutover_at: datetime | None
    triggers: list[Trigger] = field(default_factory=list)
    action: str | None = None  # alerted | rolled_back | rollback_failed
    action_detail: str | None = None
    pending_rollback: dict | None = None  # an earlier auto-rollback that did not complete

    @property
    def fired(self) -> list[Trigger]:
        return [t for t in self.triggers if t.fired]

    def as_dict(self) -> dict:
        return {"id": self.id, "state": self.state,
                "cutover_at": self.cutover_at.isoformat() if self.cutover_at else None,
                "fired": [t.name for t in self.fired],
                "triggers": {t.name: {k: v for k, v in asdict(t).items() if k != "name"} for t in self.triggers},
                "action": self.action, "action_detail": self.action_detail,
                "pending_rollback": self.pending_rollback}


@dataclass
class Evaluation:
    at: datetime
    thresholds: Thresholds
    prefect: dict
    ingestions: list[IngestionEval]
    operator_pause: dict | None = None
    exit_code: int = EXIT_OK

    def as_dict(self) -> dict:
        th = asdict(self.thresholds)
        return {"evaluated_at": self.at.isoformat(), "thresholds": th, "prefect": self.prefect,
                "operator_pause": self.operator_pause,
                "ingestions": [i.as_dict() for i in self.ingestions], "exit_code": self.exit_code}


# -- reading ---------------------------------------------------------------------------------

def cutover_ingestions(ws) -> list[tuple[str, datetime | None]]:
    """(ingestion id, when it entered CUTOVER) of every ingestion now in CUTOVER."""
    t = t_states
    with ws.state_engine.connect() as conn:
        rows = conn.execute(select(t.c.ingestion_id, t.c.updated_at).where(t.c.state == states.CUTOVER)
                            .order_by(t.c.ingestion_id)).all()
    return [(r.ingestion_id, _aware(r.updated_at)) for r in rows]


def prefect_health(ws) -> tuple[bool, str]:
    """Health of the Prefect API the live deployments run on (never starts a local server)."""
    try:
        h = LiveSides(ws, start_prefect=False).prefect("live").health()
    except Exception as e:  # noqa: BLE001 - unreachable is a finding, not a crash
        return False, redact_text(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return bool(h.ok), redact_text(h.detail)


def _last_marker(engine) -> dict | None:
    t = t_audit
    with engine.connect() as conn:
        r = conn.execute(select(t.c.action, t.c.at, t.c.detail).where(t.c.action.in_((A_DOWN, A_UP)))
                         .order_by(t.c.id.desc()).limit(1)).first()
    if r is None:
        return None
    return {"action": r.action, "at": _aware(r.at), "detail": r.detail or {}}


def unreachable_since(engine) -> datetime | None:
    """When the current Prefect outage was first observed by watch (None: not down)."""
    m = _last_marker(engine)
    if m is None or m["action"] != A_DOWN:
        return None
    since = m["detail"].get("since")
    try:
        return _aware(datetime.fromisoformat(since)) if since else m["at"]
    except ValueError:
        return m["at"]


def track_unreachable(engine, healthy: bool, detail: str, now: datetime) -> datetime | None:
    """Record the first unreachable observation / clear it when healthy; returns the outage start."""
    since = unreachable_since(engine)
    if healthy:
        if since is not None:
            audit.record(engine, A_UP, target=PREFECT_TARGET, reason=f"Prefect API healthy again: {detail}",
                         detail={"down_since": since.isoformat(), "down_for_s": round((now - since).total_seconds(), 1)})
            log.info("Prefect API reachable again (down since %s)", since.isoformat())
        return None
    if since is None:
        audit.record(engine, A_DOWN, target=PREFECT_TARGET, reason=f"Prefect API unreachable: {detail}",
                     detail={"since": now.isoformat(), "health": detail})
        return now
    return since


def _legacy_baseline(ws, iid: str, before: datetime | None) -> list[float]:
    t = t_runs
    q = (select(t.c.duration_s).where(t.c.ingestion_id == iid, t.c.orchestrator == "legacy", t.c.mode == "live",
                                      t.c.status.in_(OK_STATUSES), t.c.duration_s.is_not(None))
         .order_by(t.c.started_at.desc()).limit(BASELINE_RUNS))
    if before is not None:
        q = q.where(t.c.started_at < before.astimezone(timezone.utc))
    with ws.autoloader_engine.connect() as conn:
        return [float(d) for d in conn.execute(q).scalars()]


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%".replace(".0%", "%")


def evaluate_ingestion(ws, iid: str, cutover_at: datetime | None, th: Thresholds, now: datetime,
                       prefect: dict) -> IngestionEval:
    ev = IngestionEval(iid, states.CUTOVER, cutover_at)
    since = now - timedelta(seconds=th.window)
    if cutover_at is not None and cutover_at > since:
        since = cutover_at
    window_text = f"the last {human_duration(th.window)}" + (" (since the cutover)" if since == cutover_at else "")
    runs = ws.runs.list(ingestion_id=iid, since=since, orchestrator="prefect", mode="live")
    # backfill runs reprocess history on purpose: they say nothing about the live schedule
    finished = [r for r in runs if r.status not in ("RUNNING", "CANCELLED") and r.trigger != "backfill"]

    # 1. failure rate
    t = Trigger("failure_rate", threshold=th.failure_rate)
    bad = [r for r in finished if r.status in FAILED_STATUSES]
    if len(finished) < th.min_runs:
        t.judged = False
        t.detail = f"{len(finished)} finished Prefect live run(s) in {window_text} < min_runs {th.min_runs}: not judged"
    else:
        t.value = round(len(bad) / len(finished), 4)
        t.fired = t.value > th.failure_rate
        t.detail = (f"{len(bad)}/{len(finished)} Prefect live runs FAILED/CRASHED in {window_text} "
                    f"({_pct(t.value)} {'>' if t.fired else '<='} {_pct(th.failure_rate)})")
    ev.triggers.append(t)

    # 2. parity
    t = Trigger("parity")
    last = parity_history(ws.state_engine, iid, limit=1)
    if not last:
        t.judged, t.detail = False, "no parity verdict recorded"
    else:
        at = _aware(datetime.fromisoformat(last[0]["at"]))
        verdict = last[0]["verdict"]
        if cutover_at is not None and at < cutover_at:
            t.judged = False
            t.detail = f"last verdict {verdict} at {at.isoformat()[:19]} is from before the cutover: not judged"
        else:
            t.fired = verdict == "fail"
            t.detail = (f"last parity verdict {verdict} at {at.isoformat()[:19]} "
                        f"(parity run {last[0]['parity_run_id']}, {last[0]['findings']} finding(s))")
    ev.triggers.append(t)

    # 3. Prefect API unreachable (one observation for all ingestions)
    t = Trigger("prefect_unreachable", threshold=th.unreachable_after)
    down_since = prefect.get("unreachable_since")
    if down_since is None:
        t.detail = f"Prefect API healthy ({prefect.get('detail', '')})"
    else:
        t.value = round(prefect["unreachable_for_s"], 1)
        t.fired = t.value > th.unreachable_after
        t.detail = (f"Prefect API unreachable since {down_since[:19]}Z ({human_duration(t.value)} "
                    f"{'>' if t.fired else '<='} {human_duration(th.unreachable_after)}): {prefect.get('detail', '')}")
    ev.triggers.append(t)

    # 4. duration regression
    t = Trigger("duration_regression", threshold=th.duration_regression)
    cur = [r.duration_s for r in finished if r.status in OK_STATUSES and r.duration_s is not None]
    base = _legacy_baseline(ws, iid, cutover_at)
    if len(cur) < th.min_runs or len(base) < th.min_runs:
        t.judged = False
        t.detail = (f"{len(cur)} successful Prefect live run(s) in {window_text}, {len(base)} legacy live run(s) "
                    f"before the cutover; min_runs {th.min_runs}: not judged")
    else:
        m_cur, m_base = statistics.median(cur), statistics.median(base)
        if m_base < th.min_duration:
            t.judged = False
            t.detail = (f"legacy median {m_base:.2f}s < min_duration {th.min_duration:g}s: too short to judge "
                        f"(Prefect median {m_cur:.2f}s)")
        else:
            t.value = round(m_cur / m_base - 1, 4)
            t.fired = t.value > th.duration_regression
            t.detail = (f"median Prefect live {m_cur:.1f}s over {len(cur)} run(s) vs legacy {m_base:.1f}s over "
                        f"{len(base)} run(s) before the cutover: {'+' if t.value >= 0 else ''}{_pct(t.value)} "
                        f"({'>' if t.fired else '<='} +{_pct(th.duration_regression)})")
    ev.triggers.append(t)
    return ev


def evaluate(ws, th: Thresholds | None = None, *, now: datetime | None = None,
             health: Callable[[object], tuple[bool, str]] | None = None) -> Evaluation:
    """One round over every ingestion in CUTOVER. Writes nothing but the unreachable marker."""
    th = th or Thresholds.from_settings(ws.settings)
    now = now or utcnow()
    targets = cutover_ingestions(ws)
    prefect: dict = {"checked": False}
    if targets:  # only the live Prefect side matters here; nothing live there, nothing to watch
        ok, detail = (health or prefect_health)(ws)
        since = track_unreachable(ws.state_engine, ok, detail, now)
        prefect = {"checked": True, "healthy": ok, "detail": detail,
                   "unreachable_since": since.isoformat() if since else None,
                   "unreachable_for_s": max(0.0, (now - since).total_seconds()) if since else 0.0}
    evs = [evaluate_ingestion(ws, iid, at, th, now, prefect) for iid, at in targets]
    return Evaluation(now, th, prefect, evs, operator_pause=active_pause(ws))


# -- acting ------------------------------------------------------------------------------------

def _open_episodes(engine, iid: str, since: datetime | None) -> set[str]:
    """Triggers whose firing for this ingestion was recorded (since the cutover) and not cleared."""
    t = t_audit
    q = (select(t.c.action, t.c.at, t.c.detail).where(t.c.target == iid, t.c.action.in_((A_FIRED, A_CLEARED)))
         .order_by(t.c.id.asc()))
    open_: set[str] = set()
    with engine.connect() as conn:
        for r in conn.execute(q):
            if since is not None and _aware(r.at) < since:
                continue
            name = (r.detail or {}).get("trigger")
            if r.action == A_FIRED:
                open_.add(name)
            else:
                open_.discard(name)
    return open_


def pending_rollback(engine, iid: str, since: datetime | None) -> dict | None:
    """The last auto-rollback of this ingestion since its cutover, if it did not complete."""
    t = t_audit
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.at, t.c.reason, t.c.detail).where(t.c.target == iid, t.c.action == A_ROLLBACK)
                            .order_by(t.c.id.desc()).limit(1)).all()
    for r in rows:
        if since is not None and _aware(r.at) < since:
            return None
        if not (r.detail or {}).get("ok"):
            return {"at": _aware(r.at).isoformat(), "reason": r.reason or "watch", "detail": r.detail or {}}
    return None


def rollback_argv(iid: str, reason: str) -> list[str]:
    """The `cutover rollback` command line equivalent to the automatic rollback (for the audit log)."""
    return ["rollback", iid, "--reason", reason]


def default_rollback(ws, iid: str, reason: str) -> tuple[int, str]:
    """`cutover rollback IID --reason REASON`, in-process through the engine (it holds the operation
    lock for its steps and is refused while a pause is in force); (exit code, what was run)."""
    what = "cutover " + shlex.join(rollback_argv(iid, reason))

    def echo(line: str) -> None:  # stdout stays watch's own (--json)
        print(line, file=sys.stderr)

    try:
        report = engine_rollback(ws, [iid], reason=reason, echo=echo)
    except CutoverError as e:
        report = getattr(e, "report", None)
        if report is not None:
            print_report(report, echo)
        echo(f"error: {e.one_line()}")
        return e.exit_code, what
    print_report(report, echo)
    return EXIT_OK, what


def act(ws, ev: Evaluation, *, rollback: Callable[[str, str], tuple[int, str]] | None = None,
        auto_rollback: bool | None = None) -> int:
    """Alert or roll back for every fired trigger; audit; returns the round's exit code."""
    engine = ws.state_engine
    auto = ev.thresholds.auto_rollback if auto_rollback is None else auto_rollback
    code = EXIT_OK
    for ie in ev.ingestions:
        fired = ie.fired
        open_ = _open_episodes(engine, ie.id, ie.cutover_at)
        for t in ie.triggers:
            if t.fired and t.name not in open_:
                audit.record(engine, A_FIRED, target=ie.id, reason=f"{t.name}: {t.detail}",
                             detail={"trigger": t.name, "value": t.value, "threshold": t.threshold,
                                     "auto_rollback": auto})
            elif not t.fired and t.name in open_:
                audit.record(engine, A_CLEARED, target=ie.id, reason=f"{t.name}: {t.detail}",
                             detail={"trigger": t.name, "value": t.value})
        # an auto-rollback that did not complete (e.g. Prefect down: the legacy side is live again,
        # the Prefect deployments are not paused yet) is completed even if no trigger fires any more
        pending = ie.pending_rollback = pending_rollback(engine, ie.id, ie.cutover_at)
        if not fired and not pending:
            continue
        code = max(code, EXIT_FAIL)
        for t in fired:
            log.warning("%s: trigger %s fired: %s", ie.id, t.name, t.detail)
        if pending:
            log.warning("%s: the auto-rollback of %s (%s) is not complete", ie.id, pending["at"][:19], pending["reason"])
        if not auto:
            ie.action = "alerted"
            if pending:
                ie.action_detail = f"an auto-rollback is not complete: run `cutover rollback {ie.id}` to complete it"
            continue
        if ev.operator_pause:
            ie.action = "alerted"
            ie.action_detail = (f"operator pause {ev.operator_pause['id']} is active: no auto-rollback "
                                f"(it would resume the legacy side); decide by hand")
            log.warning("%s: %s", ie.id, ie.action_detail)
            continue
        reason = ("watch: " + ", ".join(t.name for t in fired)) if fired else pending["reason"]
        log.warning("%s: auto_rollback is on: %s (%s)", ie.id,
                    "rolling back" if not pending else "completing the rollback", reason)
        rc, what = rollback(ie.id, reason) if rollback is not None else default_rollback(ws, ie.id, reason)
        ok = rc == EXIT_OK
        ie.action = "rolled_back" if ok else "rollback_failed"
        ie.action_detail = f"{what} -> exit {rc}"
        audit.record(engine, A_ROLLBACK, target=ie.id, reason=reason,
                     detail={"triggers": [t.name for t in fired], "command": what, "exit_code": rc, "ok": ok})
        if ok:
            log.warning("%s: rolled back by watch (%s)", ie.id, reason)
        else:
            log.error("%s: AUTO-ROLLBACK FAILED (%s): act by hand, see runbooks/roll-back-a-wave.md", ie.id,
                      ie.action_detail)
            code = EXIT_PARTIAL
    ev.exit_code = code
    return code


def watch_once(ws, *, now: datetime | None = None, health=None, rollback=None,
               auto_rollback: bool | None = None) -> Evaluation:
    """One round: evaluate, then alert or roll back. ``auto_rollback`` None: as configured."""
    ev = evaluate(ws, now=now, health=health)
    act(ws, ev, rollback=rollback, auto_rollback=auto_rollback)
    return ev
