"""The generic job model (cutover.core.records.jobs): validation, argument encoding, storage,
the shared definition file and the inventory listing."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from cutover.core.errors import InputError
from cutover.core.records.jobs import Job, decode_value, encode_value, validate_job
from cutover.core.workspace import Workspace

CALL = {"id": "orders-eu", "kind": "callable", "target": "acme.etl.orders:load", "args": ["eu", 3],
        "kwargs": {"full": True, "api_token": "s3cr3t"}, "code_location": "package:acme-etl",
        "schedule": {"trigger": "cron", "hour": "2", "minute": "30"}, "timezone": "Europe/Berlin",
        "timeout_s": 600, "retries": 2, "shadow": "env"}
CMD = {"id": "sync-customers", "kind": "command", "shell": "/opt/etl/bin/sync_customers.sh --full",
       "cwd": "/opt/etl", "env": {"DB_PASSWORD": "hunter2", "ETL_ENV": "prod"}, "ok_exit_codes": [0, 3],
       "schedule": {"crontab": "15 2 * * *"}, "shadow": "observe"}


def test_values_round_trip_exactly():
    v = [("a", 1), {"k": {1, 2}}, {1: "x", (2, 3): date(2026, 1, 2)}, datetime(2026, 3, 1, 2, 30, tzinfo=timezone.utc),
         time(4, 5), timedelta(days=1, seconds=3), Decimal("1.10"), b"\x00\xff", float("inf"), frozenset({"z"}),
         {"$cutover": "not a tag"}]
    enc = encode_value(v)
    import json

    assert decode_value(json.loads(json.dumps(enc))) == v
    with pytest.raises(ValueError, match="object"):
        encode_value([object()])


def test_validate_callable_and_command():
    c = validate_job(CALL)
    assert (c.kind, c.target, c.code_package, c.retries, c.timeout_s, c.shadow) == (
        "callable", "acme.etl.orders:load", "acme-etl", 2, 600.0, "env")
    assert c.call_args() == (["eu", 3], {"full": True, "api_token": "s3cr3t"})
    assert "s3cr3t" not in str(c.public_dict()) and "s3cr3t" not in c.describe_target()
    m = validate_job(CMD)
    assert m.ok_exit_codes == (0, 3) and m.shell and m.argv is None
    assert "hunter2" not in str(m.public_dict()) and "hunter2" not in str(m.definition())
    assert validate_job({**m.definition(), "env": m.env}) == m  # the definition form reads back
    assert validate_job({**c.definition(), "kwargs": c.kwargs}) == c


@pytest.mark.parametrize("bad, words", [
    ({**CALL, "target": "acme.etl.orders.load"}, "pkg.module:function"),
    ({**CALL, "kind": "lambda"}, "kind"),
    ({**CALL, "argv": ["x"]}, "unknown field"),
    ({**CMD, "argv": ["x"]}, "exactly one of argv and shell"),
    ({**CMD, "ok_exit_codes": [300]}, "ok_exit_codes"),
    ({**CMD, "env": {"A": "***"}}, "mask"),
    ({**CALL, "shadow": "yolo"}, "observe"),
    ({**CALL, "retries": -1}, "retries"),
    ({**CALL, "args": [object()]}, "cannot store"),
    ({**CALL, "schedule": {"cron": "99 * * * *"}}, "orders-eu"),
])
def test_bad_definitions_are_refused_with_the_reason(bad, words):
    with pytest.raises(InputError) as e:
        validate_job(bad)
    assert words in e.value.one_line()


def test_definition_file_stores_both_kinds_and_lists_them(workspace_env, tmp_path):
    import yaml

    from cutover.commands import ingestions as C

    f = tmp_path / "inv.yaml"
    ing = {"id": "orders", "source_uri": str(tmp_path), "format": "csv", "table": "raw.orders", "kind": "ingestion"}
    f.write_text(yaml.safe_dump({"ingestions": [ing, CALL, CMD]}))
    ws = Workspace()
    dry = C.ingestion_add(ws, from_file=f, dry_run=True)
    assert dry.counts()["create"] == 3 and ws.jobs.list() == []
    res = C.ingestion_add(ws, from_file=f)
    assert [a for a, _ in res.jobs] == ["create", "create"]
    assert C.ingestion_add(ws, from_file=f).counts() == {"create": 0, "update": 0, "unchanged": 3}
    listed = C.ingestion_list(ws).as_dict()
    assert [(d["id"], d["kind"]) for d in listed] == [("orders", "ingestion"), ("orders-eu", "callable"),
                                                      ("sync-customers", "command")]
    assert "hunter2" not in str(listed) and "s3cr3t" not in str(listed)
    assert ws.jobs.get("sync-customers").env["DB_PASSWORD"] == "hunter2"  # stored: the job needs it
    # the export is a definition file again (env values masked, as credentials are)
    out = yaml.safe_load(C.ingestion_export(ws))
    assert [d.get("kind", "ingestion") for d in out["ingestions"]] == ["ingestion", "callable", "command"]
    # one id, one thing
    clash = tmp_path / "clash.yaml"
    clash.write_text(yaml.safe_dump([{**CMD, "id": "orders"}]))
    with pytest.raises(InputError, match="already name"):
        C.ingestion_add(ws, from_file=clash)
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump([{**CALL, "retries": 5}]))
    with pytest.raises(InputError, match="--replace"):
        C.ingestion_add(ws, from_file=changed)
    assert ws.jobs.get("orders-eu").retries == 2
    C.ingestion_add(ws, from_file=changed, replace=True)
    assert ws.jobs.get("orders-eu").retries == 5
    assert isinstance(ws.jobs.get("orders-eu"), Job)


def test_a_job_is_removed_from_the_inventory_like_an_ingestion(workspace_env):
    from cutover.commands import ingestions as C
    from cutover.core.errors import NotFound

    ws = Workspace()
    ws.jobs.upsert([validate_job(CMD)], replace_existing=False)
    assert C.ingestion_remove(ws, ["sync-customers"], dry_run=True).ids == ["sync-customers"]
    assert ws.jobs.find("sync-customers") is not None
    C.ingestion_remove(ws, ["sync-customers"])
    assert ws.jobs.find("sync-customers") is None
    with pytest.raises(NotFound):
        C.ingestion_remove(ws, ["sync-customers"])
