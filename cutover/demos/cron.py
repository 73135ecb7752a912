"""The cron demo (`cutover demo --scenario cron`, `make demo SCENARIO=cron`).

The legacy side is the reference medallion pipeline of ``legacy/cron/medallion.py``: a
crontab FILE whose hourly lines run a wrapper script, bronze (raw event files ->
Iceberg, the one *ingestion*) then silver (deduplicated) then gold (per-customer
totals), next to lines cutover must never touch. The story moves bronze to Prefect
with the same commands a user types (each printed first): import the crontab, let
cron's wrapper run (legacy authoritative), prove the schedule equivalent, shadow,
parity, a caught divergence, the canary cutover (the bronze line commented out in
the managed block), an incident pause, and the rollback that gives the crontab back
byte for byte. Every command must exit as the story expects, and what the story shows is
checked against the crontab's bytes, the event files, the tables and the ledger: anything
that does not hold ends the demo with exit 1.

silver and gold are not ingestions: they stay on cron whoever writes bronze, and the
demo runs their crontab lines the way cron does (``sh -c`` with the crontab's
variables), which is the legacy pipeline acting, not cutover.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from cutover.demos.autoloader import _wait_shadow_catch_up, demo_workspace
from legacy.cron.side import parse_crontab
from legacy.cron.side import env_of, parse_crontab, read_run_log
from legacy.cron.side import BEGIN, END, PAUSED, read_run_log
from legacy.cron.medallion import INGESTION_ID as iid, write_pipeline
from cutover.core.workspace import Workspace
from legacy.cron.medallion import write_events
from cutover.core.state.models import pause_snapshots as _snaps

UTC = timezone.utc
NAMESPACE = "medallion"
FIRST_HOUR = datetime(2026, 11, 1, 0, tzinfo=UTC)
EVENTS_PER_HOUR = 48
# lines of the crontab that are not cutover's: they must come out of every step byte for byte
FOREIGN = ("MAILTO=data-platform@example.com\n"
           "30 3 * * * /usr/local/bin/pg-backup.sh --full >> /var/log/pg-backup.log 2>&1\n")


class DemoFailed(Exception):
    """A claim of the story does not hold: the demo says which and exits 1."""


class _Events:
    """The raw event files written so far, and what each table must hold because of them (read
    back from the files themselves: bronze every row, silver the last version of each event,
    gold per-customer totals of silver)."""

    def __init__(self, source: Path):
        self.source = source
        self.files: list[Path] = []
        self.next_id = 0

    def hour(self, k: int, *, dup: bool = False) -> Path:

        start = self.next_id
        dup_of = start - 5 if dup and start >= 5 else None  # an event of the previous hour, re-sent upstream
        p = write_events(self.source, FIRST_HOUR + timedelta(hours=k), EVENTS_PER_HOUR, start_id=start,
                         dup_of=dup_of)
        self.next_id = start + EVENTS_PER_HOUR
        self.files.append(p)
        return p

    def rows(self) -> list[dict]:
        out = []
        for p in self.files:
            with open(p, newline="") as fh:
                out.extend(csv.DictReader(fh))
        return out

    def distinct(self) -> dict[int, dict]:
        last: dict[int, dict] = {}
        for r in self.rows():
            i = int(r["event_id"])
            if i not in last or r["ts"] >= last[i]["ts"]:
                last[i] = r
        return last

    def gold(self) -> dict[str, tuple[int, float]]:
        out: dict[str, tuple[int, float]] = {}
        for r in self.distinct().values():
            n, total = out.get(r["customer"], (0, 0.0))
            out[r["customer"]] = (n + 1, total + float(r["amount"]))
        return {c: (n, round(total, 6)) for c, (n, total) in out.items()}


def _cron_line(text: str, step: str, where: str):

    for ln in parse_crontab(text, where=where):
        if ln.kind == "job" and ln.command and f"run_step.py {step} " in f"{ln.command} ":
            return ln
    raise DemoFailed(f"no active line runs the {step} step in {where}")


def _run_as_cron(text: str, step: str, run_log: Path, echo: Callable[[str], None], *,
                 where: str) -> tuple[int, dict]:
    """Run the line of ``step`` of the crontab ``text`` as cron runs it: ``$SHELL -c COMMAND`` with
    the crontab's variables. Returns the exit code and the wrapper's final run-log entry."""

    ln = _cron_line(text, step, where)
    echo(f"$ {ln.command}")
    env = dict(os.environ)
    env.update(env_of(parse_crontab(text, where=where)))
    run_id = uuid.uuid4().hex
    env["CUTOVER_CRON_RUN_ID"] = run_id
    env["CUTOVER_CRON_TRIGGER"] = "manual"
    r = subprocess.run([env.get("SHELL") or "/bin/sh", "-c", ln.command], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=600)
    entry = next((d for d in read_run_log(run_log) if d.get("run_id") == run_id), None)
    if entry is None:
        raise DemoFailed(f"the {step} line exited {r.returncode} without writing run {run_id} to {run_log}")
    echo(f"{step}: exit {r.returncode}, run {run_id[:12]} {entry['status']}"
         + (f": {entry['error']}" if entry.get("error") else f", {entry.get('records', 0)} rows written"))
    return r.returncode, entry


def _transform(crontab: Path, step: str, run_log: Path, echo) -> dict:
    """silver or gold, run from the crontab as cron runs it; must succeed."""
    rc, entry = _run_as_cron(crontab.read_text(), step, run_log, echo, where=str(crontab))
    if rc != 0 or entry.get("status") != "SUCCESS":
        raise DemoFailed(f"the {step} line exited {rc}: {entry.get('error')}")
    return entry


def _wait_live_file(ws, iid: str, path: Path, echo, timeout: float = 180.0):
    """Wait until ``path`` is SUCCESS in the live ledger and no Prefect live run is still running;
    returns the run record that ingested it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = next((e for e in ws.ledger(iid, "live").entries() if e.path == str(path)), None)
        running = [r for r in ws.runs.list(ingestion_id=iid, orchestrator="prefect", mode="live", limit=5)
                   if r.status == "RUNNING"]
        if entry is not None and entry.status == "SUCCESS" and not running:
            rec = ws.runs.get(entry.run_id)
            echo(f"the Prefect live run {rec.id[:12]} ingested {path.name} ({entry.records_ingested} records)")
            return rec
        if entry is not None and entry.status == "FAILED":
            raise DemoFailed(f"{path.name} FAILED in the live ledger: {entry.error}")
        time.sleep(1.0)
    raise DemoFailed(f"no live run ingested {path.name} within {timeout:.0f}s")


def run_cron_demo(invoke: Callable[[list[str]], int], echo: Callable[[str], None], settings, *,
                  force: bool = False) -> int:
    """The cron story. ``invoke`` runs one cutover command line in-process and returns its exit code."""
    home = demo_workspace(settings, force=force)
    try:
        return _story(home, invoke, echo, settings)
    except DemoFailed as e:
        echo("")
        echo(f"DEMO FAILED: {e}")
        return 1


def _story(home: Path, invoke, echo, settings) -> int:

    def step(title: str) -> None:
        echo("")
        echo(f"== {title}")

    def cmd(*args: str, ok: tuple[int, ...] = (0,)) -> int:
        echo(f"$ cutover {' '.join(args)}")
        rc = invoke(list(args))
        if rc not in ok:
            raise DemoFailed(f"`cutover {' '.join(args)}` exited {rc}")
        return rc

    def check(ok: bool, what: str) -> None:
        echo(f"check: {what}: {'OK' if ok else 'NO'}")
        if not ok:
            raise DemoFailed(what)

    def show(text: str, indent: str = "    ") -> None:
        for line in text.splitlines():
            echo(f"{indent}{line}")

    step(f"1. A fresh workspace in {home} and the legacy pipeline: a crontab running bronze -> silver -> gold hourly")
    etl = home / "etl"
    events = _Events(home / "demo-data" / "events")
    # bronze fires hourly at a minute half an hour away, so that no scheduled run (cron's, or
    # Prefect's once it has the schedule) starts in the middle of the story's few minutes
    minute = (datetime.now(UTC).minute + 30) % 60
    paths = write_pipeline(etl, source_dir=events.source, cutover_home=home, namespace=NAMESPACE,
                           schedule=f"{minute} * * * *")
    crontab: Path = paths["crontab"]
    head, sep, rest = crontab.read_text().partition("SHELL=/bin/sh\n")
    crontab.write_text(head + sep + FOREIGN + rest)  # the machine's other jobs live in the same crontab
    original = crontab.read_text()
    for k in range(3):
        events.hour(k, dup=k == 1)
    echo(f"wrote the wrapper {paths['wrapper']}, its {paths['config'].name}, and {len(events.files)} hourly event "
         f"files under {events.source} (one event re-sent upstream: silver removes it)")
    echo(f"the crontab (a FILE, as `crontab -l > {crontab}` exports it; the machine's crontab is never touched; "
         f"bronze at :{minute:02d}, half an hour away, so no scheduled run interferes with the story):")
    show(original)

    step("2. Import the crontab: a dry run first, then for real (the marked bronze line moves into the managed block)")
    cmd("cron", "import", "--crontab", str(crontab), "--timezone", "UTC", "--dry-run")
    check(crontab.read_text() == original, "the dry run left the crontab byte for byte as it was")
    cmd("cron", "import", "--crontab", str(crontab), "--timezone", "UTC")
    imported = crontab.read_text()
    cmd("cron", "jobs", "--lines")
    bronze_line = next(ln for ln in original.splitlines() if f"ingestion={iid}" in ln)
    others = [ln for ln in original.splitlines() if ln != bronze_line]
    block = imported.partition(BEGIN)[2].partition(END)[0].strip("\n").splitlines()
    outside = imported.partition(BEGIN)[0].splitlines() + imported.partition(END)[2].splitlines()
    check(block == [bronze_line] and [ln for ln in outside if ln.strip()] == [ln for ln in others if ln.strip()],
          "the bronze line moved verbatim into the managed block; every other line is untouched, in order")
    cmd("ingestion", "list")

    step("3. The legacy side runs: cron's lines, bronze through the wrapper, then silver and gold (legacy authoritative)")
    cmd("cron", "run", iid)
    _transform(crontab, "silver", paths["run_log"], echo)
    _transform(crontab, "gold", paths["run_log"], echo)
    cmd("cron", "runs")
    cmd("ledger", iid)
    cmd("table", "counts")


    ws = Workspace(settings)

    def check_tables(when: str) -> None:
        rows, distinct, want_gold = len(events.rows()), events.distinct(), events.gold()
        bronze = ws.catalog.total_records(f"{NAMESPACE}.bronze")
        silver = ws.catalog.load(f"{NAMESPACE}.silver").scan().to_arrow()
        gold = {g["customer"]: (g["events"], round(g["amount"], 6))
                for g in ws.catalog.load(f"{NAMESPACE}.gold").scan().to_arrow().to_pylist()}
        echo(f"bronze {bronze} rows (the files hold {rows}); silver {silver.num_rows} events ({len(distinct)} "
             f"distinct in the files); gold {', '.join(f'{c} {n} events {a:.2f}' for c, (n, a) in sorted(gold.items()))}")
        check(bronze == rows and sorted(silver["event_id"].to_pylist()) == sorted(distinct) and gold == want_gold,
              f"{when}: bronze holds every row of the files once, silver each event once, gold their exact totals")

    step("4. Check the legacy pipeline's output against the files")
    check_tables("after the legacy runs")

    step("5. The Prefect side: a local server and worker; the crontab schedule proven equivalent (Vixie cron rules)")
    cmd("prefect", "up")
    try:
        cmd("schedules", "verify", iid, "--horizon", "60d")
        cmd("inventory")

        step("6. Shadow: fork cutover-shadow, deploy the Prefect shadow deployment on the crontab's schedule")
        cmd("shadow", "start", iid, "--reason", "demo")
        cmd("status")
        check(crontab.read_text() == imported, "the shadow start left the crontab as it was (cron stays live)")

        step("7. A shadow run: cron's wrapper (live) and Prefect (shadow) ingest the same new files; parity proves it")
        events.hour(3, dup=True)
        events.hour(4)
        cmd("shadow", "run", "--once", iid)
        last = [d for d in read_run_log(paths["run_log"]) if d.get("job") == "bronze"][-1]
        check(last.get("status") == "SUCCESS" and last.get("files_processed") == 2,
              "the legacy half of the shadow run went through the crontab line's wrapper (it is in the run log)")
        cmd("table", "counts")

        step("8. A divergence: a new hour arrives and only cron runs it; parity fails (exit 1) and says why")
        missing = events.hour(5)
        cmd("cron", "run", iid)
        reports = home / "reports"
        cmd("parity", iid, "--since", "1h", "--format", "text,json,html,junit", "--out", str(reports), ok=(1,))
        report = json.loads((reports / "parity.json").read_text())
        kinds = {(f["kind"], f.get("file")) for c in report["ingestions"][0]["checks"] for f in c["findings"]}
        check(("file_missing_in_shadow", str(missing)) in kinds,
              f"parity names {missing.name} as missing in the shadow")
        echo(f"reports in {reports}: parity.html (with plots), parity.json, parity.xml (JUnit), parity.txt")
        cmd("prefect", "trigger", iid, "--mode", "shadow")
        try:
            _wait_shadow_catch_up(ws, iid, echo)
        except RuntimeError as e:  # it times out with a RuntimeError
            raise DemoFailed(str(e)) from None
        cmd("parity", iid, "--since", "1h", "--checks", "ledger,counts")

        step("9. The canary cutover: plan, dry-run, execute; cutover comments the bronze line out in its managed block")
        plan_file = home / "plan.json"
        cmd("plan", "--waves", "canary=1", "--gate", "streak>=1,no_open_waiver", "--out", str(plan_file))
        cmd("execute", str(plan_file), "--dry-run")
        check(crontab.read_text() == imported, "the dry run left the crontab byte for byte as it was")
        cmd("execute", str(plan_file), "--yes", "--reason", "demo canary")
        cut = crontab.read_text()
        echo(f"what the cutover changed in {crontab.name}:")
        show("".join(difflib.unified_diff(imported.splitlines(True), cut.splitlines(True), "crontab (before)",
                                          "crontab (after)", n=1)))
        changed = [(a, b) for a, b in zip(imported.splitlines(), cut.splitlines()) if a != b]
        check(len(imported.splitlines()) == len(cut.splitlines()) and changed == [(bronze_line, PAUSED + bronze_line)],
              "only the bronze line changed: commented out inside the managed block; foreign lines untouched")
        cmd("cron", "jobs")
        cmd("status")
        echo("cron cannot run bronze any more: its line is commented out,")
        cmd("cron", "run", iid, ok=(1,))
        echo(f"and a stale copy still installed (the line active: `crontab {crontab}` not run yet) runs the "
             f"wrapper, which honours the legacy pause and skips (exit 75):")
        before_stale = len(ws.ledger(iid, "live").entries())
        rc, entry = _run_as_cron(imported, "bronze", paths["run_log"], echo, where=f"{crontab} (stale copy)")
        check(rc == 75 and entry.get("status") == "SKIPPED" and len(ws.ledger(iid, "live").entries()) == before_stale,
              "the stale line ran nothing: SKIPPED in the run log, no file claimed")

        step("10. Prefect owns bronze: a new hour is ingested by the live deployment; silver and gold stay on cron")
        by_prefect = events.hour(6, dup=True)
        cmd("prefect", "trigger", iid, "--mode", "live")
        rec = _wait_live_file(ws, iid, by_prefect, echo)
        check((rec.orchestrator, rec.mode) == ("prefect", "live"), f"{by_prefect.name} was ingested by Prefect, live")
        _transform(crontab, "silver", paths["run_log"], echo)
        _transform(crontab, "gold", paths["run_log"], echo)
        check_tables("after the cutover")

        step("11. An incident: pause everything at once, then resume exactly what was running")
        cmd("pause", "--all", "--reason", "demo: catalog outage")
        from sqlalchemy import select as _select


        with ws.state_engine.connect() as conn:
            snap = conn.execute(_select(_snaps.c.id).where(_snaps.c.status == "ACTIVE")).scalar()
        if snap is None:
            raise DemoFailed("`cutover pause --all` left no ACTIVE pause snapshot")
        cmd("pause", "list")
        cmd("status", ok=(0, 1))
        cmd("resume", "--snapshot", str(snap))
        cmd("status")
        check(crontab.read_text() == cut, "pause and resume left the crontab byte for byte as it was "
                                          "(its legacy part is the fence and the batch flag, which the wrapper honours)")

        step("12. Roll the canary back to cron: the crontab comes back byte for byte, and cron runs bronze again")
        cmd("rollback", iid, "--reason", "demo: canary rollback")
        back = crontab.read_text()
        echo(f"{crontab} after the rollback:")
        show(back)
        check(back == imported, "the crontab is byte for byte what it was before the cutover")
        cmd("cron", "jobs")
        last_hour = events.hour(7)
        cmd("cron", "run", iid)
        after = [d for d in read_run_log(paths["run_log"]) if d.get("job") == "bronze"][-1]
        check(after.get("status") == "SUCCESS" and after.get("files_processed") == 1,
              f"cron's run took only the new file {last_hour.name} (Prefect's file is not ingested twice)")
        _transform(crontab, "silver", paths["run_log"], echo)
        _transform(crontab, "gold", paths["run_log"], echo)
        cmd("status")
        cmd("log", "--limit", "10")

        step("13. Check: every file ingested exactly once on main, by cron or by Prefect, across cutover and rollback")
        live = {e.path: e for e in ws.ledger(iid, "live").entries()}
        owners: dict[Path, str | None] = {}
        for p in events.files:
            e = live.get(str(p))
            who = ws.runs.find(e.run_id) if e is not None and e.run_id else None
            owners[p] = who.orchestrator if who is not None and e.status == "SUCCESS" else None
            echo(f"{p.name}  {e.status if e else 'MISSING':<8} "
                 f"{f'{who.orchestrator} {who.mode} run {who.id[:12]}' if who else '-'}")
        check(owners == {p: "prefect" if p == by_prefect else "legacy" for p in events.files},
              "each file SUCCESS once in the live ledger: Prefect's hour by Prefect, every other hour by cron")
        check_tables("after the rollback")
    finally:
        step("14. Stop the local Prefect server (`cutover prefect up` starts it again)")
        cmd("prefect", "down", ok=(0, 1, 2, 3))
    echo("")
    echo(f"The workspace stays in {home}: try `cutover cron jobs --lines`, `cutover cron runs`, "
         f"`cutover ledger {iid}`, `cutover parity history`, "
         f"`cutover table snapshots {NAMESPACE}.bronze --branch cutover-shadow`, `ls {crontab}.bak.*` "
         f"(the copy kept before every write), `cutover status` (it starts the local Prefect server again).")
    return 0
