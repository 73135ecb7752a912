"""Every Spark SQL statement and table identifier cutover issues, as pure functions.

Nothing here touches Spark: each function returns text (identifiers, for
``df.writeTo`` / ``df.write.insertInto``) or a :class:`Statement` (text plus
named parameters for ``spark.sql(text, args=...)``). Values always travel as
parameters; only identifiers are spliced into the text, and only after
validation:

- catalog, namespace, table and branch names must match ``[A-Za-z0-9_][A-Za-z0-9_-]*``
  (no dot, quote, backtick, blank or control character) or :class:`UnsafeIdentifier`
  is raised; they are always quoted with backticks, so ``branch_cutover-shadow`` works;
- column names come from data files (CSV headers, JSON keys) and may hold anything
  printable: they are quoted with backticks, a backtick inside doubled; control
  characters are refused;
- snapshot ids must be integers.

Iceberg's Spark conventions used here (Iceberg 1.x, Spark 3.5/4.x):

- a branch is addressed as one more identifier part ``branch_<name>``:
  ``INSERT INTO cat.ns.tbl.`branch_cutover-shadow` ...``, ``df.writeTo("cat.ns.tbl.`branch_x`")``;
- snapshot summary properties are the write options ``snapshot-property.<key>``;
- metadata tables are one more part too: ``cat.ns.tbl.snapshots`` (``snapshot_id``,
  ``parent_id``, ``committed_at``, ``operation``, ``summary`` map with ``added-records``,
  ``total-records`` and our ``cutover.*`` properties) and ``cat.ns.tbl.refs``
  (``name``, ``type``, ``snapshot_id``);
- ``ALTER TABLE cat.ns.tbl CREATE BRANCH IF NOT EXISTS `name` AS OF VERSION <id>``;
- time travel ``SELECT * FROM cat.ns.tbl VERSION AS OF <snapshot id>``.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, NamedTuple

from cutover.core.errors import InputError

SNAPSHOT_PROPERTY_PREFIX = "snapshot-property."
BRANCH_PREFIX = "branch_"
MAIN = "main"

_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,254}$")
_VIEW = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_PROP_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DECIMAL = re.compile(r"^decimal\((\d{1,2}),\s*(\d{1,2})\)$")
_CHAR = re.compile(r"^(char|varchar)\((\d{1,5})\)$")
_ATOMIC = {
    "string": "STRING", "boolean": "BOOLEAN", "byte": "TINYINT", "short": "SMALLINT",
    "integer": "INT", "long": "BIGINT", "float": "FLOAT", "double": "DOUBLE", "date": "DATE",
    "timestamp": "TIMESTAMP", "timestamp_ntz": "TIMESTAMP_NTZ", "binary": "BINARY",
    "void": "STRING",  # a column of nulls only: stored as string, as the arrow engine does
}
SNAPSHOT_COLUMNS = ("snapshot_id", "parent_id", "committed_at", "operation", "summary")
REF_COLUMNS = ("name", "type", "snapshot_id")


class UnsafeIdentifier(InputError):
    """An identifier that could change the meaning of a statement: refused, never escaped."""


class Statement(NamedTuple):
    text: str
    args: dict[str, Any] = {}

    def run(self, spark):
        """``spark.sql(text, args)`` (args only when there are some)."""
        return spark.sql(self.text, args=dict(self.args)) if self.args else spark.sql(self.text)


# -- identifiers ----------------------------------------------------------------------------

def check_part(part: str, *, what: str = "identifier") -> str:
    if not isinstance(part, str) or not _PART.match(part):
        raise UnsafeIdentifier(f"{what} {part!r} is not allowed in Spark SQL",
                               fix="use letters, digits, '_' and '-' only")
    return part


def quote(part: str, *, what: str = "identifier") -> str:
    """One validated identifier part in backticks: ``cutover-shadow`` -> ```cutover-shadow```."""
    return f"`{check_part(part, what=what)}`"


def quote_column(name: str) -> str:
    """Any column name in backticks (a backtick inside is doubled); control characters refused."""
    if not isinstance(name, str) or not name or _CONTROL.search(name):
        raise UnsafeIdentifier(f"column name {name!r} is not allowed in Spark SQL",
                               fix="rename the column in the source (no control characters)")
    return "`" + name.replace("`", "``") + "`"


def view_name(name: str) -> str:
    """A temporary view name (``[A-Za-z_][A-Za-z0-9_]*``), quoted."""
    if not isinstance(name, str) or not _VIEW.match(name):
        raise UnsafeIdentifier(f"view name {name!r} is not allowed", fix="use letters, digits and '_'")
    return f"`{name}`"


def split_table(table: str) -> list[str]:
    """``ns.tbl`` (or ``a.b.tbl``) -> validated parts."""
    parts = str(table).split(".")
    if len(parts) < 2:
        raise UnsafeIdentifier(f"table {table!r} is not namespace.table", fix="name the table as namespace.table")
    return [check_part(p, what="table name part") for p in parts]


def branch_part(branch: str) -> str:
    """Iceberg's identifier part for a branch: ``cutover-shadow`` -> ``branch_cutover-shadow``."""
    return BRANCH_PREFIX + check_part(branch, what="branch name")


def table_name(catalog: str, table: str, *, branch: str | None = None, metadata: str | None = None) -> str:
    """```cat`.`ns`.`tbl```, plus ```branch_<b>``` (not for main) or a metadata table part."""
    parts = [check_part(catalog, what="catalog name"), *split_table(table)]
    if branch is not None and branch != MAIN:
        parts.append(branch_part(branch))
    if metadata is not None:
        if metadata not in ("snapshots", "refs", "history", "files", "manifests", "entries"):
            raise UnsafeIdentifier(f"metadata table {metadata!r} is not one cutover reads")
        parts.append(metadata)
    return ".".join(f"`{p}`" for p in parts)


def namespace_name(catalog: str, table: str) -> str:
    parts = [check_part(catalog, what="catalog name"), *split_table(table)[:-1]]
    return ".".join(f"`{p}`" for p in parts)


def writer_target(catalog: str, table: str, branch: str = MAIN) -> str:
    """The identifier for ``df.writeTo(...)``: the table for main, ``tbl.`branch_<b>``` otherwise."""
    return table_name(catalog, table, branch=branch)


def write_options(properties: Mapping[str, str]) -> dict[str, str]:
    """Snapshot summary properties as Iceberg write options ``snapshot-property.<key>``."""
    out = {}
    for key, value in properties.items():
        if not isinstance(key, str) or not _PROP_KEY.match(key):
            raise UnsafeIdentifier(f"snapshot property key {key!r} is not allowed")
        out[SNAPSHOT_PROPERTY_PREFIX + key] = str(value)
    return out


BATCH_WRITE_OPTIONS = {
    # keep the writer from re-distributing the rows: the batch DataFrame is already
    # repartitioned so that each source file is one task (one data file)
    "distribution-mode": "none",
    # a partitioned table: one open file per table partition in a task, rows in any order
    "fanout-enabled": "true",
}


def batch_write_options(properties: Mapping[str, str]) -> dict[str, str]:
    """The Iceberg write options of a batch: its snapshot properties plus :data:`BATCH_WRITE_OPTIONS`."""
    return {**write_options(properties), **BATCH_WRITE_OPTIONS}


def snapshot_id_literal(snapshot_id: Any) -> str:
    if isinstance(snapshot_id, bool) or not isinstance(snapshot_id, int):
        raise UnsafeIdentifier(f"snapshot id {snapshot_id!r} is not an integer")
    return str(snapshot_id)


def string_literal(value: str) -> str:
    """A Spark SQL string literal (only where a parameter cannot go, e.g. LOCATION)."""
    if _CONTROL.search(value):
        raise UnsafeIdentifier(f"{value!r} holds control characters")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- DDL -------------------------------------------------------------------------------------

def column_type(dtype: Any) -> str:
    """Spark DDL for a type given as ``DataType.jsonValue()`` (``"long"``, ``{"type": "struct", ...}``)."""
    if isinstance(dtype, str):
        if dtype in _ATOMIC:
            return _ATOMIC[dtype]
        m = _DECIMAL.match(dtype)
        if m:
            return f"DECIMAL({int(m.group(1))},{int(m.group(2))})"
        m = _CHAR.match(dtype)
        if m:
            return f"{m.group(1).upper()}({int(m.group(2))})"
        raise UnsafeIdentifier(f"column type {dtype!r} is not supported")
    if isinstance(dtype, Mapping):
        kind = dtype.get("type")
        if kind == "struct":
            fields = [f"{quote_column(f['name'])}: {column_type(f['type'])}" for f in dtype.get("fields", [])]
            if not fields:
                raise UnsafeIdentifier("an empty struct column is not supported")
            return f"STRUCT<{', '.join(fields)}>"
        if kind == "array":
            return f"ARRAY<{column_type(dtype['elementType'])}>"
        if kind == "map":
            return f"MAP<{column_type(dtype['keyType'])}, {column_type(dtype['valueType'])}>"
    raise UnsafeIdentifier(f"column type {dtype!r} is not supported")


def create_namespace(catalog: str, table: str) -> Statement:
    return Statement(f"CREATE NAMESPACE IF NOT EXISTS {namespace_name(catalog, table)}")


def create_table(catalog: str, table: str, schema: Mapping[str, Any], *, provider: str = "iceberg",
                 location: str | None = None) -> Statement:
    """``CREATE TABLE IF NOT EXISTS`` from a ``StructType.jsonValue()``; columns nullable, as the arrow engine."""
    if provider not in ("iceberg", "parquet"):
        raise UnsafeIdentifier(f"table provider {provider!r} is not supported")
    cols = [f"{quote_column(f['name'])} {column_type(f['type'])}" for f in schema.get("fields", [])]
    if not cols:
        raise UnsafeIdentifier("a table needs at least one column")
    text = f"CREATE TABLE IF NOT EXISTS {table_name(catalog, table)} ({', '.join(cols)}) USING {provider}"
    if location is not None:
        text += f" LOCATION {string_literal(location)}"
    return Statement(text)


def create_branch(catalog: str, table: str, branch: str, snapshot_id: int) -> Statement:
    """Fork ``branch`` at ``snapshot_id`` (a no-op when it exists)."""
    return Statement(f"ALTER TABLE {table_name(catalog, table)} CREATE BRANCH IF NOT EXISTS "
                     f"{quote(branch, what='branch name')} AS OF VERSION {snapshot_id_literal(snapshot_id)}")


# -- writes ----------------------------------------------------------------------------------

def insert_by_name(catalog: str, table: str, view: str, *, branch: str = MAIN) -> Statement:
    """``INSERT INTO <table or branch> BY NAME SELECT * FROM <temp view>``.

    The SQL form of an append (no snapshot properties: SQL has no place for them;
    the engine uses ``df.writeTo(writer_target(...)).options(**write_options(...))``
    for Iceberg and this for the local catalog).
    """
    return Statement(f"INSERT INTO {table_name(catalog, table, branch=branch)} BY NAME SELECT * FROM {view_name(view)}")


# -- reads: metadata tables ----------------------------------------------------------------

def select_snapshots(catalog: str, table: str) -> Statement:
    """All snapshots with their summary maps (every branch; ancestry is walked in Python)."""
    return Statement(f"SELECT {', '.join(SNAPSHOT_COLUMNS)} FROM {table_name(catalog, table, metadata='snapshots')}")


def select_file_snapshots(catalog: str, table: str, *, file: str, run_id: str | None = None,
                          mode: str | None = None) -> Statement:
    """Snapshots whose summary says they hold ``file`` (optionally of one run / mode), newest first."""
    where = ["summary['cutover.file'] = :file"]
    args: dict[str, Any] = {"file": file}
    if run_id is not None:
        where.append("summary['cutover.run-id'] = :run_id")
        args["run_id"] = run_id
    if mode is not None:
        where.append("summary['cutover.mode'] = :mode")
        args["mode"] = mode
    return Statement(f"SELECT {', '.join(SNAPSHOT_COLUMNS)} FROM {table_name(catalog, table, metadata='snapshots')} "
                     f"WHERE {' AND '.join(where)} ORDER BY committed_at DESC", args)


def select_batch_snapshots(catalog: str, table: str, batch_ids: Iterable[str]) -> Statement:
    """Snapshots whose summary carries one of ``batch_ids`` (``cutover.batch``): a flat filter, no ancestry."""
    ids = sorted(set(batch_ids))
    if not ids:
        raise UnsafeIdentifier("no batch ids")
    names = [f"b{i}" for i in range(len(ids))]
    return Statement(f"SELECT snapshot_id, summary['cutover.batch'] AS batch_id "
                     f"FROM {table_name(catalog, table, metadata='snapshots')} "
                     f"WHERE summary['cutover.batch'] IN ({', '.join(':' + n for n in names)})", dict(zip(names, ids)))


def select_added_files(catalog: str, table: str, snapshot_id: int) -> Statement:
    """The data files ``snapshot_id`` added (its ``entries`` with status ADDED), with their record counts."""
    sid = snapshot_id_literal(snapshot_id)
    return Statement(f"SELECT data_file.file_path AS file_path, data_file.record_count AS record_count "
                     f"FROM {table_name(catalog, table, metadata='entries')} VERSION AS OF {sid} "
                     f"WHERE snapshot_id = {sid} AND status = 1 AND data_file.content = 0")


def select_current_files(catalog: str, table: str, branch: str = MAIN) -> Statement:
    """Every data file in the current state of ``branch`` (the ``files`` metadata table of its head):
    what snapshot expiry never removes."""
    text = f"SELECT file_path, record_count FROM {table_name(catalog, table, metadata='files')}"
    if branch != MAIN:
        text += f" VERSION AS OF {string_literal(check_part(branch, what='branch name'))}"
    return Statement(text + " WHERE content = 0")


def select_partition_of_keys(keys: Iterable[int], n: int) -> Statement:
    """Spark's own answer for :func:`cutover.core.spark.metadata.partition_of` (``pmod(hash(key), n)``),
    to check the pure implementation against the cluster once per session."""
    ks = [snapshot_id_literal(int(k)) for k in keys]
    if not ks or isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UnsafeIdentifier("keys and a positive partition count are required")
    rows = ", ".join(f"({k})" for k in ks)
    return Statement(f"SELECT k, pmod(hash(CAST(k AS INT)), {n}) AS p FROM VALUES {rows} AS t(k)")


def select_refs(catalog: str, table: str) -> Statement:
    """Branches and tags with their head snapshot."""
    return Statement(f"SELECT {', '.join(REF_COLUMNS)} FROM {table_name(catalog, table, metadata='refs')}")


# -- reads: data -------------------------------------------------------------------------------

def relation(catalog: str, table: str, *, snapshot_id: int | None = None, branch: str | None = None) -> str:
    """A table as a FROM item: at a snapshot (``VERSION AS OF id``), a branch head, or current."""
    if snapshot_id is not None:
        return f"{table_name(catalog, table)} VERSION AS OF {snapshot_id_literal(snapshot_id)}"
    return table_name(catalog, table, branch=branch)


def select_all(catalog: str, table: str, *, snapshot_id: int | None = None, branch: str | None = None,
               limit: int | None = None) -> Statement:
    text = f"SELECT * FROM {relation(catalog, table, snapshot_id=snapshot_id, branch=branch)}"
    if limit:
        text += f" LIMIT {int(limit)}"
    return Statement(text)


def count_rows(catalog: str, table: str, *, snapshot_id: int | None = None, branch: str | None = None) -> Statement:
    """A scan count (``count(*)``): only where metadata has no count (the local catalog), or when asked."""
    return Statement(f"SELECT count(*) AS n FROM {relation(catalog, table, snapshot_id=snapshot_id, branch=branch)}")


# -- quality as SQL aggregates (the same expectations as the Great Expectations suite) ---------

def quality_counts(source_view: str, keys: Iterable[str]) -> Statement:
    """Row count and, per key column, its null count: one pass."""
    cols = ["count(*) AS `rows`"]
    for i, k in enumerate(keys):
        cols.append(f"count_if({quote_column(k)} IS NULL) AS `nulls_{i}`")
    return Statement(f"SELECT {', '.join(cols)} FROM {view_name(source_view)}")


def quality_duplicates(source_view: str, keys: Iterable[str]) -> Statement:
    """Rows whose key (one column or a compound key) occurs more than once, as Great Expectations counts them.

    Rows whose key columns are all null are ignored (GE's default for both
    ``expect_column_values_to_be_unique`` and ``expect_compound_columns_to_be_unique``).
    """
    keys = list(keys)
    if not keys:
        raise UnsafeIdentifier("no key columns")
    q = [quote_column(k) for k in keys]
    not_all_null = " OR ".join(f"{c} IS NOT NULL" for c in q)
    return Statement(f"SELECT coalesce(sum(n), 0) AS duplicates FROM (SELECT count(*) AS n FROM {view_name(source_view)} "
                     f"WHERE {not_all_null} GROUP BY {', '.join(q)} HAVING count(*) > 1) d")
