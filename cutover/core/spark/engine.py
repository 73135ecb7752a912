"""The Spark engine: read files and write them to their table through Spark Connect, a batch at a time.

When ``[ingest] engine = "spark"`` the ingestion service runs the same batches as the
arrow engine (``cutover.core.autoloader.spark_batching``) and delegates three steps to a
:class:`SparkProcessor`: read + count + fit one file (:meth:`SparkProcessor.prepare`: a bad
file fails alone, before anything is written), write a batch of prepared files as ONE
Spark write (:meth:`SparkProcessor.write_batch`: one Iceberg commit, one data file per
source file) and the "already committed?" recovery lookup (:meth:`SparkProcessor.committed`,
from the table's current data files). Claims, the ledger, run records and heartbeats
stay in the service.

Two targets, chosen by ``[ingest] spark_catalog``:

* an **Iceberg catalog configured on the Spark cluster** (any name but
  ``spark_catalog``; default ``cutover``), the real deployment. A batch is
  ``df.writeTo("cat.ns.tbl[.`branch_cutover-shadow`]").options(snapshot-property.cutover.*=...,
  distribution-mode=none).append()``: one snapshot whose summary carries the batch id
  (``cutover.batch``); each file's data files are read back from the new snapshot's
  ``entries`` metadata table, and recovery matches the ledger's recorded data files
  against the branch's current ``files`` metadata table (what snapshot expiry keeps).
* ``spark_catalog`` — **local catalog mode**: plain Parquet tables in Spark's
  built-in session catalog (used by the tests, where no Iceberg runtime jar is
  available). The same one write per batch, but no snapshots: snapshot ids are
  ``None``, the data files are the table's new files, records are the rows counted in
  each file, there are no branches (shadow runs fail the file with a reason), and the
  recovery check cannot prove an earlier commit — a run killed between the write and the
  ledger update leaves the batch's rows in the table and the next claimer writes them
  again. Use it for trials, never to migrate production ingestions.

The Spark session is created lazily, once per process, by :func:`get_session`
(``SparkSession.builder.remote(spark_remote).getOrCreate()``); this module
imports pyspark only inside functions, so nothing here slows the CLI down.

Files are read by the Spark cluster, not by this process: the ingestion's
source must be reachable from it (``s3://`` is read as ``s3a://``, a local path
as ``file://`` — for a remote cluster only if the path is shared). The
ingestion's fsspec credentials are not sent to Spark; the cluster's own
configuration grants access.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cutover.core.errors import InputError
from cutover.core.extras import require, require_installed
from cutover.core.redact import redact_text
from cutover.core.spark import LOCAL_CATALOG, is_local_catalog, is_local_remote, redact_remote
from cutover.core.spark import metadata as M
from cutover.core.spark import sql as S
from cutover.core.autoloader.formats import BadFile
from cutover.core.icebatch import P_BATCH
from cutover.core.iceberg import MAIN, SnapshotInfo

log = logging.getLogger("cutover.core.spark")

_sessions: dict[str, Any] = {}
_session_lock = threading.Lock()
_hash_checked: set[str] = set()  # remotes whose hash partitioning matched metadata.partition_of
_KEY = "__cutover_source_file"  # the batch DataFrame's partitioning column (dropped before the write)

# Spark error classes that mean "this file cannot be ingested" (-> FAILED with the reason).
# Anything else (server unreachable, executor lost, ...) is not the file's fault: it
# propagates, the service gives the claim back and a later run retries the file.
_FILE_ERRORS = (
    "MALFORMED_RECORD_IN_PARSING", "FAILED_READ_FILE", "PATH_NOT_FOUND", "UNABLE_TO_INFER_SCHEMA",
    "CANNOT_PARSE", "CAST_INVALID_INPUT", "INVALID_JSON", "CANNOT_READ", "EMPTY_JSON",
    "MALFORMED_CSV_RECORD", "ROW_VALUE_IS_NULL", "NOT_NULL_ASSERT_VIOLATION", "DUPLICATE_COLUMN",
    "COLUMN_ALREADY_EXISTS", "INVALID_FORMAT", "CONVERSION_INVALID_INPUT",
)


def local_conf(warehouse_dir: str | None) -> dict[str, str]:
    """Static configuration of a Spark Connect server started in this process (``spark_remote = "local[N]"``)."""
    conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    if warehouse_dir:
        conf["spark.sql.warehouse.dir"] = warehouse_dir
    return conf


def get_session(remote: str, *, warehouse_dir: str | None = None):
    """The process's Spark Connect session for ``remote``; created on first use.

    ``local`` / ``local[N]`` starts a Spark Connect server inside this process
    (pyspark's ``builder.remote("local[N]")``; ~5-15 s) or reuses the one already
    started (tests start one per session).
    """
    with _session_lock:
        s = _sessions.get(remote)
        if s is not None and not s.is_stopped:
            return s
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        t0 = time.monotonic()
        SparkSession = require("pyspark.sql", what="the Spark engine").SparkSession

        builder = SparkSession.builder.remote(remote)
        if is_local_remote(remote):
            for k, v in local_conf(warehouse_dir).items():
                builder = builder.config(k, v)
        with warnings.catch_warnings():
            # a reused local server refuses static confs with a warning: harmless
            warnings.simplefilter("ignore")
            try:
                s = builder.getOrCreate()
            except Exception as e:  # noqa: BLE001 - reported as an input error naming the setting
                raise InputError(f"cannot reach Spark Connect at {redact_remote(remote)} "
                                 f"({redact_text(str(e)).splitlines()[0] if str(e) else type(e).__name__})",
                                 fix="check [ingest] spark_remote / CUTOVER_INGEST_SPARK_REMOTE") from None
        log.info("Spark Connect session on %s ready in %.1f s", redact_remote(remote), time.monotonic() - t0)
        _sessions[remote] = s
        return s


def error_class(e: BaseException) -> str:
    for getter in ("getCondition", "getErrorClass"):
        fn = getattr(e, getter, None)
        if fn is not None:
            try:
                v = fn()
            except Exception:  # noqa: BLE001
                v = None
            if v:
                return str(v)
    return ""


def is_file_error(e: BaseException) -> bool:
    """Did Spark fail because of the file's content (not the cluster)?"""
    cls = error_class(e)
    if cls:
        return cls.startswith(_FILE_ERRORS)
    text = str(e)
    return any(c in text for c in _FILE_ERRORS)


_SQLSTATE = re.compile(r"\s*SQLSTATE: \w+\.?")


def reason(e: BaseException) -> str:
    """One line for the ledger: Spark's message plus its deepest error-class cause
    (``FAILED_READ_FILE`` alone does not say what is wrong with the file)."""
    lines = str(e).strip().splitlines()
    first = _SQLSTATE.sub("", lines[0] if lines else type(e).__name__).strip()
    causes = ["[" + ln.split(": [", 1)[1] for ln in lines if ln.startswith("Caused by: ") and ": [" in ln]
    if causes:
        deepest = _SQLSTATE.sub("", causes[-1]).strip()
        if deepest not in first:
            first = f"{first} Cause: {deepest}"
    return redact_text(first)[:500]


def spark_path(path: str) -> str:
    """The URI the Spark cluster reads a discovered file from."""
    if "://" not in path:
        return Path(path).resolve().as_uri()
    scheme, rest = path.split("://", 1)
    if scheme in ("s3", "s3n"):
        return f"s3a://{rest}"
    if scheme in ("memory", "http", "https", "ftp", "sftp"):
        raise InputError(f"files on {scheme}:// cannot be read by Spark", fix="use a shared file system or an object store")
    return path


# -- schema fitting (the Spark side of cutover.core.autoloader.formats.fit_to_table) ------------------------------

_INTS = ["byte", "short", "integer", "long"]


def widens(src: Any, dst: Any) -> bool:
    """Lossless widening between Spark types given as ``jsonValue()``; the arrow engine's rules."""
    if src == dst or src == "void":
        return True
    if src in _INTS and dst in _INTS:
        return _INTS.index(src) <= _INTS.index(dst)
    if src in _INTS and dst == "double":
        return True
    if src == "float" and dst == "double":
        return True
    if isinstance(src, str) and isinstance(dst, str) and src.startswith("decimal(") and dst.startswith("decimal("):
        ps, ss = (int(x) for x in src[8:-1].split(","))
        pd, sd = (int(x) for x in dst[8:-1].split(","))
        return ss == sd and ps <= pd
    return False


def _type_text(t: Any) -> str:
    return t if isinstance(t, str) else t.get("type", str(t))


def fit_plan(file_schema: dict, table_schema: dict, *, table_name: str,
             null_counts: dict[str, int] | None = None) -> list[tuple[str, str, Any]]:
    """How to turn the file's columns into the table's, or BadFile naming the mismatch.

    Returns, in table order, ``(column, "keep" | "cast" | "null", table type json)``.
    Pure (schemas as ``StructType.jsonValue()``), so it is unit-tested without Spark.
    """
    null_counts = null_counts or {}
    file_cols = {f["name"]: f for f in file_schema.get("fields", [])}
    target = table_schema.get("fields", [])
    names = {f["name"] for f in target}
    extra = [n for n in file_cols if n not in names]
    if extra:
        raise BadFile(f"schema does not fit table {table_name}: column(s) {', '.join(extra)} not in the table")
    plan = []
    for tf in target:
        name, ttype = tf["name"], tf["type"]
        if name not in file_cols:
            if not tf.get("nullable", True):
                raise BadFile(f"schema does not fit table {table_name}: required column {name!r} is missing")
            plan.append((name, "null", ttype))
            continue
        stype = file_cols[name]["type"]
        if stype != ttype and not widens(stype, ttype):
            raise BadFile(f"schema does not fit table {table_name}: column {name!r} is {_type_text(stype)} in the file, "
                          f"{_type_text(ttype)} in the table")
        if not tf.get("nullable", True) and null_counts.get(name):
            raise BadFile(f"column {name!r} has {null_counts[name]} null(s) but is required in {table_name}")
        plan.append((name, "keep" if stype == ttype else "cast", ttype))
    return plan


@dataclass
class Prepared:
    """A file read and fitted to its table, not yet written."""

    df: Any
    records: int


class SparkProcessor:
    """Read + append through Spark Connect for the ingestion service (see the module doc)."""

    def __init__(self, remote: str, catalog: str = "cutover", *, warehouse_dir: str | None = None):
        self.remote = remote
        self.catalog = catalog
        self.warehouse_dir = warehouse_dir

    @classmethod
    def from_settings(cls, settings) -> "SparkProcessor":
        require_installed("pyspark", what='the Spark engine ([ingest] engine = "spark")')
        wh = None
        if is_local_remote(settings.spark_remote):
            wh = (settings.home / "spark-warehouse").resolve().as_uri()
        return cls(settings.spark_remote, settings.spark_catalog, warehouse_dir=wh)

    @property
    def spark(self):
        return get_session(self.remote, warehouse_dir=self.warehouse_dir)

    @property
    def iceberg(self) -> bool:
        """True for an Iceberg catalog; False in local catalog mode (``spark_catalog``)."""
        return not is_local_catalog(self.catalog)

    def describe(self) -> str:
        mode = "Iceberg catalog" if self.iceberg else "local catalog mode, no snapshots"
        return f"Spark Connect {redact_remote(self.remote)}, catalog {self.catalog} ({mode})"

    # -- metadata ------------------------------------------------------------------------------
    def _missing(self, e: BaseException) -> bool:
        return error_class(e).startswith(("TABLE_OR_VIEW_NOT_FOUND", "NO_SUCH_TABLE")) or "TABLE_OR_VIEW_NOT_FOUND" in str(e)

    def table_schema(self, table: str) -> dict | None:
        """The table's schema as ``StructType.jsonValue()``, or None when it does not exist."""
        try:
            return self.spark.table(S.table_name(self.catalog, table)).schema.jsonValue()
        except Exception as e:  # noqa: BLE001 - a missing table is an answer, anything else is not
            if self._missing(e):
                return None
            raise

    def iceberg_table(self, table: str) -> M.SparkIcebergTable | None:
        """Snapshots and refs from the Iceberg metadata tables, or None when the table does not exist."""
        if not self.iceberg:
            return None
        try:
            snaps = S.select_snapshots(self.catalog, table).run(self.spark).collect()
            refs = S.select_refs(self.catalog, table).run(self.spark).collect()
        except Exception as e:  # noqa: BLE001
            if self._missing(e):
                return None
            raise
        return M.table_from_rows(table, snaps, refs)

    def find_file_snapshot(self, identifier: str, *, branch: str, path: str, mode: str,
                           ingestion_id: str) -> SnapshotInfo | None:
        """The commit of ``path`` on ``branch`` by this ingestion and mode, if any (same signature as
        ``cutover.core.iceberg.Catalog.find_file_snapshot``). Always None in local catalog mode."""
        if not self.iceberg:
            return None
        return M.find_file_snapshot(self.iceberg_table(identifier), branch=branch, path=path, mode=mode,
                                    ingestion_id=ingestion_id)

    def count(self, table: str, *, branch: str | None = None) -> int | None:
        """Rows in the table: ``total-records`` of the branch head (Iceberg), a scan count (local catalog)."""
        if self.iceberg:
            tbl = self.iceberg_table(table)
            if tbl is None:
                return None
            ref = tbl.metadata.refs.get(branch or MAIN)
            if ref is None:
                return 0
            snap = tbl.metadata.snapshot_by_id(ref.snapshot_id)
            return int(snap.summary.get("total-records", 0)) if snap else None
        if self.table_schema(table) is None:
            return None
        return int(S.count_rows(self.catalog, table).run(self.spark).collect()[0]["n"])

    def create_branch(self, table: str, branch: str, snapshot_id: int) -> None:
        if not self.iceberg:
            raise InputError("the local Spark catalog has no branches", fix="set [ingest] spark_catalog to an Iceberg catalog")
        S.create_branch(self.catalog, table, branch, snapshot_id).run(self.spark).collect()

    # -- the two steps the service delegates ------------------------------------------------------
    def read(self, ing, path: str, schema=None):
        """A DataFrame over one file (lazy; parse errors surface on the first action). ``schema``: the
        file's own schema, inferred once, so that later plans over it do not infer it again."""
        reader = self.spark.read.option("mode", "FAILFAST")
        if schema is not None:
            reader = reader.schema(schema)
        uri = spark_path(path)
        opts = ing.options or {}
        if ing.format == "csv":
            return (reader.option("header", True).option("inferSchema", schema is None)
                    .option("sep", opts.get("delimiter", ",")).option("encoding", opts.get("encoding", "utf-8"))
                    .csv(uri))
        if ing.format in ("jsonl", "json"):
            return reader.json(uri)
        if ing.format == "parquet":
            return reader.parquet(uri)
        raise BadFile(f"unsupported format {ing.format!r}")

    def prepare(self, ing, f, *, mode: str, branch: str) -> Prepared:
        """Read ``f``, count its rows and fit it to the table (creating the table on a live first file).

        Raises BadFile (reason for the ledger) for a file that cannot be ingested.
        """
        df, fields = self._inspect(ing, f)
        return self._finish(ing, df, fields, *self._stats(ing, df, fields), mode=mode, branch=branch, ctx={})

    def prepare_many(self, ing, files, *, mode: str, branch: str) -> list:
        """:meth:`prepare` for several files, the row/null counts of all of them in ONE Spark job (a union
        of the per-file aggregates); if that job fails for a file's content, each file is counted
        alone so only the bad one fails. Returns, per file, a Prepared or the BadFile to record."""
        from pyspark.sql import functions as F

        out: list = [None] * len(files)
        inspected = []
        for i, f in enumerate(files):
            try:
                df, fields = self._inspect(ing, f)
            except BadFile as e:
                out[i] = e
                continue
            inspected.append((i, df, fields))
        stats: dict[int, tuple[int, dict[str, int]]] = {}
        if len(inspected) > 1:
            parts = [df.agg(F.lit(i).alias("__i"), F.count(F.lit(1)).alias("__rows"),
                            F.array(*[F.count_if(F.col(S.quote_column(c.name)).isNull()) for c in fields])
                            .alias("__nulls")) for i, df, fields in inspected]
            while len(parts) > 1:
                parts = [parts[j].union(parts[j + 1]) if j + 1 < len(parts) else parts[j]
                         for j in range(0, len(parts), 2)]
            names = {i: [c.name for c in fields] for i, _, fields in inspected}
            try:
                for r in parts[0].collect():
                    i = int(r["__i"])
                    stats[i] = (int(r["__rows"]), {n: int(v) for n, v in zip(names[i], r["__nulls"])})
            except Exception as e:  # noqa: BLE001 - a bad file: count file by file to isolate it
                if not is_file_error(e):
                    raise
                stats = {}
        ctx: dict = {}
        for i, df, fields in inspected:
            try:
                got = stats[i] if i in stats else self._stats(ing, df, fields)
                out[i] = self._finish(ing, df, fields, *got, mode=mode, branch=branch, ctx=ctx)
            except BadFile as e:
                out[i] = e
        return out

    def _inspect(self, ing, f):
        """The file as a DataFrame and its fields (schema inference runs here), or BadFile."""
        if f.size == 0:
            raise BadFile("empty file: 0 bytes")
        try:
            schema = self.read(ing, f.path).schema  # inference (CSV, JSON): one pass over the file
            # the same file with that schema spelled out: the count, the fit and the batch write
            # (Spark Connect sends unresolved plans) would otherwise each infer it again
            df = self.read(ing, f.path, schema) if ing.format != "parquet" else self.read(ing, f.path)
            fields = schema.fields
        except Exception as e:  # noqa: BLE001 - classified: the file's fault or not
            if is_file_error(e):
                raise BadFile(f"cannot parse as {ing.format}: {reason(e)}") from None
            raise
        if not fields:
            raise BadFile("empty file: no columns")
        return df, fields

    def _stats(self, ing, df, fields) -> tuple[int, dict[str, int]]:
        """One pass over the file: row count and nulls per column; touching every column makes the
        CSV/JSON parser parse every field, so malformed rows fail here (FAILFAST)."""
        from pyspark.sql import functions as F

        try:
            aggs = [F.count(F.lit(1)).alias("__rows")]
            aggs += [F.count_if(F.col(S.quote_column(c.name)).isNull()).alias(f"__n{i}") for i, c in enumerate(fields)]
            stats = df.agg(*aggs).collect()[0]
        except Exception as e:  # noqa: BLE001 - classified: the file's fault or not
            if is_file_error(e):
                raise BadFile(f"cannot parse as {ing.format}: {reason(e)}") from None
            raise
        return int(stats["__rows"]), {c.name: int(stats[f"__n{i}"]) for i, c in enumerate(fields)}

    def _finish(self, ing, df, fields, records: int, null_counts: dict[str, int], *, mode: str, branch: str,
                ctx: dict) -> Prepared:
        """Fit a counted file to the table; ``ctx`` caches the table schema and branch check per batch."""
        if records == 0:
            raise BadFile("empty file: no rows")
        file_schema = {"type": "struct", "fields": [f.jsonValue() for f in fields]}
        table_schema = ctx.get("schema") or self.table_schema(ing.table)
        if table_schema is None:
            if mode != "live":
                raise BadFile(f"table {ing.table} does not exist yet; shadow runs never create it")
            self._create_table(ing.table, file_schema)
            table_schema = self.table_schema(ing.table)
        ctx["schema"] = table_schema
        if branch != MAIN and not ctx.get("branch"):
            if not self.iceberg:
                raise BadFile(f"branch {branch} of {ing.table} cannot exist: the local Spark catalog "
                              f"({LOCAL_CATALOG}) has no branches; shadow runs need an Iceberg catalog")
            refs = {str(r["name"]) for r in S.select_refs(self.catalog, ing.table).run(self.spark).collect()}
            if branch not in refs:
                raise BadFile(f"branch {branch} of {ing.table} does not exist; start the shadow first")
            ctx["branch"] = True
        plan = fit_plan(file_schema, table_schema, table_name=ing.table, null_counts=null_counts)
        return Prepared(self._apply(df, plan), records)

    def _apply(self, df, plan):
        from pyspark.sql import functions as F
        from pyspark.sql.types import _parse_datatype_json_value

        cols = []
        for name, how, ttype in plan:
            dtype = _parse_datatype_json_value(ttype)
            if how == "null":
                cols.append(F.lit(None).cast(dtype).alias(name))
            elif how == "cast":
                cols.append(F.col(S.quote_column(name)).cast(dtype).alias(name))
            else:
                cols.append(F.col(S.quote_column(name)))
        return df.select(*cols)

    def _create_table(self, table: str, schema: dict) -> None:
        S.create_namespace(self.catalog, table).run(self.spark).collect()
        location = None
        if not self.iceberg:
            # an explicit location: the built-in catalog is in memory for a local server, and a
            # table re-registered in the next process must find the files of the previous one
            wh = self.spark.conf.get("spark.sql.warehouse.dir")
            parts = S.split_table(table)
            location = f"{wh.rstrip('/')}/{'/'.join(p + '.db' for p in parts[:-1])}/{parts[-1]}"
        S.create_table(self.catalog, table, schema, provider="iceberg" if self.iceberg else "parquet",
                       location=location).run(self.spark).collect()
        log.info("created table %s.%s", self.catalog, table)

    # -- batches: one write (one Iceberg commit) per batch of files -------------------------------
    def check_partitioning(self) -> None:
        """Once per session: Spark's ``pmod(hash(k), n)`` equals :func:`metadata.partition_of`, which
        :meth:`write_batch` relies on to put each source file in its own partition."""
        if self.remote in _hash_checked:
            return
        n = 7
        rows = S.select_partition_of_keys(range(64), n).run(self.spark).collect()
        bad = [int(r["k"]) for r in rows if M.partition_of(int(r["k"]), n) != int(r["p"])]
        if len(rows) != 64 or bad:
            raise RuntimeError("this Spark cluster's hash partitioning is not Murmur3 (seed 42); batch writes "
                               "cannot keep one data file per source file")
        _hash_checked.add(self.remote)

    def write_batch(self, ing, prepared: list[Prepared], *, branch: str,
                    properties: dict[str, str]) -> tuple[list[tuple[int, list[str]]], int | None]:
        """Write the prepared files as ONE write (one Iceberg commit carrying ``properties``, which
        hold the batch id), file i alone in Spark partition i, so each data file holds one source
        file's rows. Returns, per prepared file, (records, its data file paths), and the snapshot
        id (None in local catalog mode)."""
        from pyspark.sql import functions as F

        n = len(prepared)
        self.check_partitioning()
        keys = M.partition_keys(n)
        parts = [p.df.withColumn(_KEY, F.lit(k).cast("int")) for p, k in zip(prepared, keys)]
        while len(parts) > 1:  # a balanced union: the plan stays log2(n) deep
            parts = [parts[i].union(parts[i + 1]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
        df = parts[0].repartition(n, F.col(_KEY)).drop(_KEY)
        if self.iceberg:
            batch_id = properties[P_BATCH]
            df.writeTo(S.writer_target(self.catalog, ing.table, branch)).options(
                **S.batch_write_options(properties)).append()
            rows = S.select_batch_snapshots(self.catalog, ing.table, [batch_id]).run(self.spark).collect()
            if not rows:
                raise RuntimeError(f"wrote batch {batch_id} to {ing.table}@{branch} but no snapshot carries it")
            snapshot_id = int(rows[0]["snapshot_id"])
            files = M.files_by_partition(
                S.select_added_files(self.catalog, ing.table, snapshot_id).run(self.spark).collect())
        else:
            name = S.table_name(self.catalog, ing.table)
            before = set(self.spark.table(name).inputFiles())
            df.write.insertInto(name)
            new = [f for f in self.spark.table(name).inputFiles() if f not in before]
            if len({M.write_id(f) for f in new}) > 1:
                # another write to the same table finished meanwhile: its files cannot be told from
                # ours by name, so none are recorded (the rows are right; the ledger has no paths)
                log.warning("batch write to %s: files of %d writes appeared; data files not recorded",
                            ing.table, len({M.write_id(f) for f in new}))
                new = []
            files = M.files_by_partition({"file_path": f} for f in new)
            snapshot_id = None
        out = []
        for i, p in enumerate(prepared):
            written = files.get(i, [])
            counts = [c for _, c in written if c is not None]
            records = sum(counts) if written and len(counts) == len(written) else p.records
            if not written or records != p.records:
                log.warning("batch write to %s: partition %d holds %d data file(s), %d records, for a file of %d "
                            "records", ing.table, i, len(written), records, p.records)
            out.append((records, [f for f, _ in written]))
        return out, snapshot_id

    def committed(self, table: str, branch: str, entries, *, mode: str, ingestion_id: str) -> dict:
        """Recovery: which of these ledger entries / taken-over claims (``path``, ``batch_id``,
        ``data_files``) are already in ``branch``, judged from the table's CURRENT state (see
        :func:`metadata.batch_outcome`): path -> (records, snapshot id or None, batch id, data
        files), or BadFile when the batch committed but its data files left the branch. Entries
        from before batch writes (no batch id) are looked up as per-file snapshots. Local catalog
        mode: always empty (no commit can be proven)."""
        if not self.iceberg:
            return {}
        entries = list(entries)
        staged = [M.StagedEntry(e.path, e.batch_id, tuple(e.data_files)) for e in entries
                  if e.batch_id and e.data_files]
        old = [e.path for e in entries if not e.batch_id]
        out: dict = {}
        if not staged and not old:
            return out
        try:
            refs = {str(r["name"]) for r in S.select_refs(self.catalog, table).run(self.spark).collect()}
        except Exception as e:  # noqa: BLE001
            if self._missing(e):
                return out
            raise
        if branch not in refs:
            return out
        if staged:
            current = {str(r["file_path"]): int(r["record_count"])
                       for r in S.select_current_files(self.catalog, table, branch).run(self.spark).collect()}
            snaps = {str(r["batch_id"]): int(r["snapshot_id"]) for r in S.select_batch_snapshots(
                self.catalog, table, {e.batch_id for e in staged}).run(self.spark).collect()}
            need = {e.batch_id for e in staged if M.staged_partition(e.data_files) is not None}
            batch_files = {b: M.files_by_partition(S.select_added_files(self.catalog, table, sid).run(self.spark)
                                                   .collect()) for b, sid in snaps.items() if b in need}
            by_path = {e.path: e for e in staged}
            for path, v in M.batch_outcome(staged, current_files=current, batch_files=batch_files).items():
                if isinstance(v, M.Evidence):
                    out[path] = BadFile(str(v))
                else:
                    bid = by_path[path].batch_id
                    out[path] = (v[0], snaps.get(bid), bid, v[1])
        for path in old:
            snap = self.find_file_snapshot(table, branch=branch, path=path, mode=mode, ingestion_id=ingestion_id)
            if snap is not None:
                out[path] = (snap.added_records, snap.snapshot_id, None, None)
        return out
