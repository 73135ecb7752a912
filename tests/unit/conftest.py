"""Engine unit tests: cutover.engine.execute and rollback against the fake sides
(cutover.testing.FakeSides) on a temporary SQLite workspace -- no Prefect server, no Redis,
no subprocess. Fast enough to kill an operation after every step.

``bench`` (function) makes fresh workspaces inside one test: ``bench.new("k3")`` -> :class:`Env`
with three ingestions over one small CSV each, their tables written once on main by a legacy
run (so ``fork_shadow`` has something to fork), in the states of ``SCENARIO``, and fake sides
whose jobs match those states (legacy jobs active except for a CUTOVER one; the shadow
deployment of a SHADOW one active).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cutover.core.state import states
from cutover.core.state.states import CUTOVER, LEGACY, ROLLED_BACK, SHADOW
from cutover.testing import FakeSides, SimulatedCrash

DAILY = {"frequency": "daily", "at": "03:10"}
# a: LEGACY -> SHADOW (3 steps), b: SHADOW -> CUTOVER (6 steps), c: ROLLED_BACK -> SHADOW (3 steps)
SCENARIO = {"a": LEGACY, "b": SHADOW, "c": ROLLED_BACK}
GATE = "streak>=0,no_open_waiver"


@dataclass
class Env:
    ws: object
    home: Path
    sides: FakeSides
    ids: list[str]
    plan: object = None
    lines: list[str] = field(default_factory=list)
    marks: dict = field(default_factory=dict)

    def echo(self, line: str) -> None:
        self.lines.append(line)

    # -- bookkeeping of the fakes' calls and effects from a point on ---------------------------
    def bookmark(self) -> None:
        self.marks = {n: (len(f.calls), len(f.effects)) for n, f in self.sides.fakes.items()}

    def calls_since(self) -> Counter:
        return Counter((n, m, a[0] if a else None) for n, f in self.sides.fakes.items()
                       for m, a in f.calls[self.marks.get(n, (0, 0))[0]:])

    def effects_since(self) -> Counter:
        return Counter((n, m, i) for n, f in self.sides.fakes.items() for m, i in f.effects[self.marks.get(n, (0, 0))[1]:])


class Bench:
    """Fresh workspaces inside one test. ``new(name)`` builds one from scratch under its own
    directory; ``template(name, then=...)`` builds one, lets ``then(env)`` bring it to a starting
    point (e.g. a completed execute) and keeps a copy of its files and fake sides; then
    ``from_template(name)`` restores that copy, in a few milliseconds, at one fixed path (the
    Iceberg catalog records absolute paths), for the next kill point."""

    def __init__(self, root: Path, monkeypatch):
        self.root = root
        self.monkeypatch = monkeypatch
        self.templates: dict[str, tuple] = {}

    def _open(self, home: Path):
        import cutover.core.db
        from cutover.core.config import load_settings
        from cutover.core.workspace import Workspace

        self.monkeypatch.setenv("CUTOVER_HOME", str(home))
        cutover.core.db.dispose_engines()
        cutover.core.db.reset_schema_cache()
        return Workspace(load_settings())

    def template(self, name: str, scenario: dict[str, str] = SCENARIO, *, then=None, **kw) -> Env:
        import shutil

        env = self.new("case", scenario, **kw)
        if then is not None:
            then(env)
        import cutover.core.db

        cutover.core.db.dispose_engines()
        tpl = self.root / "tpl" / name
        shutil.copytree(env.home, tpl)
        self.templates[name] = (tpl, env.plan, env.sides.clone(), env.ids)
        return self.from_template(name)

    def from_template(self, name: str) -> Env:
        import shutil

        import cutover.core.db

        tpl, plan, sides, ids = self.templates[name]
        home = self.root / "case" / "home"
        cutover.core.db.dispose_engines()
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(tpl, home)
        env = Env(self._open(home), home, sides.clone(), list(ids), plan)
        env.bookmark()
        return env

    def new(self, name: str, scenario: dict[str, str] = SCENARIO, *, plan: bool = True, waves: str = "rest",
            gate: str = GATE, handoff_timeout: float = 5.0) -> Env:
        import shutil

        from tests.helpers import add_ingestion, write_csv_files

        home = self.root / name / "home"
        shutil.rmtree(self.root / name, ignore_errors=True)
        ws = self._open(home)
        ings = []
        for n, (iid, state) in enumerate(scenario.items()):
            src = self.root / name / "src" / iid
            write_csv_files(src, 1, start=n)
            ing = add_ingestion(ws, iid, src, schedule=DAILY, timezone="UTC", key_columns=["id"])
            ws.service.run(ing)  # the legacy side wrote the table once
            if state != LEGACY:
                states.set_state(ws.state_engine, iid, state, force=True)
            ings.append(ing)
        sides = FakeSides(ings)
        for ing in ings:
            st = scenario[ing.id]
            if st in (SHADOW, CUTOVER):
                sides.prefect("shadow").ensure_job(ing)
            if st == CUTOVER:
                sides.legacy().pause(ing.id)
                sides.prefect("shadow").pause(ing.id)
                sides.prefect("live").ensure_job(ing)
            if st == ROLLED_BACK:  # after a rollback: both deployments there, paused
                for mode in ("live", "shadow"):
                    sides.prefect(mode).ensure_job(ing)
                    sides.prefect(mode).pause(ing.id)
        env = Env(ws, home, sides, [i.id for i in ings])
        if plan:
            env.plan = make_plan(env, waves=waves, gate=gate, handoff_timeout=handoff_timeout)
        env.bookmark()
        return env


@pytest.fixture
def bench(workspace_env, tmp_path, monkeypatch):
    """A Bench whose workspaces live in memory (/dev/shm) when it can: SQLite commits are most of
    the time of a kill point on disk."""
    import os
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="cutover-unit-", dir=shm)) if os.access(shm, os.W_OK) else tmp_path
    try:
        yield Bench(root, monkeypatch)
    finally:
        import cutover.core.db

        cutover.core.db.dispose_engines()
        if root != tmp_path:
            shutil.rmtree(root, ignore_errors=True)


def make_plan(env: Env, *, waves: str = "rest", gate: str = GATE, handoff_timeout: float = 5.0):
    """The plan `cutover plan` would make (without the parity/schedule look-ups), saved and loaded
    back as `cutover execute` loads it (the digest is checked)."""
    from cutover.engine.plan import Plan, build_plan

    cur = states.get_states(env.ws.state_engine)
    rows = [{"ingestion": i, "state": cur.get(i.id, LEGACY), "streak": 0, "fires_per_day": 1.0}
            for i in env.ws.ingestions.list()]
    p = build_plan(rows, waves=waves, gate=gate, created_by="unit", handoff_timeout=handoff_timeout)
    return Plan.loads(p.to_json(), "plan.json")


def run_execute(env: Env, *, wave: int | None = None, reason: str = ""):
    """What `cutover execute PLAN --yes` does, with the fake sides."""
    from cutover.core.errors import GateFailed
    from cutover.core.state import lock
    from cutover.engine.execute import Apply, check_stale, choose_wave, evaluate_gates, execute_wave

    ws, plan = env.ws, env.plan
    w = choose_wave(ws, plan, wave)
    check_stale(ws, plan, w)
    reasons = evaluate_gates(ws, plan, w)
    if reasons:
        raise GateFailed(f"gate not met: {reasons}")
    with lock.locked(ws.state_engine, f"execute {plan.id} wave {w.number}"):
        return execute_wave(ws, plan, w, Apply(env.sides, env.echo, poll=0.01), reason=reason)


def run_rollback(env: Env, ids: list[str] | None = None, **kw):
    from cutover.engine.rollback import rollback

    kw.setdefault("cancel_running", True)
    kw.setdefault("cancel_timeout", 5.0)
    return rollback(env.ws, ids or env.ids, sides=env.sides, echo=env.echo, **kw)


# -- crashes -------------------------------------------------------------------------------------

@contextlib.contextmanager
def crash_after_step(k: int, *, journaled: bool):
    """Kill the operation right after step k (0-based, in the order the run applies steps):
    ``journaled`` False: after its side effect, before the journal records it DONE (the step is
    left RUNNING); True: right after it is journaled DONE (where CUTOVER_TEST_DIE_AFTER_STEP
    SIGKILLs a real process)."""
    from cutover.engine import operation as ex

    if journaled:
        orig_die = ex.die_after

        def die(seq: int) -> None:
            if seq == k:
                raise SimulatedCrash(f"killed after step {k} was journaled")

        ex.die_after = die
        try:
            yield
        finally:
            ex.die_after = orig_die
        return
    orig_apply = ex.Apply.apply
    seen = [0]

    def apply(self, ws, step):
        out = orig_apply(self, ws, step)
        seen[0] += 1
        if seen[0] == k + 1:
            raise SimulatedCrash(f"killed after the side effect of step {k} ({step.describe()})")
        return out

    ex.Apply.apply = apply
    try:
        yield
    finally:
        ex.Apply.apply = orig_apply


# -- what an operation leaves behind -------------------------------------------------------------

def end_state(env: Env) -> dict:
    """Everything an operation changes, minus what differs between two workspaces by nature
    (random ids, timestamps, snapshot ids): states, the fake sides' jobs, the journal (operation,
    seq, step, status; the operation as :func:`_op_kind`), shadow forks and baselines, Iceberg branches, audit actions, locks."""
    from cutover.core.iceberg import SHADOW_BRANCH
    from tests.helpers import ledger_rows

    con = sqlite3.connect(env.home / "state.db")
    try:
        journal = sorted((_op_kind(op), seq, step, status) for op, seq, step, status in
                         con.execute("select operation_id, seq, step, status from journal").fetchall())
        forks = sorted(con.execute("select ingestion_id, table_name, branch from shadow_forks").fetchall())
        audit = sorted(r[0] for r in con.execute("select action from audit_log"))
        locks = con.execute("select count(*) from locks").fetchone()[0]
    finally:
        con.close()
    branches = {}
    for iid in env.ids:
        tbl = env.ws.catalog.find(env.ws.ingestions.get(iid).table)
        branches[iid] = sorted(tbl.metadata.refs) if tbl is not None else None
    return {"states": states.get_states(env.ws.state_engine), "sides": env.sides.state(), "journal": journal,
            "forks": forks, "baseline": {i: len(ledger_rows(env.ws.autoloader_engine, i, "shadow")) for i in env.ids},
            "branches": branches, "audit": audit, "locks": locks, "shadow_branch": SHADOW_BRANCH}


def _op_kind(operation_id: str) -> str:
    """An operation id without what differs between workspaces: "wave1" for a plan's wave,
    "rollback" for a rollback ..."""
    if ":wave" in operation_id:
        return "wave" + operation_id.rsplit(":wave", 1)[1]
    return operation_id.rsplit("-", 1)[0]


def live_owners(env: Env) -> dict[str, list[str]]:
    """Per ingestion, which sides would start a live run now (legacy job active, Prefect live deployment active)."""
    legacy, live = env.sides.legacy().state(), env.sides.prefect("live").state()
    out = {}
    for iid in env.ids:
        owners = []
        if iid in legacy and not legacy[iid][0]:
            owners.append("legacy")
        if iid in live and not live[iid][0]:
            owners.append("prefect")
        out[iid] = owners
    return out


def store_dump(home: Path) -> dict:
    """Every row of the workspace's SQLite stores and every file (size, mtime): "nothing was written"."""
    out = {}
    for db in ("autoloader.db", "state.db", "catalog.db"):
        con = sqlite3.connect(home / db)
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table' order by name")]
        out[db] = {t: sorted(map(repr, con.execute(f'select * from "{t}"').fetchall())) for t in tables}
        con.close()
    # SQLite's -shm (the WAL index: shared memory, touched by every reader) and -wal (its pages are
    # in the row dump above) are not content; an in-process test keeps its connections open
    out["files"] = sorted((str(p.relative_to(home)), p.stat().st_size, p.stat().st_mtime_ns)
                          for p in home.rglob("*") if p.is_file() and not p.name.endswith(("-shm", "-wal")))
    return out
