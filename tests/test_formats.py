"""cutover/core/autoloader/formats.py: reading CSV / JSON lines / Parquet and fitting a file to its table.

A bad file raises BadFile with a one-line reason (stored in the ledger);
only lossless widenings are applied, never a silent cast.
"""

from __future__ import annotations

import fsspec
import pyarrow as pa
import pytest

from cutover.core.autoloader.formats import BadFile, count_rows, fit_to_table, normalize, read_file
from tests.helpers import csv_text, write_csv_gz, write_jsonl, write_parquet

FS = fsspec.filesystem("file")


def _read(path, fmt, options=None):
    return read_file(FS, str(path), fmt, options)


# -- reading -----------------------------------------------------------------------------------


def test_csv(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text(csv_text(1, 5))
    t = _read(p, "csv")
    assert t.num_rows == 5
    assert t.column_names == ["id", "name", "amount", "day"]
    assert t.schema.field("id").type == pa.int64()
    assert t.schema.field("name").type == pa.string()
    assert t.schema.field("amount").type == pa.float64()
    assert t.column("id").to_pylist() == [100_000 + r for r in range(5)]
    assert all(f.nullable for f in t.schema)


def test_csv_options_delimiter(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("a;b\n1;x\n2;y\n")
    t = _read(p, "csv", {"delimiter": ";"})
    assert t.column_names == ["a", "b"] and t.num_rows == 2


def test_gzip_csv(tmp_path):
    p = write_csv_gz(tmp_path / "a.csv.gz", 7, i=2)
    assert p.read_bytes()[:2] == b"\x1f\x8b"
    t = _read(p, "csv")
    assert t.num_rows == 7 and t.column("id").to_pylist()[0] == 200_000


def test_jsonl(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"id": i, "name": f"n{i}", "score": i / 2} for i in range(4)])
    t = _read(p, "jsonl")
    assert t.num_rows == 4
    assert t.schema.field("id").type == pa.int64()
    assert t.schema.field("score").type == pa.float64()
    assert t.column("name").to_pylist() == ["n0", "n1", "n2", "n3"]


def test_parquet(tmp_path):
    p = write_parquet(tmp_path / "a.parquet", {"id": [1, 2, 3], "ts": pa.array([1, 2, 3], pa.timestamp("ns"))})
    t = _read(p, "parquet")
    assert t.num_rows == 3
    assert t.schema.field("ts").type == pa.timestamp("us")  # Iceberg holds microseconds


def test_count_rows(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text(csv_text(0, 9))
    assert count_rows(FS, str(p), "csv") == 9


@pytest.mark.parametrize("fmt,name", [("csv", "e.csv"), ("jsonl", "e.jsonl"), ("parquet", "e.parquet")])
def test_zero_byte_file(tmp_path, fmt, name):
    p = tmp_path / name
    p.write_bytes(b"")
    with pytest.raises(BadFile, match="^empty file: 0 bytes$"):
        _read(p, fmt)


def test_header_only_csv_has_no_rows(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("id,name\n")
    with pytest.raises(BadFile, match="^empty file: no rows$"):
        _read(p, "csv")


def test_empty_parquet_has_no_rows(tmp_path):
    p = write_parquet(tmp_path / "e.parquet", {"id": pa.array([], pa.int64())})
    with pytest.raises(BadFile, match="no rows"):
        _read(p, "parquet")


@pytest.mark.parametrize("fmt,content", [
    ("csv", "a,b\n1,2\n3,4,5\n"),                  # ragged row
    ("jsonl", "{\"a\": 1}\n{not json\n"),
    ("parquet", b"PAR1 this is not a parquet file"),
])
def test_unparseable(tmp_path, fmt, content):
    p = tmp_path / f"bad.{fmt}"
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    with pytest.raises(BadFile, match=f"^cannot parse as {fmt}: ") as exc:
        _read(p, fmt)
    assert "\n" not in str(exc.value)  # one line: it goes into the ledger and the CLI


def test_non_utf8_text_is_binary_and_does_not_fit_a_string_column(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes("name,n\ncaf\u00e9,1\n".encode("latin-1"))
    t = _read(p, "csv")
    assert t.schema.field("name").type == pa.binary()
    target = pa.schema([pa.field("name", pa.string()), pa.field("n", pa.int64())])
    with pytest.raises(BadFile, match="column 'name' is binary in the file, string in the table"):
        fit_to_table(t, target, table_name="raw.t")
    # with the right encoding option it reads as text
    assert _read(p, "csv", {"encoding": "latin-1"}).column("name").to_pylist() == ["caf\u00e9"]


def test_gzip_that_is_not_gzip(tmp_path):
    p = tmp_path / "a.csv.gz"
    p.write_text("id\n1\n")
    with pytest.raises(BadFile, match="^cannot parse as csv"):
        _read(p, "csv")


def test_unsupported_format(tmp_path):
    p = tmp_path / "a.xml"
    p.write_text("<a/>")
    with pytest.raises(BadFile, match="unsupported format 'xml'"):
        _read(p, "xml")


def test_missing_file(tmp_path):
    with pytest.raises(BadFile, match="disappeared"):
        _read(tmp_path / "gone.csv", "csv")


# -- normalize ---------------------------------------------------------------------------------


def test_normalize_types_iceberg_can_hold():
    t = pa.table({
        "ts": pa.array([1_000], pa.timestamp("ns", tz="UTC")),
        "n": pa.array([None], pa.null()),
        "d": pa.array(["x"]).dictionary_encode(),
        "ls": pa.array(["y"], pa.large_string()),
    })
    out = normalize(t)
    assert out.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert out.schema.field("n").type == pa.string()
    assert out.schema.field("d").type == pa.string()
    assert out.schema.field("ls").type == pa.string()
    assert out.column("d").to_pylist() == ["x"]


# -- fitting to the table ----------------------------------------------------------------------

TABLE = pa.schema([pa.field("id", pa.int64()), pa.field("amount", pa.float64()), pa.field("name", pa.string())])


def test_fit_reorders_columns():
    data = pa.table({"name": ["a"], "amount": [1.5], "id": [1]})
    out = fit_to_table(data, TABLE, table_name="raw.t")
    assert out.schema == TABLE and out.to_pylist() == [{"id": 1, "amount": 1.5, "name": "a"}]


def test_fit_widens_int_to_double():
    data = pa.table({"id": [1, 2], "amount": pa.array([3, 4], pa.int64()), "name": ["a", "b"]})
    out = fit_to_table(data, TABLE, table_name="raw.t")
    assert out.schema.field("amount").type == pa.float64()
    assert out.column("amount").to_pylist() == [3.0, 4.0]


@pytest.mark.parametrize("src,dst", [
    (pa.int32(), pa.int64()), (pa.int8(), pa.int64()), (pa.float32(), pa.float64()), (pa.int32(), pa.float64()),
    (pa.timestamp("us"), pa.timestamp("us")), (pa.date32(), pa.date32()),
])
def test_fit_lossless_widenings(src, dst):
    target = pa.schema([pa.field("x", dst)])
    data = pa.table({"x": pa.array([1, 2], src)})
    assert fit_to_table(data, target, table_name="raw.t").schema == target


def test_fit_refuses_string_to_double():
    data = pa.table({"id": [1], "amount": ["1.5"], "name": ["a"]})
    with pytest.raises(BadFile, match="column 'amount' is string in the file, double in the table"):
        fit_to_table(data, TABLE, table_name="raw.t")


@pytest.mark.parametrize("src,dst", [
    (pa.float64(), pa.int64()),        # narrowing, loses the fraction
    (pa.int64(), pa.int32()),          # narrowing
    (pa.int64(), pa.string()),         # no silent cast to text either
    (pa.timestamp("us", tz="UTC"), pa.timestamp("us")),
])
def test_fit_refuses_lossy_casts(src, dst):
    target = pa.schema([pa.field("x", dst)])
    data = pa.table({"x": pa.array([1], pa.int64()).cast(src)})
    with pytest.raises(BadFile, match="schema does not fit table raw.t: column 'x'"):
        fit_to_table(data, target, table_name="raw.t")


def test_fit_refuses_extra_column():
    data = pa.table({"id": [1], "amount": [1.0], "name": ["a"], "surprise": [1]})
    with pytest.raises(BadFile, match=r"column\(s\) surprise not in the table"):
        fit_to_table(data, TABLE, table_name="raw.t")


def test_fit_fills_missing_nullable_column():
    data = pa.table({"id": [1, 2], "name": ["a", "b"]})
    out = fit_to_table(data, TABLE, table_name="raw.t")
    assert out.column("amount").to_pylist() == [None, None]


def test_fit_refuses_missing_required_column_and_nulls_in_required():
    target = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())])
    with pytest.raises(BadFile, match="required column 'id' is missing"):
        fit_to_table(pa.table({"name": ["a"]}), target, table_name="raw.t")
    with pytest.raises(BadFile, match="column 'id' has 1 null"):
        fit_to_table(pa.table({"id": pa.array([None, 1], pa.int64()), "name": ["a", "b"]}), target,
                     table_name="raw.t")
