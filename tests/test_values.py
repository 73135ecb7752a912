"""The values check (checks/values.py): injected divergences are each caught naming the right
column; equal data (float round-trips included) gives no finding; tolerances, keys, masking."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from checks.model import FAIL, PASS
from checks.values import MASK, ValueSpec, check_result, compare
from cutover.core.errors import InputError

N = 20_000


def orders(n: int = N, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    base = datetime(2026, 3, 1, 0, 0, 0)
    return pa.table({
        "order_id": pa.array(np.arange(n, dtype=np.int64)),
        "amount": pa.array(np.round(rng.random(n) * 1000, 2)),
        "fee": pa.array(np.round(rng.random(n) * 10, 2)),
        "qty": pa.array(rng.integers(1, 50, n)),
        "customer": pa.array([f"cust-{i % 977:04d}" for i in range(n)]),
        "note": pa.array([None if i % 5 == 0 else f"n{i % 13}" for i in range(n)], type=pa.string()),
        "created_at": pa.array([base + timedelta(seconds=int(s)) for s in rng.integers(0, 86400 * 30, n)],
                               type=pa.timestamp("us")),
    })


def replace(t: pa.Table, name: str, arr) -> pa.Table:
    return t.set_column(t.schema.get_field_index(name), name, arr)


def spec(**kw) -> ValueSpec:
    return ValueSpec.build(["order_id"], **kw)


def only_column(diff, column: str):
    assert not diff.equal
    assert set(diff.columns) == {column}, diff.as_dict()
    return diff.columns[column]


def test_equal_data_gives_no_finding_and_one_pass():
    t = orders()
    d = compare(t, t.take(np.random.default_rng(1).permutation(t.num_rows)), spec())  # order does not matter
    assert d.equal and d.buckets_differing == 0
    assert d.rows_legacy == d.rows_shadow == N
    r = check_result(d)
    assert r.verdict == PASS and r.findings == []


def test_float_round_trips_are_equal(tmp_path):
    """Values written through Parquet and through a float32 → float64 → text → float round-trip of
    the same float64 numbers stay equal: no finding."""
    t = orders()
    pq.write_table(t, tmp_path / "a.parquet")
    back = pq.read_table(tmp_path / "a.parquet")
    text = pa.array([float(repr(x)) for x in t["amount"].to_pylist()])
    d = compare([str(tmp_path / "a.parquet")], replace(back, "amount", text), spec())
    assert d.equal, d.as_dict()


def test_amounts_times_100():
    t = orders()
    c = only_column(compare(t, replace(t, "amount", pc.multiply(t["amount"], 100)), spec()), "amount")
    assert c.mismatches == sum(1 for x in t["amount"].to_pylist() if x != 0)
    assert c.max_abs_diff == pytest.approx(max(t["amount"].to_pylist()) * 99, rel=1e-9)


def test_amounts_rounded_to_one_decimal():
    t = orders()
    rounded = pc.round(t["amount"], 1)
    changed = sum(1 for a, b in zip(t["amount"].to_pylist(), rounded.to_pylist()) if a != b)
    c = only_column(compare(t, replace(t, "amount", rounded), spec()), "amount")
    assert c.mismatches == changed > 0
    assert c.max_abs_diff <= 0.05 + 1e-9
    # an absolute tolerance just over 0.05 accepts that (0.05 itself is not representable: 725.85 - 725.8 > 0.05)
    assert compare(t, replace(t, "amount", rounded), spec(tolerances={"amount": {"abs": 0.0501}})).equal
    assert not compare(t, replace(t, "amount", rounded), spec(tolerances={"amount": {"abs": 0.04}})).equal


def test_timestamps_shifted_by_the_zone_offset():
    t = orders()
    shifted = pa.array([x + timedelta(hours=1) for x in t["created_at"].to_pylist()], type=pa.timestamp("us"))
    c = only_column(compare(t, replace(t, "created_at", shifted), spec()), "created_at")
    assert c.mismatches == N
    # a seconds precision does not hide an hour
    c = only_column(compare(t, replace(t, "created_at", shifted), spec(tolerances={"created_at": {"timestamp_precision": "seconds"}})),
                    "created_at")
    assert c.mismatches == N


def test_two_columns_swapped():
    t = orders()
    s = replace(replace(t, "amount", t["fee"]), "fee", t["amount"])
    d = compare(t, s, spec())
    assert set(d.columns) == {"amount", "fee"}
    assert d.columns["amount"].mismatches == d.columns["fee"].mismatches > N * 0.99


def test_a_string_column_trimmed():
    t = orders()
    padded = pa.array([f" {x} " for x in t["customer"].to_pylist()])
    c = only_column(compare(replace(t, "customer", padded), t, spec()), "customer")
    assert c.mismatches == N
    assert c.examples[0]["legacy"].startswith(" ") and not c.examples[0]["shadow"].startswith(" ")
    # declared normalisation: strip
    assert compare(replace(t, "customer", padded), t, spec(tolerances={"customer": {"normalize": "strip"}})).equal


def test_null_versus_empty_string():
    t = orders()
    empty = pa.array(["" if x is None else x for x in t["note"].to_pylist()], type=pa.string())
    nulls = t["note"].null_count
    c = only_column(compare(t, replace(t, "note", empty), spec()), "note")
    assert c.mismatches == nulls > 0
    assert compare(t, replace(t, "note", empty), spec(tolerances={"note": {"normalize": ["null_as_empty"]}})).equal


def test_one_row_in_a_million():
    t = orders(1_000_000, seed=3)
    amounts = t["amount"].to_numpy().copy()
    amounts[654_321] += 0.01
    d = compare(t, replace(t, "amount", pa.array(amounts)), spec())
    c = only_column(d, "amount")
    assert c.mismatches == 1 and d.differing_rows == 1
    assert c.examples[0]["key"] == {"order_id": 654_321}
    assert d.buckets_differing == 1  # one bucket drilled into, the rest settled by one hashing pass


def test_rows_on_one_side_and_duplicate_keys():
    t = orders()
    d = compare(t, t.slice(0, N - 3), spec())
    assert (d.only_legacy, d.only_shadow) == (3, 0)
    assert d.only_examples["legacy"] == [{"order_id": N - 3}, {"order_id": N - 2}, {"order_id": N - 1}]
    dup = pa.concat_tables([t, t.slice(10, 1)])
    d = compare(t, dup, spec())
    assert d.duplicate_keys_shadow == 1 and d.only_shadow == 1 and d.only_legacy == 0 and not d.equal
    assert d.duplicate_examples["shadow"][0] == {"key": {"order_id": 10}, "shadow": 2, "legacy": 1}
    kinds = {f.kind for f in check_result(d).findings}
    assert kinds == {"duplicate_key", "row_missing_in_legacy"}
    # the same duplicates on both sides are a property of the data, not a divergence
    assert compare(dup, dup.take(np.arange(dup.num_rows)[::-1]), spec()).equal
    # ... and a value change inside a duplicated key is still found, on the right column
    changed = replace(dup, "fee", pa.array(dup["fee"].to_numpy()[:-1].tolist() + [-1.0]))
    c = only_column(compare(dup, changed, spec()), "fee")
    assert c.mismatches == 1 and c.examples[0]["key"] == {"order_id": 10}


def test_relative_tolerance_and_nan():
    t = orders()
    nudged = pc.multiply(t["amount"], 1 + 1e-12)
    assert compare(t, replace(t, "amount", nudged), spec(tolerances={"amount": {"rel": 1e-9}})).equal
    c = only_column(compare(t, replace(t, "amount", pc.multiply(t["amount"], 1.001)),
                            spec(tolerances={"amount": {"rel": 1e-6}})), "amount")
    assert c.mismatches > N * 0.99
    with_nan = pa.array([math.nan if i % 100 == 0 else x for i, x in enumerate(t["fee"].to_pylist())])
    assert compare(replace(t, "fee", with_nan), replace(t, "fee", with_nan), spec()).equal
    c = only_column(compare(replace(t, "fee", with_nan), replace(t, "fee", with_nan),
                            spec(tolerances={"fee": {"nan_equal": False}})), "fee")
    assert c.mismatches == N // 100


def test_key_row_matches_whole_rows():
    t = orders()
    s = replace(t, "qty", pc.add(t["qty"], pa.array([1 if i == 5 else 0 for i in range(N)])))
    d = compare(t, s, ValueSpec.build("row"))
    assert (d.only_legacy, d.only_shadow) == (1, 1) and not d.columns


def test_sensitive_columns_are_masked():
    t = orders()
    padded = pa.array([f" {x}" for x in t["customer"].to_pylist()])
    d = compare(t, replace(t, "customer", padded), spec(sensitive={"customer"}))
    ex = d.columns["customer"].examples
    assert ex and all(e["legacy"] == MASK and e["shadow"] == MASK for e in ex)
    assert "cust-" not in str(check_result(d).as_dict())


def test_schema_mismatch_names_the_column_and_both_types():
    t = orders()
    s = replace(t, "qty", pc.cast(t["qty"], pa.float64()))
    d = compare(t, s, spec())
    assert d.schema == [{"column": "qty", "legacy": "BIGINT", "shadow": "DOUBLE"}]
    f = [f for f in check_result(d).findings if f.kind == "schema_mismatch"]
    assert f and "qty" in f[0].detail and "BIGINT" in f[0].detail and "DOUBLE" in f[0].detail


def test_refusals():
    with pytest.raises(InputError) as e:
        ValueSpec.build(None)
    assert "key: [column" in e.value.fix and "key: row" in e.value.fix
    with pytest.raises(InputError):
        ValueSpec.build(["id"], tolerances={"amount": {"abs": -1}})
    with pytest.raises(InputError):
        ValueSpec.build(["id"], tolerances={"amount": {"absolute": 1}})
    with pytest.raises(InputError):
        compare(orders(10), orders(10), ValueSpec.build(["nope"]))


def test_check_result_findings():
    t = orders()
    d = compare(t, replace(t, "amount", pc.multiply(t["amount"], 100)), spec())
    r = check_result(d)
    assert r.verdict == FAIL
    (f,) = [f for f in r.findings if f.kind == "values_mismatch"]
    assert "amount" in f.detail and f.legacy is not None and f.shadow is not None
    assert r.metrics["rows_legacy"] == N and r.metrics["columns"]["amount"]["mismatches"] > 0
