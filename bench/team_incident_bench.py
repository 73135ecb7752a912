"""What the team-job incident controls (issue #15) cost `cutover pause`.

In one process, in fresh CUTOVER_HOMEs (no Prefect: the Prefect control is left out of both tables):

1. **the way to the fence, no jobs**: ``incident_controls(ws)`` with the registry's name table as it
   was (legacy, rq) -- the baseline -- and with the three team controls added (each loads its class
   and asks ``available(ws)``: one inventory read), REPEAT times each, alternating; median of each
   and the difference. The first call of each table (the imports) is reported on its own;
2. **pause and resume of N team jobs**: a team's APScheduler store (SQLite) with N jobs and a
   crontab with N lines, imported as jobs; ``pause(ws, all_=True)`` and ``resume(ws, id)`` timed
   (the legacy control included: it is always there), every job checked paused, then restored.

The last line reads ``team-incident: controls +X ms (A -> B ms), pause N jobs P s, resume R s``.

    .venv/bin/python bench/team_incident_bench.py --count 200 --repeat 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
UTC = timezone.utc
BASE = ("legacy", "rq")
TEAM = ("apscheduler-jobs", "cron-jobs", "rq-jobs")


def controls_ms(ws, names, repeat: int) -> tuple[float, list[float]]:
    from cutover import registry

    first = None
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        cs = registry.incident_controls(ws, start_prefect=False, names=list(names))
        out.append((time.perf_counter() - t) * 1000)
        for c in cs:
            c.close()
        first = out[0] if first is None else first
    return first, out


def team_setup(home: Path, n: int) -> None:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    from cutover.cli import cli
    from cutover.cli.app import run_main

    url = f"sqlite:///{home / 'team.db'}"
    s = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone=UTC)
    s.start(paused=True)
    for i in range(n):
        s.add_job("tests.team_funcs:sync", CronTrigger(hour=i % 24, minute=i % 60, timezone="UTC"), id=f"job-{i}",
                  args=[i])
    s.shutdown(wait=False)
    (home / "team.crontab").write_text("".join(f"{i % 60} {i % 24} * * * echo line {i}\n" for i in range(n)))
    quiet = open(os.devnull, "w")
    old = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = quiet
    try:
        assert run_main(cli, ["legacy", "import", "--jobstore", url, "--jobs", "--verify-days", "0"]) == 0
        assert run_main(cli, ["cron", "import", "--crontab", str(home / "team.crontab"), "--jobs",
                              "--timezone", "UTC"]) == 0
    finally:
        sys.stdout, sys.stderr = old


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=30)
    a = ap.parse_args()
    from cutover import registry

    table = dict(registry.INCIDENT_SIDES)
    registry.INCIDENT_SIDES = {k: v for k, v in table.items() if k in BASE + TEAM}
    with tempfile.TemporaryDirectory(prefix="team-incident-bench-") as tmp:
        home = Path(tmp) / "empty"
        home.mkdir()
        os.environ["CUTOVER_HOME"] = str(home)
        from cutover.core.workspace import Workspace

        ws = Workspace()
        ws.jobs.list()  # the records store created before timing
        firsts, base, team = {}, [], []
        for r in range(a.repeat):
            for names, acc in ((BASE, base), (BASE + TEAM, team)):
                f, ms = controls_ms(ws, names, 1)
                firsts.setdefault(names, f)
                acc.extend(ms)
        b, t = statistics.median(base[1:]), statistics.median(team[1:])
        print(f"incident_controls, no jobs: baseline {b:.2f} ms, with the team controls {t:.2f} ms "
              f"(+{t - b:.2f} ms, ratio {t / b:.2f}x); first call (imports) {firsts[BASE]:.1f} ms, "
              f"then the team controls' first call {firsts[BASE + TEAM]:.1f} ms")

        home = Path(tmp) / "team"
        home.mkdir()
        os.environ["CUTOVER_HOME"] = str(home)
        team_setup(home, a.count)
        from cutover.engine.pause import pause, resume
        from legacy.apscheduler.teamside import TeamStore

        ws = Workspace()
        tab = (home / "team.crontab").read_bytes()
        t0 = time.perf_counter()
        res = pause(ws, all_=True, reason="bench", echo=lambda *_: None)
        t_pause = time.perf_counter() - t0
        st = TeamStore(f"sqlite:///{home / 'team.db'}")
        assert not res.problems and all(r.paused for r in st.rows()), res.problems
        t0 = time.perf_counter()
        rr = resume(ws, res.snapshot_id, echo=lambda *_: None)
        t_resume = time.perf_counter() - t0
        assert not rr.problems and not any(r.paused for r in st.rows()) and (home / "team.crontab").read_bytes() == tab
        st.close()
        n = 2 * a.count
        print(f"pause --all of {n} team jobs ({a.count} store jobs + {a.count} crontab lines): {t_pause:.2f} s "
              f"(the legacy control's part included); resume {t_resume:.2f} s")
        print(f"team-incident: controls +{t - b:.2f} ms ({b:.2f} -> {t:.2f} ms), pause {n} jobs {t_pause:.2f} s, "
              f"resume {t_resume:.2f} s  [{datetime.now(UTC):%Y-%m-%d %H:%M} UTC]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
