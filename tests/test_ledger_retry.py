"""`cutover ledger retry`: a FAILED file whose content did not change is retried only when
re-queued; --dry-run changes nothing; the operator lock and the audit log (issue #18)."""

from __future__ import annotations

import hashlib
import json

import yaml

from cutover.cli import cli
from cutover.cli.app import run_main


def _cli(capsys, *args):
    rc = run_main(cli, [str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _defs(tmp_path, src, **options):
    p = tmp_path / "defs.yaml"
    p.write_text(yaml.safe_dump({"ingestions": [{"id": "orders", "source_uri": str(src), "pattern": "*.csv",
                                                 "format": "csv", "table": "shop.orders", "options": options}]}))
    return p


def _digest(home):
    from cutover.core import db

    db.dispose_engines()
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(home.glob("*.db"))}


def test_retry_requeues_an_unchanged_failed_file(workspace_env, tmp_path, capsys):
    home = workspace_env
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.csv").write_text("id,v\n1,2\n")
    (src / "b.csv").write_text("id;v\n3;4\n")  # the wrong delimiter for this ingestion: one column "id;v"
    assert _cli(capsys, "ingestion", "add", "--from-file", _defs(tmp_path, src))[0] == 0
    rc, out, _ = _cli(capsys, "legacy", "run", "orders")
    assert rc == 3 and "FAILED" in out
    b = str((src / "b.csv").resolve())
    # the cause is fixed outside the file: the reader option
    assert _cli(capsys, "ingestion", "add", "--from-file", _defs(tmp_path, src, delimiter=";"), "--replace")[0] == 0
    rc, out, _ = _cli(capsys, "legacy", "run", "orders")
    assert rc == 0 and "processed 0" in out  # unchanged FAILED file: not retried on its own

    before = _digest(home)
    rc, out, err = _cli(capsys, "ledger", "retry", "orders", "--status", "FAILED", "--dry-run")
    assert rc == 0 and b in out and "would re-queue 1" in out and "nothing was changed" in out, err
    assert _digest(home) == before  # the dry run wrote nothing

    from cutover.core.state import lock
    from cutover.core.workspace import Workspace

    ws = Workspace()
    held = lock.acquire(ws.state_engine, "another operation")
    rc, _, err = _cli(capsys, "ledger", "retry", "orders", "--file", b)
    assert rc == 1 and "locked by" in err
    lock.release(ws.state_engine, held)

    rc, out, err = _cli(capsys, "ledger", "retry", "orders", "--file", b, "--reason", "delimiter fixed")
    assert rc == 0 and "re-queued 1" in out, err
    rc, out, _ = _cli(capsys, "ledger", "orders", "--status", "FAILED", "--json")
    entries = json.loads(out)
    entries = entries["entries"] if isinstance(entries, dict) else entries
    assert [e["retry_queued"] for e in entries] == [True]
    assert _cli(capsys, "ledger", "retry", "orders", "--file", b)[0] == 0  # re-running converges
    rc, out, _ = _cli(capsys, "log", "--json")
    assert any(r["action"] == "ledger-retry" and r["reason"] == "delimiter fixed" for r in json.loads(out))

    rc, out, _ = _cli(capsys, "legacy", "run", "orders")
    assert rc == 0 and "processed 1" in out
    rc, out, _ = _cli(capsys, "ledger", "orders", "--summary", "--json")
    assert json.loads(out) == {"SUCCESS": 2}
    rc, out, _ = _cli(capsys, "ledger", "retry", "orders", "--status", "FAILED")
    assert rc == 0 and "nothing to retry" in out
