"""Output people like (issue #18 item 4): --json on every command, tables that fit the terminal,
one time style, progress on waits -- through cutover.core.output and cutover.core.progress."""

from __future__ import annotations

import io
import json
import time
from datetime import datetime, timedelta, timezone

import click
import pytest

from cutover.core.output import fit_widths, iso_time, table_lines
from cutover.core.progress import Progress, track, waiting
from tests.helpers import add_ingestion, invoke_cli


def _leaves(cmd: click.Command, path: list[str], ctx: click.Context):
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, f"{' '.join(path + [name])} cannot be loaded"
            yield from _leaves(sub, path + [name], click.Context(sub, parent=ctx, info_name=name))
    else:
        yield path, cmd


def test_every_command_accepts_json():
    from cutover.cli import cli

    leaves = list(_leaves(cli, [], click.Context(cli, info_name="cutover")))
    assert len(leaves) > 60  # every verb, the sides' included
    missing = [" ".join(p) for p, c in leaves if not any("--json" in getattr(o, "opts", ()) for o in c.params)]
    assert missing == []
    for path in (["execute"], ["parity", "history"], ["rq", "pause"], ["cron", "pause"], ["schedules", "translate"]):
        assert any(p == path for p, _ in leaves), path


def test_generic_json_is_one_document(workspace_env, tmp_path, capsys):
    from cutover.core.workspace import Workspace

    code, out, _ = invoke_cli(capsys, "db", "history", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["command"].endswith("db history") and doc["exit_code"] == 0
    [table] = doc["tables"]
    assert table["columns"] == ["db", "revision", "down", "description"] and table["rows"][0]["revision"]

    add_ingestion(Workspace(), "orders", tmp_path)
    code, out, _ = invoke_cli(capsys, "ingestion", "export", "--json")  # --format json
    assert code == 0 and [i["id"] for i in json.loads(out)["ingestions"]] == ["orders"]
    code, out, _ = invoke_cli(capsys, "parity", "history", "--json")
    assert code == 0 and json.loads(out) == {"rows": [], "streaks": {}}
    code, out, _ = invoke_cli(capsys, "ingestion", "remove", "orders", "--dry-run", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["exit_code"] == 0 and doc["messages"]


def test_tables_fit_80_columns(workspace_env, tmp_path, capsys, monkeypatch):
    from cutover.core.state import audit
    from cutover.core.workspace import Workspace

    ws = Workspace()
    for i in range(3):
        add_ingestion(ws, f"a-rather-long-ingestion-name-{i}", tmp_path / ("deep/" * 8), table=f"warehouse.t{i}" * 3,
                      schedule={"trigger": "cron", "day": "last fri", "hour": 2, "minute": "*/15"},
                      timezone="America/Argentina/Buenos_Aires", owner="data-platform-team@example.com")
    audit.record(ws.state_engine, "test", target="x" * 60, reason="a reason that is far too long " * 4)
    monkeypatch.setenv("COLUMNS", "80")
    for cmd in (["ingestion", "list"], ["inventory", "--no-verify"], ["log"], ["schedules", "translate", "--all"]):
        code, out, err = invoke_cli(capsys, *cmd)
        assert code == 0, (cmd, err)
        lines = out.splitlines()
        if cmd[0] != "schedules":
            assert len(lines) >= 3 and "…" in out and "--json prints them in full" in err
            assert all(len(ln) <= 80 for ln in lines), (cmd, [ln for ln in lines if len(ln) > 80])
    # full values in JSON
    code, out, _ = invoke_cli(capsys, "ingestion", "list", "--json")
    assert "a-rather-long-ingestion-name-0" in out and "warehouse.t0warehouse.t0warehouse.t0" in out
    # into a pipe without COLUMNS: nothing is cut
    monkeypatch.delenv("COLUMNS")
    code, out, _ = invoke_cli(capsys, "ingestion", "list")
    assert "…" not in out and "data-platform-team@example.com" in out


def test_fit_widths():
    assert fit_widths([10, 10], ["a", "b"], 80) == [10, 10]
    w = fit_widths([50, 5, 60], ["name", "n", "description"], 40)
    assert sum(w) + 4 <= 40 and w[1] == 5 and w[0] >= 6 and w[2] >= 11
    lines = table_lines([("x" * 50, 1, "y" * 60)], ["name", "n", "description"], width=40)
    assert all(len(ln) <= 40 for ln in lines) and lines[2].split()[0].endswith("…")


def test_one_time_style():
    assert iso_time(datetime(2026, 3, 29, 1, 30, 5, 123456, tzinfo=timezone.utc)) == "2026-03-29T01:30:05Z"
    assert iso_time("2026-03-29T01:30:05.123456+00:00") == "2026-03-29T01:30:05Z"
    assert iso_time("2026-03-29 01:30:05") == "2026-03-29T01:30:05Z"  # cutover stores UTC
    assert iso_time(datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))) == "2026-03-29T03:30:00+02:00"
    assert iso_time("daily 02:30") == "daily 02:30" and iso_time(5) == 5
    rows = table_lines([(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc), "2026-01-02T03:04:05.000006")],
                       ["a", "b"])
    assert rows[2].split() == ["2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_quiet_under_a_second_then_shown():
    s = io.StringIO()
    with waiting("quick", stream=s):
        pass
    assert s.getvalue() == ""
    s = io.StringIO()
    with waiting("starting the Prefect server", stream=s, after=0.05) as w:
        w.note("HTTP 503")
        time.sleep(0.4)
    assert s.getvalue().startswith("  starting the Prefect server ...\n")
    assert "starting the Prefect server: done after" in s.getvalue()
    t = _Tty()
    with pytest.raises(RuntimeError):
        with waiting("flow run 1234", stream=t, after=0.05) as w:
            w.note("RUNNING")
            time.sleep(0.4)
            raise RuntimeError("boom")
    assert "\rflow run" not in t.getvalue() and "(RUNNING)" in t.getvalue() and "flow run 1234: failed" in t.getvalue()

    s = io.StringIO()
    assert list(track(range(5), "parity", stream=s)) == [0, 1, 2, 3, 4]
    assert s.getvalue() == ""  # fast work: quiet
    s = io.StringIO()
    bar = Progress("pausing", 20, s)
    for i in range(1, 21):
        bar.update(i)
    bar.close()
    assert s.getvalue().splitlines()[-1] == "  pausing: 20/20"
