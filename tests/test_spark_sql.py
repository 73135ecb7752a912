"""Spark engine without Spark: generated SQL, identifier safety, metadata views, schema fitting,
settings, and the service hook driven by fakes (the Iceberg target's statements as issued)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cutover.core.errors import InputError
from cutover.core.spark import redact_remote
from cutover.core.spark import sql as S
from cutover.core.spark.engine import Prepared, SparkProcessor, fit_plan, is_file_error, reason, spark_path, widens
from cutover.core.spark.metadata import find_file_snapshot, table_from_rows
from cutover.core.autoloader.formats import BadFile

# -- identifiers --------------------------------------------------------------------------------


def test_table_names_are_quoted_and_branches_are_identifier_parts():
    assert S.table_name("cutover", "raw.orders") == "`cutover`.`raw`.`orders`"
    assert S.table_name("cutover", "raw.orders", branch="main") == "`cutover`.`raw`.`orders`"
    assert S.table_name("cutover", "raw.orders", branch="cutover-shadow") == \
        "`cutover`.`raw`.`orders`.`branch_cutover-shadow`"
    assert S.table_name("cat", "a.b.t", metadata="snapshots") == "`cat`.`a`.`b`.`t`.`snapshots`"
    assert S.writer_target("cat", "raw.o", "cutover-shadow") == "`cat`.`raw`.`o`.`branch_cutover-shadow`"
    assert S.writer_target("cat", "raw.o") == "`cat`.`raw`.`o`"
    assert S.namespace_name("cat", "a.b.t") == "`cat`.`a`.`b`"


@pytest.mark.parametrize("bad", [
    "raw.orders`; DROP TABLE x; --", "raw.ord ers", "raw.orders;", "raw", "raw..x", "raw.o'x", "raw.\u00e9t\u00e9",
    "raw.o\nx", "raw.o/x", "",
])
def test_unsafe_table_names_are_refused(bad):
    with pytest.raises(S.UnsafeIdentifier):
        S.table_name("cutover", bad)


@pytest.mark.parametrize("catalog", ["cat`x", "cat.x", "c a t", "", "cat;"])
def test_unsafe_catalog_names_are_refused(catalog):
    with pytest.raises(S.UnsafeIdentifier):
        S.table_name(catalog, "raw.t")


@pytest.mark.parametrize("branch", ["shadow`", "a.b", "x y", "-", "b\tx"])
def test_unsafe_branch_names_are_refused(branch):
    with pytest.raises(S.UnsafeIdentifier):
        S.table_name("cat", "raw.t", branch=branch)


def test_unknown_metadata_table_is_refused():
    with pytest.raises(S.UnsafeIdentifier):
        S.table_name("cat", "raw.t", metadata="snapshots; DROP")


def test_column_quoting_doubles_backticks_and_refuses_control_characters():
    assert S.quote_column("order id") == "`order id`"
    assert S.quote_column("a`b") == "`a``b`"
    assert S.quote_column("amount ($)") == "`amount ($)`"
    for bad in ("a\nb", "", "x\x00"):
        with pytest.raises(S.UnsafeIdentifier):
            S.quote_column(bad)


def test_unsafe_identifier_is_an_input_error():
    assert issubclass(S.UnsafeIdentifier, InputError)


# -- writes, branches, DDL ----------------------------------------------------------------------


def test_snapshot_properties_become_iceberg_write_options():
    opts = S.write_options({"cutover.run-id": "r1", "cutover.file": "/data/a b'.csv"})
    assert opts == {"snapshot-property.cutover.run-id": "r1", "snapshot-property.cutover.file": "/data/a b'.csv"}
    with pytest.raises(S.UnsafeIdentifier):
        S.write_options({"bad key=": "x"})


def test_create_branch_as_of_version():
    st = S.create_branch("cutover", "raw.orders", "cutover-shadow", 8123456789012345678)
    assert st.text == ("ALTER TABLE `cutover`.`raw`.`orders` CREATE BRANCH IF NOT EXISTS `cutover-shadow` "
                       "AS OF VERSION 8123456789012345678")
    assert st.args == {}
    for bad in ("1; DROP TABLE x", True, 1.5, None):
        with pytest.raises(S.UnsafeIdentifier):
            S.create_branch("cutover", "raw.orders", "cutover-shadow", bad)


def test_insert_by_name_into_table_or_branch():
    assert S.insert_by_name("cat", "raw.t", "src_1").text == "INSERT INTO `cat`.`raw`.`t` BY NAME SELECT * FROM `src_1`"
    assert S.insert_by_name("cat", "raw.t", "v", branch="cutover-shadow").text == \
        "INSERT INTO `cat`.`raw`.`t`.`branch_cutover-shadow` BY NAME SELECT * FROM `v`"
    with pytest.raises(S.UnsafeIdentifier):
        S.insert_by_name("cat", "raw.t", "v; DROP")


def test_create_table_from_a_spark_schema():
    schema = {"type": "struct", "fields": [
        {"name": "id", "type": "long", "nullable": True, "metadata": {}},
        {"name": "order id", "type": "integer", "nullable": True, "metadata": {}},
        {"name": "a`b", "type": "decimal(10,2)", "nullable": True, "metadata": {}},
        {"name": "tags", "type": {"type": "array", "elementType": "string", "containsNull": True}, "nullable": True},
        {"name": "attrs", "type": {"type": "map", "keyType": "string", "valueType": "double",
                                   "valueContainsNull": True}, "nullable": True},
        {"name": "addr", "type": {"type": "struct", "fields": [
            {"name": "zip code", "type": "string", "nullable": True}]}, "nullable": True},
        {"name": "nothing", "type": "void", "nullable": True},
        {"name": "ts", "type": "timestamp_ntz", "nullable": True},
    ]}
    st = S.create_table("cutover", "raw.orders", schema)
    assert st.text == (
        "CREATE TABLE IF NOT EXISTS `cutover`.`raw`.`orders` (`id` BIGINT, `order id` INT, `a``b` DECIMAL(10,2), "
        "`tags` ARRAY<STRING>, `attrs` MAP<STRING, DOUBLE>, `addr` STRUCT<`zip code`: STRING>, `nothing` STRING, "
        "`ts` TIMESTAMP_NTZ) USING iceberg")
    local = S.create_table("spark_catalog", "raw.orders", {"type": "struct", "fields": [{"name": "x", "type": "string"}]},
                           provider="parquet", location="file:/tmp/it's/wh/raw.db/orders")
    assert local.text.endswith("USING parquet LOCATION 'file:/tmp/it\\'s/wh/raw.db/orders'")
    with pytest.raises(S.UnsafeIdentifier):
        S.create_table("c", "raw.t", {"fields": [{"name": "x", "type": "string) USING x --"}]})
    with pytest.raises(S.UnsafeIdentifier):
        S.create_table("c", "raw.t", {"fields": []})
    with pytest.raises(S.UnsafeIdentifier):
        S.create_table("c", "raw.t", {"fields": [{"name": "x", "type": "string"}]}, provider="delta; DROP")


# -- metadata reads -------------------------------------------------------------------------------


def test_metadata_table_reads_pass_values_as_parameters():
    assert S.select_snapshots("cutover", "raw.o").text == \
        "SELECT snapshot_id, parent_id, committed_at, operation, summary FROM `cutover`.`raw`.`o`.`snapshots`"
    assert S.select_refs("cutover", "raw.o").text == "SELECT name, type, snapshot_id FROM `cutover`.`raw`.`o`.`refs`"
    evil = "/data/x' OR '1'='1.csv"
    st = S.select_file_snapshots("cutover", "raw.o", file=evil, run_id="r1", mode="shadow")
    assert evil not in st.text
    assert "summary['cutover.file'] = :file" in st.text and "summary['cutover.run-id'] = :run_id" in st.text
    assert st.args == {"file": evil, "run_id": "r1", "mode": "shadow"}
    assert st.text.endswith("ORDER BY committed_at DESC")


def test_data_reads_and_counts():
    assert S.select_all("c", "raw.o", snapshot_id=42, limit=10).text == \
        "SELECT * FROM `c`.`raw`.`o` VERSION AS OF 42 LIMIT 10"
    assert S.select_all("c", "raw.o", branch="cutover-shadow").text == \
        "SELECT * FROM `c`.`raw`.`o`.`branch_cutover-shadow`"
    assert S.count_rows("c", "raw.o").text == "SELECT count(*) AS n FROM `c`.`raw`.`o`"


def test_quality_aggregates():
    st = S.quality_counts("v1", ["id", "a b"])
    assert st.text == "SELECT count(*) AS `rows`, count_if(`id` IS NULL) AS `nulls_0`, " \
                      "count_if(`a b` IS NULL) AS `nulls_1` FROM `v1`"
    d = S.quality_duplicates("v1", ["k1", "k2"])
    assert d.text == ("SELECT coalesce(sum(n), 0) AS duplicates FROM (SELECT count(*) AS n FROM `v1` "
                      "WHERE `k1` IS NOT NULL OR `k2` IS NOT NULL GROUP BY `k1`, `k2` HAVING count(*) > 1) d")


def test_statement_run_passes_args_only_when_present():
    calls = []

    class Spark:
        def sql(self, text, args=None):
            calls.append((text, args))

    S.Statement("SELECT 1").run(Spark())
    S.Statement("SELECT :a", {"a": 1}).run(Spark())
    assert calls == [("SELECT 1", None), ("SELECT :a", {"a": 1})]


# -- metadata views (what counts and recovery walk) ------------------------------------------------

def _snap(sid, parent, ms, added, total, **props):
    summary = {"added-records": str(added), "total-records": str(total)}
    summary.update({k.replace("_", "."): v for k, v in props.items()})
    return {"snapshot_id": sid, "parent_id": parent, "committed_at": ms, "operation": "append", "summary": summary}


def _p(file, mode, run="r", ing="orders"):
    return {"cutover_file": file, "cutover_mode": mode, "cutover_run-id": run, "cutover_ingestion": ing}


def _table():
    snaps = [
        _snap(1, None, 1000, 10, 10, **_p("/s/a.csv", "live")),
        _snap(2, 1, 2000, 5, 15, **_p("/s/b.csv", "live")),              # main after the fork
        _snap(3, 1, 2100, 5, 15, **_p("/s/b.csv", "shadow", "p1")),      # shadow branch
        _snap(4, 2, 3000, 7, 22, **_p("/s/c.csv", "live")),
        _snap(5, 3, 3100, 7, 22, **_p("/s/c.csv", "shadow", "p2")),
    ]
    refs = [{"name": "main", "type": "BRANCH", "snapshot_id": 4},
            {"name": "cutover-shadow", "type": "BRANCH", "snapshot_id": 5},
            {"name": "v1", "type": "TAG", "snapshot_id": 1}]
    return table_from_rows("raw.orders", snaps, refs)


def test_table_view_from_metadata_rows():
    tbl = _table()
    assert set(tbl.metadata.refs) == {"main", "cutover-shadow"}  # tags are not branches
    assert tbl.metadata.snapshot_by_id(3).summary["cutover.mode"] == "shadow"
    assert tbl.metadata.snapshot_by_id(3).summary["operation"] == "append"
    assert tbl.metadata.snapshot_by_id(99) is None


def test_recovery_lookup_walks_the_branch_ancestry_only():
    tbl = _table()
    hit = find_file_snapshot(tbl, branch="cutover-shadow", path="/s/c.csv", mode="shadow", ingestion_id="orders")
    assert hit is not None and hit.snapshot_id == 5 and hit.added_records == 7 and hit.run_id == "p2"
    assert find_file_snapshot(tbl, branch="main", path="/s/c.csv", mode="shadow", ingestion_id="orders") is None
    assert find_file_snapshot(tbl, branch="main", path="/s/c.csv", mode="live", ingestion_id="other") is None
    assert find_file_snapshot(tbl, branch="nope", path="/s/c.csv", mode="live", ingestion_id="orders") is None
    assert find_file_snapshot(None, branch="main", path="/s/c.csv", mode="live", ingestion_id="orders") is None


def test_counts_check_runs_unchanged_on_the_spark_metadata_view():
    from checks.counts import check_counts

    res = check_counts(_table(), fork_snapshot_id=1, ingestion_id="orders")
    assert res.verdict == "pass", res.findings
    assert res.metrics["main_added_records"] == 12 and res.metrics["shadow_added_records"] == 12
    # the shadow lost c.csv: a mismatch, found from metadata only
    snaps = [
        _snap(1, None, 1000, 10, 10, **_p("/s/a.csv", "live")),
        _snap(2, 1, 2000, 5, 15, **_p("/s/b.csv", "live")),
        _snap(3, 1, 2100, 5, 15, **_p("/s/b.csv", "shadow")),
        _snap(4, 2, 3000, 7, 22, **_p("/s/c.csv", "live")),
    ]
    refs = [{"name": "main", "type": "branch", "snapshot_id": 4}, {"name": "cutover-shadow", "type": "branch", "snapshot_id": 3}]
    res = check_counts(table_from_rows("raw.orders", snaps, refs), fork_snapshot_id=1, ingestion_id="orders")
    assert res.verdict == "fail"
    assert {f.kind for f in res.findings} == {"row_count_mismatch"}
    assert any(f.file == "/s/c.csv" for f in res.findings)


# -- schema fitting and error classification -------------------------------------------------------

def _schema(*cols):
    return {"type": "struct", "fields": [{"name": n, "type": t, "nullable": nullable} for n, t, nullable in
                                         [(c + (True,)) if len(c) == 2 else c for c in cols]]}


def test_fit_plan_reorders_widens_and_fills():
    plan = fit_plan(_schema(("amount", "integer"), ("id", "long")),
                    _schema(("id", "long"), ("amount", "double"), ("note", "string")), table_name="raw.t")
    assert plan == [("id", "keep", "long"), ("amount", "cast", "double"), ("note", "null", "string")]


def test_fit_plan_refuses_what_the_arrow_engine_refuses():
    with pytest.raises(BadFile, match="column\\(s\\) extra not in the table"):
        fit_plan(_schema(("id", "long"), ("extra", "string")), _schema(("id", "long")), table_name="raw.t")
    with pytest.raises(BadFile, match="column 'amount' is string in the file, double in the table"):
        fit_plan(_schema(("amount", "string")), _schema(("amount", "double")), table_name="raw.t")
    with pytest.raises(BadFile, match="required column 'id' is missing"):
        fit_plan(_schema(("x", "string")), _schema(("id", "long", False), ("x", "string")), table_name="raw.t")
    with pytest.raises(BadFile, match="has 2 null"):
        fit_plan(_schema(("id", "long")), _schema(("id", "long", False)), table_name="raw.t", null_counts={"id": 2})
    with pytest.raises(BadFile):
        fit_plan(_schema(("id", "long")), _schema(("id", "integer")), table_name="raw.t")  # narrowing


@pytest.mark.parametrize("src,dst,ok", [
    ("integer", "long", True), ("byte", "integer", True), ("long", "double", True), ("float", "double", True),
    ("void", "string", True), ("decimal(10,2)", "decimal(12,2)", True), ("decimal(10,2)", "decimal(12,3)", False),
    ("double", "float", False), ("long", "integer", False), ("timestamp", "timestamp_ntz", False),
    ("string", "long", False), ("double", "long", False),
])
def test_widenings(src, dst, ok):
    assert widens(src, dst) is ok


def test_file_errors_are_classified_by_spark_error_class():
    class E(Exception):
        def __init__(self, cls):
            super().__init__(f"[{cls}] boom")
            self.cls = cls

        def getCondition(self):
            return self.cls

    assert is_file_error(E("MALFORMED_RECORD_IN_PARSING.WITHOUT_SUGGESTION"))
    assert is_file_error(E("FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER"))
    assert is_file_error(E("PATH_NOT_FOUND"))
    assert not is_file_error(E("CONNECT_SESSION_UNAVAILABLE"))
    assert not is_file_error(ConnectionError("UNAVAILABLE: failed to connect"))


def test_file_error_reason_names_the_deepest_cause():
    msg = ("[FAILED_READ_FILE.NO_HINT] Encountered error while reading file file:///s/a.csv.  SQLSTATE: KD001\n\n"
           "JVM stacktrace:\norg.apache.spark.SparkException\n\tat x.y(z.scala:1)\n"
           "Caused by: org.apache.spark.SparkException: [MALFORMED_RECORD_IN_PARSING.WITHOUT_SUGGESTION] Malformed "
           "records are detected in record parsing: [2,b].\n"
           "Caused by: org.apache.spark.SparkRuntimeException: [MALFORMED_CSV_RECORD] Malformed CSV record: 2,b,c,d "
           "SQLSTATE: KD000\n\tat a.b(c.java:2)")
    assert reason(Exception(msg)) == ("[FAILED_READ_FILE.NO_HINT] Encountered error while reading file file:///s/a.csv. "
                                      "Cause: [MALFORMED_CSV_RECORD] Malformed CSV record: 2,b,c,d")
    assert reason(Exception("[PATH_NOT_FOUND] Path does not exist: file:/x. SQLSTATE: 42K03")) == \
        "[PATH_NOT_FOUND] Path does not exist: file:/x."
    assert reason(Exception("cannot reach postgresql://u:pw@db/x")) == "cannot reach postgresql://u:***@db/x"


def test_spark_paths():
    assert spark_path("/data/in/a.csv") == "file:///data/in/a.csv"
    assert spark_path("s3://bucket/k/a.csv") == "s3a://bucket/k/a.csv"
    assert spark_path("gs://b/a.csv") == "gs://b/a.csv"
    with pytest.raises(InputError):
        spark_path("memory://x/a.csv")


# -- settings ----------------------------------------------------------------------------------------

def test_settings_defaults_env_and_redaction(workspace_env, monkeypatch):
    from cutover.core.config import load_settings

    s = load_settings()
    assert (s.engine, s.spark_remote, s.spark_catalog) == ("arrow", "sc://localhost:15002", "cutover")
    monkeypatch.setenv("CUTOVER_INGEST_ENGINE", "spark")
    monkeypatch.setenv("CUTOVER_INGEST_SPARK_REMOTE", "sc://spark.internal:15002/;token=s3cr3t;user_id=etl")
    monkeypatch.setenv("CUTOVER_INGEST_SPARK_CATALOG", "lake")
    s = load_settings()
    assert s.spark_remote.endswith("token=s3cr3t;user_id=etl") and s.spark_catalog == "lake"
    pub = s.public_dict()["ingest"]
    assert pub["spark_remote"] == "sc://spark.internal:15002/;token=***;user_id=etl"
    assert pub["spark_catalog"] == "lake"
    assert s.sources["ingest.spark_remote"] == "env CUTOVER_INGEST_SPARK_REMOTE"
    assert "s3cr3t" not in repr(pub)


def test_settings_from_the_file_and_validation(workspace_env, monkeypatch):
    from cutover.core.config import load_settings

    workspace_env.mkdir(parents=True)
    (workspace_env / "cutover.toml").write_text('[ingest]\nengine = "spark"\nspark_remote = "local[2]"\n'
                                                'spark_catalog = "spark_catalog"\n')
    s = load_settings()
    assert (s.spark_remote, s.spark_catalog) == ("local[2]", "spark_catalog")
    monkeypatch.setenv("CUTOVER_INGEST_SPARK_REMOTE", "http://x:15002")
    with pytest.raises(InputError, match="not a Spark Connect URL"):
        load_settings()
    monkeypatch.setenv("CUTOVER_INGEST_SPARK_REMOTE", "local")
    monkeypatch.setenv("CUTOVER_INGEST_SPARK_CATALOG", "cat; DROP")
    with pytest.raises(InputError, match="not a catalog name"):
        load_settings()


def test_redact_remote():
    assert redact_remote("sc://u:pw@h:15002/;token=abc") == "sc://u:***@h:15002/;token=***"
    assert redact_remote("sc://h:15002") == "sc://h:15002"
    assert redact_remote("local[2]") == "local[2]"


# -- the Iceberg target as issued, with a fake Spark session ----------------------------------------

class _Rows:
    def __init__(self, rows):
        self.rows = rows

    def collect(self):
        return self.rows


class _Writer:
    def __init__(self, log, target):
        self.log, self.target, self.opts = log, target, {}

    def options(self, **kw):
        self.opts.update(kw)
        return self

    def append(self):
        self.log.append(("writeTo", self.target, dict(self.opts)))


class _DF:
    def __init__(self, log):
        self.log = log

    def writeTo(self, target):
        return _Writer(self.log, target)


class FakeSpark:
    """Answers the metadata-table statements from canned rows; records everything issued."""

    def __init__(self, snapshots, refs):
        self.snapshots, self.refs, self.log = snapshots, refs, []

    def sql(self, text, args=None):
        self.log.append(("sql", text, args))
        if text.endswith("`refs`"):
            return _Rows(self.refs)
        if "`snapshots`" in text:
            rows = self.snapshots
            if args:
                rows = [r for r in rows if r["summary"].get("cutover.file") == args["file"]
                        and ("run_id" not in args or r["summary"].get("cutover.run-id") == args["run_id"])]
            return _Rows(sorted(rows, key=lambda r: -r["committed_at"]))
        raise AssertionError(f"unexpected SQL {text}")


@pytest.fixture
def fake_proc(monkeypatch):
    monkeypatch.setattr(SparkProcessor, "spark", property(lambda self: self._fake), raising=True)

    def make(snapshots, refs):
        p = SparkProcessor("sc://spark:15002", "lake")
        p._fake = FakeSpark(snapshots, refs)
        return p
    return make


class _BatchDF(_DF):
    """Enough of a DataFrame for write_batch: records the plan it is asked to build."""

    def __init__(self, log, name):
        super().__init__(log)
        self.name = name

    def withColumn(self, col, value):
        self.log.append(("withColumn", self.name, col, str(value)))
        return self

    def union(self, other):
        self.log.append(("union", self.name, other.name))
        return _BatchDF(self.log, f"({self.name}+{other.name})")

    def repartition(self, n, col):
        self.log.append(("repartition", self.name, n, str(col)))
        return self

    def drop(self, col):
        self.log.append(("drop", col))
        return self


class BatchFakeSpark(FakeSpark):
    """Also answers the batch statements, with rows shaped like Iceberg's metadata tables."""

    def __init__(self, batch_id, sid, added):
        super().__init__([], [])
        self.batch_id, self.sid, self.added = batch_id, sid, added

    def sql(self, text, args=None):
        self.log.append(("sql", text, args))
        if "pmod(hash(" in text:
            import re as _re

            n = int(_re.search(r"\), (\d+)\) AS p", text).group(1))
            ks = [int(k) for k in _re.findall(r"\((\d+)\)", text.split("VALUES", 1)[1])]
            return _Rows([{"k": k, "p": M.partition_of(k, n)} for k in ks])
        if "`snapshots`" in text and args and self.batch_id in args.values():
            return _Rows([{"snapshot_id": self.sid, "batch_id": self.batch_id}])
        if "`entries`" in text:
            assert f"VERSION AS OF {self.sid} WHERE snapshot_id = {self.sid} AND status = 1" in text
            return _Rows(self.added)
        raise AssertionError(f"unexpected SQL {text}")


def test_iceberg_batch_is_one_writeto_with_the_batch_properties(fake_proc, monkeypatch):
    from cutover.core.records.ingestions import validate

    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")  # pyspark Columns built without a session
    monkeypatch.setattr("cutover.core.spark.engine._hash_checked", set())
    ing = validate({"id": "orders", "source_uri": "/s", "format": "csv", "table": "raw.orders"})
    proc = fake_proc([], [])
    added = [{"file_path": "s3://w/data/00002-7-q-00001.parquet", "record_count": 2},
             {"file_path": "s3://w/data/00000-5-q-00001.parquet", "record_count": 3},
             {"file_path": "s3://w/data/00001-6-q-00001.parquet", "record_count": 4}]
    spark = proc._fake = BatchFakeSpark("b-1", 42, added)
    props = {"cutover.run-id": "run-1", "cutover.orchestrator": "prefect", "cutover.mode": "shadow",
             "cutover.ingestion": "orders", "cutover.batch": "b-1", "cutover.batch-files": "3"}
    prepared = [Prepared(_BatchDF(spark.log, f"f{i}"), n) for i, n in enumerate((3, 4, 2))]
    written, sid = proc.write_batch(ing, prepared, branch="cutover-shadow", properties=props)
    assert sid == 42
    assert written == [(3, ["s3://w/data/00000-5-q-00001.parquet"]), (4, ["s3://w/data/00001-6-q-00001.parquet"]),
                       (2, ["s3://w/data/00002-7-q-00001.parquet"])]
    keys = M.partition_keys(3)
    assert [e[3] for e in spark.log if e[0] == "withColumn"] == [f"Column<'CAST({k} AS INT)'>" for k in keys]
    assert ("repartition", "((f0+f1)+f2)", 3, "Column<'__cutover_source_file'>") in spark.log
    (write,) = [e for e in spark.log if e[0] == "writeTo"]  # ONE write
    assert write[1] == "`lake`.`raw`.`orders`.`branch_cutover-shadow`"
    assert write[2]["snapshot-property.cutover.batch"] == "b-1" and write[2]["distribution-mode"] == "none"
    assert write[2]["snapshot-property.cutover.run-id"] == "run-1"
    issued = [e[1] for e in spark.log if e[0] == "sql"]
    assert issued[-2:] == [S.select_batch_snapshots("lake", "raw.orders", ["b-1"]).text,
                           S.select_added_files("lake", "raw.orders", 42).text]


def test_iceberg_recovery_of_batches_from_the_current_files(fake_proc):
    class Spark(FakeSpark):
        def sql(self, text, args=None):
            self.log.append(("sql", text, args))
            if text.endswith("`refs`"):
                return _Rows([{"name": "main", "type": "branch", "snapshot_id": 9}])
            if "`files`" in text:
                return _Rows([{"file_path": "/d/00000-1-q-00001.parquet", "record_count": 4},
                              {"file_path": "/d/00001-1-q-00001.parquet", "record_count": 5}])
            if "`snapshots`" in text:
                return _Rows([])  # every batch snapshot expired
            raise AssertionError(f"unexpected SQL {text}")

    proc = fake_proc([], [])
    proc._fake = Spark([], [])
    entries = [M.StagedEntry("a.csv", "b1", ("/d/00000-1-q-00001.parquet",)),
               M.StagedEntry("b.csv", "b1", ("/d/00009-1-q-00001.parquet",)),
               M.StagedEntry("c.csv", "b2", (M.marker(0),))]
    out = proc.committed("raw.orders", "main", entries, mode="live", ingestion_id="orders")
    assert out["a.csv"] == (4, None, "b1", ["/d/00000-1-q-00001.parquet"])
    assert isinstance(out["b.csv"], BadFile) and "no longer in the branch" in str(out["b.csv"])
    assert "c.csv" not in out  # staged, no snapshot carries b2: never committed
    issued = [t for _, t, _ in proc._fake.log]
    assert not any("ancestor" in t or "`history`" in t for t in issued)
    assert S.select_current_files("lake", "raw.orders").text in issued


def test_iceberg_recovery_lookup_through_metadata_tables(fake_proc):
    snaps = [_snap(1, None, 1000, 4, 4, **_p("/s/a.csv", "live", "dead-run")),
             _snap(2, 1, 2000, 6, 10, **_p("/s/b.csv", "live", "dead-run"))]
    proc = fake_proc(snaps, [{"name": "main", "type": "branch", "snapshot_id": 2}])
    hit = proc.find_file_snapshot("raw.orders", branch="main", path="/s/a.csv", mode="live", ingestion_id="orders")
    assert hit.snapshot_id == 1 and hit.added_records == 4 and hit.run_id == "dead-run"
    issued = [t for k, t, a in proc._fake.log]
    assert issued == [S.select_snapshots("lake", "raw.orders").text, S.select_refs("lake", "raw.orders").text]
    assert proc.count("raw.orders") == 10


# -- the service hook, with a fake processor (no Spark) ----------------------------------------------

class FakeProcessor:
    """The Spark engine's three steps without Spark: ``committed`` answers from a dict, ``write_batch``
    records each batch (one entry per write) and names one data file per source file."""

    iceberg = True

    def __init__(self, committed=None, bad=None, bad_in_write=()):
        self.known = committed or {}
        self.bad = bad or {}
        self.bad_in_write = set(bad_in_write)
        self.asked = []
        self.batches = []

    def committed(self, table, branch, entries, *, mode, ingestion_id):
        entries = list(entries)
        self.asked.append([(e.path, e.batch_id, tuple(e.data_files)) for e in entries])
        return {e.path: self.known[e.path] for e in entries if e.path in self.known}

    def prepare(self, ing, f, *, mode, branch):
        if f.path in self.bad:
            raise BadFile(self.bad[f.path])
        return Prepared(f.path, 5)

    def prepare_many(self, ing, files, *, mode, branch):
        out = []
        for f in files:
            try:
                out.append(self.prepare(ing, f, mode=mode, branch=branch))
            except BadFile as e:
                out.append(e)
        return out

    def write_batch(self, ing, prepared, *, branch, properties):
        paths = [p.df for p in prepared]
        if self.bad_in_write & set(paths):
            raise RuntimeError("[MALFORMED_CSV_RECORD] Malformed CSV record")
        self.batches.append((paths, branch, dict(properties)))
        return [(p.records, [f"/wh/data/{i:05d}-{i}-q-00001.parquet"]) for i, p in enumerate(prepared)], 77


def _src(tmp_path, names):
    src = tmp_path / "src"
    src.mkdir()
    for name in names:
        (src / name).write_text("id\n1\n")
    return src, [str((src / n).resolve()) for n in names]


def test_service_writes_one_batch_and_keeps_the_ledger_logic(workspace_env, tmp_path):
    from cutover.core.workspace import Workspace
    from cutover.core.autoloader.service import IngestionService
    from tests.helpers import add_ingestion, ledger_rows

    src, (a, b, c, d) = _src(tmp_path, ("a.csv", "b.csv", "c.csv", "d.csv"))
    ws = Workspace()
    ing = add_ingestion(ws, "orders", src)
    proc = FakeProcessor(bad={c: "cannot parse as csv: boom"})
    svc = IngestionService(ws.autoloader_engine, ws.catalog, claim_timeout=60, processor=proc)
    res = svc.run(ing)
    assert (res.files_recovered, res.files_processed, res.files_failed) == (0, 3, 1)
    (paths, branch, props), = proc.batches  # the three good files: ONE write
    assert paths == [a, b, d] and branch == "main"
    assert props["cutover.batch-files"] == "3" and props["cutover.mode"] == "live" and props["cutover.batch"]
    assert "cutover.file" not in props
    rows = {r.path: r for r in ledger_rows(ws.autoloader_engine, "orders")}
    for i, p in enumerate((a, b, d)):
        r = rows[p]
        assert (r.status, r.records_ingested, r.snapshot_id, r.batch_id) == ("SUCCESS", 5, 77, props["cutover.batch"])
        assert r.data_files == [f"/wh/data/{i:05d}-{i}-q-00001.parquet"]
    assert rows[c].status == "FAILED" and rows[c].error == "cannot parse as csv: boom" and rows[c].batch_id is None
    assert proc.asked == []  # no takeover: no recovery lookup
    again = svc.run(ing)
    assert (again.files_processed, again.files_failed, again.files_recovered) == (0, 0, 0)
    assert len(proc.batches) == 1


def test_a_file_that_breaks_the_batch_write_fails_alone(workspace_env, tmp_path):
    from cutover.core.workspace import Workspace
    from cutover.core.autoloader.service import IngestionService
    from tests.helpers import add_ingestion, ledger_rows

    src, (a, b, c) = _src(tmp_path, ("a.csv", "b.csv", "c.csv"))
    ws = Workspace()
    ing = add_ingestion(ws, "orders", src)
    proc = FakeProcessor(bad_in_write={b})
    svc = IngestionService(ws.autoloader_engine, ws.catalog, claim_timeout=60, processor=proc)
    res = svc.run(ing)
    assert (res.files_processed, res.files_failed) == (2, 1)
    assert [p for p, _, _ in proc.batches] == [[a], [c]]  # the batch retried file by file
    rows = {r.path: r for r in ledger_rows(ws.autoloader_engine, "orders")}
    assert rows[b].status == "FAILED" and "MALFORMED_CSV_RECORD" in rows[b].error and rows[b].batch_id is None
    assert {rows[a].status, rows[c].status} == {"SUCCESS"} and rows[a].batch_id != rows[c].batch_id


def _dead_run_staged_a_batch(tmp_path):
    """A run claimed a.csv and b.csv, staged them as batch-1 (one Spark partition each) and died:
    (workspace, ingestion, service, a, b)."""
    from cutover.core.workspace import Workspace
    from cutover.core.autoloader.service import IngestionService
    from tests.helpers import add_ingestion

    src, (a, b) = _src(tmp_path, ("a.csv", "b.csv"))
    ws = Workspace()
    ing = add_ingestion(ws, "orders", src)
    svc = IngestionService(ws.autoloader_engine, ws.catalog, claim_timeout=0.2, processor=FakeProcessor())
    files = {f.path: f for f in svc.discover(ing)}
    ledger = svc.ledger(ing.id, "live")
    dead = ledger.claim_many([files[a], files[b]], "dead-run")
    ledger.stage("batch-1", [(c, [f"spark-partition:{i}"], 4) for i, c in enumerate(dead)])
    return ws, ing, svc, a, b


def test_a_dead_runs_staged_batch_is_recovered_not_written_again(workspace_env, tmp_path):
    from tests.helpers import ledger_rows

    ws, ing, svc, a, b = _dead_run_staged_a_batch(tmp_path)
    time.sleep(0.3)  # the dead run's claims go stale
    proc = FakeProcessor(committed={a: (4, 99, "batch-1", ["/wh/data/00000-0-q-00001.parquet"])})
    svc.processor = proc
    res = svc.run(ing)
    assert (res.files_recovered, res.files_processed) == (1, 1)
    assert sorted(proc.asked[-1]) == [(a, "batch-1", ("spark-partition:0",)), (b, "batch-1", ("spark-partition:1",))]
    assert [p for p, _, _ in proc.batches] == [[b]]  # a not written again
    rows = {r.path: r for r in ledger_rows(ws.autoloader_engine, "orders")}
    assert (rows[a].status, rows[a].snapshot_id, rows[a].batch_id, rows[a].data_files) == (
        "SUCCESS", 99, "batch-1", ["/wh/data/00000-0-q-00001.parquet"])
    assert rows[b].status == "SUCCESS" and rows[b].batch_id != "batch-1"


def test_a_dead_runs_claim_on_a_gone_file_is_settled_from_the_table(workspace_env, tmp_path):
    from tests.helpers import ledger_rows

    ws, ing, svc, a, b = _dead_run_staged_a_batch(tmp_path)
    time.sleep(0.3)
    for p in (a, b):
        Path(p).unlink()
    # a's batch committed (left for recovery if it comes back), b's did not (gone for good)
    svc.processor = FakeProcessor(committed={a: (4, 99, "batch-1", ["/wh/00000-0-q-00001.parquet"])})
    res = svc.run(ing)
    assert res.discovered == 0
    rows = {r.path: r for r in ledger_rows(ws.autoloader_engine, "orders")}
    assert rows[a].status == "PROCESSING" and rows[b].status == "FAILED"


def test_service_gives_the_claim_back_when_the_processor_breaks(workspace_env, tmp_path):
    from cutover.core.workspace import Workspace
    from cutover.core.autoloader.service import IngestionService
    from tests.helpers import add_ingestion, ledger_rows

    class Down(FakeProcessor):
        iceberg = False

        def write_batch(self, ing, prepared, *, branch, properties):
            raise ConnectionError("UNAVAILABLE: Spark Connect server went away")

    src, _ = _src(tmp_path, ("a.csv",))
    ws = Workspace()
    ing = add_ingestion(ws, "orders", src)
    svc = IngestionService(ws.autoloader_engine, ws.catalog, claim_timeout=60, processor=Down())
    res = svc.run(ing)
    assert res.status == "FAILED" and "UNAVAILABLE" in res.error
    assert ledger_rows(ws.autoloader_engine, "orders") == []  # released: the next run retries the file


def test_arrow_is_the_default_and_spark_is_wired_by_settings(workspace_env, monkeypatch):
    from cutover.core.workspace import Workspace

    assert Workspace().service.processor is None
    monkeypatch.setenv("CUTOVER_INGEST_ENGINE", "spark")
    monkeypatch.setenv("CUTOVER_INGEST_SPARK_REMOTE", "local[2]")
    proc = Workspace().service.processor
    assert isinstance(proc, SparkProcessor) and proc.remote == "local[2]" and proc.iceberg
    assert proc.warehouse_dir == (Path(workspace_env) / "spark-warehouse").resolve().as_uri()


# -- batch writes: the statements and the pure recovery decision ----------------------------------

from cutover.core.spark import metadata as M  # noqa: E402


def test_batch_statements_are_flat_lookups_with_parameters():
    st = S.select_batch_snapshots("cat", "raw.orders", ["b-2", "b-1", "b-2"])
    assert st.text == ("SELECT snapshot_id, summary['cutover.batch'] AS batch_id FROM `cat`.`raw`.`orders`.`snapshots` "
                       "WHERE summary['cutover.batch'] IN (:b0, :b1)")
    assert st.args == {"b0": "b-1", "b1": "b-2"}
    with pytest.raises(S.UnsafeIdentifier):
        S.select_batch_snapshots("cat", "raw.orders", [])
    st = S.select_added_files("cat", "raw.orders", 123)
    assert st.text == ("SELECT data_file.file_path AS file_path, data_file.record_count AS record_count "
                       "FROM `cat`.`raw`.`orders`.`entries` VERSION AS OF 123 "
                       "WHERE snapshot_id = 123 AND status = 1 AND data_file.content = 0")
    with pytest.raises(S.UnsafeIdentifier):
        S.select_added_files("cat", "raw.orders", "123; DROP TABLE x")
    assert S.select_current_files("cat", "raw.orders").text == (
        "SELECT file_path, record_count FROM `cat`.`raw`.`orders`.`files` WHERE content = 0")
    assert S.select_current_files("cat", "raw.orders", "cutover-shadow").text == (
        "SELECT file_path, record_count FROM `cat`.`raw`.`orders`.`files` VERSION AS OF 'cutover-shadow' WHERE content = 0")
    with pytest.raises(S.UnsafeIdentifier):
        S.select_current_files("cat", "raw.orders", "x' OR '1")
    opts = S.batch_write_options({"cutover.batch": "b-1", "cutover.mode": "live"})
    assert opts == {"snapshot-property.cutover.batch": "b-1", "snapshot-property.cutover.mode": "live",
                    "distribution-mode": "none", "fanout-enabled": "true"}
    st = S.select_partition_of_keys([0, 1, 2], 7)
    assert st.text == "SELECT k, pmod(hash(CAST(k AS INT)), 7) AS p FROM VALUES (0), (1), (2) AS t(k)"
    with pytest.raises(S.UnsafeIdentifier):
        S.select_partition_of_keys([], 7)


def test_partition_keys_put_each_file_alone_in_its_partition():
    # Spark: SELECT hash(0), hash(1) -> 933211791, -559580957 (the engine checks partition_of against the
    # server's own pmod(hash(k), n) once per session: exercised in tests/test_spark_integration.py)
    assert M.murmur3_int(1) == -559580957 and M.murmur3_int(0) == 933211791
    for n in (1, 2, 3, 7, 64, 200, 1000):
        keys = M.partition_keys(n)
        assert len(set(keys)) == n and [M.partition_of(k, n) for k in keys] == list(range(n))
    with pytest.raises(ValueError):
        M.partition_keys(0)


def test_data_file_names_give_their_partition():
    assert M.file_partition("s3://wh/db/t/data/00007-123-4a5b-00001.parquet") == 7
    assert M.file_partition("file:/wh/raw.db/t/part-00012-4a5b6c-c000.snappy.parquet") == 12
    assert M.file_partition("file:/wh/t/data/x-00001.parquet") is None
    assert M.write_id("file:/wh/raw.db/t/part-00012-4a5b6c-d7-c000.snappy.parquet") == "4a5b6c-d7"
    assert M.write_id("s3://wh/db/t/data/00007-123-4a5b-00001.parquet") is None
    got = M.files_by_partition([{"file_path": "/d/00001-9-q-00002.parquet", "record_count": 3},
                                {"file_path": "/d/00001-9-q-00001.parquet", "record_count": 4},
                                {"file_path": "/d/00000-8-q-00001.parquet", "record_count": 5}])
    assert got == {0: [("/d/00000-8-q-00001.parquet", 5)],
                   1: [("/d/00001-9-q-00001.parquet", 4), ("/d/00001-9-q-00002.parquet", 3)]}
    assert M.files_by_partition([{"file_path": "/d/part-00003-j-c000.parquet"}]) == {3: [("/d/part-00003-j-c000.parquet", None)]}
    with pytest.raises(ValueError, match="does not name its Spark partition"):
        M.files_by_partition([{"file_path": "/d/data.parquet", "record_count": 1}])


def _entry(path, batch, *files):
    return M.StagedEntry(path, batch, tuple(files))


def test_recovery_reads_the_current_files_not_the_snapshots():
    # rows shaped like Iceberg's files table (current state) and entries of a batch snapshot
    current = {"/d/00000-1-q-00001.parquet": 4, "/d/00001-2-q-00001.parquet": 6, "/d/00000-5-r-00001.parquet": 2}
    # recorded paths (ledger updated after the commit): decided from the current files alone, so it
    # holds after the batch's snapshot was expired (batch_files empty)
    out = M.batch_outcome([_entry("a.csv", "b1", "/d/00000-1-q-00001.parquet"),
                           _entry("b.csv", "b1", "/d/00001-2-q-00001.parquet")], current_files=current, batch_files={})
    assert out == {"a.csv": (4, ["/d/00000-1-q-00001.parquet"]), "b.csv": (6, ["/d/00001-2-q-00001.parquet"])}
    # recorded paths no longer current (compacted away): committed, never ingested again
    out = M.batch_outcome([_entry("c.csv", "b0", "/d/gone.parquet")], current_files=current, batch_files={})
    assert isinstance(out["c.csv"], M.Evidence) and "no longer in the branch" in str(out["c.csv"])


def test_recovery_of_a_batch_staged_but_not_recorded():
    current = {"/d/00000-5-r-00001.parquet": 2, "/d/00001-5-r-00001.parquet": 3}
    added = M.files_by_partition([{"file_path": p, "record_count": n} for p, n in current.items()])
    entries = [_entry("a.csv", "b2", M.marker(0)), _entry("b.csv", "b2", M.marker(1)),
               _entry("c.csv", "b3", M.marker(0))]
    out = M.batch_outcome(entries, current_files=current, batch_files={"b2": added, "b3": None})
    assert out == {"a.csv": (2, ["/d/00000-5-r-00001.parquet"]), "b.csv": (3, ["/d/00001-5-r-00001.parquet"])}
    # b3 has no snapshot: never committed -> absent -> ingested again
    # the batch landed but its data files left the branch (rewritten): never ingested again
    out = M.batch_outcome([_entry("a.csv", "b2", M.marker(0))], current_files={}, batch_files={"b2": added})
    assert isinstance(out["a.csv"], M.Evidence)
    out = M.batch_outcome([_entry("z.csv", "b2", M.marker(5))], current_files=current, batch_files={"b2": added})
    assert isinstance(out["z.csv"], M.Evidence) and "partition 5" in str(out["z.csv"])
