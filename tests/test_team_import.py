"""Issue #15: a team's own jobs -- any APScheduler callable, any crontab command -- imported.

One table of varied jobs becomes a real APScheduler 3 job store (written by APScheduler itself)
and a crontab FILE. Shown here: every job is imported or listed with its reason (none dropped),
each translated Prefect schedule fires as the legacy one over a year (cutover.core.schedule.verify),
the untouched crontab lines stay byte-identical, the wrapped lines run exactly as cron ran the
originals (`%` stdin, quoted `#`), `--dry-run --json` changes nothing, and rolling back restores the
crontab bytes and every job's next_run_time exactly.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers import ROOT

UTC = timezone.utc
YEAR = timedelta(days=365)
START = datetime(2026, 12, 1, tzinfo=UTC)


def invoke(*args):
    from cutover.cli import cli
    from cutover.cli.app import run_main

    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = run_main(cli, list(args))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_cutover", False):
            root.removeHandler(h)
    return code, out.getvalue().decode(), err.getvalue().decode()


# -- the table: (store job id, add_job kwargs, expected: "job" or the words of the reason) -----------


def aps_table():
    from apscheduler.triggers.combining import AndTrigger, OrTrigger
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    from tests.team_funcs import Reporter, Threshold

    return [
        ("orders-eu", dict(func="tests.team_funcs:load_orders", args=["eu"], kwargs={"full": True},
                           trigger=CronTrigger(hour=5, minute=30, timezone="Europe/Berlin")), "job"),
        # in the hour skipped when Berlin goes to summer time: APScheduler fires at 03:30 CEST, a Prefect
        # cron at 01:30 CET -- imported, and the listing says so (the engine's gate refuses it later)
        ("dst-gap", dict(func="tests.team_funcs:sync", trigger=CronTrigger(hour=2, minute=30,
                                                                          timezone="Europe/Berlin")), "job"),
        ("Sync Positional", dict(func="tests.team_funcs:sync", args=[1, "x", (2, 3), None],
                                 trigger=IntervalTrigger(hours=6, start_date=datetime(2026, 1, 1, 0, 30),
                                                         timezone="America/New_York")), "job"),
        ("once", dict(func="tests.team_funcs:sync", kwargs={"day": date(2027, 6, 1), "at": datetime(2027, 6, 1, 12)},
                      trigger=DateTrigger(run_date=datetime(2027, 6, 1, 12, 0), timezone="UTC")), "job"),
        ("names", dict(func="tests.team_funcs:sync", trigger=CronTrigger(
            month="jan-mar,oct", day_of_week="mon-fri", hour="*/3", minute=10, timezone="UTC")), "job"),
        ("steps-ranges", dict(func="tests.team_funcs:sync", args=["s"],
                              trigger=CronTrigger(hour="8-18", minute="*/15", timezone="Asia/Tokyo")), "job"),
        ("paused-nightly", dict(func="tests.team_funcs:load_orders", args=["us"],
                                trigger=CronTrigger(hour=4, timezone="UTC"), paused=True), "job"),
        ("jittery", dict(func="tests.team_funcs:sync", trigger=CronTrigger(minute=5, jitter=120, timezone="UTC"),
                         misfire_grace_time=300, coalesce=False, max_instances=3), "job"),
        ("decimal-kw", dict(func="tests.team_funcs:sync", kwargs={"threshold": Decimal("0.50"), "tags": {"a", "b"}},
                            trigger=IntervalTrigger(minutes=30, start_date=datetime(2026, 3, 1, 0, 7, 30),
                                                    timezone="UTC")), "job"),
        ("twice-daily", dict(func="tests.team_funcs:sync", trigger=OrTrigger([
            CronTrigger(hour=1, minute=0, timezone="UTC"), CronTrigger(hour=13, minute=0, timezone="UTC")])), "job"),
        ("classmethod", dict(func=Reporter.nightly, kwargs={"scope": "eu"},
                             trigger=CronTrigger(day_of_week="sun", hour=23, timezone="Europe/London")), "job"),
        ("and-trigger", dict(func="tests.team_funcs:sync", trigger=AndTrigger([
            CronTrigger(hour="*/2", timezone="UTC"), CronTrigger(hour="9-17", timezone="UTC")])), "all of"),
        ("bound-method", dict(func=Reporter("weekly").run, trigger=CronTrigger(hour=6, timezone="UTC")),
         "bound to a tests.team_funcs:Reporter object"),
        ("team-object", dict(func="tests.team_funcs:sync", kwargs={"limit": Threshold(3)},
                             trigger=CronTrigger(hour=7, timezone="UTC")), "kwargs.limit (a tests.team_funcs:Threshold"),
        ("or-mixed", dict(func="tests.team_funcs:sync", trigger=OrTrigger([
            CronTrigger(hour=1, timezone="UTC"), IntervalTrigger(hours=5, timezone="UTC")])), "union"),
    ]


CRONTAB = r"""# the team's crontab (crontab -l > team.crontab)
SHELL=/bin/bash
MAILTO=data-ops@example.com
PATH=/usr/local/bin:/usr/bin:/bin

@reboot /opt/etl/bin/warm_cache.sh
@daily /opt/etl/bin/sync_customers.sh --full >> /tmp/sync.log 2>&1
@hourly echo hourly-ping
@weekly echo weekly
@monthly echo monthly
@yearly echo yearly
@annually echo annually
@midnight echo midnight
# a quoted hash is data, an unquoted one after a blank is a comment for the shell
30 1 * * * echo "report #1 'done'" # not printed
0 9 * JAN-MAR MON-FRI cat % line one%line two \% literal
*/20 6-22/2 1,15 * * printf 'x\%sy'  \%s
CRON_TZ=Europe/Berlin
15 3 * * 1-5 date +\%F %stdin in Berlin
5 4 29 2 * echo leap
0 0 31 2 * echo never-valid
   # an indented comment
"""


def build_store(path: Path, table) -> str:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from legacy.apscheduler.jobstore import dump_job_state

    url = f"sqlite:///{path}"
    s = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone=UTC)
    s.start(paused=True)
    try:
        for jid, spec, _ in table:
            spec = dict(spec)
            paused = spec.pop("paused", False)
            s.add_job(id=jid, **spec)
            if paused:
                s.pause_job(jid)
    finally:
        s.shutdown(wait=False)
    # a lambda cannot be added to a persistent store by APScheduler 3; a store written by an older
    # version (or by hand) can still hold one: the state as APScheduler would have pickled it
    from apscheduler.triggers.cron import CronTrigger
    from sqlalchemy import create_engine, text

    nrt = datetime(2027, 1, 1, 5, tzinfo=UTC)
    state = {"version": 1, "id": "lambda-job", "func": "tests.team_funcs:<lambda>",
             "trigger": CronTrigger(hour=5, timezone=UTC), "executor": "default", "args": (), "kwargs": {},
             "name": "<lambda>", "misfire_grace_time": 1, "coalesce": True, "max_instances": 1, "next_run_time": nrt}
    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO apscheduler_jobs (id, next_run_time, job_state) VALUES (:i, :n, :b)"),
                     {"i": "lambda-job", "n": nrt.timestamp(), "b": dump_job_state(state)})
    eng.dispose()
    return url


def store_rows(url):
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.connect() as conn:
        rows = {r[0]: (r[1], bytes(r[2])) for r in conn.execute(text("SELECT id, next_run_time, job_state "
                                                                      "FROM apscheduler_jobs"))}
    eng.dispose()
    return rows


def run_like_cron(line, env_extra=None):
    """What cron does with a job line: its SHELL -c the command part, the % part on stdin."""
    from legacy.cron.generic import split_percent

    shell_part, stdin = split_percent(line.command_raw)
    env = {**os.environ, **line.env, **(env_extra or {})}
    p = subprocess.run([line.env.get("SHELL", "/bin/sh"), "-c", shell_part], input=(stdin or "").encode(),
                       capture_output=True, env=env, cwd=str(ROOT), timeout=120)
    return p.returncode, p.stdout


@pytest.fixture
def team(workspace_env, tmp_path):
    table = aps_table()
    url = build_store(tmp_path / "team.db", table)
    crontab = tmp_path / "team.crontab"
    crontab.write_text(CRONTAB)
    return {"home": workspace_env, "table": table, "url": url, "crontab": crontab}


def test_every_job_imported_or_listed_schedules_verified_and_rollback_exact(team):
    from cutover.core.schedule.verify import verify
    from cutover.core.workspace import Workspace
    from cutover.registry import generic_side
    from legacy.cron.generic import read_lines

    url, crontab, table = team["url"], team["crontab"], team["table"]
    before_rows = store_rows(url)
    before_tab = crontab.read_bytes()
    assert len(table) + 1 + CRONTAB.count("\n@") + 6 >= 15

    # -- dry runs with --json: everything listed, nothing written --------------------------------
    code, out, err = invoke("legacy", "import", "--jobstore", url, "--jobs", "--dry-run", "--json", "--verify-days", "0")
    assert code == 0, err
    dry = json.loads(out)
    assert dry["dry_run"] and dry["ingestions"] == []
    listed = {j["store_job_id"]: j for j in dry["jobs"]}
    assert set(listed) == {jid for jid, _, _ in table} | {"lambda-job"}, "a job was dropped"
    code, out, err = invoke("cron", "import", "--crontab", str(crontab), "--jobs", "--timezone", "UTC",
                            "--dry-run", "--json", "--verify-days", "0")
    assert code == 0, err
    cdry = json.loads(out)
    assert crontab.read_bytes() == before_tab and store_rows(url) == before_rows
    ws = Workspace()
    assert ws.jobs.list() == []

    # -- the imports -------------------------------------------------------------------------------
    code, out, err = invoke("legacy", "import", "--jobstore", url, "--jobs", "--shadow", "observe", "--json")
    assert code == 0, err
    res = {j["store_job_id"]: j for j in json.loads(out)["jobs"]}
    for jid, spec, expected in table:
        item = res[jid]
        if expected == "job":
            assert item["action"] == "create", item
        else:
            assert item["action"] == "cannot-move" and expected in item["reason"], (jid, item["reason"])
    assert res["lambda-job"]["action"] == "cannot-move" and "lambda" in res["lambda-job"]["reason"]
    assert store_rows(url) == before_rows, "the import only reads the team's store"

    code, out, err = invoke("cron", "import", "--crontab", str(crontab), "--jobs", "--timezone", "UTC", "--json")
    assert code == 0, err
    cres = json.loads(out)
    assert [j["job_id"] for j in cres["jobs"]] == [j["job_id"] for j in cdry["jobs"]]
    kinds = {ln["line"]: ln for ln in cres["lines"]}
    orig_lines = CRONTAB.split("\n")
    job_lines = {j["line"] for j in cres["jobs"]}
    for n, text in enumerate(orig_lines[:-1], start=1):
        s = text.strip()
        if not s or s.startswith("#"):
            continue
        assert n in job_lines or n in kinds, f"line {n} ({text!r}) neither imported nor listed"
    assert "not schedulable" in kinds[6]["reason"] and "@reboot" in kinds[6]["reason"]
    assert kinds[21]["kind"] == "invalid" and "day-of-month" in kinds[21]["reason"]
    assert {kinds[n]["kind"] for n in (2, 3, 4, 18)} == {"env"}
    assert job_lines == {7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 19, 20}

    # -- every job: kind, target, args exactly as the legacy scheduler passed them ---------------
    jobs = {j.legacy.get("job_id") or j.id: j for j in ws.jobs.list() if j.kind == "callable"}
    by_store = {jid: spec for jid, spec, exp in table if exp == "job"}
    assert set(jobs) == set(by_store)
    for jid, spec in by_store.items():
        job = jobs[jid]
        args, kwargs = job.call_args()
        assert args == list(spec.get("args", [])) and kwargs == spec.get("kwargs", {}), jid
        assert job.shadow == "observe" and job.paused == spec.get("paused", False)
    assert jobs["Sync Positional"].id == "sync-positional" and jobs["Sync Positional"].call_args()[0][2] == (2, 3)
    assert jobs["classmethod"].target == "tests.team_funcs:Reporter.nightly"
    lg = jobs["jittery"].legacy
    assert (lg["misfire_grace_time"], lg["coalesce"], lg["max_instances"], lg["jitter"]) == (300, False, 3, 120)
    assert jobs["paused-nightly"].legacy["next_run_time"] is None

    # -- each translated schedule fires as the legacy one over a year ------------------------------
    assert any("verification over 366 days: different" in n for n in res["dst-gap"]["notes"])
    # a jittered job is never called equivalent (#18): its note says approximate and names the jitter
    assert any("verification over 366 days: approximate" in n and "jitter=120" in n for n in res["jittery"]["notes"])
    assert all(not any("verification" in n for n in j["notes"]) for k, j in res.items()
               if k not in ("dst-gap", "jittery"))
    assert all(j["translate_error"] is None for j in cres["jobs"])
    for job in ws.jobs.list():
        r = verify(job.schedule, job.timezone, start=START, horizon=YEAR, allow_approx=bool(job.legacy.get("jitter")))
        if job.id == "dst-gap":
            assert r.verdict == "different" and r.first_difference.at.month == 3
            continue
        if job.legacy.get("jitter"):  # same nominal instants, but jitter is not a proof (#18): never ok
            assert r.verdict == "approximate" and not r.ok and r.difference_count == 0, r.summary()
            assert r.legacy_count == r.prefect_count > 0 and "jitter=120" in r.summary()
            continue
        assert r.ok, f"{job.id}: {r.summary()}"
        if job.id not in ("once", "echo-leap"):  # a date next June; Feb 29 (2028) is beyond the year
            assert r.legacy_count > 0, job.id

    # -- the crontab: untouched lines byte-identical, wrapped lines behave as the originals ---------
    after = crontab.read_text().split("\n")
    assert len(after) == len(orig_lines)
    for n, (a, b) in enumerate(zip(orig_lines, after), start=1):
        if n not in job_lines:
            assert a == b, f"line {n} changed"
        else:
            assert "cron exec --home" in b and a != b
    old = {ln.n: ln for ln in read_lines(CRONTAB)}
    new = {ln.n: ln for ln in read_lines(crontab.read_text())}
    env = {"PYTHONPATH": str(ROOT)}
    for n in (15, 16, 17, 19):  # the quoted '#', the % stdin, the \% escapes, CRON_TZ and \%F
        assert new[n].kind == "wrapped" and new[n].expr == old[n].expr and new[n].env == old[n].env
        assert run_like_cron(new[n], env) == run_like_cron(old[n]), f"line {n} behaves differently wrapped"
    rc, outb = run_like_cron(old[16])
    assert outb == b" line one\nline two % literal\n"
    assert run_like_cron(old[15])[1] == b"report #1 'done'\n"
    runs = {r.run.ingestion_id: r for r in __import__("cutover.core.records.jobruns", fromlist=["x"])
            .JobRunStore(ws.autoloader_engine).list()}
    assert runs[new[16].job_id].output_tail == " line one\nline two % literal\n"

    # -- importing again changes nothing ------------------------------------------------------------
    snapshot = crontab.read_bytes()
    code, out, err = invoke("cron", "import", "--crontab", str(crontab), "--jobs", "--timezone", "UTC", "--json",
                            "--verify-days", "0")
    assert code == 0, err and all(j["action"] == "unchanged" for j in json.loads(out)["jobs"])
    assert crontab.read_bytes() == snapshot
    code, out, err = invoke("legacy", "import", "--jobstore", url, "--jobs", "--json", "--verify-days", "0")
    assert code == 0 and json.loads(out)["create"] == 0 and json.loads(out)["update"] == 0

    # -- cutover pauses the legacy jobs; rollback brings every next_run_time back exactly -----------
    aps = generic_side("apscheduler", ws, url)
    cron = generic_side("cron", ws, crontab)
    paused_by_us = []  # as the engine's pause snapshot does: only what the pause changed is resumed
    for job in ws.jobs.list():
        side = aps if job.kind == "callable" else cron
        if side.pause(job.id):
            paused_by_us.append(job)
    assert "paused-nightly" not in [j.id for j in paused_by_us]
    paused_rows = store_rows(url)
    assert all(paused_rows[j][0] is None for j in by_store), "a job still fires after the pause"
    assert all(paused_rows[j] == before_rows[j] for j in before_rows if j not in by_store), "a job not moved changed"
    assert all(j.paused for j in aps.list_jobs() + cron.list_jobs())
    for job in paused_by_us:
        side = aps if job.kind == "callable" else cron
        assert side.resume(job.id)
    restored = store_rows(url)
    for jid in before_rows:
        assert restored[jid][0] == before_rows[jid][0], f"{jid}: next_run_time not restored exactly"
    from legacy.apscheduler.jobstore import load_job_state

    for jid in by_store:
        a, b = load_job_state(restored[jid][1]), load_job_state(before_rows[jid][1])
        assert a["next_run_time"] == b["next_run_time"], jid
    code, out, err = invoke("cron", "import", "--crontab", str(crontab), "--undo", "--json")
    assert code == 0, err
    assert crontab.read_bytes() == before_tab, "the crontab bytes are not restored"
    assert [j.kind for j in ws.jobs.list()] == ["callable"] * len(by_store)


def test_cron_exec_records_runs_and_a_killed_run_stays_open(workspace_env, tmp_path):
    import signal
    import time

    from cutover.core.records.jobruns import CRASHED, FAILED, RUNNING, SUCCESS, JobRunStore, effective_status
    from cutover.core.records.jobs import validate_job
    from cutover.core.workspace import Workspace

    ws = Workspace()
    ws.jobs.upsert([validate_job({"id": "nightly", "kind": "command", "shell": "true", "ok_exit_codes": [0, 3],
                                  "env": {"API_TOKEN": "tok-very-secret"}})], replace_existing=False)
    base = [sys.executable, "-m", "cutover", "cron", "exec", "--home", str(workspace_env), "--job", "nightly", "--"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "API_TOKEN": "tok-very-secret"}
    # stdout and stderr are kept in one tail, in the order they arrive: one write each here
    script = ("import sys,time; sys.stdout.write('line 1\\n'); sys.stdout.flush();"
              " sys.stderr.write('token: tok-very-secret\\n'); sys.stderr.flush();"
              " sys.stdout.write(sys.stdin.read().upper() + '\\n'); sys.exit(int(sys.argv[1]))")
    for code, status in ((0, SUCCESS), (3, SUCCESS), (4, FAILED)):
        p = subprocess.run(base + [sys.executable, "-c", script, str(code)], input=b"from stdin", capture_output=True,
                           env=env, timeout=120)
        assert p.returncode == code, p.stderr
        assert b"line 1" in p.stdout and b"FROM STDIN" in p.stdout  # passed through
    store = JobRunStore(ws.autoloader_engine)
    runs = store.list(job_id="nightly")
    assert [(r.run.status, r.exit_code) for r in reversed(runs)] == [(SUCCESS, 0), (SUCCESS, 3), (FAILED, 4)]
    for r in runs:
        assert r.run.ended_at >= r.run.started_at and r.run.duration_s is not None and r.run.duration_s >= 0
        assert "line 1" in r.output_tail and "FROM STDIN" in r.output_tail
        assert "tok-very-secret" not in r.output_tail + (r.command or "") + (r.run.error or "")

    # a crash: the wrapper killed with SIGKILL leaves a start and no end; read as CRASHED once it is gone
    p = subprocess.Popen(base + [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
                         stdout=subprocess.PIPE, env=env, start_new_session=True)
    assert p.stdout.readline() == b"started\n"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not [r for r in store.list(job_id="nightly") if r.run.status == RUNNING]:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    os.killpg(p.pid, signal.SIGKILL)  # the orphaned child
    open_runs = [r for r in store.list(job_id="nightly") if r.run.status == RUNNING]
    assert len(open_runs) == 1 and open_runs[0].run.ended_at is None and open_runs[0].exit_code is None
    assert open_runs[0].run.pid == p.pid and effective_status(open_runs[0].run) == CRASHED

    # SIGTERM is passed on: the end is recorded with the signal
    p = subprocess.Popen(base + [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                         stdout=subprocess.PIPE, env=env)
    assert p.stdout.readline() == b"up\n"
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 128 + signal.SIGTERM
    last = store.list(job_id="nightly")[0]
    assert last.run.status == FAILED and last.signal == signal.SIGTERM and "SIGTERM" in last.run.error


def test_cron_exec_runs_the_command_when_the_records_store_is_unusable(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "cutover.toml").write_text("this is [not toml\n")
    p = subprocess.run([sys.executable, "-m", "cutover", "cron", "exec", "--home", str(home), "--job", "x", "--",
                        "sh", "-c", "echo ran; exit 5"], capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert p.returncode == 5 and p.stdout == b"ran\n" and b"not recorded" in p.stderr
