"""The crontab legacy side (legacy/cron/side.py, legacy/cron/medallion.py, `cutover cron`).

Every crontab here is a FILE in the test's temp dir: the machine's crontab is never touched.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.helpers import add_ingestion
from tests.helpers import invoke_cli as _cli

FOREIGN = """\
# m h dom mon dow command
MAILTO=ops@example.com
SHELL=/bin/bash
5 4 * * 0   /usr/local/bin/backup.sh --full >> /var/log/backup.log 2>&1
# 0 * * * * /usr/local/bin/disabled-by-a-human.sh
@daily /usr/local/bin/rotate-logs
"""


def _outside(text: str) -> str:
    """The file without the managed block (what cutover must never change)."""
    from legacy.cron.side import BEGIN, END

    head, _, rest = text.partition(BEGIN)
    return head.rstrip("\n") + "\n" + rest.partition(END)[2].lstrip("\n")


@pytest.fixture
def cron_ws(workspace_env, tmp_path):
    """A workspace with two ingestions, a generated wrapper, and a crontab FILE with foreign lines."""
    from cutover.core.workspace import Workspace
    from legacy.cron.side import CronAdapter
    from legacy.cron.medallion import write_pipeline

    ws = Workspace()
    paths = write_pipeline(tmp_path / "etl", source_dir=tmp_path / "events", cutover_home=workspace_env)
    paths["crontab"].write_text(FOREIGN)
    paths["crontab"].chmod(0o600)
    for iid in ("orders", "customers"):
        src = tmp_path / iid
        src.mkdir()
        (src / f"{iid}-1.csv").write_text("id,name\n1,a\n2,b\n")
        add_ingestion(ws, iid, src, schedule={"crontab": "15 * * * *"})
    adapter = CronAdapter(ws, crontab=paths["crontab"], run_log=paths["run_log"], wrapper=str(paths["wrapper"]),
                          timezone="UTC", output_dir=paths["logs"])
    return ws, adapter, paths


# -- schedules: standard cron semantics -------------------------------------------------------


def test_crontab_schedule_keeps_vixie_semantics():
    from cutover.core.errors import InputError
    from cutover.core.schedule.translate import translate
    from cutover.core.schedule.verify import verify
    from cutover.core.schedule.cronexpr import VixieCronTrigger, fields, normalize_expr
    from cutover.core.records.ingestions import validate
    from cutover.core.schedule.triggers import build_trigger, describe, parse_schedule_text

    assert normalize_expr("@hourly") == "0 * * * *" and normalize_expr(" 15  *  * * * ") == "15 * * * *"
    for bad, msg in (("@reboot", "not a schedule"), ("0 0 L * *", "extension"), ("0 0 * * 1#2", "extension"),
                     ("61 * * * *", "not valid"), ("* * *", "5 fields")):
        with pytest.raises(InputError, match=msg):
            normalize_expr(bad)
    assert fields("0 0 * * 7").weekdays == {0}  # 7 is Sunday, as 0
    assert fields("0 0 1 * 1").day_and is False and fields("0 0 */2 * 1").day_and is True

    ing = validate({"id": "c", "source_uri": "/tmp", "format": "csv", "table": "a.b",
                    "schedule": parse_schedule_text("crontab 0 6 1 * mon")})
    assert ing.schedule == {"crontab": "0 6 1 * mon"} and describe(ing.schedule) == "crontab 0 6 1 * mon"
    assert validate({"id": "c", "source_uri": "/tmp", "format": "csv", "table": "a.b",
                     "schedule": {"cron": "0 6 1 * mon"}}).schedule == {"cron": "0 6 1 * mon"}  # APScheduler's

    # the 1st of the month OR Mondays (cron), not the 1st AND a Monday (APScheduler's from_crontab)
    tr = translate({"crontab": "0 6 1 * 1"}, "UTC")
    assert (tr.kind, tr.cron, tr.day_or) == ("cron", "0 6 1 * 1", True)
    ap = translate({"cron": "0 6 1 * 1"}, "UTC")
    assert ap.day_or is False and ap.cron.endswith(" 2")  # APScheduler: 1 = Tuesday, AND
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    res = verify({"crontab": "0 6 1 * 1"}, "UTC", start=start, horizon=timedelta(days=365))
    assert res.verdict == "equivalent" and res.legacy_count == 12 + 52 - 1  # Jun 1 2026 is a Monday
    # Vixie's '*' prefix rule: '*/2' counts as unrestricted -> day AND weekday
    tr = translate({"crontab": "0 0 */2 * 1"}, "UTC")
    assert verify({"crontab": "0 0 */2 * 1"}, "UTC", start=start, horizon=timedelta(days=366),
                  translation=tr).verdict == "equivalent"
    # every hour at :15 in a DST zone: UTC cron, both repeated hours, like cron
    tr = translate({"crontab": "15 * * * *"}, "Europe/Berlin")
    assert (tr.cron, tr.timezone) == ("15 * * * *", "UTC")
    assert verify({"crontab": "15 * * * *"}, "Europe/Berlin", start=start,
                  horizon=timedelta(days=366)).verdict == "equivalent"

    # cron runs these jobs, never APScheduler: the trigger computes fire times but will not be stored
    trig = build_trigger({"crontab": "15 * * * *"}, "UTC")
    assert isinstance(trig, VixieCronTrigger)
    nxt = trig.get_next_fire_time(None, datetime(2026, 1, 1, 0, 20, tzinfo=timezone.utc))
    assert nxt == datetime(2026, 1, 1, 1, 15, tzinfo=timezone.utc)
    with pytest.raises(InputError, match="run by cron, not by APScheduler"):
        pickle.dumps(trig)


def test_apscheduler_never_schedules_a_crontab_ingestion(cron_ws):
    from cutover.core.errors import InputError
    from cutover.engine.inventory import fires_per_day
    from legacy.apscheduler.scheduler import JobSync

    ws, _adapter, _ = cron_ws
    ing = ws.ingestions.get("orders")
    with pytest.raises(InputError, match="run by cron"):
        JobSync(ws.settings).ensure(ing)
    problems: list[str] = []
    JobSync(ws.settings).sync(ws.ingestions.list(), problems=problems)
    # sync leaves crontab ingestions to cron: no job, and no problem either
    assert problems == [] and JobSync(ws.settings).jobs() == []
    assert fires_per_day(ing) == 24.0  # the inventory still reads the schedule


# -- the managed block ------------------------------------------------------------------------


def test_managed_block_never_touches_foreign_lines_and_keeps_backups(cron_ws):
    from legacy.cron.side import BEGIN, END, PAUSED

    ws, a, paths = cron_ws
    f = paths["crontab"]
    assert a.ensure_job(ws.ingestions.get("orders")) == "created"
    assert a.ensure_job(ws.ingestions.get("customers")) == "created"
    text = f.read_text()
    assert text.startswith(FOREIGN) and BEGIN in text and text.rstrip().endswith(END)
    assert "15 * * * * " + str(paths["wrapper"]) + " ingest orders >> " in text
    assert len(a.file.backups()) == 2
    assert a.file.backups()[0].read_text() == FOREIGN  # the file as it was before the first write

    assert a.pause("orders") is True
    t1 = f.read_text()
    assert PAUSED + "15 * * * * " in t1 and _outside(t1) == _outside(text)
    mtime = f.stat().st_mtime_ns
    assert a.pause("orders") is False  # idempotent: nothing written, no backup
    assert f.stat().st_mtime_ns == mtime and len(a.file.backups()) == 3
    assert a.resume("orders") is True
    assert f.read_text() == text  # byte for byte
    assert stat.S_IMODE(f.stat().st_mode) == 0o600  # mode kept
    assert len(a.file.backups()) == 4

    # a human edits foreign lines meanwhile: cutover re-reads under the lock and keeps them
    f.write_text(f.read_text().replace("MAILTO=ops@example.com", "MAILTO=oncall@example.com"))
    assert a.pause("customers") is True
    assert "MAILTO=oncall@example.com" in f.read_text()
    assert a.remove_job("customers") is True and "ingest customers" not in f.read_text()
    assert a.remove_job("customers") is False
    assert _outside(f.read_text()) == _outside(text).replace("ops@", "oncall@")
    assert not [p for p in f.parent.iterdir() if p.name.endswith(".tmp")]


def test_write_is_atomic(cron_ws, monkeypatch):
    import cutover.core.osutil as C

    ws, a, paths = cron_ws
    a.ensure_job(ws.ingestions.get("orders"))
    before = paths["crontab"].read_text()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(C.os, "replace", boom)
    with pytest.raises(OSError):
        a.pause("orders")
    assert paths["crontab"].read_text() == before  # the old file, whole
    assert not [p for p in paths["crontab"].parent.iterdir() if p.name.endswith(".tmp")]


def test_lines_outside_the_block_are_not_ours(cron_ws):
    from cutover.core.errors import InputError, NotFound

    ws, a, paths = cron_ws
    paths["crontab"].write_text(FOREIGN + "30 * * * * /bin/true # cutover: ingestion=orders\n")
    assert [(j.ingestion_id, j.managed) for j in a.jobs()] == [("orders", False)]
    with pytest.raises(InputError, match="outside the managed block"):
        a.pause("orders")
    with pytest.raises(InputError, match="adopt it first"):
        a.ensure_job(ws.ingestions.get("orders"))
    with pytest.raises(NotFound):
        a.pause("customers")
    assert paths["crontab"].read_text().startswith(FOREIGN) and a.file.backups() == []


def test_broken_managed_block_is_refused(cron_ws):
    from cutover.core.errors import InputError
    from legacy.cron.side import BEGIN

    ws, a, paths = cron_ws
    paths["crontab"].write_text(FOREIGN + BEGIN + "\n15 * * * * /bin/true # cutover: ingestion=orders\n")
    with pytest.raises(InputError, match="without"):
        a.pause("orders")


# -- import -----------------------------------------------------------------------------------


def test_import_dry_run_then_apply(workspace_env, tmp_path, capsys):
    from cutover.core.workspace import Workspace
    from legacy.cron.side import BEGIN, CronAdapter
    from legacy.cron.medallion import write_pipeline

    paths = write_pipeline(tmp_path / "etl", source_dir=tmp_path / "events", cutover_home=workspace_env)
    original = paths["crontab"].read_text()

    code, out, err = _cli(capsys, "cron", "import", "--crontab", str(paths["crontab"]), "--timezone", "UTC",
                          "--dry-run")
    assert code == 0, err
    assert "would create: medallion-bronze  crontab 15 * * * * (UTC), line 3: adopt line" in out
    assert "not imported: line 4" in out and "not imported: line 5" in out
    assert paths["crontab"].read_text() == original and not (workspace_env / "cron.json").exists()
    assert not (workspace_env / "autoloader.db").exists()  # a dry run creates nothing

    code, out, err = _cli(capsys, "cron", "import", "--crontab", str(paths["crontab"]), "--timezone", "UTC",
                          "--map", "run_step.py silver=medallion-silver", "--definitions",
                          str(_silver_definition(tmp_path)))
    assert code == 0, err
    ws = Workspace()
    ing = ws.ingestions.get("medallion-bronze")
    assert ing.schedule == {"crontab": "15 * * * *"} and ing.timezone == "UTC"
    assert ws.ingestions.get("medallion-silver").schedule == {"crontab": "25 * * * *"}
    text = paths["crontab"].read_text()
    block = text.split(BEGIN)[1]
    assert "run_step.py bronze >> " in block and "# cutover: ingestion=medallion-bronze" in block
    assert "run_step.py silver" in block and "# cutover: ingestion=medallion-silver" in block  # marker added
    assert "run_step.py gold" in text.split(BEGIN)[0]  # unmapped: left where it was
    cfg = json.loads((workspace_env / "cron.json").read_text())
    assert cfg["run_log"] == str(paths["run_log"]) and cfg["wrapper"] == str(paths["wrapper"])

    # importing again changes nothing (no write, no backup)
    n_backups = len(CronAdapter(ws).file.backups())
    code, out, err = _cli(capsys, "cron", "import", "--crontab", str(paths["crontab"]), "--timezone", "UTC")
    assert code == 0, err
    assert "unchanged: medallion-bronze" in out and "line already managed" in out
    assert len(CronAdapter(ws).file.backups()) == n_backups

    code, out, err = _cli(capsys, "cron", "jobs", "--json")
    assert code == 0, err
    jobs = {j["ingestion_id"]: j for j in json.loads(out)["jobs"]}
    assert jobs["medallion-bronze"]["managed"] and not jobs["medallion-bronze"]["paused"]

    code, out, err = _cli(capsys, "cron", "pause", "--all", "--dry-run")
    assert code == 0 and out.count("would pause") == 2 and paths["crontab"].read_text() == text
    code, out, err = _cli(capsys, "cron", "pause", "medallion-silver")
    assert code == 0 and "medallion-silver: paused" in out
    code, out, err = _cli(capsys, "cron", "resume", "--all")
    assert code == 0 and "medallion-silver: resumed" in out and "medallion-bronze: already active" in out
    assert paths["crontab"].read_text() == text


def _silver_definition(tmp_path: Path) -> Path:
    p = tmp_path / "defs.yaml"
    p.write_text(f"- id: medallion-silver\n  source_uri: {tmp_path / 'silver-src'}\n  format: csv\n"
                 f"  table: medallion.silver_raw\n")
    (tmp_path / "silver-src").mkdir()
    return p


# -- run log ----------------------------------------------------------------------------------


def test_run_log_reading(cron_ws):
    ws, a, paths = cron_ws
    t = datetime(2026, 11, 1, 10, tzinfo=timezone.utc)
    lines = [
        {"run_id": "r1", "job": "bronze", "ingestion_id": "orders", "trigger": "scheduled", "host": "elsewhere",
         "pid": 1, "start": t.isoformat(), "end": None, "status": "RUNNING"},
        {"run_id": "r1", "job": "bronze", "ingestion_id": "orders", "trigger": "scheduled", "host": "elsewhere",
         "pid": 1, "start": t.isoformat(), "end": (t + timedelta(seconds=9)).isoformat(), "status": "SUCCESS",
         "records": 12, "files_processed": 3, "bytes_read": 99},
        {"run_id": "r2", "job": "silver", "ingestion_id": None, "start": t.isoformat(), "status": "SUCCESS"},
        {"run_id": "r3", "job": "bronze", "ingestion_id": "orders", "host": os.uname().nodename, "pid": 2 ** 22 + 7,
         "start": (t + timedelta(hours=1)).isoformat(), "end": None, "status": "RUNNING"},
        {"run_id": "r4", "job": "bronze", "ingestion_id": "orders", "start": (t + timedelta(hours=2)).isoformat(),
         "end": (t + timedelta(hours=2)).isoformat(), "status": "SKIPPED", "error": "paused"},
    ]
    paths["run_log"].write_text("".join(json.dumps(d) + "\n" for d in lines) + "not json\n")
    runs = a.read_runs(ingestion_id="orders")
    assert [r.id for r in runs] == ["r3", "r1"]  # newest first; silver (no ingestion) and SKIPPED left out
    r1 = runs[1]
    assert (r1.orchestrator, r1.mode, r1.trigger, r1.status) == ("legacy", "live", "scheduled", "SUCCESS")
    assert (r1.records_ingested, r1.files_processed, r1.bytes_read, r1.duration_s) == (12, 3, 99, 9.0)
    assert r1.external_id == "cron:bronze" and r1.ended_at == t + timedelta(seconds=9)
    assert runs[0].status == "CRASHED"  # RUNNING on this host, process gone
    assert [r.id for r in a.read_runs(since=(t + timedelta(minutes=30)).astimezone(timezone(timedelta(hours=9))))] \
        == ["r3"]
    assert len(a.read_log()) == 4
    assert a.health().ok


# -- the medallion pipeline through the wrapper ------------------------------------------------


def test_medallion_pipeline_and_the_legacy_pause(workspace_env, tmp_path, capsys):
    from cutover.core.workspace import Workspace
    from legacy.batch.orchestrator import IngestionPaused
    from legacy.cron.side import CronAdapter
    from legacy.cron.medallion import write_events, write_pipeline

    code, out, err = _cli(capsys, "cron", "scaffold", str(tmp_path / "etl"), "--source", str(tmp_path / "events"))
    assert code == 0, err
    paths = write_pipeline(tmp_path / "etl", source_dir=tmp_path / "events", cutover_home=workspace_env)
    hour = datetime(2026, 11, 1, 0, tzinfo=timezone.utc)
    write_events(tmp_path / "events", hour, 5, start_id=0)
    write_events(tmp_path / "events", hour + timedelta(hours=1), 5, start_id=5, dup_of=2)  # event 2 re-sent
    code, out, err = _cli(capsys, "cron", "import", "--crontab", str(paths["crontab"]), "--timezone", "UTC")
    assert code == 0, err
    ws = Workspace()
    a = CronAdapter(ws)
    rid = a.trigger("medallion-bronze")
    rec = ws.runs.get(rid)  # the run log's run id is the run record's
    assert (rec.orchestrator, rec.mode, rec.trigger, rec.status, rec.files_processed, rec.records_ingested) == (
        "legacy", "live", "manual", "SUCCESS", 2, 11)
    assert [r.id for r in a.read_runs()] == [rid]

    env = {**os.environ, "CUTOVER_CRON_TRIGGER": "scheduled"}
    import subprocess

    for step in ("silver", "gold"):
        r = subprocess.run([str(paths["wrapper"]), step], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    silver = ws.catalog.load("medallion.silver").scan().to_arrow()
    assert silver.num_rows == 10 and sorted(silver["event_id"].to_pylist()) == list(range(10))
    gold = ws.catalog.load("medallion.gold").scan().to_arrow().to_pylist()
    assert sum(g["events"] for g in gold) == 10 and [g["customer"] for g in gold] == ["c0", "c1", "c2"]
    assert [d["job"] for d in a.read_log()] == ["bronze", "silver", "gold"]

    # the legacy pause (batch flag, as the cutover engine sets it) is honoured by the wrapper
    ws.ingestions.set_batch_paused("medallion-bronze", True)
    with pytest.raises(IngestionPaused, match="paused"):
        a.trigger("medallion-bronze")
    assert a.read_log()[-1]["status"] == "SKIPPED"
    ws.ingestions.set_batch_paused("medallion-bronze", False)
    a.pause("medallion-bronze")
    with pytest.raises(IngestionPaused, match="crontab line"):
        a.trigger("medallion-bronze")
    code, out, err = _cli(capsys, "cron", "runs", "--json")
    assert code == 0 and [d["status"] for d in json.loads(out)][-1] == "SKIPPED"


def test_legacy_side_runs_a_crontab_ingestion_through_its_line(workspace_env, tmp_path):
    """What `cutover shadow run --once` runs as the legacy half: the crontab line's command for a
    crontab ingestion (the wrapper: in the run log), the batch orchestrator for any other."""
    from cutover.registry.sides import LiveSides, run_legacy_now
    from cutover.core.workspace import Workspace
    from legacy.batch.orchestrator import IngestionPaused
    from legacy.cron.side import CronAdapter, CronLegacySide, apply_import, plan_import, read_run_log
    from legacy.cron.medallion import INGESTION_ID, write_events, write_pipeline

    paths = write_pipeline(tmp_path / "etl", source_dir=tmp_path / "events", cutover_home=workspace_env)
    write_events(tmp_path / "events", datetime(2026, 11, 1, 0, tzinfo=timezone.utc), 4)
    ws = Workspace()
    apply_import(ws, plan_import(ws, paths["crontab"], timezone="UTC"))
    src = tmp_path / "orders"
    src.mkdir()
    (src / "orders-1.csv").write_text("id,name\n1,a\n")
    add_ingestion(ws, "orders", src)

    legacy = LiveSides(ws).legacy()
    assert isinstance(legacy.base, CronLegacySide)  # under the generic-jobs wrapper (cutover.registry.jobsides)
    rid = legacy.run_now(INGESTION_ID)
    rec = ws.runs.get(rid)
    assert (rec.orchestrator, rec.mode, rec.trigger, rec.status, rec.files_processed, rec.external_id) == (
        "legacy", "live", "manual", "SUCCESS", 1, "cron:bronze")
    assert [d["run_id"] for d in read_run_log(paths["run_log"])] == [rid]

    other = ws.runs.get(legacy.run_now("orders"))
    assert (other.status, other.files_processed, other.external_id) == ("SUCCESS", 1, None)
    assert [d["run_id"] for d in read_run_log(paths["run_log"])] == [rid]  # not through cron

    # a side wrapping this one without a run_now of its own hands the run down to it
    class Wrapping:
        def __init__(self, base):
            self.base = base

    write_events(tmp_path / "events", datetime(2026, 11, 1, 1, tzinfo=timezone.utc), 2)
    again = ws.runs.get(run_legacy_now(Wrapping(legacy), INGESTION_ID))
    assert (again.external_id, again.files_processed) == ("cron:bronze", 1)
    with pytest.raises(TypeError, match="cannot run an ingestion now"):
        run_legacy_now(Wrapping(None), INGESTION_ID)

    CronAdapter(ws).pause(INGESTION_ID)
    with pytest.raises(IngestionPaused, match="crontab line"):
        legacy.run_now(INGESTION_ID)


# -- shadow + parity + handoff + rollback, end to end, for the cron kind --------------------------

from tests.prefect_fixtures import prefect_cleanup, prefect_env, prefect_server, wait_flow_run  # noqa: E402,F401


@pytest.mark.slow
@pytest.mark.prefect
def test_cron_shadow_parity_cutover_and_rollback(prefect_server, prefect_env, prefect_cleanup, tmp_path, capsys):
    from cutover.core.state import states
    from cutover.engine.execute import operation
    from cutover.engine.rollback import rollback
    from cutover.engine.plan import Move, steps_for
    from cutover.core.workspace import Workspace
    from flows.adapter import PrefectAdapter
    from legacy.batch.orchestrator import IngestionPaused
    from cutover.registry.sides import CronLiveSides
    from legacy.cron.side import PAUSED, CronAdapter
    from legacy.cron.medallion import INGESTION_ID, write_events, write_pipeline

    iid = INGESTION_ID
    prefect_cleanup(iid)
    paths = write_pipeline(tmp_path / "etl", source_dir=tmp_path / "events", cutover_home=prefect_env)
    paths["crontab"].write_text(FOREIGN + paths["crontab"].read_text())
    hour = datetime(2026, 11, 1, 0, tzinfo=timezone.utc)
    for h in range(2):
        write_events(tmp_path / "events", hour + timedelta(hours=h), 4, start_id=h * 4)
    code, out, err = _cli(capsys, "cron", "import", "--crontab", str(paths["crontab"]), "--timezone", "UTC")
    assert code == 0, err
    ws = Workspace()
    cron = CronAdapter(ws)
    first = cron.trigger(iid)  # the legacy side runs first: the table exists
    assert ws.runs.get(first).status == "SUCCESS"

    code, out, err = _cli(capsys, "shadow", "start", iid)
    assert code == 0, out + err
    with PrefectAdapter(ws, prefect_server.url, mode="shadow") as ad, ad.client() as c:
        dep = c.read_deployment_by_name(f"cutover-ingest/{iid}-shadow")
        (sched,) = dep.schedules
        assert (sched.schedule.cron, sched.schedule.day_or, sched.schedule.timezone) == ("15 * * * *", True, "UTC")

    # new files; both sides run them: legacy live through cron's wrapper, Prefect in shadow
    for h in range(2, 4):
        write_events(tmp_path / "events", hour + timedelta(hours=h), 4, start_id=h * 4, dup_of=h)
    legacy_run = cron.trigger(iid)
    with PrefectAdapter(ws, prefect_server.url, mode="shadow") as ad:
        fr = ad.trigger(iid)
    assert wait_flow_run(prefect_server, fr).state.type.value == "COMPLETED"
    assert ws.runs.get(legacy_run).files_processed == 2
    shadow_rec = [r for r in ws.runs.list(ingestion_id=iid, orchestrator="prefect") if r.external_id == fr][0]
    assert (shadow_rec.mode, shadow_rec.status, shadow_rec.files_processed) == ("shadow", "SUCCESS", 2)

    code, out, err = _cli(capsys, "parity", iid, "--since", "fork", "--format", "json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["ingestions"][0]["verdict"] == "pass", out

    # the handoff with the cron-aware legacy side: the line is commented, Prefect live takes over
    sides = CronLiveSides(ws, prefect_api_url=prefect_server.url)
    before = paths["crontab"].read_text()
    move = Move(iid, states.SHADOW, states.CUTOVER, steps_for(iid, states.SHADOW, states.CUTOVER, handoff_timeout=30))
    operation(ws, "cutover-test", [move], sides, lambda _m: None, dry_run=False)
    after = paths["crontab"].read_text()
    assert f"{PAUSED}15 * * * * {paths['wrapper']} bronze" in after
    assert _outside(after) == _outside(before)  # foreign lines untouched
    assert ws.ingestions.get(iid).batch_paused
    with pytest.raises(IngestionPaused):
        cron.trigger(iid)
    live = sides.legacy().live_state()[iid]
    assert live == {"live": False, "text": "paused"}
    with PrefectAdapter(ws, prefect_server.url, mode="live") as ad:
        assert ad.is_paused(iid) is False

    # rollback: Prefect paused, the cron line back byte for byte, the batch flag cleared
    report = rollback(ws, [iid], echo=lambda _m: None, sides=CronLiveSides(ws, prefect_api_url=prefect_server.url))
    assert report["ingestions"] == [iid] and report["partial"] is None
    assert states.get_states(ws.state_engine)[iid] == states.ROLLED_BACK
    assert paths["crontab"].read_text() == before
    assert not ws.ingestions.get(iid).batch_paused
    with PrefectAdapter(ws, prefect_server.url, mode="live") as ad:
        assert ad.is_paused(iid) is True
    write_events(tmp_path / "events", hour + timedelta(hours=5), 3, start_id=100)
    again = cron.trigger(iid)
    assert (ws.runs.get(again).status, ws.runs.get(again).files_processed) == ("SUCCESS", 1)
    assert len(cron.file.backups()) >= 3  # adopt, pause, resume: each write kept the previous file


def test_install_runs_crontab_with_the_file(cron_ws, tmp_path, monkeypatch):
    """--install: after each write, `crontab FILE` (a fake one here: the machine's crontab is never touched)."""
    ws, a, paths = cron_ws
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "crontab"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    a.config.install = True
    a.ensure_job(ws.ingestions.get("orders"))
    a.pause("orders")
    a.pause("orders")  # nothing written: not installed again
    assert calls.read_text().splitlines() == [str(paths["crontab"])] * 2
