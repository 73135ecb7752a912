"""Legacy (main) and shadow (branch cutover-shadow) commit batches to the SAME Iceberg table at
the same time, 200 batches in all (100 per side, 2 files each), through the SQL catalog on
SQLite and on PostgreSQL.

Concurrent commits to main and a branch make pyiceberg 0.12's SQL catalog raise
``ValueError: Cannot add snapshot with sequence number N older than last sequence number N``
(apache/iceberg#15001), which is not a CommitFailedException; cutover.core.icebatch retries
it (and every other conflict) on a reloaded table. Every batch must land, no file twice:
each side's ledger and its branch's data files agree exactly.
"""

from __future__ import annotations

import time

import pytest

from cutover.core.workspace import Workspace
from cutover.engine.baseline import seed_baseline
from cutover.core.shadowfork import ensure_fork
from tests.helpers import (
    add_ingestion,
    check_exactly_once,
    cutover_env,
    finish,
    kill_group,
    last_json_line,
    start_service_run,
    use_backend,
    wait_for_files,
    write_csv_files,
)

PER_SIDE = 200
BATCH = 2


@pytest.mark.slow
@pytest.mark.parametrize("catalog", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_legacy_and_shadow_commit_concurrently(catalog, workspace_env, tmp_path, monkeypatch, request):
    overrides = {"CUTOVER_INGEST_BATCH_FILES": str(BATCH)}
    if catalog == "postgres":
        factory = request.getfixturevalue("pg_url_factory")
        overrides["CUTOVER_CATALOG_URI"] = factory("catalog")
    for k, v in overrides.items():
        monkeypatch.setenv(k, v)
    seed = write_csv_files(tmp_path / "src", 1)
    ws = Workspace()
    assert ws.catalog.properties["uri"].startswith("postgresql" if catalog == "postgres" else "sqlite")
    ing = add_ingestion(ws, "orders", tmp_path / "src", table="raw.orders")
    assert ws.service.run(ing).status == "SUCCESS"  # creates the table
    fork = ensure_fork(ws, ing)
    assert seed_baseline(ws, ing, fork)["SKIPPED"] == 1
    files = {**seed, **write_csv_files(tmp_path / "src", PER_SIDE, start=1)}

    env = cutover_env(workspace_env, **overrides)
    go = tmp_path / "go"
    ready = [tmp_path / "ready-live", tmp_path / "ready-shadow"]
    procs = [start_service_run(ing.id, env, ready=ready[0], go=go),
             start_service_run(ing.id, {**env, "RUN_MODE": "shadow", "RUN_ORCHESTRATOR": "prefect"},
                               ready=ready[1], go=go)]
    try:
        wait_for_files(ready, timeout=60, procs=procs)
        t0 = time.monotonic()
        go.touch()
        outs = [finish(p, timeout=600) for p in procs]
        elapsed = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                kill_group(p)
    for rc, out, err in outs:
        assert rc == 0, f"worker failed ({rc}): {err[-3000:]}"
        r = last_json_line(out)
        assert r["status"] == "SUCCESS" and r["files_processed"] == PER_SIDE, (r, err[-3000:])
    conflicts = sum(err.count("conflicted") for _, _, err in outs)
    seqno = sum(err.count("conflicted (ValueError") for _, _, err in outs)
    print(f"{catalog}: {2 * PER_SIDE // BATCH} batches in {elapsed:.1f} s, {conflicts} conflict(s) retried, "
          f"{seqno} of them the sequence-number ValueError")

    check_exactly_once(ws, ing, files)
    check_exactly_once(ws, ing, {p: n for p, n in files.items() if p not in seed}, namespace="shadow")
    tbl = ws.catalog.load(ing.table)
    batches = {s.summary.get("cutover.batch") for s in tbl.metadata.snapshots if s.summary.get("cutover.batch")}
    assert len(batches) == 1 + 2 * PER_SIDE // BATCH  # the seed run's batch + every concurrent one, once
