"""Reading CSV, JSON lines and Parquet with pyarrow, and fitting a file to its table.

A file that cannot be read, is empty, or whose schema does not fit the table
raises :class:`BadFile` with a one-line reason; the service marks it FAILED.
Only lossless widenings are applied on the way in (int32->int64, int->double,
float->double, timestamp units, string views); anything else is a mismatch,
never a silent cast.
"""

from __future__ import annotations

from typing import Any

from cutover.core.validate import clean_message

REASON_MAX = 200  # characters of a reader's message kept in the ledger


class BadFile(Exception):
    """The file cannot be ingested; the message is the reason stored in the ledger."""


def _first_line(e: Exception) -> str:
    """The reader's message for the ledger and the terminal: first line, control and binary
    characters escaped, cut short (a parse error quotes the bad row, which may be raw bytes)."""
    return clean_message(e, REASON_MAX) or type(e).__name__


def read_file(fs, path: str, fmt: str, options: dict[str, Any] | None = None):
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    options = options or {}
    try:
        if fs.size(_fs_path(fs, path)) == 0:
            raise BadFile("empty file: 0 bytes")
        with fs.open(_fs_path(fs, path), "rb", compression="infer") as f:
            if fmt == "csv":
                table = pcsv.read_csv(
                    f,
                    parse_options=pcsv.ParseOptions(delimiter=options.get("delimiter", ",")),
                    read_options=pcsv.ReadOptions(encoding=options.get("encoding", "utf8")),
                )
            elif fmt == "jsonl":
                table = pjson.read_json(f)
            elif fmt == "parquet":
                table = pq.read_table(f)
            else:
                raise BadFile(f"unsupported format {fmt!r}")
    except BadFile:
        raise
    except FileNotFoundError:
        raise BadFile("file disappeared before it could be read") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, UnicodeDecodeError, OSError, ValueError) as e:
        raise BadFile(f"cannot parse as {fmt}: {_first_line(e)}") from None
    if table.num_rows == 0:
        raise BadFile("empty file: no rows")
    if table.num_columns == 0:
        raise BadFile("empty file: no columns")
    return normalize(table)


def _fs_path(fs, path: str) -> str:
    return fs._strip_protocol(path) if "://" in path else path


def normalize(table):
    """Types Iceberg can hold: timestamps in us, null columns as string, no dictionaries."""
    import pyarrow as pa

    fields, arrays = [], []
    for field, col in zip(table.schema, table.columns):
        t = field.type
        new = t
        if pa.types.is_timestamp(t) and t.unit != "us":
            new = pa.timestamp("us", tz=t.tz)
        elif pa.types.is_null(t):
            new = pa.string()
        elif pa.types.is_dictionary(t):
            new = t.value_type
        elif pa.types.is_large_string(t) or pa.types.is_string_view(t):
            new = pa.string()
        elif pa.types.is_time(t) and t != pa.time64("us"):
            new = pa.time64("us")
        if new != t:
            try:
                col = col.cast(new, safe=False) if pa.types.is_timestamp(t) else col.cast(new)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise BadFile(f"column {field.name!r}: cannot convert {t} to {new} ({_first_line(e)})") from None
        fields.append(pa.field(field.name, new, nullable=True))
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _widens(src, dst) -> bool:
    import pyarrow as pa

    if src == dst:
        return True
    ints = [pa.int8(), pa.int16(), pa.int32(), pa.int64()]
    if src in ints and dst in ints:
        return ints.index(src) <= ints.index(dst)
    if src in ints and pa.types.is_floating(dst) and dst == pa.float64():
        return True
    if src == pa.float32() and dst == pa.float64():
        return True
    if pa.types.is_timestamp(src) and pa.types.is_timestamp(dst):
        return (src.tz is None) == (dst.tz is None)
    if pa.types.is_string(src) and pa.types.is_large_string(dst) or pa.types.is_large_string(src) and pa.types.is_string(dst):
        return True
    if pa.types.is_date(src) and pa.types.is_date(dst):
        return True
    if pa.types.is_decimal(src) and pa.types.is_decimal(dst):
        return src.scale == dst.scale and src.precision <= dst.precision
    return False


def fit_to_table(data, table_arrow_schema, *, table_name: str):
    """Reorder/widen ``data`` to the table's schema or raise BadFile naming the mismatch."""
    import pyarrow as pa

    target = {f.name: f for f in table_arrow_schema}
    extra = [n for n in data.column_names if n not in target]
    if extra:
        raise BadFile(f"schema does not fit table {table_name}: column(s) {', '.join(extra)} not in the table")
    arrays = []
    for name, tfield in target.items():
        if name not in data.column_names:
            if not tfield.nullable:
                raise BadFile(f"schema does not fit table {table_name}: required column {name!r} is missing")
            arrays.append(pa.nulls(data.num_rows, type=tfield.type))
            continue
        col = data.column(name)
        if col.type != tfield.type:
            if not _widens(col.type, tfield.type):
                raise BadFile(f"schema does not fit table {table_name}: column {name!r} is {col.type} in the file, "
                              f"{tfield.type} in the table")
            col = col.cast(tfield.type)
        if not tfield.nullable and col.null_count:
            raise BadFile(f"column {name!r} has {col.null_count} null(s) but is required in {table_name}")
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=table_arrow_schema)


def count_rows(fs, path: str, fmt: str, options: dict[str, Any] | None = None) -> int:
    """Rows a file holds (used by tests and checks to compare with the table)."""
    return read_file(fs, path, fmt, options).num_rows
