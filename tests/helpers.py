"""Test helpers: source-file generators, workspace set-up, subprocess runs, exactly-once checks.

Everything here is deterministic (no randomness) so that a failing run can be
replayed. Typical use::

    files = write_csv_files(src, 50)                      # {path: rows}
    ws = Workspace()                                      # inside the workspace_env fixture
    ing = add_ingestion(ws, "orders", src)
    res = ws.service.run(ing)
    report = check_exactly_once(ws, ing, files)           # asserts; returns figures
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# -- source files ---------------------------------------------------------------------------


def rows_for(i: int, base_rows: int = 3) -> int:
    """Rows of generated file number ``i``: varies (base..base+6) so sums catch a lost file."""
    return base_rows + (i * 3) % 7


def csv_text(i: int, rows: int, *, pad: int = 0) -> str:
    """A CSV with header id,name,amount,day; ``pad`` extra characters per row in ``name``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "name", "amount", "day"])
    for r in range(rows):
        key = i * 100_000 + r
        w.writerow([key, f"n{key}" + "x" * pad, f"{(key % 997) * 1.25:.2f}", f"2026-11-{1 + r % 28:02d}"])
    return buf.getvalue()


def write_csv_files(directory: Path, n: int, *, start: int = 0, base_rows: int = 3, pad: int = 0,
                    prefix: str = "part") -> dict[str, int]:
    """Write ``n`` CSV files ``{prefix}-{i:05d}.csv``; returns {absolute path: rows}."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(start, start + n):
        rows = rows_for(i, base_rows)
        p = directory / f"{prefix}-{i:05d}.csv"
        p.write_text(csv_text(i, rows, pad=pad))
        out[str(p.resolve())] = rows
    return out


def write_csv_gz(path: Path, rows: int, i: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", newline="") as f:
        f.write(csv_text(i, rows))
    return path


def write_jsonl(path: Path, records: Iterable[Mapping]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(dict(r)) + "\n" for r in records))
    return path


def write_parquet(path: Path, columns: Mapping[str, list], schema=None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(dict(columns), schema=schema), path)
    return path


# -- workspace ------------------------------------------------------------------------------


def add_ingestion(ws, iid: str, source: Path | str, *, fmt: str = "csv", table: str | None = None,
                  pattern: str | None = None, **extra):
    """Create (or replace) an ingestion in ``ws`` and return it."""
    from cutover.core.records.ingestions import validate

    ing = validate({"id": iid, "source_uri": str(source), "format": fmt,
                    "table": table or f"raw.{iid.replace('-', '_')}",
                    "pattern": pattern or f"*.{fmt}", **extra})
    ws.ingestions.upsert([ing], replace_existing=True)
    return ws.ingestions.get(iid)


def cutover_env(home: Path, **overrides: str | None) -> dict[str, str]:
    """Environment for a subprocess: os.environ minus CUTOVER_*/PREFECT_API_URL, plus CUTOVER_HOME and overrides.

    An override whose value is None is removed.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_") and k != "PREFECT_API_URL"}
    env["CUTOVER_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run_cli(args: list[str], env: Mapping[str, str], *, timeout: float = 120, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
    """``python -m cutover ARGS`` in a subprocess (same interpreter as the tests)."""
    return subprocess.run([PYTHON, "-m", "cutover", *args], env=dict(env), cwd=str(cwd or ROOT),
                          capture_output=True, text=True, timeout=timeout, check=False)


# A worker process that runs one ingestion through the service, optionally after a
# barrier: it imports and opens everything first, touches READY, then waits for GO.
# Prints the RunResult as one JSON line on stdout.
SERVICE_RUN_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    from cutover.core.workspace import Workspace
    ws = Workspace()
    ing = ws.ingestions.get(sys.argv[1])
    ws.service; ws.catalog.catalog          # open DBs and catalog before the barrier
    ready, go = os.environ.get("BARRIER_READY"), os.environ.get("BARRIER_GO")
    if ready:
        open(ready, "w").close()
    if go:
        deadline = time.monotonic() + 120
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                sys.exit("barrier: GO never came")
            time.sleep(0.005)
    res = ws.service.run(ing, orchestrator=os.environ.get("RUN_ORCHESTRATOR", "legacy"),
                         mode=os.environ.get("RUN_MODE", "live"))
    print(json.dumps(res.as_dict()), flush=True)
""")


def start_service_run(iid: str, env: Mapping[str, str], *, ready: Path | None = None, go: Path | None = None,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE) -> subprocess.Popen:
    """Start SERVICE_RUN_SCRIPT for ingestion ``iid`` in a new process (own process group)."""
    env = dict(env)
    if ready is not None:
        env["BARRIER_READY"] = str(ready)
    if go is not None:
        env["BARRIER_GO"] = str(go)
    return subprocess.Popen([PYTHON, "-c", SERVICE_RUN_SCRIPT, iid], env=env, cwd=str(ROOT),
                            stdout=stdout, stderr=stderr, text=True, start_new_session=True)


def wait_for_files(paths: Iterable[Path], timeout: float = 60, procs: Iterable[subprocess.Popen] = ()) -> None:
    """Wait until every path exists; fail early if one of ``procs`` exits meanwhile."""
    paths, procs = list(paths), list(procs)
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        for p in procs:
            if p.poll() is not None:
                out, err = p.communicate()
                raise AssertionError(f"worker exited early ({p.returncode}): {err[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {[str(p) for p in paths if not p.exists()]}")
        time.sleep(0.01)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    """Wait for ``proc`` (killing its group on timeout); returns (rc, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(f"process {proc.pid} timed out; stderr: {err[-3000:]}") from None
    return proc.returncode, out, err


def kill_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass


def last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON line in output: {text[-2000:]}")


# -- inspection -------------------------------------------------------------------------------


def ledger_rows(engine, ingestion_id: str, namespace: str = "live") -> list:
    from sqlalchemy import select

    from cutover.core.records.tables import processed_files as t

    with engine.connect() as conn:
        return list(conn.execute(select(t).where(t.c.ingestion_id == ingestion_id, t.c.namespace == namespace)
                                 .order_by(t.c.path)))


def run_rows(engine, ingestion_id: str) -> list:
    from sqlalchemy import select

    from cutover.core.records.tables import runs as t

    with engine.connect() as conn:
        return list(conn.execute(select(t).where(t.c.ingestion_id == ingestion_id).order_by(t.c.started_at)))


def file_snapshots(catalog, table: str, branch: str = "main") -> list:
    """SnapshotInfo of every snapshot on ``branch`` that carries ``cutover.file``, oldest first."""
    tbl = catalog.find(table)
    if tbl is None:
        return []
    return [s for s in reversed(list(catalog.ancestry(tbl, branch))) if s.file]


def batch_snapshots(catalog, table: str, branch: str = "main") -> list:
    """SnapshotInfo of every snapshot on ``branch`` that carries ``cutover.batch``, oldest first."""
    tbl = catalog.find(table)
    if tbl is None:
        return []
    return [s for s in reversed(list(catalog.ancestry(tbl, branch))) if s.properties.get("cutover.batch")]


def check_exactly_once(ws, ing, expected: Mapping[str, int], *, namespace: str = "live") -> dict:
    """Assert every expected file counts exactly once in the ledger, in Iceberg and in the run records.

    - ledger: one row per path, all SUCCESS, records_ingested == the file's rows, no other path;
    - Iceberg (``main`` for live): one snapshot per file carrying ``cutover.file`` (no duplicate
      append), added-records per file == its rows, total-records == sum of rows;
    - runs: sum of files_processed == number of files, sum of records_ingested == sum of rows.
    Returns figures for reporting.
    """
    engine = ws.autoloader_engine
    rows = ledger_rows(engine, ing.id, namespace)
    if namespace != "live":  # rows seeded at the fork stand for main's files, not the shadow's
        rows = [r for r in rows if not (r.status == "SKIPPED" and (r.error or "").startswith("baseline"))]
    per_path = Counter(r.path for r in rows)
    dup = {p: n for p, n in per_path.items() if n != 1}
    assert not dup, f"ledger rows duplicated: {dup}"
    assert set(per_path) == set(expected), (
        f"ledger paths differ: missing {sorted(set(expected) - set(per_path))[:5]}, "
        f"extra {sorted(set(per_path) - set(expected))[:5]}")
    not_ok = [(r.path, r.status, r.error) for r in rows if r.status != "SUCCESS"]
    assert not not_ok, f"{len(not_ok)} file(s) not SUCCESS: {not_ok[:5]}"
    wrong = [(r.path, r.records_ingested, expected[r.path]) for r in rows if r.records_ingested != expected[r.path]]
    assert not wrong, f"records_ingested differs from the file's rows: {wrong[:5]}"
    assert all(r.claimed_by is None for r in rows)

    branch = "main" if namespace == "live" else "cutover-shadow"
    from cutover.core.icebatch import live_data_files

    tbl = ws.catalog.find(ing.table)
    present = live_data_files(tbl, branch)
    owner: dict[str, str] = {}
    for r in rows:
        assert r.data_files, f"{r.path}: no data files recorded in the ledger"
        for d in r.data_files:
            assert d not in owner, f"data file {d} recorded for {owner[d]} and {r.path}"
            owner[d] = r.path
        missing = [d for d in r.data_files if d not in present]
        assert not missing, f"{r.path}: data file(s) not in {branch}: {missing}"
        got = sum(present[d].record_count for d in r.data_files)
        assert got == expected[r.path], f"{r.path}: {got} records in its data files, {expected[r.path]} in the file"
        assert {present[d].snapshot_id for d in r.data_files} == {r.snapshot_id}, (
            f"{r.path}: ledger snapshot {r.snapshot_id} is not the one that added its data files")
    others = set()
    if namespace != "live":  # the branch also holds main's files from before the fork
        others = {d for r in ledger_rows(engine, ing.id, "live") for d in (r.data_files or [])}
    stray = [d for d in present if d not in owner and d not in others]
    assert not stray, f"{len(stray)} data file(s) in {branch} that no ledger row accounts for (appended twice?): {stray[:3]}"
    total = sum(present[d].record_count for d in owner)
    assert total == sum(expected.values()), f"records in the files' data files {total} != {sum(expected.values())}"
    if namespace == "live":
        head_total = ws.catalog.total_records(ing.table, branch)
        assert head_total == total, f"total-records {head_total} != {total}"
    snaps = list(ws.catalog.ancestry(tbl, branch))

    runs = [r for r in run_rows(engine, ing.id) if r.mode == namespace]
    processed = sum(r.files_processed for r in runs)
    assert processed == len(expected), f"sum of runs' files_processed {processed} != {len(expected)}"
    assert sum(r.records_ingested for r in runs) == sum(expected.values())
    return {"files": len(expected), "records": total, "snapshots": len(snaps), "runs": len(runs),
            "per_run": {r.id: r.files_processed for r in runs}}


def use_backend(backend: str, request, monkeypatch) -> dict[str, str]:
    """Point the workspace's autoloader and state DBs at ``backend`` (``sqlite`` | ``postgres``).

    For ``postgres`` two fresh databases come from the ``pg_url_factory`` fixture, are
    upgraded to head (a shared DB is never migrated implicitly) and set in the
    environment; returns the env overrides to hand to subprocesses (empty for SQLite,
    whose embedded DBs live under CUTOVER_HOME).
    """
    if backend == "sqlite":
        return {}
    from cutover.core import db as dbm

    factory = request.getfixturevalue("pg_url_factory")
    overrides = {"CUTOVER_DATABASE_AUTOLOADER_URL": factory("autoloader"),
                 "CUTOVER_DATABASE_STATE_URL": factory("state")}
    for k, v in overrides.items():
        monkeypatch.setenv(k, v)
    dbm.upgrade(overrides["CUTOVER_DATABASE_AUTOLOADER_URL"], "autoloader")
    dbm.upgrade(overrides["CUTOVER_DATABASE_STATE_URL"], "state")
    return overrides


def dump_stores(home: Path, url: str) -> dict:
    """Every store of a workspace on the embedded defaults, for "changed nothing" assertions: all rows
    of the three SQLite DBs, every file (size and mtime) outside the Prefect home, every
    deployment and the work pool of the Prefect server at ``url``."""
    import sqlite3

    out = {}
    for db in ("autoloader.db", "state.db", "catalog.db"):
        con = sqlite3.connect(home / db)
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table' order by name")]
        out[db] = {t: sorted(map(repr, con.execute(f'select * from "{t}"').fetchall())) for t in tables}
        con.close()
    out["files"] = sorted((str(p.relative_to(home)), p.stat().st_size, p.stat().st_mtime_ns)
                          for p in home.rglob("*") if p.is_file() and "prefect" not in p.parts)
    from prefect.client.schemas.sorting import DeploymentSort

    from flows.http import client

    with client(url) as c:
        deps = c.read_deployments(limit=200, sort=DeploymentSort.NAME_ASC)
        out["prefect"] = sorted((d.name, str(d.id), d.paused, str(d.updated), repr(d.schedules), repr(d.tags))
                                for d in deps)
        pool = c.read_work_pool("cutover")
        out["pool"] = (pool.is_paused, str(pool.updated))
    return out


def cutover_cli(*args: str, env_extra: Mapping[str, str] | None = None, check: int | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m cutover ARGS`` in a subprocess, with this process's environment plus
    ``env_extra``; asserts the exit code when ``check`` is given."""
    env = dict(os.environ)
    env.update(env_extra or {})
    res = subprocess.run([PYTHON, "-m", "cutover", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    if check is not None:
        assert res.returncode == check, f"cutover {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def invoke_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run one cutover command line in this process (as the demo does); (exit code, stdout, stderr)."""
    from cutover.cli import cli
    from cutover.cli.app import run_main

    capsys.readouterr()
    code = run_main(cli, list(args))
    out, err = capsys.readouterr()
    return code, out, err
