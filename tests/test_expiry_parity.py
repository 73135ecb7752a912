"""Parity and the shadow survive Iceberg snapshot expiry (issue #14, part 2).

- ingest (legacy, in batches), shadow start, more files on both sides, parity; then
  ``expire_snapshots`` of everything but the refs' heads: parity gives the same verdict and
  the same per-file figures (they come from the current manifests joined to the ledger);
- the same with a file missing on the shadow side: still the same FAIL, same findings;
- expiring before ``shadow start`` still seeds the full baseline (from the ledger and the
  table's current state), so the shadow run does not ingest the old files again;
- a fork snapshot expired without its tag (a fork from before the tag existed): the counts
  check is an ``error`` naming the reason, never a pass on partial figures.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from checks.model import ERROR, FAIL, PASS
from cutover.core.iceberg import FORK_TAG, SHADOW_BRANCH
from cutover.core.workspace import Workspace
from cutover.engine.baseline import seed_baseline
from cutover.core.shadowfork import ensure_fork
from tests.helpers import add_ingestion, check_exactly_once, write_csv_files


@pytest.fixture
def ws_ing(workspace_env, tmp_path, monkeypatch):
    monkeypatch.setenv("CUTOVER_INGEST_BATCH_FILES", "10")
    ws = Workspace()
    ing = add_ingestion(ws, "orders", tmp_path / "src", table="raw.orders")
    return ws, ing, tmp_path / "src"


def _expire_all_but_heads(ws, ing) -> int:
    tbl = ws.catalog.load(ing.table)
    before = len(tbl.metadata.snapshots)
    tbl.maintenance.expire_snapshots().older_than(datetime.now(timezone.utc) + timedelta(seconds=1)).commit()
    after = len(ws.catalog.load(ing.table).metadata.snapshots)
    assert after < before
    return before - after


def _counts(ws, ing):
    from checks.parity import run_parity

    rep = run_parity(ws, [ing], since=None, checks=["counts"], store=False)
    [c] = rep.ingestions[0].checks
    return c


def _figures(c) -> tuple:
    return (c.verdict, sorted(((f.kind, f.file or "", f.legacy, f.shadow) for f in c.findings), key=repr),
            c.metrics.get("per_file"), c.metrics.get("main_added_records"), c.metrics.get("shadow_added_records"))


def _shadowed(ws, ing, src, *, pre: int = 30, post: int = 40):
    pre_files = write_csv_files(src, pre)
    assert ws.service.run(ing).status == "SUCCESS"
    fork = ensure_fork(ws, ing)
    assert seed_baseline(ws, ing, fork)["SKIPPED"] == pre
    post_files = write_csv_files(src, post, start=pre)
    assert ws.service.run(ing, orchestrator="legacy", mode="live").files_processed == post
    return fork, pre_files, post_files


def test_parity_same_before_and_after_expiry(ws_ing):
    ws, ing, src = ws_ing
    fork, pre_files, post_files = _shadowed(ws, ing, src)
    assert ws.service.run(ing, orchestrator="prefect", mode="shadow").files_processed == len(post_files)
    assert FORK_TAG in ws.catalog.load(ing.table).metadata.refs
    before = _counts(ws, ing)
    assert before.verdict == PASS, before.findings
    assert len(before.metrics["per_file"]) == len(post_files)
    assert all(m == s == post_files[p] for p, (m, s) in before.metrics["per_file"].items())

    expired = _expire_all_but_heads(ws, ing)
    tbl = ws.catalog.load(ing.table)
    assert expired == 8 and len(tbl.metadata.snapshots) == 3  # 11 batches -> main head, shadow head, the fork tag
    after = _counts(ws, ing)
    assert _figures(after) == _figures(before)
    check_exactly_once(ws, ing, {**pre_files, **post_files})


def test_failing_parity_same_after_expiry(ws_ing):
    ws, ing, src = ws_ing
    fork, pre_files, post_files = _shadowed(ws, ing, src)
    missing = sorted(post_files)[3]
    from cutover.core.records.ledger import Ledger

    # the shadow never sees one file: claim-and-fail it in the shadow ledger by hand
    shadow = Ledger(ws.autoloader_engine, ing.id, "shadow", claim_timeout=60)
    run_id = ws.runs.start(ing.id, orchestrator="prefect", mode="shadow", trigger="manual")
    [claim] = shadow.claim_many([f for f in ws.service.discover(ing) if f.path == missing], run_id)
    shadow.fail(claim, "by the test")
    ws.service.run(ing, orchestrator="prefect", mode="shadow")
    before = _counts(ws, ing)
    assert before.verdict == FAIL
    assert [(f.file, f.legacy, f.shadow) for f in before.findings if f.file] == [(missing, post_files[missing], 0)]
    _expire_all_but_heads(ws, ing)
    assert _figures(_counts(ws, ing)) == _figures(before)


def test_shadow_start_after_expiry_seeds_full_baseline(ws_ing):
    ws, ing, src = ws_ing
    pre_files = write_csv_files(src, 100)
    assert ws.service.run(ing).files_processed == 100  # 10 batches, 10 snapshots
    _expire_all_but_heads(ws, ing)
    assert len(ws.catalog.load(ing.table).metadata.snapshots) == 1
    fork = ensure_fork(ws, ing)
    assert seed_baseline(ws, ing, fork)["SKIPPED"] == 100
    res = ws.service.run(ing, orchestrator="prefect", mode="shadow")
    assert (res.status, res.files_processed) == ("SUCCESS", 0)  # nothing old ingested again
    post = write_csv_files(src, 5, start=100)
    ws.service.run(ing, orchestrator="legacy", mode="live")
    ws.service.run(ing, orchestrator="prefect", mode="shadow")
    c = _counts(ws, ing)
    assert c.verdict == PASS and c.metrics["main_added_records"] == sum(post.values())


def test_fork_expired_without_tag_is_an_error(ws_ing):
    ws, ing, src = ws_ing
    _shadowed(ws, ing, src, pre=10, post=10)
    ws.service.run(ing, orchestrator="prefect", mode="shadow")
    tbl = ws.catalog.load(ing.table)
    tbl.manage_snapshots().remove_tag(FORK_TAG).commit()
    _expire_all_but_heads(ws, ing)
    c = _counts(ws, ing)
    assert c.verdict == ERROR and "expired" in c.error
    assert SHADOW_BRANCH in ws.catalog.load(ing.table).metadata.refs


def test_late_commit_of_a_fenced_out_batch_is_reported(ws_ing):
    """A run declared dead between its stage and its commit (the fence window) commits anyway after
    the taker re-ingested its files: the extra data files belong to no ledger row -- reported."""
    import pyarrow as pa

    from cutover.core.icebatch import commit_batch, flat_writer, new_batch_id, start_writing

    ws, ing, src = ws_ing
    _, _, post_files = _shadowed(ws, ing, src, pre=10, post=10)
    ws.service.run(ing, orchestrator="prefect", mode="shadow")
    assert _counts(ws, ing).verdict == PASS
    tbl = ws.catalog.load(ing.table)
    late = tbl.scan(snapshot_id=tbl.metadata.refs[SHADOW_BRANCH].snapshot_id, limit=3).to_arrow()
    late = pa.Table.from_arrays(late.columns, schema=tbl.schema().as_arrow())
    bid = new_batch_id()
    [[df]] = start_writing(tbl, [late], bid, writer=flat_writer(tbl, bid))()
    commit_batch(ws.catalog, ing.table, tbl, [df], branch=SHADOW_BRANCH, batch_id=bid,
                 properties={"cutover.mode": "shadow", "cutover.ingestion": ing.id})
    c = _counts(ws, ing)
    assert c.verdict == FAIL
    assert any(f.kind == "file_processed_twice" and df.file_path in f.detail for f in c.findings), c.findings
    assert any(f.kind == "row_count_mismatch" and f.file is None and f.shadow - f.legacy == 3 for f in c.findings)
