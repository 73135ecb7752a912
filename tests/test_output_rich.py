"""Output with rich (issue #18 item 4): on a terminal, tables drawn by rich that fit its width and
progress drawn by rich on stderr; into a pipe, the plain stable format; rich never loaded by
`cutover --help`. In-process: ``CUTOVER_RICH=1`` stands for the terminal, ``COLUMNS`` for its width."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cutover.core.output import rich_table_lines, table_lines
from cutover.core.progress import Progress, track, waiting
from tests.helpers import ROOT, add_ingestion, cutover_env, invoke_cli

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RULE = "─"  # the line rich draws under the header (box.SIMPLE_HEAD)


def _plain(text: str) -> str:
    return ANSI.sub("", text)


@pytest.fixture
def long_inventory(workspace_env, tmp_path):
    from cutover.core.workspace import Workspace

    ws = Workspace()
    for i in range(3):
        add_ingestion(ws, f"a-rather-long-ingestion-name-{i}", tmp_path / ("deep/" * 8), table=f"warehouse.t{i}" * 3,
                      schedule={"trigger": "cron", "day": "last fri", "hour": 2, "minute": "*/15"},
                      timezone="America/Argentina/Buenos_Aires", owner="data-platform-team@example.com")
    return ws


@pytest.mark.parametrize("width", [60, 80, 120])
def test_rich_table_fits_the_terminal(long_inventory, capsys, monkeypatch, width):
    monkeypatch.setenv("CUTOVER_RICH", "1")
    monkeypatch.setenv("COLUMNS", str(width))
    for cmd in (["ingestion", "list"], ["inventory", "--no-verify"]):
        code, out, err = invoke_cli(capsys, *cmd)
        assert code == 0, (cmd, err)
        lines = _plain(out).splitlines()
        assert lines[1].strip(RULE + " ") == "" and RULE * 10 in lines[1], lines[:2]  # drawn by rich
        assert len(lines) >= 5 and all(len(ln) <= width for ln in lines), (width, [ln for ln in lines if len(ln) > width])
        assert "…" in out and "--json prints them in full" in err
        columns = json.loads(invoke_cli(capsys, *cmd, "--json")[1])
        columns = columns["tables"][0]["columns"] if "tables" in columns else None
        if columns:  # every column kept (rich alone would drop those that do not fit), in order
            header = lines[0].split()
            assert len(header) == len(columns) and all(c.startswith(h.rstrip("…")) for h, c in zip(header, columns))
    # the full values stay in --json whatever the width
    code, out, _ = invoke_cli(capsys, "ingestion", "list", "--json")
    assert code == 0 and "a-rather-long-ingestion-name-0" in out and "warehouse.t0warehouse.t0warehouse.t0" in out


def test_rich_table_cells_cut_with_ellipsis_and_times_in_one_style(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    at = datetime(2026, 3, 29, 1, 30, 5, 123456, tzinfo=timezone.utc)
    rows = [("x" * 70, 5, at, None, "[bold]not markup[/bold]")]
    headers = ["name", "n", "started", "owner", "note"]
    lines, cut = rich_table_lines(rows, headers, 140)  # 127 characters wide: nothing cut
    assert not cut and "2026-03-29T01:30:05Z" in lines[2] and "[bold]not markup[/bold]" in lines[2]
    assert "x" * 70 in lines[2] and all(not ANSI.search(ln) or "\x1b[1m" in ln for ln in lines)
    lines, cut = rich_table_lines(rows, headers, 50)
    assert cut and all(len(_plain(ln)) <= 50 for ln in lines)
    cells = _plain(lines[2]).split()
    assert cells[0].endswith("…") and len(cells[0]) < 70 and cells[1] == "5"
    assert _plain(lines[0]).split() == headers  # the headers fit: none cut, none dropped


def test_rich_table_colour_follows_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    lines, _ = rich_table_lines([("a", "b")], ["first", "second"], 80)
    assert "\x1b[1;36m" in lines[0]  # header in bold cyan
    monkeypatch.setenv("NO_COLOR", "1")
    lines, _ = rich_table_lines([("a", "b")], ["first", "second"], 80)
    assert not re.search(r"\x1b\[[0-9;]*3[0-9]m|\x1b\[[0-9;]*;3[0-9]", lines[0]) and _plain(lines[0]).split() == ["first", "second"]


def test_piped_output_keeps_the_plain_format(long_inventory, capsys, monkeypatch):
    """Into a pipe (pytest's capture is one) nothing changes: the format scripts parse."""
    for env in ({}, {"CUTOVER_RICH": "0", "FORCE_COLOR": "1"}):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        code, out, _ = invoke_cli(capsys, "ingestion", "list")
        assert code == 0
        doc = json.loads(invoke_cli(capsys, "ingestion", "list", "--json")[1])
        headers = list(doc["tables"][0]["columns"]) if "tables" in doc else None
        lines = out.splitlines()
        assert RULE not in out and "…" not in out and set(lines[1].replace(" ", "")) == {"-"}
        assert "data-platform-team@example.com" in out
        if headers:
            rows = [[r[h] for h in headers] for r in doc["tables"][0]["rows"]]
            assert lines == table_lines(rows, headers)
    monkeypatch.delenv("CUTOVER_RICH")
    monkeypatch.setenv("FORCE_COLOR", "1")  # FORCE_COLOR alone: as on a terminal
    code, out, _ = invoke_cli(capsys, "ingestion", "list")
    assert code == 0 and RULE in out


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_silent_under_a_second_on_a_terminal():
    t = _Tty()
    with waiting("quick", stream=t) as w:
        w.note("RUNNING")
    assert list(track(range(50), "parity", stream=t)) == list(range(50))
    assert t.getvalue() == ""


def test_progress_drawn_with_rich_on_a_terminal():
    t = _Tty()
    with waiting("flow run 1a2b3c4d", stream=t, after=0.05) as w:
        w.note("RUNNING")
        time.sleep(0.5)
    drawn = t.getvalue()
    assert "\x1b[?25l" in drawn  # rich's live display (cursor hidden while drawing)
    assert re.search(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] 0:00:00 flow run 1a2b3c4d \(RUNNING\)", _plain(drawn)), drawn
    assert re.search(r"\n\r?  flow run 1a2b3c4d: done after [01]s\n$", _plain(drawn))  # the live line is gone

    t = _Tty()
    for _ in track(range(6), "parity", stream=t, after=0.05):
        time.sleep(0.05)
    drawn = _plain(t.getvalue())
    assert "━" in drawn and re.search(r"parity .*━.* \d/6 0:00:00", drawn), drawn  # bar, count, elapsed
    assert re.search(r"\n\r?  parity: 6/6 in [01]s\n$", drawn)

    t = _Tty()
    bar = Progress("pausing Prefect deployments", 0, t)  # unknown total: still drawn, never divides by 0
    bar.update(0)
    bar.close()
    assert "pausing Prefect deployments: 0/0 in" in _plain(t.getvalue())


def test_no_progress_line_from_a_quiet_waiter_into_a_pipe():
    """``plain=False``: the caller prints its own lines into a pipe (server start, flow runs)."""
    s = io.StringIO()
    with waiting("starting the Prefect server", stream=s, after=0.05, plain=False) as w:
        time.sleep(0.2)
        assert not w.live
    assert s.getvalue() == ""


def _imported(args: list[str], home: Path) -> str:
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "cutover", *args], cwd=ROOT,
                       env=cutover_env(home, FORCE_COLOR=None), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stderr


def test_help_and_piped_commands_do_not_import_rich(tmp_path):
    for args in (["--help"], ["config", "show"]):
        err = _imported(args, tmp_path / "home")
        mods = {ln.rpartition("|")[2].strip() for ln in err.splitlines() if ln.startswith("import time:")}
        assert "click" in mods and not any(m == "rich" or m.startswith("rich.") for m in mods), args
