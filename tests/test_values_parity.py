"""The values check through the real parity path: Parquet source files ingested by both sides
into an Iceberg table (pyiceberg SQL catalog), legacy on main and the shadow on its branch;
then the shadow's data files are rewritten the way a buggy shadow job would have written them,
and ``run_parity`` must name the right column (or rows). Only the window's data files are read.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from checks.model import ERROR, FAIL, PASS
from cutover.core.errors import InputError

ROWS = 400


def _orders(n: int, start: int) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table({
        "order_id": pa.array(ids, pa.int64()),
        # amounts with two decimals, computed (0.1 + 0.2 style floats), never round in binary
        "amount": pa.array([round(i * 1.37 % 997, 2) + 0.01 for i in ids], pa.float64()),
        "fee": pa.array([round(i * 0.013 % 9, 2) + 0.1 + 0.2 for i in ids], pa.float64()),
        "created_at": pa.array([datetime(2026, 3, 1) + timedelta(minutes=7 * i) for i in ids], pa.timestamp("us")),
        "customer": pa.array([f"  cust-{i % 37:03d} " if i % 3 == 0 else f"cust-{i % 37:03d}" for i in ids]),
        "note": pa.array([None if i % 4 == 0 else f"note {i % 11}" for i in ids], pa.string()),
        "email": pa.array([f"user{i}@example.com" for i in ids]),
    })


def _write(src: Path, name: str, n: int, start: int) -> None:
    src.mkdir(parents=True, exist_ok=True)
    pq.write_table(_orders(n, start), src / name)


def _setup(workspace_env, tmp_path, values: dict | None = None, key_columns=("order_id",)):
    from cutover.core.records.ingestions import IngestionRepo, validate
    from cutover.core.shadowfork import ensure_fork
    from cutover.core.state import states
    from cutover.core.workspace import Workspace
    from cutover.engine.baseline import seed_baseline

    src = tmp_path / "src"
    _write(src, "day0.parquet", 50, 0)
    ws = Workspace()
    raw = {"id": "orders", "source_uri": str(src), "pattern": "*.parquet", "format": "parquet",
           "table": "shop.orders", "key_columns": list(key_columns)}
    if values is not None:
        raw["values"] = values
    ing = validate(raw)
    IngestionRepo(ws.autoloader_engine).upsert([ing], replace_existing=False)
    ws.service.run(ing)  # before the fork
    seed_baseline(ws, ing, ensure_fork(ws, ing))
    states.set_state(ws.state_engine, ing.id, states.SHADOW)
    _write(src, "day1_a.parquet", ROWS, 1000)
    _write(src, "day1_b.parquet", ROWS // 2, 5000)
    ws.service.run(ing, orchestrator="legacy", mode="live")
    ws.service.run(ing, orchestrator="prefect", mode="shadow")
    return ws, ws.ingestions.get(ing.id), src


@pytest.fixture
def shadowed(workspace_env, tmp_path):
    return _setup(workspace_env, tmp_path)


def _shadow_files(ws, ing, source: str | None = None) -> list[str]:
    from cutover.core.records.ledger import Ledger

    out = []
    for e in Ledger(ws.autoloader_engine, ing.id, "shadow", claim_timeout=0).entries(status="SUCCESS"):
        if e.data_files and (source is None or e.path.endswith(source)):
            out += [urlparse(d).path for d in e.data_files]
    assert out
    return out


def rewrite_shadow(ws, ing, fn, source: str | None = None) -> None:
    """What a buggy shadow would have written: each of its data files (of ``source``) rewritten by ``fn``."""
    for path in _shadow_files(ws, ing, source):
        t = pq.read_table(path)
        new = fn(t)
        pq.write_table(new.cast(t.schema) if new.schema.equals(t.schema, check_metadata=False) else new, path)


def col(t: pa.Table, name: str, arr) -> pa.Table:
    return t.set_column(t.schema.get_field_index(name), t.schema.field(name), pa.array(arr, t.schema.field(name).type))


def values_check(ws, ing, **kw):
    from checks.parity import run_parity

    rep = run_parity(ws, [ing], since=kw.pop("since", None), checks=kw.pop("checks", ("values",)), store=False, **kw)
    return {c.name: c for c in rep.ingestions[0].checks}["values"]


def mismatched_columns(check) -> dict[str, int]:
    return {c: v["mismatches"] for c, v in check.metrics["columns"].items()}


def only_values_findings(check) -> list[str]:
    assert check.verdict == FAIL, (check.error, check.findings)
    assert {f.kind for f in check.findings} == {"values_mismatch"}, check.findings
    return [f.detail for f in check.findings]


def test_clean_run_with_float_round_trips_has_no_finding(shadowed):
    ws, ing, src = shadowed
    # the shadow wrote its floats through text (repr) and JSON: the same float64 values
    rewrite_shadow(ws, ing, lambda t: col(col(t, "amount", [float(repr(x)) for x in t["amount"].to_pylist()]),
                                          "fee", json.loads(json.dumps(t["fee"].to_pylist()))))
    from checks.parity import run_parity

    rep = run_parity(ws, [ing], since=None, store=False)
    checks = {c.name: c for c in rep.ingestions[0].checks}
    assert rep.verdict == PASS, [(c.name, c.error, c.findings) for c in checks.values()]
    v = checks["values"]
    assert v.findings == [] and v.metrics["rows_legacy"] == v.metrics["rows_shadow"] == ROWS + ROWS // 2
    # only the window's files were read: two source files, one data file each per side, not day0
    assert v.metrics["source_files"] == 2 and v.metrics["data_files_legacy"] == v.metrics["data_files_shadow"] == 2
    assert v.metrics["buckets_differing"] == 0


def test_float32_round_trip_needs_a_declared_tolerance(workspace_env, tmp_path):
    ws, ing, src = _setup(workspace_env, tmp_path, values={"tolerances": {"amount": {"rel": 1e-6}}})
    assert ing.values == {"tolerances": {"amount": {"rel": 1e-6}}, "ignore": [], "sensitive": []}
    rewrite_shadow(ws, ing, lambda t: col(t, "amount", pc.cast(pc.cast(t["amount"], pa.float32()), pa.float64())))
    check = values_check(ws, ing)
    assert check.verdict == PASS, check.findings
    # the same data without the tolerance: a finding naming amount
    from sqlalchemy import update
    from cutover.core.records.tables import ingestions as t_ing

    with ws.autoloader_engine.begin() as conn:
        conn.execute(update(t_ing).values(values_spec=None))
    assert mismatched_columns(values_check(ws, ws.ingestions.get("orders"))).keys() == {"amount"}


def test_amounts_times_100(shadowed):
    ws, ing, src = shadowed
    rewrite_shadow(ws, ing, lambda t: col(t, "amount", pc.multiply(t["amount"], 100)))
    check = values_check(ws, ing)
    (detail,) = only_values_findings(check)
    assert detail.startswith(f"column amount: {ROWS + ROWS // 2} of {ROWS + ROWS // 2} row(s) differ")
    assert "largest difference" in detail and "e.g. key order_id=" in detail
    assert mismatched_columns(check) == {"amount": ROWS + ROWS // 2}


def test_amounts_rounded_to_one_decimal(shadowed):
    ws, ing, src = shadowed
    rewrite_shadow(ws, ing, lambda t: col(t, "amount", pc.round(t["amount"], 1)))
    check = values_check(ws, ing)
    only_values_findings(check)
    changed = mismatched_columns(check)
    assert set(changed) == {"amount"} and changed["amount"] > ROWS // 2
    assert check.metrics["columns"]["amount"]["max_abs_diff"] <= 0.05 + 1e-9


def test_timestamps_shifted_by_the_zone_offset(shadowed):
    ws, ing, src = shadowed
    # the shadow wrote local Europe/Berlin wall-clock times (UTC+1 in March) instead of UTC
    rewrite_shadow(ws, ing, lambda t: col(t, "created_at", [x + timedelta(hours=1) for x in t["created_at"].to_pylist()]))
    check = values_check(ws, ing)
    (detail,) = only_values_findings(check)
    assert mismatched_columns(check) == {"created_at": ROWS + ROWS // 2}
    assert "largest difference 3600 s" in detail


def test_two_columns_swapped(shadowed):
    ws, ing, src = shadowed
    rewrite_shadow(ws, ing, lambda t: col(col(t, "amount", t["fee"]), "fee", t["amount"]))
    check = values_check(ws, ing)
    details = only_values_findings(check)
    assert set(mismatched_columns(check)) == {"amount", "fee"}
    assert sorted(d.split(":")[0] for d in details) == ["column amount", "column fee"]


def test_a_string_column_trimmed(shadowed):
    ws, ing, src = shadowed
    rewrite_shadow(ws, ing, lambda t: col(t, "customer", pc.utf8_trim_whitespace(t["customer"])))
    check = values_check(ws, ing)
    only_values_findings(check)
    padded = sum(1 for i in list(range(1000, 1000 + ROWS)) + list(range(5000, 5000 + ROWS // 2)) if i % 3 == 0)
    assert mismatched_columns(check) == {"customer": padded}


def test_a_trimmed_string_column_passes_when_declared(workspace_env, tmp_path):
    ws, ing, src = _setup(workspace_env, tmp_path, values={"tolerances": {"customer": {"normalize": ["strip"]}}})
    rewrite_shadow(ws, ing, lambda t: col(t, "customer", pc.utf8_trim_whitespace(t["customer"])))
    assert values_check(ws, ing).verdict == PASS


def test_null_versus_empty_string(shadowed):
    ws, ing, src = shadowed
    rewrite_shadow(ws, ing, lambda t: col(t, "note", ["" if x is None else x for x in t["note"].to_pylist()]))
    check = values_check(ws, ing)
    only_values_findings(check)
    nulls = sum(1 for i in list(range(1000, 1000 + ROWS)) + list(range(5000, 5000 + ROWS // 2)) if i % 4 == 0)
    assert mismatched_columns(check) == {"note": nulls}
    ex = check.metrics["columns"]["note"]["examples"][0]
    assert (ex["legacy"], ex["shadow"]) == (None, "")


def test_rows_dropped_and_added_by_the_shadow(shadowed):
    ws, ing, src = shadowed
    rewrite_shadow(ws, ing, lambda t: t.filter(pc.not_equal(t["order_id"], 1007)), source="day1_a.parquet")
    rewrite_shadow(ws, ing, lambda t: pa.concat_tables([t, t.slice(0, 1).set_column(
        0, t.schema.field("order_id"), pa.array([99_999], pa.int64()))]), source="day1_b.parquet")
    check = values_check(ws, ing)
    kinds = sorted(f.kind for f in check.findings)
    assert kinds == ["row_missing_in_legacy", "row_missing_in_shadow"]
    by = {f.kind: f for f in check.findings}
    assert "order_id=1007" in by["row_missing_in_shadow"].detail
    assert "order_id=99999" in by["row_missing_in_legacy"].detail


def test_rows_deleted_on_the_shadow_branch(shadowed):
    """A delete rewrites the shadow's data file: the ledger's file is gone from the branch, the
    rewritten remainder (no ledger row owns it) is read instead."""
    ws, ing, src = shadowed
    from pyiceberg.expressions import EqualTo

    ws.catalog.load(ing.table).delete(EqualTo("order_id", 1200), branch="cutover-shadow")
    check = values_check(ws, ing)
    assert [f.kind for f in check.findings] == ["row_missing_in_shadow"]
    assert "order_id=1200" in check.findings[0].detail
    assert check.metrics["replaced_data_files"]["shadow"] == 1 and check.metrics["unowned_data_files"]["shadow"] == 1


def test_a_file_appended_twice_on_the_shadow_branch(shadowed):
    ws, ing, src = shadowed
    data = pq.read_table(src / "day1_b.parquet")
    ws.catalog.append(ing.table, data, branch="cutover-shadow", tbl=ws.catalog.load(ing.table),
                      properties={"cutover.mode": "shadow", "cutover.ingestion": ing.id})
    check = values_check(ws, ing)
    assert sorted(f.kind for f in check.findings) == ["duplicate_key", "row_missing_in_legacy"]
    assert check.metrics["only_shadow"] == ROWS // 2 and check.metrics["duplicate_keys_shadow"] == ROWS // 2


def test_only_the_window_is_read(shadowed):
    """A divergence in files processed before the window is not read; the window's files are."""
    ws, ing, src = shadowed
    rewrite_shadow(ws, ing, lambda t: col(t, "amount", pc.multiply(t["amount"], 100)))
    from sqlalchemy import update
    from cutover.core.records.tables import processed_files as t_pf

    with ws.autoloader_engine.begin() as conn:  # the diverging files were processed two days ago
        conn.execute(update(t_pf).values(processed_at=datetime.now(timezone.utc) - timedelta(days=2))
                     .where(t_pf.c.ingestion_id == ing.id))
    _write(src, "day2.parquet", 30, 9000)
    ws.service.run(ing, orchestrator="legacy", mode="live")
    ws.service.run(ing, orchestrator="prefect", mode="shadow")
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    check = values_check(ws, ing, since=since)
    assert check.verdict == PASS and check.metrics["rows_legacy"] == 30 and check.metrics["source_files"] == 1
    assert check.metrics["data_files_legacy"] == check.metrics["data_files_shadow"] == 1
    whole = values_check(ws, ing)  # since the fork: all three files
    assert mismatched_columns(whole) == {"amount": ROWS + ROWS // 2} and whole.metrics["source_files"] == 3


def test_sensitive_columns_are_masked_in_every_report(workspace_env, tmp_path):
    from checks.parity import run_parity
    from checks.report import FORMATS
    from cutover.commands.verdicts import render_report

    ws, ing, src = _setup(workspace_env, tmp_path, values={"key": ["email"], "sensitive": ["email", "customer"]})
    rewrite_shadow(ws, ing, lambda t: col(t, "customer", pc.utf8_trim_whitespace(t["customer"])))
    rep = run_parity(ws, [ing], since=None, checks=("values",), store=False)
    check = rep.ingestions[0].checks[0]
    assert mismatched_columns(check) == {"customer": 200}
    for fmt in FORMATS:
        text = render_report(rep, fmt)
        assert "customer" in text and "@example.com" not in text and "cust-0" not in text, fmt


def test_key_row_matches_whole_rows(workspace_env, tmp_path):
    ws, ing, src = _setup(workspace_env, tmp_path, values={"key": "row"}, key_columns=())
    rewrite_shadow(ws, ing, lambda t: col(t, "fee", [x + (1 if i == 3 else 0) for i, x in enumerate(t["fee"].to_pylist())]),
                   source="day1_a.parquet")
    check = values_check(ws, ing)
    assert sorted(f.kind for f in check.findings) == ["row_missing_in_legacy", "row_missing_in_shadow"]
    assert (check.metrics["only_legacy"], check.metrics["only_shadow"]) == (1, 1)


def test_no_key_is_refused_naming_both_choices(workspace_env, tmp_path):
    from cutover.core.records.ingestions import validate

    with pytest.raises(InputError) as e:  # a values block with no key anywhere: refused at definition time
        validate({"id": "x", "source_uri": str(tmp_path), "format": "csv", "table": "a.b",
                  "values": {"tolerances": {"amount": {"abs": 0.01}}}})
    assert "key: [column, ...]" in e.value.fix and "key: row" in e.value.fix
    with pytest.raises(InputError, match=r"unknown field 'values\.tolerances\.amount\.absolute': valid fields are abs, "):
        validate({"id": "x", "source_uri": str(tmp_path), "format": "csv", "table": "a.b",
                  "values": {"key": ["id"], "tolerances": {"amount": {"absolute": 0.01}}}})
    # no values block and no key_columns: the check is an error naming both choices, not a guess
    ws, ing, src = _setup(workspace_env, tmp_path, key_columns=())
    check = values_check(ws, ing)
    assert check.verdict == ERROR and "key: [column, ...]" in check.error and "key: row" in check.error


def test_one_row_in_a_million_at_the_engine_level(tmp_path):
    """The same engine, 1,000,000 rows per side in Parquet files, one amount changed by 0.01."""
    import numpy as np

    from checks.values import ValueSpec, check_result, compare

    n = 1_000_000
    rng = np.random.default_rng(5)
    t = pa.table({"order_id": np.arange(n, dtype=np.int64), "amount": np.round(rng.random(n) * 1000, 2),
                  "qty": rng.integers(1, 9, n)})
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(t, a)
    amounts = t["amount"].to_numpy().copy()
    amounts[777_777] += 0.01
    pq.write_table(t.set_column(1, "amount", pa.array(amounts)), b)
    r = check_result(compare([str(a)], [str(b)], ValueSpec.build(["order_id"])))
    (f,) = r.findings
    assert f.kind == "values_mismatch" and f.detail.startswith("column amount: 1 of 1000000 row(s) differ")
    assert "order_id=777777" in f.detail and math.isclose(r.metrics["columns"]["amount"]["max_abs_diff"], 0.01, rel_tol=1e-6)
