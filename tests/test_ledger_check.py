"""The ledger check's fast path (checks/ledger.py: packed sums per path, chunked by path range,
chunks in parallel) against a plain Python reference of the same rules, on random ledgers
with every status, the window edges, in-flight files, the fork baseline, NULL records and
awkward paths -- on SQLite (chunks in worker processes) and PostgreSQL (chunks on threads).
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert

from checks.ledger import check_ledger, classify, plan_chunks
from cutover.core import db as dbm
from cutover.core.records.ledger import FAILED, PROCESSING, SKIPPED, SUCCESS
from cutover.core.records.tables import processed_files as t_pf

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
STATUSES = [SUCCESS, SUCCESS, SUCCESS, FAILED, SKIPPED, PROCESSING]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, workspace_env, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'autoloader.db'}"
    else:
        url = request.getfixturevalue("pg_url_factory")("ledgercheck")
    dbm.upgrade(url, "autoloader")
    return dbm.get_engine(url)


def _path(rng: random.Random, i: int) -> str:
    odd = ["", " with space", "'quote'", "\"dq\"", "é-ü", "back\\slash", "comma,semi;", "日本"]
    return f"s3://landing/{rng.choice(['a', 'b', 'B', 'z', '0', '_'])}/{i:05d}{rng.choice(odd)}.csv"


def _random_ledger(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        path = _path(rng, i)
        shape = rng.random()
        sides = ["live", "shadow"] if shape < 0.7 else (["live"] if shape < 0.85 else ["shadow"])
        base_status = rng.choice(STATUSES)
        base_records = rng.choice([None, 0, 5, 100, 10**12])
        base_at = T0 + timedelta(minutes=rng.randint(-600, 600))
        for ns in sides:
            status, records, at = base_status, base_records, base_at
            if rng.random() < 0.15:
                status = rng.choice(STATUSES)
            if rng.random() < 0.15:
                records = rng.choice([None, 0, 6, 100, 10**12 + 1])
            if rng.random() < 0.3:
                at = T0 + timedelta(minutes=rng.randint(-600, 600))
            if status == PROCESSING:
                at = None
            rows.append({"ingestion_id": "ing", "namespace": ns, "path": path, "status": status,
                         "records_ingested": records if status != PROCESSING else None, "processed_at": at,
                         "run_id": f"r-{ns}-{i}", "error": "boom" if status == FAILED else None, "attempts": 1})
    # other ingestions and namespaces share the table: never judged
    rows.append({"ingestion_id": "other", "namespace": "live", "path": _path(rng, 0), "status": SUCCESS,
                 "records_ingested": 1, "processed_at": T0, "attempts": 1})
    rows.append({"ingestion_id": "ing", "namespace": "scratch", "path": "s3://landing/zz.csv", "status": SUCCESS,
                 "records_ingested": 1, "processed_at": T0, "attempts": 1})
    rng.shuffle(rows)  # primary keys in no particular path order
    return rows


def reference(rows: list[dict], since, cutoff) -> tuple[int, dict[str, str]]:
    """The rules of the ledger check, written the obvious way."""
    by_path: dict[str, dict] = {}
    for r in rows:
        if r["ingestion_id"] == "ing" and r["namespace"] in ("live", "shadow"):
            by_path.setdefault(r["path"], {})[r["namespace"]] = r

    def in_window(r):
        at = r and r["processed_at"]
        return bool(at) and at <= cutoff and (since is None or at >= since)

    judged, kinds = 0, {}
    for path, sides in by_path.items():
        lv, sh = sides.get("live"), sides.get("shadow")
        if not (in_window(lv) or in_window(sh)):
            continue
        if (sh and sh["status"] == SKIPPED) or (lv and lv["status"] == PROCESSING) or (sh and sh["status"] == PROCESSING):
            continue
        judged += 1
        if sh is None:
            kinds[path] = "file_missing_in_shadow"
        elif lv is None:
            kinds[path] = "file_missing_in_legacy"
        elif lv["status"] != sh["status"]:
            kinds[path] = "status_mismatch"
        elif lv["status"] == SUCCESS and (lv["records_ingested"] if lv["records_ingested"] is not None else -1) != \
                (sh["records_ingested"] if sh["records_ingested"] is not None else -1):
            kinds[path] = "records_mismatch"
    return judged, kinds


def _load(engine, rows):
    keys = ("run_id", "error")
    rows = [{**{k: None for k in keys}, **r} for r in rows]
    with engine.begin() as conn:
        for i in range(0, len(rows), 500):
            conn.execute(insert(t_pf), rows[i:i + 500])


@pytest.mark.parametrize("seed", [1, 2])
def test_fast_ledger_check_equals_the_reference(engine, seed):
    rng = random.Random(seed)
    rows = _random_ledger(rng, 1500)
    _load(engine, rows)
    windows = [(None, T0 + timedelta(days=1)), (T0 - timedelta(hours=2), T0 + timedelta(hours=3)),
               (T0, T0), (T0 + timedelta(days=2), T0 + timedelta(days=3))]
    for since, until in windows:
        judged, kinds = reference(rows, since, until)
        for workers, chunk_rows in ((1, 10**9), (2, 300), (3, 50)):
            res = check_ledger(engine, "ing", since=since, until=until, workers=workers, chunk_rows=chunk_rows)
            label = (since, until, workers, chunk_rows)
            assert res.metrics["files_judged"] == judged, label
            assert res.metrics["by_kind"] == dict(sorted(Counter(kinds.values()).items())), label
            assert {f.file: f.kind for f in res.findings} == kinds, label
            assert res.verdict == ("fail" if kinds else "pass"), label
            if chunk_rows == 50:
                assert res.metrics["chunks"] > 10, label  # the chunked path really ran
            if engine.dialect.name == "sqlite":  # BINARY collation = code point order: findings come by path
                assert [f.file for f in res.findings] == sorted(kinds), label


def test_findings_detail_and_truncation(engine):
    rng = random.Random(3)
    rows = _random_ledger(rng, 800)
    _load(engine, rows)
    until = T0 + timedelta(days=1)
    judged, kinds = reference(rows, None, until)
    assert len(kinds) > 40
    res = check_ledger(engine, "ing", since=None, until=until, max_findings=25, workers=2, chunk_rows=100)
    assert len(res.findings) == 25 and res.metrics["findings_truncated_to"] == 25
    assert res.metrics["differing_files"] == len(kinds)
    by_path = {(r["path"], r["namespace"]): r for r in rows if r["ingestion_id"] == "ing"}
    for f in res.findings:
        assert kinds[f.file] == f.kind
        lv, sh = by_path.get((f.file, "live")), by_path.get((f.file, "shadow"))
        if f.kind == "records_mismatch":
            assert (f.legacy, f.shadow) == (lv["records_ingested"], sh["records_ingested"])
        if f.kind in ("file_missing_in_shadow", "status_mismatch"):
            assert f.legacy["status"] == lv["status"] and f.legacy["run_id"] == lv["run_id"]
        if f.kind in ("file_missing_in_legacy", "status_mismatch"):
            assert f.shadow["status"] == sh["status"] and f.shadow["error"] == sh["error"]


def test_grace_period_and_baseline(engine):
    """Files younger than the grace period wait; shadow SKIPPED rows (the fork baseline) are never judged."""
    now = T0 + timedelta(hours=1)
    rows = [
        {"ingestion_id": "ing", "namespace": "live", "path": "/old.csv", "status": SUCCESS, "records_ingested": 3,
         "processed_at": now - timedelta(minutes=30), "attempts": 1},
        {"ingestion_id": "ing", "namespace": "live", "path": "/young.csv", "status": SUCCESS, "records_ingested": 3,
         "processed_at": now - timedelta(minutes=2), "attempts": 1},
        {"ingestion_id": "ing", "namespace": "live", "path": "/base.csv", "status": SUCCESS, "records_ingested": 3,
         "processed_at": now - timedelta(minutes=40), "attempts": 1},
        {"ingestion_id": "ing", "namespace": "shadow", "path": "/base.csv", "status": SKIPPED, "records_ingested": None,
         "processed_at": now - timedelta(minutes=20), "attempts": 0},
    ]
    _load(engine, rows)
    res = check_ledger(engine, "ing", since=None, until=now, grace_s=600)
    assert [(f.kind, f.file) for f in res.findings] == [("file_missing_in_shadow", "/old.csv")]
    assert res.metrics["files_judged"] == 1 and res.metrics["baseline_files"] == 1
    res = check_ledger(engine, "ing", since=None, until=now, grace_s=0)
    assert sorted(f.file for f in res.findings) == ["/old.csv", "/young.csv"]


def test_chunks_cover_the_path_space_in_database_order(engine):
    rng = random.Random(4)
    rows = _random_ledger(rng, 2000)
    _load(engine, rows)
    chunks = plan_chunks(engine, "ing", chunk_rows=200)
    assert len(chunks) > 5 and chunks[0].low is None and chunks[-1].high is None
    for a, b in zip(chunks, chunks[1:]):
        assert a.high == b.low is not None
    assert plan_chunks(engine, "nobody") == plan_chunks(engine, "ing", chunk_rows=10**9)  # small → one open range


def test_classify_is_exact_for_every_pair_of_rows():
    """The two sums decide every pair the way the rules do: no collisions, whatever the records."""
    from checks.ledger import _EXCLUDED, _IN_WINDOW, _LIVE, _SHADOW, _STATUS_CODE, _SUCCESS

    statuses = [SUCCESS, FAILED, SKIPPED, "WEIRD"]
    records = [None, 0, 1, 7, 8, 9, 10**12]

    def row_sums(ns, status, rec):
        f = (_LIVE if ns == "live" else _SHADOW) + (_SUCCESS if status == SUCCESS else 0) + _IN_WINDOW
        d = (1 if ns == "live" else -1) * ((rec if rec is not None else -1) * 8 + _STATUS_CODE.get(status, 5))
        return f, d

    for ls in statuses:
        for lr in records:
            fl, dl = row_sums("live", ls, lr)
            assert fl < _EXCLUDED
            assert classify(fl, dl) == "file_missing_in_shadow"
            for ss in statuses:
                for sr in records:
                    fs, ds = row_sums("shadow", ss, sr)
                    assert classify(fs, ds) == "file_missing_in_legacy"
                    expected = ("status_mismatch" if ls != ss else
                                "records_mismatch" if ls == SUCCESS and (lr if lr is not None else -1) != (sr if sr is not None else -1)
                                else None)
                    assert classify(fl + fs, dl + ds) == expected, (ls, lr, ss, sr)


def test_in_memory_sqlite_never_goes_to_worker_processes():
    """Worker processes would open another, empty in-memory database: such a ledger is checked in process."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    from cutover.core.records.tables import metadata

    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    metadata.create_all(engine, tables=[t_pf])
    rows = _random_ledger(random.Random(5), 300)
    _load(engine, rows)
    until = T0 + timedelta(days=1)
    judged, kinds = reference(rows, None, until)
    res = check_ledger(engine, "ing", since=None, until=until, workers=2, chunk_rows=50)
    assert res.metrics["chunks"] > 1
    assert res.metrics["files_judged"] == judged and {f.file: f.kind for f in res.findings} == kinds


def test_stale_claims_are_findings_with_their_age(engine):
    """A claim (PROCESSING) older than the claim timeout is a `stale_claim` finding with its age and
    holder, whatever the window; a younger one is in flight and not judged; other ingestions never count."""
    from checks.ledger import stale_claims

    now = T0 + timedelta(hours=5)
    rows = [
        {"ingestion_id": "ing", "namespace": "live", "path": "/frozen.csv", "status": PROCESSING,
         "claimed_at": now - timedelta(minutes=47), "claimed_by": "run-frozen", "run_id": "run-frozen",
         "batch_id": "b-1", "attempts": 1},
        {"ingestion_id": "ing", "namespace": "shadow", "path": "/young.csv", "status": PROCESSING,
         "claimed_at": now - timedelta(seconds=30), "claimed_by": "run-busy", "run_id": "run-busy", "attempts": 1},
        {"ingestion_id": "ing", "namespace": "shadow", "path": "/dead.csv", "status": PROCESSING,
         "claimed_at": now - timedelta(hours=3, minutes=2), "claimed_by": "run-dead", "run_id": "run-dead",
         "attempts": 2, "fence": 1},
        {"ingestion_id": "other", "namespace": "live", "path": "/frozen.csv", "status": PROCESSING,
         "claimed_at": now - timedelta(hours=9), "claimed_by": "x", "attempts": 1},
        {"ingestion_id": "ing", "namespace": "live", "path": "/done.csv", "status": SUCCESS, "records_ingested": 3,
         "processed_at": now - timedelta(hours=1), "attempts": 1},
        {"ingestion_id": "ing", "namespace": "shadow", "path": "/done.csv", "status": SUCCESS, "records_ingested": 3,
         "processed_at": now - timedelta(hours=1), "attempts": 1},
    ]
    keys = ("claimed_at", "claimed_by", "batch_id", "fence", "records_ingested", "processed_at")
    _load(engine, [{**{k: (0 if k == "fence" else None) for k in keys}, **r} for r in rows])
    res = check_ledger(engine, "ing", since=now - timedelta(minutes=10), until=now, claim_timeout_s=900)
    stale = {f.file: f for f in res.findings}
    assert set(stale) == {"/frozen.csv", "/dead.csv"} and res.verdict == "fail"
    assert all(f.kind == "stale_claim" for f in res.findings)
    frozen, dead = stale["/frozen.csv"], stale["/dead.csv"]
    assert frozen.legacy["age_s"] == 47 * 60 and frozen.legacy["run_id"] == "run-frozen"
    assert frozen.legacy["staged_batch"] == "b-1" and frozen.shadow is None
    assert "47 min old" in frozen.detail and "claim timeout 15 min" in frozen.detail
    assert dead.shadow["age_s"] == 3 * 3600 + 120 and dead.shadow["fence"] == 1 and "3 h 2 min old" in dead.detail
    assert res.metrics["stale_claims"] == 2 and res.metrics["by_kind"] == {"stale_claim": 2}
    # without a claim timeout (old callers) nothing changes; with a long one, nothing is stale yet
    assert check_ledger(engine, "ing", since=None, until=now).findings == []
    assert stale_claims(engine, "ing", until=now, claim_timeout_s=4 * 3600) == (0, [])
    if engine.dialect.name == "sqlite":  # found through the partial index, not a ledger scan
        from sqlalchemy import text

        with engine.connect() as conn:
            plan = conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT path FROM processed_files WHERE ingestion_id = 'ing' AND "
                "namespace IN ('live', 'shadow') AND status = 'PROCESSING' AND claimed_at < '2026-11-01'")).all()
        assert "ix_processed_files_processing" in " ".join(str(r[-1]) for r in plan), plan
