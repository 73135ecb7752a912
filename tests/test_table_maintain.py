"""`cutover table maintain` on a table that both sides are ingesting (issue #14, part 4).

Legacy (main) and shadow (cutover-shadow) ingest 60 new files each in batches of 2 in two
processes while this process runs the maintenance over and over (expire everything but the
refs' heads, remove orphan and old metadata files). Files that existed before the runs are
made 2 h old on disk (time passing, without waiting), so the orphan rule really removes
files during the race while fresh ones (in-flight batches) stay protected by their age.

Then: no run failed (no failed commit), both sides exactly once, parity counts unchanged
(PASS, same per-file figures), the metadata directory shrank; `--dry-run` changes nothing.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from checks.model import PASS
from cutover.commands.table import maintain
from cutover.core.iceberg import FORK_TAG, SHADOW_BRANCH
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
    write_csv_files,
)


def _age(root, seconds: float = 7200) -> None:
    t = time.time() - seconds
    for dirpath, _, files in os.walk(root):
        for f in files:
            os.utime(os.path.join(dirpath, f), (t, t))


def _metadata_dir(ws, ing) -> str:
    return os.path.join(ws.catalog.load(ing.table).location().removeprefix("file://"), "metadata")


def _dir_bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _counts(ws, ing):
    from checks.parity import run_parity

    [c] = run_parity(ws, [ing], since=None, checks=["counts"], store=False).ingestions[0].checks
    return c


@pytest.mark.slow
def test_maintain_while_both_sides_ingest(workspace_env, tmp_path, monkeypatch):
    monkeypatch.setenv("CUTOVER_INGEST_BATCH_FILES", "2")
    ws = Workspace()
    src = tmp_path / "src"
    ing = add_ingestion(ws, "orders", src, table="raw.orders")
    pre = write_csv_files(src, 40)
    assert ws.service.run(ing).status == "SUCCESS"  # 20 batches
    assert seed_baseline(ws, ing, ensure_fork(ws, ing))["SKIPPED"] == 40
    mid = write_csv_files(src, 20, start=40)
    ws.service.run(ing, orchestrator="legacy", mode="live")
    ws.service.run(ing, orchestrator="prefect", mode="shadow")
    before = _counts(ws, ing)
    assert before.verdict == PASS
    meta = _metadata_dir(ws, ing)
    size0 = _dir_bytes(meta)

    # --dry-run changes nothing
    files0 = sorted(os.listdir(meta))
    _age(os.path.dirname(meta))
    dry = maintain(ws, ing.id, retain="0s", orphan_age="1h", dry_run=True)
    assert dry.snapshots_expired > 0 and dry.metadata_files_removed > 0
    assert sorted(os.listdir(meta)) == files0 and len(ws.catalog.load(ing.table).metadata.snapshots) == dry.snapshots_before

    post = write_csv_files(src, 60, start=60)
    env = cutover_env(workspace_env, CUTOVER_INGEST_BATCH_FILES="2")
    procs = [start_service_run(ing.id, env),
             start_service_run(ing.id, {**env, "RUN_MODE": "shadow", "RUN_ORCHESTRATOR": "prefect"})]
    results = []
    try:
        while any(p.poll() is None for p in procs):
            results.append(maintain(ws, ing.id, retain="0s", orphan_age="1h"))
            time.sleep(0.2)
        outs = [finish(p, timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                kill_group(p)
    for rc, out, err in outs:
        assert rc == 0, err[-3000:]
        r = last_json_line(out)
        assert r["status"] == "SUCCESS" and r["files_processed"] == 60 and r["files_failed"] == 0, (r, err[-2000:])
    assert len(results) >= 2, "the maintenance did not overlap the runs"
    assert sum(r.snapshots_expired for r in results) > 0
    assert sum(r.orphans_removed + r.metadata_files_removed for r in results) > 0

    all_files = {**pre, **mid, **post}
    check_exactly_once(ws, ing, all_files)
    check_exactly_once(ws, ing, {**mid, **post}, namespace="shadow")
    after = _counts(ws, ing)
    assert after.verdict == PASS
    assert after.metrics["per_file"] == {**before.metrics["per_file"], **after.metrics["per_file"]}
    assert {p: v for p, v in after.metrics["per_file"].items() if p in mid} == before.metrics["per_file"]

    # time passes; one more maintenance: the metadata directory is smaller than before the race
    _age(os.path.dirname(meta))
    last = maintain(ws, ing.id, retain="0s", orphan_age="1h")
    assert last.metadata_bytes_after < last.metadata_bytes_before
    assert _dir_bytes(meta) < size0, (_dir_bytes(meta), size0)
    tbl = ws.catalog.load(ing.table)
    assert {"main", SHADOW_BRANCH, FORK_TAG} <= set(tbl.metadata.refs)
    assert len(tbl.metadata.snapshots) == 3
    assert _counts(ws, ing).metrics["per_file"] == after.metrics["per_file"]
    print(json.dumps({"maintenance_runs": len(results), "metadata_bytes": [size0, _dir_bytes(meta)]}))
