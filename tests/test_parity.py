"""Parity on a real workspace: legacy live runs, shadow runs into the cutover-shadow
branch, then each finding kind injected for real and detected.

The shadow runs here call the same ingestion service the Prefect flow calls, with
orchestrator "prefect" and mode "shadow" (the flow itself is tested against a real
Prefect server in test_prefect_integration.py); what is under test is the checks.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import update

from checks.model import ERROR, FAIL, PASS
from cutover.cli import cli
from cutover.cli.app import run_main


def _csv(path: Path, rows: int, start: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,name,amount\n" + "".join(f"{start + i},n{i},{i * 1.5}\n" for i in range(rows)))


@pytest.fixture
def shadowed(workspace_env, tmp_path):
    """An ingestion with pre-fork history, a shadow fork, and one clean post-fork round on both sides."""
    from cutover.engine.baseline import seed_baseline
    from cutover.core.shadowfork import ensure_fork
    from cutover.core.workspace import Workspace
    from cutover.core.records.ingestions import IngestionRepo, validate

    src = tmp_path / "src"
    _csv(src / "day1_a.csv", 20, 0)
    _csv(src / "day1_b.csv", 10, 100)
    (src / "day1_bad.csv").write_text("id,name,amount\n1,2\n")
    ws = Workspace()
    ing = validate({"id": "orders", "source_uri": str(src), "pattern": "*.csv", "format": "csv",
                    "table": "shop.orders", "key_columns": ["id"]})
    IngestionRepo(ws.autoloader_engine).upsert([ing], replace_existing=False)
    ws.service.run(ing)  # before the fork
    fork = ensure_fork(ws, ing)
    seed_baseline(ws, ing, fork)
    from cutover.core.state import states

    states.set_state(ws.state_engine, ing.id, states.SHADOW)
    _csv(src / "day2_a.csv", 15, 200)
    _csv(src / "day2_b.csv", 5, 300)
    ws.service.run(ing, orchestrator="legacy", mode="live")
    ws.service.run(ing, orchestrator="prefect", mode="shadow")
    return ws, ing, src


def _parity(ws, ing, **kw):
    from checks.parity import run_parity

    rep = run_parity(ws, [ing], since=kw.pop("since", None), **kw)
    return rep, {c.name: c for c in rep.ingestions[0].checks}


def _kinds(check) -> list[str]:
    return sorted(f.kind for f in check.findings)


def test_clean_shadow_passes_five_times_with_zero_findings(shadowed):
    ws, ing, src = shadowed
    for i in range(5):
        _csv(src / f"day{3 + i}.csv", 7 + i, 1000 * (i + 3))
        ws.service.run(ing, orchestrator="legacy", mode="live")
        ws.service.run(ing, orchestrator="prefect", mode="shadow")
        rep, checks = _parity(ws, ing)
        assert rep.verdict == PASS, [(c.name, c.error, [f.kind for f in c.findings]) for c in checks.values()]
        assert all(not c.findings for c in checks.values())
        assert rep.ingestions[0].streak == i + 1
    # baseline files were not ingested twice by the shadow
    assert checks["counts"].metrics["main_added_records"] == checks["counts"].metrics["shadow_added_records"] > 0
    assert checks["ledger"].metrics["baseline_files"] == 2


def test_quality_reads_the_window_rows_only_with_one_ge_context(shadowed, monkeypatch):
    """Quality validates the rows the window's snapshots added (not the table's history), and every
    ingestion of a parity run shares the one Great Expectations context of the process."""
    import checks.quality as q

    ws, ing, src = shadowed
    q.ge_context()  # imports GE (with its pyspark warning filtered)
    import great_expectations as gx

    made = []
    real = gx.get_context
    monkeypatch.setattr(gx, "get_context", lambda *a, **kw: made.append(1) or real(*a, **kw))
    rep, checks = _parity(ws, ing)  # since the fork: 30 rows of history on main, 20 in the window
    assert checks["quality"].verdict == PASS
    m = checks["quality"].metrics
    assert (m["legacy_rows_checked"], m["shadow_rows_checked"], m["rows"]) == (20, 20, "window")
    import time

    time.sleep(0.05)
    recent = datetime.now(timezone.utc)  # after every earlier snapshot, before the next round's
    time.sleep(0.05)
    _csv(src / "day3.csv", 4, 5000)
    ws.service.run(ing, orchestrator="legacy", mode="live")
    ws.service.run(ing, orchestrator="prefect", mode="shadow")
    rep, checks = _parity(ws, ing, since=recent)  # only the last round is in this window
    m = checks["quality"].metrics
    assert (m["legacy_rows_checked"], m["shadow_rows_checked"]) == (4, 4) and checks["quality"].verdict == PASS
    assert made == []  # no second context: the process's one is shared


def test_file_missing_in_shadow_and_status_mismatch(shadowed):
    ws, ing, src = shadowed
    from cutover.core.records.tables import processed_files as t

    with ws.autoloader_engine.begin() as conn:  # the shadow "lost" one file and "failed" another
        conn.execute(t.delete().where(t.c.namespace == "shadow", t.c.path == str(src / "day2_a.csv")))
        conn.execute(update(t).where(t.c.namespace == "shadow", t.c.path == str(src / "day2_b.csv"))
                     .values(status="FAILED", error="injected"))
    rep, checks = _parity(ws, ing)
    assert rep.verdict == FAIL
    assert _kinds(checks["ledger"]) == ["file_missing_in_shadow", "status_mismatch"]
    missing = [f for f in checks["ledger"].findings if f.kind == "file_missing_in_shadow"][0]
    assert missing.file == str(src / "day2_a.csv") and missing.legacy["status"] == "SUCCESS"


def test_file_missing_in_legacy_and_records_mismatch(shadowed):
    ws, ing, src = shadowed
    from cutover.core.records.tables import processed_files as t

    with ws.autoloader_engine.begin() as conn:
        conn.execute(t.delete().where(t.c.namespace == "live", t.c.path == str(src / "day2_a.csv")))
        conn.execute(update(t).where(t.c.namespace == "shadow", t.c.path == str(src / "day2_b.csv"))
                     .values(records_ingested=4))
    rep, checks = _parity(ws, ing)
    assert _kinds(checks["ledger"]) == ["file_missing_in_legacy", "records_mismatch"]
    rm = [f for f in checks["ledger"].findings if f.kind == "records_mismatch"][0]
    assert (rm.legacy, rm.shadow) == (5, 4)


def test_rows_deleted_on_shadow_branch_is_row_count_mismatch(shadowed):
    ws, ing, src = shadowed
    from pyiceberg.expressions import EqualTo

    tbl = ws.catalog.load(ing.table)
    tbl.delete(EqualTo("id", 200), branch="cutover-shadow")
    rep, checks = _parity(ws, ing)
    assert rep.verdict == FAIL
    total = [f for f in checks["counts"].findings if f.kind == "row_count_mismatch" and f.file is None]
    assert total and (total[0].legacy, total[0].shadow) == (20, 19)
    assert any(f.kind == "quality_failed" and "row_count" in f.detail for f in checks["quality"].findings)
    # main was never touched by the shadow
    assert ws.catalog.total_records(ing.table, "main") == 50


def test_file_appended_twice_is_processed_twice(shadowed):
    ws, ing, src = shadowed
    from cutover.core.autoloader.formats import read_file
    from cutover.core.autoloader.discovery import filesystem

    fs, _ = filesystem(str(src))
    data = read_file(fs, str(src / "day2_b.csv"), "csv")
    tbl = ws.catalog.load(ing.table)
    ws.catalog.append(ing.table, data, branch="cutover-shadow", tbl=tbl, properties={
        "cutover.run-id": "rogue", "cutover.orchestrator": "prefect", "cutover.mode": "shadow",
        "cutover.file": str(src / "day2_b.csv"), "cutover.ingestion": ing.id})
    rep, checks = _parity(ws, ing)
    kinds = _kinds(checks["counts"])
    assert "file_processed_twice" in kinds and "row_count_mismatch" in kinds
    twice = [f for f in checks["counts"].findings if f.kind == "file_processed_twice"][0]
    assert twice.file == str(src / "day2_b.csv") and twice.shadow == 2
    assert any(f.kind == "quality_failed" and "unique" in f.detail for f in checks["quality"].findings)


def test_shadow_write_on_main_names_the_snapshot_and_writer(shadowed):
    ws, ing, src = shadowed
    import pyarrow as pa

    tbl = ws.catalog.load(ing.table)
    data = pa.table({"id": pa.array([777], pa.int64()), "name": ["rogue"], "amount": [1.0]})
    sid = ws.catalog.append(ing.table, data, branch="main", tbl=tbl, properties={
        "cutover.run-id": "flow-run-42", "cutover.orchestrator": "prefect", "cutover.mode": "shadow",
        "cutover.ingestion": ing.id})
    rep, checks = _parity(ws, ing)
    assert rep.verdict == FAIL
    on_main = [f for f in checks["counts"].findings if f.kind == "shadow_write_on_main"]
    assert len(on_main) == 1 and checks["counts"].metrics["shadow_writes_on_main"] == 1
    f = on_main[0]
    assert f.shadow["snapshot_id"] == sid and f.shadow["orchestrator"] == "prefect" and f.shadow["run_id"] == "flow-run-42"
    assert f"snapshot {sid} on main was written by the shadow (prefect, run flow-run-42, 1 records)" in f.detail


def test_failed_and_missing_runs(shadowed):
    ws, ing, src = shadowed
    from cutover.core.records.tables import runs as t

    shadow_run = ws.runs.list(ingestion_id=ing.id, orchestrator="prefect", mode="shadow")[0]
    with ws.autoloader_engine.begin() as conn:
        conn.execute(update(t).where(t.c.id == shadow_run.id).values(status="FAILED", error="injected: worker died"))
    rep, checks = _parity(ws, ing)
    assert _kinds(checks["runs"]) == ["run_failed"]
    assert "injected: worker died" in checks["runs"].findings[0].detail
    # a legacy run with no shadow partner, after the fork and old enough to be judged
    from cutover.core.state.models import shadow_forks

    with ws.state_engine.begin() as conn:
        conn.execute(update(shadow_forks).values(created_at=datetime.now(timezone.utc) - timedelta(hours=3)))
    old = datetime.now(timezone.utc) - timedelta(hours=2)
    rid = ws.runs.start(ing.id, orchestrator="legacy", mode="live", trigger="scheduled")
    ws.runs.finish(rid, "SUCCESS")
    with ws.autoloader_engine.begin() as conn:
        conn.execute(update(t).where(t.c.id == rid).values(started_at=old))
    rep, checks = _parity(ws, ing)
    assert _kinds(checks["runs"]) == ["run_failed", "run_missing"]


def test_duration_regression_and_no_false_alarm_on_short_runs(shadowed):
    ws, ing, src = shadowed
    from cutover.core.records.tables import runs as t

    legacy_run = ws.runs.list(ingestion_id=ing.id, orchestrator="legacy", mode="live")[0]
    shadow_run = ws.runs.list(ingestion_id=ing.id, orchestrator="prefect", mode="shadow")[0]
    with ws.autoloader_engine.begin() as conn:  # sub-second runs: a ratio of 3 is noise
        conn.execute(update(t).where(t.c.id == legacy_run.id).values(duration_s=0.2))
        conn.execute(update(t).where(t.c.id == shadow_run.id).values(duration_s=0.6))
    assert _parity(ws, ing)[1]["runs"].findings == []
    with ws.autoloader_engine.begin() as conn:
        conn.execute(update(t).where(t.c.id == legacy_run.id).values(duration_s=60))
        conn.execute(update(t).where(t.c.id == shadow_run.id).values(duration_s=120))
    rep, checks = _parity(ws, ing)
    assert _kinds(checks["runs"]) == ["duration_regression"]
    assert "2.00 > 1.50" in checks["runs"].findings[0].detail


def test_changed_column_type_on_shadow_is_schema_mismatch(shadowed):
    ws, ing, src = shadowed
    import pyarrow as pa
    from pyiceberg.types import DoubleType

    tbl = ws.catalog.load(ing.table)
    with tbl.update_schema() as upd:  # id: long -> a new schema the shadow writes with
        upd.add_column("discount", DoubleType())
    tbl = ws.catalog.load(ing.table)
    data = pa.table({"id": pa.array([900], pa.int64()), "name": ["x"], "amount": [1.0], "discount": [0.1]})
    ws.catalog.append(ing.table, data, branch="cutover-shadow", tbl=tbl, properties={"cutover.mode": "shadow"})
    rep, checks = _parity(ws, ing)
    assert "schema_mismatch" in _kinds(checks["quality"])
    sm = [f for f in checks["quality"].findings if f.kind == "schema_mismatch"]
    assert len(sm) == 1, [f.detail for f in sm]  # one finding per differing column, naming it and both types
    assert sm[0].legacy == {"column": "discount", "type": None} and sm[0].shadow == {"column": "discount", "type": "double"}
    assert sm[0].detail == "column discount: legacy (missing), shadow double"


def test_schema_mismatch_names_each_column_and_both_types():
    from checks.quality import schema_findings

    legacy = [("id", "long"), ("amount", "decimal(10, 2)"), ("name", "string"), ("at", "timestamptz")]
    shadow = [("id", "long"), ("name", "string"), ("amount", "double"), ("note", "string")]
    got = {f.detail for f in schema_findings(legacy, shadow)}
    assert got == {"column amount: legacy decimal(10, 2), shadow double",
                   "column at: legacy timestamptz, shadow (missing)",
                   "column note: legacy (missing), shadow string",
                   "column order: legacy id, amount, name; shadow id, name, amount"}
    assert all(f.kind == "schema_mismatch" for f in schema_findings(legacy, shadow))
    assert schema_findings(legacy, list(legacy)) == []


def test_waiver_turns_failure_into_pass_and_expires(shadowed):
    ws, ing, src = shadowed
    from cutover.core.state.waivers import WaiverStore
    from cutover.core.records.tables import processed_files as t

    with ws.autoloader_engine.begin() as conn:
        conn.execute(t.delete().where(t.c.namespace == "shadow", t.c.path == str(src / "day2_a.csv")))
    store = WaiverStore(ws.state_engine)
    wid = store.add(ing.id, "ledger", reason="known gap", owner="ana", expires_at=datetime.now(timezone.utc) + timedelta(days=1))
    rep, checks = _parity(ws, ing, checks=("ledger",))
    assert rep.verdict == PASS and checks["ledger"].verdict == FAIL and checks["ledger"].waiver["id"] == wid
    later = datetime.now(timezone.utc) + timedelta(days=2)
    rep, checks = _parity(ws, ing, checks=("ledger",), now=later)
    assert rep.verdict == FAIL and checks["ledger"].waiver is None


def test_after_cutover_parity_is_not_judged(shadowed, capsys):
    ws, ing, src = shadowed
    from cutover.core.state import states

    states.set_state(ws.state_engine, ing.id, states.CUTOVER)
    ws.service.run(ing, orchestrator="prefect", mode="live")  # Prefect live now: no shadow counterpart
    rep, checks = _parity(ws, ing)
    assert rep.verdict == ERROR and "is CUTOVER" in checks["ledger"].error
    assert run_main(cli, ["parity"]) == 2  # nothing in SHADOW to compare for the nightly job
    assert "no ingestion is in SHADOW" in capsys.readouterr().err


def test_no_shadow_is_error_verdict(workspace_env, tmp_path):
    from cutover.core.workspace import Workspace
    from cutover.core.records.ingestions import IngestionRepo, validate

    ws = Workspace()
    ing = validate({"id": "x", "source_uri": str(tmp_path), "format": "csv", "table": "a.b"})
    IngestionRepo(ws.autoloader_engine).upsert([ing], replace_existing=False)
    rep, checks = _parity(ws, ing)
    assert rep.verdict == ERROR and "shadow start" in checks["runs"].error


def test_cli_reports_all_formats_and_exit_codes(shadowed, tmp_path, capsys):
    ws, ing, src = shadowed
    out = tmp_path / "reports"
    rc = run_main(cli, ["parity", "--since", "24h", "--format", "text,json,md,html,junit", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured
    assert "great_expectations" not in captured.err  # third-party log lines stay quiet without -v
    d = json.loads((out / "parity.json").read_text())
    assert d["verdict"] == "pass" and set(d) >= {"verdict", "generated_at", "window", "ingestions"}
    ing_d = d["ingestions"][0]
    assert set(ing_d) >= {"id", "verdict", "streak", "checks"}
    assert [c["name"] for c in ing_d["checks"]] == ["runs", "ledger", "counts", "values", "quality"]
    html = (out / "parity.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html and "http" not in html.split("<body>")[1]
    import xml.etree.ElementTree as ET

    suite = ET.parse(out / "parity.xml").getroot().find("testsuite")
    assert suite.get("tests") == "5" and suite.get("failures") == "0"
    assert "| orders | **PASS**" in (out / "parity.md").read_text()
    # inject a divergence: exit 1, junit failure
    from cutover.core.records.tables import processed_files as t

    with ws.autoloader_engine.begin() as conn:
        conn.execute(t.delete().where(t.c.namespace == "shadow", t.c.path == str(src / "day2_a.csv")))
    rc = run_main(cli, ["parity", "--format", "junit"])
    out_text = capsys.readouterr().out
    assert rc == 1 and "<failure" in out_text and "file_missing_in_shadow" in out_text
    rc = run_main(cli, ["parity", "history"])
    hist = capsys.readouterr().out
    assert rc == 0 and "fail" in hist and "orders 0" in hist
    rc = run_main(cli, ["parity", "--format", "yaml"])
    assert rc == 2


@pytest.mark.postgres
def test_ledger_and_counts_checks_on_postgres(workspace_env, tmp_path, pg_url_factory, monkeypatch):
    """The ledger check runs inside the database (checks/ledger.py): the same verdicts on PostgreSQL."""
    monkeypatch.setenv("CUTOVER_DATABASE_AUTOLOADER_URL", pg_url_factory("auto"))
    monkeypatch.setenv("CUTOVER_DATABASE_STATE_URL", pg_url_factory("state"))
    assert run_main(cli, ["db", "upgrade"]) == 0
    from cutover.engine.baseline import seed_baseline
    from cutover.core.shadowfork import ensure_fork
    from cutover.core.workspace import Workspace
    from cutover.core.records.ingestions import IngestionRepo, validate
    from cutover.core.records.tables import processed_files as t

    src = tmp_path / "src"
    _csv(src / "a.csv", 10, 0)
    ws = Workspace()
    ing = validate({"id": "pgi", "source_uri": str(src), "pattern": "*.csv", "format": "csv", "table": "pg.t"})
    IngestionRepo(ws.autoloader_engine).upsert([ing], replace_existing=False)
    ws.service.run(ing)
    seed_baseline(ws, ing, ensure_fork(ws, ing))
    _csv(src / "b.csv", 4, 100)
    _csv(src / "c.csv", 6, 200)
    ws.service.run(ing)
    ws.service.run(ing, orchestrator="prefect", mode="shadow")
    rep, checks = _parity(ws, ing, checks=("ledger", "counts"))
    assert rep.verdict == PASS and checks["ledger"].metrics["files_judged"] == 2
    with ws.autoloader_engine.begin() as conn:
        conn.execute(t.delete().where(t.c.namespace == "shadow", t.c.path == str(src / "b.csv")))
        conn.execute(update(t).where(t.c.namespace == "shadow", t.c.path == str(src / "c.csv")).values(records_ingested=5))
    rep, checks = _parity(ws, ing, checks=("ledger",))
    assert _kinds(checks["ledger"]) == ["file_missing_in_shadow", "records_mismatch"]


def test_waiver_ids_are_never_reused(tmp_path):
    """A removed waiver keeps its row: the next waiver gets a new id, and removing it again says so."""
    from datetime import datetime, timedelta, timezone

    from cutover.core.db import ensure_schema, get_engine
    from cutover.core.config import load_settings
    from cutover.core.errors import NotFound
    from cutover.core.state.waivers import WaiverStore

    settings = load_settings({"CUTOVER_HOME": str(tmp_path)})
    ensure_schema(settings)
    store = WaiverStore(get_engine(settings.state_url))
    later = datetime.now(timezone.utc) + timedelta(days=1)
    a = store.add("orders", "counts", reason="r", owner="o", expires_at=later)
    store.remove(a)
    b = store.add("orders", "counts", reason="r", owner="o", expires_at=later)
    assert b > a
    assert [w["id"] for w in store.list(include_expired=True)] == [b]
    with pytest.raises(NotFound):
        store.remove(a)
