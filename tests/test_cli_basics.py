"""The CLI frame: fast start, settings, redaction, ingestion inventory, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cutover.cli import LAZY, cli
from cutover.cli.app import run_main

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-Pa55"
HEAVY = ("prefect", "great_expectations", "pyspark", "pyiceberg", "pyarrow", "pandas")


@pytest.fixture
def home(tmp_path, monkeypatch):
    for k in list(os.environ):
        if k.startswith("CUTOVER_") or k == "PREFECT_API_URL":
            monkeypatch.delenv(k, raising=False)
    h = tmp_path / "ws"
    monkeypatch.setenv("CUTOVER_HOME", str(h))
    from cutover.core import db

    db.dispose_engines()
    db.reset_schema_cache()
    yield h
    db.dispose_engines()
    db.reset_schema_cache()


def invoke(args, capsys):
    rc = run_main(cli, list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _csv(path: Path, rows: int, start: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,name,amount\n" + "".join(f"{start + i},n{i},{i * 1.5}\n" for i in range(rows)))


# -- start-up ---------------------------------------------------------------------------

def test_help_is_fast_and_imports_nothing_heavy():
    code = (
        "import sys, time; t=time.perf_counter(); from cutover.cli import cli\n"
        "try:\n cli.main(['--help'], standalone_mode=False)\nexcept SystemExit: pass\n"
        f"heavy=[m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]\n"
        "print(repr(heavy)); print(time.perf_counter()-t, file=sys.stderr)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout
    # the installed entry point works too (its start time is bench/cli_start_bench.py's figure, not a test's)
    subprocess.run([str(ROOT / ".venv/bin/cutover") if (ROOT / ".venv/bin/cutover").exists() else "cutover", "--help"],
                   capture_output=True, check=True)


@pytest.mark.parametrize("group", sorted(LAZY))
def test_every_group_help_imports_nothing_heavy(group):
    code = (
        "import sys; from cutover.cli import cli\n"
        f"try:\n cli.main([{group!r}, '--help'], standalone_mode=False)\nexcept SystemExit: pass\n"
        f"print(repr([m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]", f"{group} --help imported {res.stdout}"


# -- settings ---------------------------------------------------------------------------

def test_config_show_redacts_passwords_and_reports_sources(home, monkeypatch, capsys):
    monkeypatch.setenv("CUTOVER_DATABASE_STATE_URL", f"postgresql+psycopg://app:{SECRET}@db.example:5432/cutover")
    monkeypatch.setenv("CUTOVER_CATALOG_S3__SECRET_ACCESS_KEY", SECRET)
    rc, out, _ = invoke(["config", "show"], capsys)
    assert rc == 0 and SECRET not in out and "app:***@db.example" in out
    rc, out, _ = invoke(["config", "show", "--json"], capsys)
    d = json.loads(out)
    assert SECRET not in out
    assert d["sources"]["database.state_url"] == "env CUTOVER_DATABASE_STATE_URL"
    assert d["catalog"]["s3.secret-access-key" if "s3.secret-access-key" in d["catalog"] else "s3.secret_access_key"] == "***"
    assert d["database"]["autoloader_url"] == f"sqlite:///{home / 'autoloader.db'}"


def test_env_beats_file_beats_default(home, monkeypatch):
    from cutover.core.config import load_settings

    home.mkdir(parents=True)
    (home / "cutover.toml").write_text('[ingest]\nclaim_timeout = "2m"\n[prefect]\nwork_pool = "filepool"\n')
    s = load_settings()
    assert s.claim_timeout == 120 and s.prefect_work_pool == "filepool"
    monkeypatch.setenv("CUTOVER_INGEST_CLAIM_TIMEOUT", "30s")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    s = load_settings()
    assert s.claim_timeout == 30 and s.prefect_api_url == "http://127.0.0.1:4200/api"
    assert s.sources["ingest.claim_timeout"] == "env CUTOVER_INGEST_CLAIM_TIMEOUT"


@pytest.mark.parametrize("toml,needle", [
    ("[ingest\n", "not valid TOML"),
    ("[bogus]\nx=1\n", "unknown section"),
    ("[ingest]\nclaim_timout='1m'\n", "unknown key"),
    ("[ingest]\nclaim_timeout='soon'\n", "is not a duration"),
    ("[ingest]\nengine='flink'\n", "engine must be"),
])
def test_bad_config_is_one_line_exit_2(home, capsys, toml, needle):
    home.mkdir(parents=True)
    (home / "cutover.toml").write_text(toml)
    rc, out, err = invoke(["config", "show"], capsys)
    assert rc == 2
    assert needle in err and len(err.strip().splitlines()) == 1, err


# -- ingestions ---------------------------------------------------------------------------

def _defs(tmp_path: Path, src: Path, extra: dict | None = None) -> Path:
    import yaml

    src.mkdir(parents=True, exist_ok=True)  # a local source must exist
    items = [
        {"id": "orders", "source_uri": str(src), "pattern": "*.csv", "format": "csv", "table": "shop.orders",
         "schedule": {"frequency": "daily", "at": "02:30"}, "timezone": "Europe/Berlin", "key_columns": ["id"],
         "credentials": {"key": "AKIA-not-shown", "secret": SECRET}},
        {"id": "events", "source_uri": f"s3://user:{SECRET}@bucket/events", "format": "jsonl", "table": "shop.events",
         "schedule": {"trigger": "cron", "day": "last", "hour": 3, "second": 30, "jitter": 20}},
    ]
    if extra:
        items.append(extra)
    p = tmp_path / "ingestions.yaml"
    p.write_text(yaml.safe_dump({"ingestions": items}))
    return p


def test_add_from_file_never_prints_credentials(home, tmp_path, capsys):
    defs = _defs(tmp_path, tmp_path / "src")
    rc, out, err = invoke(["ingestion", "add", "--from-file", str(defs)], capsys)
    assert rc == 0, err
    assert "2 to create" in out
    for args in (["ingestion", "list"], ["ingestion", "list", "--json"], ["ingestion", "show", "orders"],
                 ["ingestion", "show", "events", "--json"], ["ingestion", "export"], ["ingestion", "export", "--format", "json"]):
        rc, out, err = invoke(args, capsys)
        assert rc == 0, err
        assert SECRET not in out + err and "AKIA-not-shown" not in out + err, args
    rc, out, _ = invoke(["ingestion", "show", "orders", "--json"], capsys)
    assert json.loads(out)["credentials"] == {"key": "***", "secret": "***"}
    # the credentials are stored, though
    from cutover.core.workspace import Workspace

    assert Workspace().ingestions.get("orders").credentials["secret"] == SECRET
    # idempotent
    rc, out, _ = invoke(["ingestion", "add", "--from-file", str(defs)], capsys)
    assert rc == 0 and "2 unchanged" in out


@pytest.mark.parametrize("bad,needle", [
    ({"id": "Bad Id", "source_uri": "/x", "format": "csv", "table": "a.b"}, "is not valid"),
    ({"id": "x1", "source_uri": "/x", "format": "xml", "table": "a.b"}, "format"),
    ({"id": "x2", "source_uri": "/x", "format": "csv", "table": "nonamespace"}, "namespace.table"),
    ({"id": "x3", "source_uri": "/x", "format": "csv", "table": "a.b", "schedule": {"cron": "0 2 * *"}}, "5 fields"),
    ({"id": "x4", "source_uri": "/x", "format": "csv", "table": "a.b", "timezone": "Mars/Olympus"}, "unknown timezone"),
    ({"id": "x5", "source_uri": "/x", "format": "csv", "table": "a.b", "schedule": {"trigger": "cron", "hour": 25}}, "not valid"),
    ({"id": "x6", "source_uri": "/x", "format": "csv", "table": "a.b", "schedule": {"frequency": "daily", "at": "25:00"}}, "out of range"),
    ({"id": "x7", "source_uri": "/x", "format": "csv", "table": "a.b", "colour": "red"}, "unknown field"),
])
def test_bad_definition_writes_nothing(home, tmp_path, capsys, bad, needle):
    defs = _defs(tmp_path, tmp_path / "src")
    rc, _, _ = invoke(["ingestion", "add", "--from-file", str(defs)], capsys)
    assert rc == 0
    before = [i.definition() for i in __import__("cutover.core.workspace").core.workspace.Workspace().ingestions.list()]
    bad_defs = _defs(tmp_path, tmp_path / "src", extra=bad)
    rc, out, err = invoke(["ingestion", "add", "--from-file", str(bad_defs), "--replace"], capsys)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    from cutover.core.workspace import Workspace

    assert [i.definition() for i in Workspace().ingestions.list()] == before


def test_dry_run_on_fresh_workspace_creates_nothing(home, tmp_path, capsys):
    defs = _defs(tmp_path, tmp_path / "src")
    rc, out, _ = invoke(["ingestion", "add", "--from-file", str(defs), "--dry-run"], capsys)
    assert rc == 0 and "would create: orders" in out
    assert not home.exists() or not any(home.iterdir())


def test_update_needs_replace(home, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    assert invoke(["ingestion", "add", "o1", "--source", str(src), "--format", "csv", "--table", "a.b"], capsys)[0] == 0
    rc, _, err = invoke(["ingestion", "add", "o1", "--source", str(src), "--format", "csv", "--table", "a.c"], capsys)
    assert rc == 2 and "--replace" in err
    rc, out, _ = invoke(["ingestion", "add", "o1", "--source", str(src), "--format", "csv", "--table", "a.c", "--replace"], capsys)
    assert rc == 0 and "update: o1" in out


# -- legacy run -----------------------------------------------------------------------------

def test_legacy_run_exit_codes_and_incremental(home, tmp_path, capsys):
    src = tmp_path / "src"
    _csv(src / "a.csv", 10)
    _csv(src / "b.csv", 5, start=100)
    assert invoke(["ingestion", "add", "t1", "--source", str(src), "--pattern", "*.csv", "--format", "csv",
                   "--table", "ns.t1"], capsys)[0] == 0
    rc, out, _ = invoke(["legacy", "run", "t1"], capsys)
    assert rc == 0 and "processed 2" in out and "15 records" in out
    (src / "bad.csv").write_text("id,name,amount\n1,2\n")
    _csv(src / "c.csv", 7, start=200)
    rc, out, _ = invoke(["legacy", "run", "t1"], capsys)
    assert rc == 3 and "processed 1, failed 1" in out and "FAILED" in out
    rc, out, _ = invoke(["legacy", "run", "t1", "--json"], capsys)
    assert rc == 0 and json.loads(out)["runs"][0]["files_processed"] == 0
    rc, out, _ = invoke(["table", "counts", "--json"], capsys)
    assert json.loads(out)[0]["main_total_records"] == 22
    rc, out, _ = invoke(["ledger", "t1", "--summary", "--json"], capsys)
    assert json.loads(out) == {"FAILED": 1, "SUCCESS": 3}
    rc, _, err = invoke(["legacy", "run", "nope"], capsys)
    assert rc == 2 and "no ingestion 'nope'" in err


def test_schema_behind_head_is_refused_for_shared_db(home, tmp_path, capsys, monkeypatch):
    # A non-embedded DB (outside CUTOVER_HOME) is never migrated behind the user's back.
    shared = tmp_path / "shared.db"
    monkeypatch.setenv("CUTOVER_DATABASE_AUTOLOADER_URL", f"sqlite:///{shared}")
    rc, _, err = invoke(["ingestion", "list"], capsys)
    assert rc == 2 and "cutover db upgrade" in err
    rc, out, _ = invoke(["db", "upgrade", "--db", "autoloader"], capsys)
    from cutover.core.db import head_revision

    assert rc == 0 and f"-> {head_revision('autoloader')} " in out  # upgraded to the head
    rc, out, _ = invoke(["db", "upgrade", "--db", "autoloader"], capsys)
    assert rc == 0 and "unchanged" in out
    rc, out, _ = invoke(["ingestion", "list"], capsys)
    assert rc == 0


def test_command_start_is_per_invocation_in_process(workspace_env, monkeypatch):
    """Time-to-safe counts from the command's start: the process's start for the first command,
    the invocation for later in-process ones (the demo runs `cutover pause` after a minute of
    other commands; it must not report that minute)."""
    import time

    from cutover.cli import app as app_mod
    from cutover.cli import cli as root
    from cutover.engine.pause import process_started_at

    monkeypatch.setattr(app_mod, "_invocations", 0)
    monkeypatch.setattr(app_mod, "_command_started_at", None)
    assert app_mod.run_main(root, ["config", "show"]) == 0
    assert abs(app_mod.command_started_at() - process_started_at()) < 0.5
    time.sleep(0.3)
    before = time.time()
    assert app_mod.run_main(root, ["config", "show"]) == 0
    assert before <= app_mod.command_started_at() <= time.time()
