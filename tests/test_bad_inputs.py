"""The bad-input corpus (issue #18): every case exits 2 with ONE line on stderr, no traceback,
nothing on stdout, and leaves every store byte-identical.

One workspace is built once for the module with something in every store: ingestions, a legacy
run (ledger, run records), APScheduler jobs (the job store in the autoloader DB), an Iceberg table
(SQL catalog + warehouse metadata and data files), the crontab side (cron.json and the crontab
FILE), the state DB (a waiver, the audit log). Before and after each case every file of the
workspace and of the crontab's directory is hashed (SHA-256 over the bytes); the case passes only
if the two listings are equal. The CLI runs in-process (``run_main``), as ``tests/test_cli_basics``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml

from cutover.cli import cli
from cutover.cli.app import run_main

SECRET = "Sup3r-s3cret-pw"


def _cli(args, capsys) -> tuple[int, str, str]:
    rc = run_main(cli, [str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _reset_db_caches() -> None:
    from cutover.core import db

    db.dispose_engines()
    db.reset_schema_cache()


def tree_hashes(*roots: Path) -> dict[str, str]:
    """path -> sha256 of every file under ``roots`` (SQLite's -wal/-shm included, if present)."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def corpus_ws(tmp_path_factory):
    """A workspace with something in every store, and a directory of bad input files."""
    base = tmp_path_factory.mktemp("corpus")
    home, src, etl, inputs = base / "ws", base / "src", base / "etl", base / "inputs"
    for d in (src, inputs):
        d.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for k in list(os.environ):
            if k.startswith("CUTOVER_") or k == "PREFECT_API_URL":
                mp.delenv(k, raising=False)
        mp.setenv("CUTOVER_HOME", str(home))
        _reset_db_caches()
        (src / "a.csv").write_text("id,name,amount\n1,a,1.5\n2,b,2.5\n")
        (src / "bad.csv").write_text("id,name,amount\n1,\x01\x02,3,4,5\n")
        defs = inputs / "good.yaml"
        defs.write_text(yaml.safe_dump({"ingestions": [
            {"id": "orders", "source_uri": str(src), "pattern": "*.csv", "format": "csv", "table": "shop.orders",
             "schedule": {"frequency": "daily", "at": "02:30"}, "timezone": "Europe/Berlin", "key_columns": ["id"]}]}))
        from legacy.cron.medallion import write_pipeline

        paths = write_pipeline(etl, source_dir=base / "events", cutover_home=home)
        steps = [("ingestion", "add", "--from-file", defs), ("legacy", "sync"), ("legacy", "run", "orders"),
                 ("cron", "import", "--crontab", paths["crontab"], "--timezone", "UTC"),
                 ("waive", "orders", "--check", "ledger", "--reason", "corpus", "--owner", "qa", "--expires", "2099-12-31"),
                 ("plan", "--out", inputs / "plan.json")]
        for args in steps:
            rc = run_main(cli, [str(a) for a in args])
            assert rc in (0, 3), f"set-up step {args} exited {rc}"  # 3: the legacy run has a bad file
        _reset_db_caches()
        yield {"home": home, "src": src, "etl": etl, "inputs": inputs, "crontab": paths["crontab"]}
        _reset_db_caches()


def _files(inputs: Path) -> dict[str, Path]:
    """The bad input files of the corpus (written once)."""
    f = {}

    def w(name, data):
        p = inputs / name
        if not p.exists():
            p.write_bytes(data if isinstance(data, bytes) else data.encode())
        f[name] = p

    item = {"id": "x1", "source_uri": str(inputs), "format": "csv", "table": "a.b"}

    def defs(name, **changes):
        d = {**item, **changes}
        w(name, yaml.safe_dump({"ingestions": [{k: v for k, v in d.items() if v is not None}]}))

    w("binary.yaml", b"\x00\x01\x02\xff\xfe binary \x00")
    w("latin1.yaml", "ingestions:\n- id: caf\xe9\n".encode("latin-1"))
    w("syntax.yaml", "ingestions: [\n  - id: x\n")
    w("syntax.json", '{"ingestions": [}')
    w("empty.yaml", "")
    w("scalar.yaml", "42\n")
    defs("id_int.yaml", id=5)
    defs("source_int.yaml", source_uri=7)
    defs("source_missing.yaml", source_uri=str(inputs / "no-such-dir"))
    defs("source_proto.yaml", source_uri=f"oracle://scott:{SECRET}@db/landing")
    defs("unknown_field.yaml", sourc_uri="/x")
    defs("format.yaml", format="xml")
    defs("table.yaml", table="nonamespace")
    defs("tz.yaml", timezone="Mars/Olympus")
    defs("cron.yaml", schedule={"cron": "0 2 * *"})
    defs("keys.yaml", key_columns=5)
    defs("pattern.yaml", pattern=["*.csv"])
    defs("options.yaml", options="delimiter=;")
    defs("creds_mask.yaml", credentials={"secret": "***"})
    w("dup.yaml", yaml.safe_dump({"ingestions": [item, item]}))
    w("plan_list.json", "[1, 2, 3]\n")
    w("plan_binary.json", b"\xff\xfe\x00\x01plan")
    w("plan_syntax.json", '{"version": ')
    w("plan_edited.json", json.dumps({"version": 1, "id": "x", "waves": []}))
    w("crontab_binary", b"\xff\xfe* * * * * /bin/true\n")
    defs("nested_type.yaml", deploy={"cpu": {"cores": 2}})
    defs("nested_unknown.yaml", values={"key": ["id"], "tolerances": {"amount": {"abss": 0.01}}})
    from cutover.engine.plan import digest_of

    forged = {"version": 2, "id": "x", "created_at": "2026-01-01T00:00:00+00:00", "created_by": "", "gate": "streak>=0",
              "handoff_timeout": "600", "fingerprints": {}, "waves": []}  # a digest that matches: only the type is wrong
    w("plan_wrong_type.json", json.dumps({**forged, "digest": digest_of(forged)}))
    return f


# (case id, args, env, needle in the one line). Paths "@name" are files of _files(); "@@dir" the inputs dir.
CASES = [
    # -- definition files ------------------------------------------------------------------------
    ("defs-binary", ["ingestion", "add", "--from-file", "@binary.yaml"], {}, "binary file"),
    ("defs-undecodable", ["ingestion", "add", "--from-file", "@latin1.yaml"], {}, "not UTF-8"),
    ("defs-yaml-syntax", ["ingestion", "add", "--from-file", "@syntax.yaml"], {}, "cannot be parsed"),
    ("defs-json-syntax", ["ingestion", "add", "--from-file", "@syntax.json"], {}, "cannot be parsed"),
    ("defs-empty", ["ingestion", "add", "--from-file", "@empty.yaml"], {}, "holds no ingestions"),
    ("defs-scalar", ["ingestion", "add", "--from-file", "@scalar.yaml"], {}, "holds no ingestions"),
    ("defs-id-int", ["ingestion", "add", "--from-file", "@id_int.yaml"], {}, "id 5 is int"),
    ("defs-source-int", ["ingestion", "add", "--from-file", "@source_int.yaml"], {}, "source_uri 7 is int"),
    ("defs-source-missing", ["ingestion", "add", "--from-file", "@source_missing.yaml"], {}, "does not exist"),
    ("defs-source-protocol", ["ingestion", "add", "--from-file", "@source_proto.yaml"], {}, "oracle:// is not a filesystem"),
    ("defs-unknown-field", ["ingestion", "add", "--from-file", "@unknown_field.yaml"], {}, "did you mean 'source_uri'"),
    ("defs-format", ["ingestion", "add", "--from-file", "@format.yaml"], {}, "not supported"),
    ("defs-table", ["ingestion", "add", "--from-file", "@table.yaml"], {}, "namespace.table"),
    ("defs-timezone", ["ingestion", "add", "--from-file", "@tz.yaml"], {}, "unknown timezone"),
    ("defs-cron", ["ingestion", "add", "--from-file", "@cron.yaml"], {}, "5 fields"),
    ("defs-keys-int", ["ingestion", "add", "--from-file", "@keys.yaml"], {}, "key_columns 5 is int"),
    ("defs-pattern-list", ["ingestion", "add", "--from-file", "@pattern.yaml"], {}, "pattern"),
    ("defs-options-text", ["ingestion", "add", "--from-file", "@options.yaml"], {}, "options"),
    ("defs-credentials-mask", ["ingestion", "add", "--from-file", "@creds_mask.yaml"], {}, "the mask"),
    ("defs-duplicate", ["ingestion", "add", "--from-file", "@dup.yaml"], {}, "appears twice"),
    ("defs-nested-type", ["ingestion", "add", "--from-file", "@nested_type.yaml"], {},
     "ingestions[0].deploy.cpu {'cores': 2} is dict"),
    ("defs-nested-unknown", ["ingestion", "add", "--from-file", "@nested_unknown.yaml"], {},
     "unknown field 'ingestions[0].values.tolerances.amount.abss': did you mean 'abs'?"),
    ("defs-missing-file", ["ingestion", "add", "--from-file", "@@no-such.yaml"], {}, "does not exist"),
    ("defs-directory", ["ingestion", "add", "--from-file", "@@"], {}, "is a directory"),
    # -- ingestion options -------------------------------------------------------------------------
    ("add-source-missing", ["ingestion", "add", "o2", "--source", "@@nope", "--format", "csv", "--table", "a.b"], {},
     "does not exist"),
    ("add-bad-id", ["ingestion", "add", "Bad Id", "--source", "@@", "--format", "csv", "--table", "a.b"], {}, "not valid"),
    ("add-changed-no-replace", ["ingestion", "add", "orders", "--source", "@@", "--format", "csv", "--table", "a.b"], {},
     "--replace"),
    ("show-unknown", ["ingestion", "show", "nope"], {}, "no ingestion 'nope'"),
    # -- settings: environment ------------------------------------------------------------------------
    ("env-misspelt-key", ["config", "show"], {"CUTOVER_INGST_ENGINE": "spark"}, "did you mean 'CUTOVER_INGEST_ENGINE'"),
    ("env-oracle-url", ["status"], {"CUTOVER_DATABASE_STATE_URL": f"oracle://scott:{SECRET}@db/x"}, "oracle is not supported"),
    ("env-bad-port", ["status"], {"CUTOVER_DATABASE_STATE_URL": f"postgresql+psycopg://u:{SECRET}@h:99999/x"},
     "port 99999 is out of range"),
    ("env-port-text", ["status"], {"CUTOVER_DATABASE_STATE_URL": f"postgresql+psycopg://u:{SECRET}@h:abc/x"},
     "not a database URL"),
    ("env-raw-at-password", ["status"], {"CUTOVER_DATABASE_AUTOLOADER_URL": "postgresql+psycopg://u:p@ss@h:5432/x"},
     "percent-encode"),
    ("env-driver-missing", ["status"], {"CUTOVER_DATABASE_STATE_URL": f"postgresql://u:{SECRET}@h/x"},
     "psycopg2 is not installed"),
    ("env-not-a-url", ["status"], {"CUTOVER_DATABASE_STATE_URL": "not a url"}, "not a database URL"),
    ("env-jobstore-url", ["legacy", "jobs"], {"CUTOVER_SCHEDULER_JOBSTORE_URL": "mysql://u@h/x"}, "mysql is not supported"),
    ("env-catalog-uri", ["table", "counts"], {"CUTOVER_CATALOG_URI": "oracle://h/x"}, "catalog.uri"),
    ("env-home-is-file", ["ingestion", "list"], {"CUTOVER_HOME": "@@good.yaml"}, "is a file"),
    ("env-home-under-file", ["ingestion", "list"], {"CUTOVER_HOME": "@@good.yaml/sub"}, "cannot be created"),
    ("env-nan-threshold", ["config", "show", "--json"], {"CUTOVER_PARITY_MAX_DURATION_RATIO": "nan"}, "finite"),
    ("env-negative-rate", ["config", "show"], {"CUTOVER_PARITY_MAX_FAILURE_RATE": "-0.1"}, "at least 0"),
    ("env-rate-above-1", ["config", "show"], {"CUTOVER_WATCH_FAILURE_RATE": "1.5"}, "at most 1"),
    ("env-batch-zero", ["config", "show"], {"CUTOVER_INGEST_BATCH_FILES": "0"}, "at least 1"),
    ("env-int-text", ["config", "show"], {"CUTOVER_SCHEDULER_MAX_WORKERS": "many"}, "whole number"),
    ("env-duration", ["config", "show"], {"CUTOVER_INGEST_CLAIM_TIMEOUT": "soon"}, "is not a duration"),
    ("env-bool", ["config", "show"], {"CUTOVER_WATCH_AUTO_ROLLBACK": "maybe"}, "true or false"),
    ("env-engine", ["config", "show"], {"CUTOVER_INGEST_ENGINE": "flink"}, "engine must be"),
    ("env-prefect-scheme", ["status"], {"PREFECT_API_URL": "ftp://prefect.example/api"}, "not http or https"),
    ("env-prefect-port", ["status"], {"PREFECT_API_URL": "http://127.0.0.1:99999/api"}, "not a valid URL"),
    ("env-spark-remote", ["config", "show"], {"CUTOVER_INGEST_SPARK_REMOTE": "http://spark:1"}, "spark"),
    # -- CLI options ----------------------------------------------------------------------------------
    ("runs-since-overflow", ["runs", "--since", "99999999999d"], {}, "longer than 100 years"),
    ("runs-since-text", ["runs", "--since", "lately"], {}, "is not a duration"),
    ("runs-limit-zero", ["runs", "--limit", "0"], {}, "at least 1"),
    ("runs-limit-text", ["runs", "--limit", "x"], {}, "not a valid integer"),
    ("runs-misspelt-option", ["runs", "--sinse", "1d"], {}, "--since"),
    ("misspelt-command", ["statsu"], {}, "did you mean 'status'"),
    ("log-limit-negative", ["log", "--limit", "-5"], {}, "at least 1"),
    ("plan-waves-200pct", ["plan", "--waves", "canary=1,200%"], {}, "200% is not a wave size"),
    ("plan-waves-zero", ["plan", "--waves", "0,rest"], {}, "is not a wave size"),
    ("plan-waves-rest-first", ["plan", "--waves", "rest,1"], {}, "must be the last"),
    ("plan-gate", ["plan", "--gate", "streak>=x"], {}, "not understood"),
    ("plan-select-key", ["plan", "--select", "colour=red"], {}, "colour"),
    ("plan-handoff", ["plan", "--handoff-timeout", "soon"], {}, "is not a duration"),
    ("execute-plan-list", ["execute", "@plan_list.json", "--dry-run"], {}, "not a JSON object"),
    ("execute-plan-binary", ["execute", "@plan_binary.json", "--dry-run"], {}, "binary file"),
    ("execute-plan-syntax", ["execute", "@plan_syntax.json", "--dry-run"], {}, "not a cutover plan"),
    ("execute-plan-edited", ["execute", "@plan_edited.json", "--dry-run"], {}, "plan"),
    ("execute-plan-wrong-type", ["execute", "@plan_wrong_type.json", "--dry-run"], {},
     "handoff_timeout '600' is str, not a number"),
    ("execute-plan-missing", ["execute", "@@nope.json", "--dry-run"], {}, "does not exist"),
    ("ledger-status", ["ledger", "orders", "--status", "BAD"], {}, "'BAD' is not one of"),
    ("ledger-unknown", ["ledger", "nope"], {}, "no ingestion 'nope'"),
    ("ledger-retry-neither", ["ledger", "retry", "orders"], {}, "--status FAILED"),
    ("ledger-retry-not-failed", ["ledger", "retry", "orders", "--file", "@@../src/a.csv"], {}, "only FAILED"),
    ("ledger-retry-unknown-file", ["ledger", "retry", "orders", "--file", "/no/such.csv"], {}, "not in the live ledger"),
    ("waive-expiry", ["waive", "orders", "--check", "ledger", "--reason", "r", "--owner", "o", "--expires", "someday"], {},
     "someday"),
    ("parity-unknown-check", ["parity", "orders", "--checks", "vibes"], {}, "unknown check"),
    ("parity-format", ["parity", "orders", "--format", "pdf"], {}, "unknown report format"),
    ("table-maintain-retain", ["table", "maintain", "orders", "--retain", "-1h"], {}, "duration"),
    ("cron-binary-crontab", ["cron", "import", "--crontab", "@crontab_binary", "--timezone", "UTC"], {}, "not UTF-8"),
]


def _resolve(value: str, files: dict[str, Path], inputs: Path) -> str:
    if value.startswith("@@"):
        return str(inputs / value[2:]) if value[2:] else str(inputs)
    if value.startswith("@"):
        return str(files[value[1:]])
    return value


def test_corpus_is_large_enough():
    assert len(CASES) >= 50 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(corpus_ws, case, monkeypatch, capsys):
    name, args, env, needle = case
    files = _files(corpus_ws["inputs"])
    for k in list(os.environ):
        if k.startswith("CUTOVER_") or k == "PREFECT_API_URL":
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("CUTOVER_HOME", str(corpus_ws["home"]))
    for k, v in env.items():
        monkeypatch.setenv(k, _resolve(v, files, corpus_ws["inputs"]))
    roots = (corpus_ws["home"], corpus_ws["etl"])
    _reset_db_caches()
    before = tree_hashes(*roots)
    rc, out, err = _cli([_resolve(a, files, corpus_ws["inputs"]) for a in args], capsys)
    _reset_db_caches()
    after = tree_hashes(*roots)
    lines = err.strip().splitlines()
    assert rc == 2, f"{name}: exit {rc}, stderr {err!r}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{name}: not one line: {err!r}"
    assert "Traceback" not in err and "unexpected" not in err
    assert needle in lines[0], f"{name}: {needle!r} not in {lines[0]!r}"
    assert SECRET not in out + err
    assert out == "", f"{name}: printed on stdout: {out!r}"
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert not changed, f"{name}: changed {changed}"


@pytest.mark.prefect
def test_unreachable_prefect_api_is_one_line_exit_2(corpus_ws, monkeypatch, capsys):
    """A PREFECT_API_URL nobody answers (port 9, discard): exit 2, one line, stores untouched."""
    for k in list(os.environ):
        if k.startswith("CUTOVER_") or k == "PREFECT_API_URL":
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("CUTOVER_HOME", str(corpus_ws["home"]))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    roots = (corpus_ws["home"], corpus_ws["etl"])
    _reset_db_caches()
    before = tree_hashes(*roots)
    rc, out, err = _cli(["prefect", "runs"], capsys)
    _reset_db_caches()
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "unreachable" in err, (rc, err)
    assert tree_hashes(*roots) == before


def test_data_file_bytes_are_escaped_and_cut_short_in_the_ledger(corpus_ws, monkeypatch, capsys):
    """The set-up's bad.csv holds control bytes: its ledger error shows them escaped, on one line."""
    monkeypatch.setenv("CUTOVER_HOME", str(corpus_ws["home"]))
    _reset_db_caches()
    rc, out, err = _cli(["ledger", "orders", "--status", "FAILED", "--json"], capsys)
    assert rc == 0, err
    errors = [e["error"] for e in json.loads(out)["entries"]] if isinstance(json.loads(out), dict) else \
        [e["error"] for e in json.loads(out)]
    assert errors and all("\x01" not in e and "\\x01" in e and "\n" not in e and len(e) <= 500 for e in errors), errors


def test_json_output_never_holds_a_bare_nan():
    from cutover.core.output import to_json

    text = to_json({"ratio": float("nan"), "rows": [1.5, float("inf"), -float("inf")]}, indent=None)
    assert json.loads(text) == {"ratio": None, "rows": [1.5, None, None]} and "NaN" not in text
