"""The team demo (`cutover demo --scenario team`, `make demo SCENARIO=team`): a team's own jobs.

``examples/acme_etl`` is a small codebase that is not built on cutover: three functions its
APScheduler job store schedules (one loads order files into Iceberg through ``cutover.sdk``, one
writes a report and reads ``CUTOVER_*`` to write elsewhere in shadow, one "mails" a digest and
can only be observed), two shell scripts on its crontab, run by the team's own scheduler process.
The story migrates all of it with the commands a new user types (each printed first): import the
job store and the crontab, prove the schedules, be refused a shadow for jobs that do not say how
they can be shadowed, declare it, shadow (and check that production is untouched), parity, plan
and execute the cutover (the first Prefect run of an observe-only job watched as a canary), an
incident pause and resume, and the rollback that gives the team's scheduler and crontab back
their jobs. Every claim is checked against the files, the job store, the crontab, the table and
the ledger: anything that does not hold ends the demo with exit 1.

Its RQ side runs locally too: a throwaway ``redis-server`` (password-protected; Debian's package:
``scripts/ensure-redis``) and the team's RQ worker (``rq worker --with-scheduler``), where
``setup/rq_setup.py`` schedules the nightly customer-index rebuild (``enqueue_at`` + ``Repeat``).
The Redis URL reaches cutover through ``CUTOVER_RQ_REDIS_URL`` only (it holds the password).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from cutover.core.workspace import Workspace
from cutover.demos.autoloader import demo_workspace
from cutover.registry.sides import LiveSides

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "acme_etl"
UTC = timezone.utc
TABLE = "acme.orders"
SDK, ENV_JOBS, OBSERVE = "acme-orders-load", ("acme-revenue-report", "sync-customers", "sync-customers-2"), \
    ("acme-sales-digest", "purge-tmp")
RQ_QUEUE, RQ_JOB = "acme", "acme-customer-index"  # setup/rq_setup.py's queue and RQ job id
CURRENCIES = ("EUR", "USD", "GBP")


class DemoFailed(Exception):
    """A claim of the story does not hold: the demo says which and exits 1."""


def run_team_demo(invoke: Callable[[list[str]], int], echo: Callable[[str], None], settings, *,
                  force: bool = False) -> int:
    """The team story. ``invoke`` runs one cutover command line in-process and returns its exit code."""
    home = demo_workspace(settings, force=force)
    story = _Story(home, invoke, echo, settings)
    try:
        return story.run()
    except DemoFailed as e:
        echo("")
        echo(f"DEMO FAILED: {e}")
        return 1
    finally:
        story.stop()


def write_orders(src: Path, hour: int) -> tuple[Path, int]:
    """One hourly order export; returns (path, rows)."""
    src.mkdir(parents=True, exist_ok=True)
    t = datetime(2026, 11, 2, tzinfo=UTC) + timedelta(hours=hour)
    n = 20 + (hour * 7) % 13
    p = src / f"orders_{t:%Y%m%d_%H}.csv"
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["order_id", "customer", "amount", "currency", "ordered_at"])
        for i in range(n):
            w.writerow([hour * 1000 + i, f"c{(hour * 31 + i) % 97:03d}", f"{5 + (i * 37 % 500) + 0.25:.2f}",
                        CURRENCIES[(hour + i) % 3], f"{t + timedelta(minutes=i):%Y-%m-%dT%H:%M:%S}"])
    return p, n


def write_customers(inbox: Path, k: int) -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    p = inbox / f"customers_{k}.csv"
    p.write_text("customer,name\n" + "".join(f"c{k * 10 + i:03d},Customer {k * 10 + i}\n" for i in range(5)))
    return p


def tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``root``: relative path -> (size, mtime ns, bytes)."""
    out = {}
    if root.exists():
        for p in sorted(root.rglob("*")):
            if p.is_file():
                st = p.stat()
                out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, p.read_bytes())
    return out


class _Story:
    def __init__(self, home: Path, invoke, echo, settings):
        self.home, self.invoke, self.echo, self.settings = home, invoke, echo, settings
        self.acme = home / "acme"
        self.data = self.acme / "data"
        self.store_url = f"sqlite:///{self.acme / 'jobs.sqlite'}"
        self.crontab = self.acme / "crontab"
        self.scheduler: subprocess.Popen | None = None
        self.rq_worker: subprocess.Popen | None = None
        self.redis = None
        self.env_before: str | None = os.environ.get("CUTOVER_RQ_REDIS_URL")
        self.prefect_up = False
        self.rows = 0
        self.ws: Workspace | None = None

    # -- narration -------------------------------------------------------------------------
    def step(self, title: str) -> None:
        self.echo("")
        self.echo(f"== {title}")

    def cmd(self, *args: str, ok: tuple[int, ...] = (0,)) -> int:
        self.echo(f"$ cutover {' '.join(args)}")
        rc = self.invoke(list(args))
        if rc not in ok:
            raise DemoFailed(f"`cutover {' '.join(args)}` exited {rc}")
        return rc

    def check(self, ok: bool, what: str) -> None:
        self.echo(f"check: {what}: {'OK' if ok else 'NO'}")
        if not ok:
            raise DemoFailed(what)

    def sh(self, argv: list[str], **env: str) -> str:
        """A command of the team's (its own setup scripts), printed first."""
        self.echo("$ " + " ".join(str(a) for a in argv))
        r = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise DemoFailed(f"{argv[0]} exited {r.returncode}: {r.stderr.strip()[-500:]}")
        for line in r.stdout.splitlines():
            self.echo(f"    {line}")
        return r.stdout

    def team_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(ACME_HOME=str(self.acme), ACME_JOBSTORE=self.store_url, CUTOVER_HOME=str(self.home),
                   PYTHONPATH=str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""))
        return env

    # -- the team's world ------------------------------------------------------------------
    def paused_jobs(self) -> dict[str, bool]:
        """Which jobs of the team's store are paused (next_run_time NULL): what cutover changes."""
        return {j: t is None for j, t in self.next_run_times().items()}

    def next_run_times(self) -> dict[str, float | None]:
        import sqlite3

        con = sqlite3.connect(self.acme / "jobs.sqlite")
        try:
            return {i: t for i, t in con.execute("select id, next_run_time from apscheduler_jobs")
                    if not i.startswith("cutover-run~")}
        finally:
            con.close()

    def production(self) -> dict:
        """What production holds: main's head and records, the live ledger, the output files."""
        ws = self.ws
        tbl = ws.catalog.find(TABLE)
        return {"main": ws.catalog.head(tbl) if tbl is not None else None,
                "records": ws.catalog.total_records(TABLE),
                "ledger": [(e.path, e.status, e.run_id) for e in ws.ledger(SDK, "live").entries()],
                "files": {d: tree(self.data / d) for d in ("reports", "warehouse", "outbox")}}

    def start_scheduler(self) -> None:
        log = open(self.acme / "log" / "scheduler.log", "ab")
        self.echo(f"$ ACME_JOBSTORE={self.store_url} python {self.acme / 'scheduler.py'} &   "
                  f"(the team's scheduler process, log in {self.acme / 'log' / 'scheduler.log'})")
        self.scheduler = subprocess.Popen([sys.executable, str(self.acme / "scheduler.py")], cwd=str(self.acme),
                                          env={**self.team_env(), "ACME_TICK_SECONDS": "1"},
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)

    def start_rq(self) -> None:
        from cutover.core.errors import InputError
        from legacy.rq.server import RedisServer, RedisUnavailable

        try:
            self.redis = RedisServer(self.home / "redis").start()
        except RedisUnavailable as e:
            raise InputError(str(e), fix="run scripts/ensure-redis (make demo SCENARIO=team does)") from None
        os.environ["CUTOVER_RQ_REDIS_URL"] = self.redis.url  # how cutover reaches the team's Redis
        self.echo(f"redis-server on {self.redis.public_url}; export CUTOVER_RQ_REDIS_URL=<that URL, with its password>")
        log = open(self.acme / "log" / "rq-worker.log", "ab")
        self.echo(f"$ rq worker {RQ_QUEUE} --with-scheduler &   (the team's RQ worker, in {self.acme}; log in "
                  f"{self.acme / 'log' / 'rq-worker.log'})")
        self.rq_worker = subprocess.Popen([sys.executable, "-m", "rq.cli", "worker", RQ_QUEUE, "--with-scheduler",
                                           "--name", "acme-demo-worker"], cwd=str(self.acme),
                                          env={**self.team_env(), "RQ_REDIS_URL": self.redis.url},
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        self.sh([sys.executable, str(self.acme / "setup" / "rq_setup.py"), "--home", str(self.acme)],
                **self.team_env(), REDIS_URL=self.redis.url)

    def rq_scheduled(self) -> float | None:
        """The RQ job's score in RQ's scheduled registry (None: not scheduled, e.g. held by cutover)."""
        import redis

        conn = redis.Redis.from_url(self.redis.url)
        try:
            return conn.zscore(f"rq:scheduled:{RQ_QUEUE}", RQ_JOB)
        finally:
            conn.close()

    def stop(self) -> None:
        if self.prefect_up:
            self.prefect_up = False
            self.step("Stop the local Prefect server (`cutover prefect up` starts it again), the team's scheduler, "
                      "RQ worker and Redis")
            self.cmd("prefect", "down", ok=(0, 1, 2, 3))
        for proc, what in ((self.scheduler, "the team's scheduler"), (self.rq_worker, "the team's RQ worker")):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                self.echo(f"{what} stopped")
        self.scheduler = self.rq_worker = None
        if self.redis is not None:
            self.redis.stop(remove=False)
            self.redis = None
            self.echo("redis-server stopped")
        if self.env_before is None:
            os.environ.pop("CUTOVER_RQ_REDIS_URL", None)
        else:
            os.environ["CUTOVER_RQ_REDIS_URL"] = self.env_before

    def legacy_run(self, jid: str) -> None:
        """The team's scheduler (or cron) runs ``jid`` now, through cutover's legacy side."""
        rid = LiveSides(self.ws).legacy().run_now(jid)
        rec = self.ws.runs.get(rid)
        self.echo(f"{jid}: legacy run {rid[:12]} {rec.status}" + (f" ({rec.error})" if rec.error else ""))
        if rec.status != "SUCCESS":
            raise DemoFailed(f"the legacy run of {jid} ended {rec.status}: {rec.error}")

    def wait_prefect_run(self, jid: str, mode: str, after: datetime, timeout: float = 240.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recs = [r for r in self.ws.runs.list(ingestion_id=jid, orchestrator="prefect", mode=mode, since=after)
                    if r.status != "RUNNING"]
            if recs:
                r = recs[0]
                self.echo(f"{jid}: Prefect {mode} run {r.id[:12]} (flow run {r.external_id}) {r.status}"
                          + (f": {r.error}" if r.error else ""))
                return r
            time.sleep(1.0)
        raise DemoFailed(f"no Prefect {mode} run of {jid} ended within {timeout:.0f}s")

    # -- the story ---------------------------------------------------------------------------
    def run(self) -> int:
        self.setup()
        self.imports()
        self.step("4. The Prefect side: a local server and worker")
        self.prefect_up = True  # stopped at the end whatever happens
        self.cmd("prefect", "up", "--timeout", "300")
        self.shadow()
        self.parity()
        self.cutover()
        self.incident()
        self.rollback()
        self.stop()
        self.echo("")
        self.echo(f"The workspace stays in {self.home}: try `cutover ingestion list`, `cutover status`, "
                  f"`cutover parity history`, `cutover table snapshots {TABLE} --branch cutover-shadow`, "
                  f"`cutover log` (the team's code and data are in {self.acme}).")
        return 0

    def setup(self) -> None:
        self.step(f"1. The team's setup, before cutover: {EXAMPLE.relative_to(REPO_ROOT)} copied to {self.acme}")
        shutil.copytree(EXAMPLE, self.acme, ignore=shutil.ignore_patterns("__pycache__"))
        for d in ("log", "tmp", "data/reports"):
            (self.acme / d).mkdir(parents=True, exist_ok=True)
        for h in range(3):
            self.rows += write_orders(self.data / "orders", h)[1]
        write_customers(self.data / "inbox", 1)
        self.echo(f"three hourly order exports ({self.rows} orders) in {self.data / 'orders'}, "
                  f"a customer export in {self.data / 'inbox'}")
        # the hourly load at a minute half an hour away: no scheduled run of it lands in the story's minutes
        minute = (datetime.now(UTC).minute + 30) % 60
        self.sh([sys.executable, str(self.acme / "setup" / "jobstore.py"), "--url", self.store_url,
                 "--home", str(self.acme), "--minute", str(minute)], **self.team_env())
        text = (EXAMPLE / "setup" / "crontab").read_text()
        self.crontab.write_text("".join(f"ACME_HOME={self.acme}\n" if ln.startswith("ACME_HOME=") else ln
                                        for ln in text.splitlines(True)))
        self.original_crontab = self.crontab.read_text()
        self.echo(f"the etl user's crontab ({self.crontab}, as `crontab -l` shows it; the machine's crontab is "
                  "never touched):")
        for line in self.original_crontab.splitlines():
            self.echo(f"    {line}")
        self.start_scheduler()
        self.start_rq()
        self.ws = Workspace(self.settings)

    def imports(self) -> None:
        self.step("2. Import every job: the APScheduler job store and the crontab (dry runs first)")
        self.cmd("legacy", "import", "--jobstore", self.store_url, "--jobs", "--code-location", str(self.acme),
                 "--dry-run", "--json")
        self.check(self.ws.jobs.list() == [], "the dry run wrote no job")
        self.cmd("legacy", "import", "--jobstore", self.store_url, "--jobs", "--code-location", str(self.acme))
        self.cmd("cron", "import", "--crontab", str(self.crontab), "--jobs", "--timezone", "Europe/Berlin",
                 "--dry-run")
        self.check(self.crontab.read_text() == self.original_crontab, "the dry run left the crontab byte for byte")
        self.cmd("cron", "import", "--crontab", str(self.crontab), "--jobs", "--timezone", "Europe/Berlin")
        self.imported_crontab = self.crontab.read_text()
        before, after = self.original_crontab.splitlines(), self.imported_crontab.splitlines()
        changed = [(a, b) for a, b in zip(before, after) if a != b]
        self.check(len(before) == len(after) and len(changed) == 3
                   and all("cutover cron exec" in b and "--job" in b for _, b in changed),
                   "three job lines wrapped in place by `cutover cron exec`; every other line (env, comments, "
                   "@reboot) byte for byte")
        self.cmd("rq", "import-jobs", "--code-location", str(self.acme), "--dry-run", "--json")
        self.cmd("rq", "import-jobs", "--code-location", str(self.acme))
        self.cmd("ingestion", "list")
        rq_jobs = [j.id for j in self.ws.jobs.list() if j.legacy.get("orchestrator") == "rq"]
        self.check(len(rq_jobs) == 1, f"the RQ function behind the scheduled, repeated RQ job is a callable job "
                                      f"({', '.join(rq_jobs)})")
        self.rq_id = rq_jobs[0]
        self.env_jobs = (*ENV_JOBS, self.rq_id)
        ids = sorted(j.id for j in self.ws.jobs.list())
        self.check(ids == sorted([SDK, *self.env_jobs, *OBSERVE]), f"seven jobs imported ({', '.join(ids)})")
        self.step("3. The schedules: each translated Prefect schedule fires when the legacy one does")
        self.cmd("schedules", "verify", "--all", "--horizon", "365d")
        self.step("   The team's scheduler keeps running its jobs (legacy authoritative): the hourly order load")
        self.legacy_run(SDK)
        self.check(self.ws.catalog.total_records(TABLE) == self.rows,
                   f"{TABLE} holds the {self.rows} orders of the exports (written by the team's scheduler)")
        self.nrt_before = self.next_run_times()
        self.paused_before = self.paused_jobs()
        self.rq_before = self.rq_scheduled()
        self.check(self.rq_before is not None, f"RQ's scheduled registry holds {RQ_JOB}")
        self.check(not any(self.paused_before.values()), "the team's scheduler has its three jobs scheduled")

    def shadow(self) -> None:
        self.step("5. Shadow: refused while jobs do not say how they can be shadowed (exit 2, nothing changed)")
        self.cmd("shadow", "start", "--all", "--reason", "demo", ok=(2,))
        self.check(all(s == "LEGACY" for s in self._states().values()), "every job is still LEGACY")
        self.cmd("shadow", "declare", SDK, "--as", "sdk", "--table", TABLE)
        self.cmd("shadow", "declare", *self.env_jobs, "--as", "env")
        self.cmd("shadow", "declare", *OBSERVE, "--as", "observe")
        self.cmd("shadow", "start", "--all", "--reason", "demo")
        self.cmd("status")
        self.check(self.crontab.read_text() == self.imported_crontab and self.paused_jobs() == self.paused_before
                   and self.rq_scheduled() == self.rq_before,
                   "the shadow start left the team's crontab, job store and RQ schedule as they were (legacy stays live)")

        self.step("6. Prefect shadow runs alone: production must not change (main, live ledger, output files)")
        p, n = write_orders(self.data / "orders", 3)
        write_customers(self.data / "inbox", 2)
        self.rows += n
        self.echo(f"a new order export ({p.name}, {n} orders) and a new customer export arrive")
        before = self.production()
        started = datetime.now(UTC) - timedelta(seconds=1)
        for jid in (SDK, *self.env_jobs):
            self.cmd("prefect", "trigger", jid, "--mode", "shadow")
        for jid in (SDK, *self.env_jobs):
            r = self.wait_prefect_run(jid, "shadow", started)
            if r.status != "SUCCESS":
                raise DemoFailed(f"the Prefect shadow run of {jid} ended {r.status}: {r.error}")
        after = self.production()
        self.check(after == before, "main's head and records, the live ledger and every production output file "
                                    "(reports, warehouse, outbox) are byte for byte what they were")
        prefix = self.home / "shadow-output"
        shadow_files = sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*") if p.is_file())
        self.check(any(f.endswith("revenue_latest.csv") for f in shadow_files)
                   and any("warehouse/customers/customers_2.csv" in f for f in shadow_files)
                   and any(f.endswith("warehouse/index/customers.json") for f in shadow_files),
                   f"the env jobs wrote under the shadow prefix instead ({len(shadow_files)} file(s) in {prefix})")
        shadow_rows = self.ws.catalog.load(TABLE)
        sh_ledger = {e.path for e in self.ws.ledger(SDK, "shadow").entries() if e.status == "SUCCESS"}
        self.check(str(p) in sh_ledger and self.ws.catalog.head(shadow_rows, "cutover-shadow") != before["main"],
                   f"the sdk job appended {p.name} to the cutover-shadow branch and its shadow ledger")

    def parity(self) -> None:
        self.step("7. Both sides on the same input: `shadow run --once` runs each job on its legacy scheduler "
                  "(the team's scheduler, cron's line) and in Prefect, then parity")
        self.cmd("shadow", "run", "--once", "--all")
        self.check(self.ws.catalog.total_records(TABLE) == self.rows,
                   f"main holds every order once ({self.rows}): the legacy run took the new export")
        legacy_runs = [r for r in self.ws.runs.list(ingestion_id=SDK, orchestrator="legacy") if r.trigger == "manual"]
        self.check(len(legacy_runs) == 2 and legacy_runs[0].files_processed == 1,
                   "each legacy run of the sdk job is one run record, its files counted on it (the listener's "
                   "record, which cutover.sdk attaches to)")
        reports = self.home / "reports"
        self.cmd("parity", "--since", "fork", "--format", "text,json,html", "--out", str(reports))
        report = json.loads((reports / "parity.json").read_text())
        by_id = {i["id"]: {c["name"]: c for c in i["checks"]} for i in report["ingestions"]}
        sdk_checks = by_id.get(SDK, {})
        self.check(set(sdk_checks) == {"runs", "ledger", "counts"} and all(c["verdict"] == "pass"
                                                                          for c in sdk_checks.values()),
                   f"{SDK} (sdk): runs, ledger and counts parity pass, like a reference ingestion")
        self.check(all(by_id.get(j, {}).get("runs", {}).get("metrics", {}).get("observe_only") for j in OBSERVE),
                   "the observe-only jobs are judged on their schedules and legacy run records")

    def cutover(self) -> None:
        self.step("8. Plan and execute the cutover: the legacy jobs are paused where they live, Prefect goes live")
        plan_file = self.home / "plan.json"
        self.cmd("plan", "--waves", "canary=2,rest", "--gate", "streak>=1,no_open_waiver", "--out", str(plan_file))
        self.cmd("execute", str(plan_file), "--dry-run")
        self.check(self.crontab.read_text() == self.imported_crontab and self.paused_jobs() == self.paused_before
                   and self.rq_scheduled() == self.rq_before,
                   "the dry run changed neither the crontab, nor the job store, nor RQ's schedule")
        self.nrt_before = self.next_run_times()  # what the pause records and the rollback must give back
        self.cmd("execute", str(plan_file), "--yes", "--reason", "demo canary")
        self.cmd("execute", str(plan_file), "--yes", "--reason", "demo: the rest")
        self.cmd("status")
        states = self._states()
        self.check(set(states.values()) == {"CUTOVER"}, "every job is in CUTOVER")
        nrt = self.next_run_times()
        self.check(all(nrt[j] is None for j in (SDK, "acme-revenue-report", "acme-sales-digest")),
                   "the team's job store holds its three jobs paused (next_run_time NULL: its scheduler skips them)")
        cut = self.crontab.read_text()
        self.check(sum(1 for ln in cut.splitlines() if ln.startswith("#") and "cutover cron exec" in ln) == 3,
                   "the three wrapped crontab lines are commented out")
        self.check(self.rq_scheduled() is None, f"{RQ_JOB} is out of RQ's scheduled registry (held by cutover)")
        self.cut_crontab = cut
        self.step("   The first Prefect run of an observe-only job is watched as a canary")
        outbox = self.data / "outbox"
        mails = len(list(outbox.glob("*.json"))) if outbox.exists() else 0
        started = datetime.now(UTC) - timedelta(seconds=1)
        self.cmd("prefect", "trigger", "acme-sales-digest", "--mode", "live")
        r = self.wait_prefect_run("acme-sales-digest", "live", started)
        self.check(r.status == "SUCCESS" and len(list(outbox.glob("*.json"))) == mails + 1,
                   "the canary run sent the digest once, from Prefect")

    def incident(self) -> None:
        self.step("9. An incident: pause everything at once, then resume exactly what was running")
        from sqlalchemy import select

        from cutover.core.state.models import pause_snapshots

        self.cmd("pause", "--all", "--reason", "demo: warehouse outage")
        with self.ws.state_engine.connect() as conn:
            snap = conn.execute(select(pause_snapshots.c.id).where(pause_snapshots.c.status == "ACTIVE")).scalar()
        if snap is None:
            raise DemoFailed("`cutover pause --all` left no ACTIVE pause snapshot")
        self.cmd("pause", "list")
        self.cmd("resume", "--snapshot", str(snap))
        self.cmd("status")

    def rollback(self) -> None:
        self.step("10. Roll everything back to the team's scheduler and cron")
        self.cmd("rollback", "--all", "--reason", "demo: rollback")
        self.check(self.crontab.read_text() == self.imported_crontab,
                   "the crontab is byte for byte what the import made (the lines run by cron again)")
        nrt = self.next_run_times()
        now = time.time()
        self.check(all(nrt[j] is not None and nrt[j] > now - 60 for j in (SDK, "acme-revenue-report",
                                                                          "acme-sales-digest")),
                   "the team's job store runs its three jobs again (next_run_time set)")
        self.check(all(nrt[j] == self.nrt_before[j] for j in nrt if self.nrt_before.get(j) and self.nrt_before[j] > now),
                   "each job is back at the very next_run_time it had before the cutover")
        self.check(self.rq_scheduled() == self.rq_before, f"{RQ_JOB} is back in RQ's scheduled registry at its exact time")
        self.cmd("status")
        self.cmd("log", "--limit", "10")

    def _states(self) -> dict[str, str]:
        from cutover.core.state import states

        cur = states.get_states(self.ws.state_engine)
        return {j.id: cur.get(j.id, "LEGACY") for j in self.ws.jobs.list()}
