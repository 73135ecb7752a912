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


def test_iceberg_append_issues_writeto_with_snapshot_properties(fake_proc):
    from cutover.core.spark.engine import Prepared
    from cutover.core.records.ingestions import validate

    snaps = [_snap(7, None, 5000, 3, 3, **_p("/s/a.csv", "shadow", "run-1"))]
    proc = fake_proc(snaps, [{"name": "main", "type": "branch", "snapshot_id": 7}])
    ing = validate({"id": "orders", "source_uri": "/s", "format": "csv", "table": "raw.orders"})
    spark = proc._fake
    props = {"cutover.run-id": "run-1", "cutover.orchestrator": "prefect", "cutover.mode": "shadow",
             "cutover.file": "/s/a.csv", "cutover.ingestion": "orders"}
    records, sid = proc.append(ing, Prepared(_DF(spark.log), 3), branch="cutover-shadow", properties=props)
    assert (records, sid) == (3, 7)
    kind, target, opts = spark.log[0]
    assert (kind, target) == ("writeTo", "`lake`.`raw`.`orders`.`branch_cutover-shadow`")
    assert opts["snapshot-property.cutover.file"] == "/s/a.csv"
    assert opts["snapshot-property.cutover.run-id"] == "run-1"
    assert spark.log[1][2] == {"file": "/s/a.csv", "run_id": "run-1"}


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


def test_a_dead_runs_staged_batch_is_recovered_not_written_again(workspace_env, tmp_path):
    from cutover.core.workspace import Workspace
    from cutover.core.autoloader.service import IngestionService
    from tests.helpers import add_ingestion, ledger_rows

    src, (a, b) = _src(tmp_path, ("a.csv", "b.csv"))
    ws = Workspace()
    ing = add_ingestion(ws, "orders", src)
    svc = IngestionService(ws.autoloader_engine, ws.catalog, claim_timeout=0.2, processor=FakeProcessor())
    files = {f.path: f for f in svc.discover(ing)}
    ledger = svc.ledger(ing.id, "live")
    dead = ledger.claim_many([files[a], files[b]], "dead-run")
    ledger.stage("batch-1", [(c, [f"spark-partition:{i}"], 4) for i, c in enumerate(dead)])
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
