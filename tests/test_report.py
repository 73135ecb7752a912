"""Parity reports for people (HTML) and CI (JUnit), from a real failing parity run (value
divergences on a real Iceberg table) and from a passing one."""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET

import pyarrow.compute as pc
import pytest

from checks.report import render_html, render_junit, render_md, render_text
from cutover.cli import cli
from cutover.cli.app import run_main
from tests.test_values_parity import ROWS, _setup, col, rewrite_shadow


@pytest.fixture
def failing(workspace_env, tmp_path):
    """amount x100 and NULL -> '' in the shadow's files, one ledger row lost by the shadow."""
    from checks.parity import run_parity

    ws, ing, src = _setup(workspace_env, tmp_path)
    rewrite_shadow(ws, ing, lambda t: col(t, "amount", pc.multiply(t["amount"], 100)))
    rewrite_shadow(ws, ing, lambda t: col(t, "note", ["" if x is None else x for x in t["note"].to_pylist()]))
    rep = run_parity(ws, [ing], since=None, store=True)
    return ws, ing, rep


def _commands(html: str) -> list[str]:
    block = html.split("<section id='what-next'>")[1].split("</section>")[0]
    return [c.replace("&quot;", '"') for c in re.findall(r"<code>(.*?)</code>", block)]


def _real_command(capsys, line: str) -> None:
    """`line` names a real command path with real options: click parses it (unknown commands or
    options fail before --help is honoured)."""
    argv = shlex.split(line)
    assert argv[0] == "cutover"
    rc = run_main(cli, argv[1:] + ["--help"])
    out = capsys.readouterr()
    assert rc == 0, (line, out.err)
    assert "Usage:" in out.out


def test_html_report_captions_human_times_and_what_next(failing, capsys):
    ws, ing, rep = failing
    html = render_html(rep.as_dict(), rep.series)
    body = html.split("<body>")[1]
    # human times: to the second, in UTC; no ISO 'T', no microseconds, no offsets
    assert re.search(r"generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", body)
    assert not re.search(r"\d\d:\d\d:\d\d\.\d+", body), "microseconds"
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", body), "ISO timestamps"
    # no Python reprs anywhere (dicts, None, datetime objects)
    for repr_ in ("{'", "'}", "None", "datetime.", "True", "False"):
        assert repr_ not in body, repr_
    # every chart has a caption saying what it shows and what passing looks like
    figures = re.findall(r"<figure.*?</figure>", body, re.S)
    assert len(figures) == 2  # the runs plot and the per-column values chart
    for fig in figures:
        cap = re.search(r"<figcaption>(.*?)</figcaption>", fig, re.S)
        assert cap and "Passing looks like" in cap.group(1)
    chart = [f for f in figures if "class='bars'" in f][0]
    assert "<th scope='row'>amount</th>" in chart and f"{ROWS + ROWS // 2} (100.0% of rows)" in chart
    assert "<th scope='row'>note</th>" in chart
    assert "<img" in figures[0] or "<img" in figures[1]
    # the values findings, with NULL and '' visible
    assert "<td>NULL</td><td>&quot;&quot;</td>" in body
    # what next: the exact commands, each a real command path with real options
    cmds = _commands(html)
    assert "cutover parity orders --checks values --since fork --format json" in cmds
    assert any(c.startswith("cutover waive orders --check values ") for c in cmds)
    for c in cmds:
        _real_command(capsys, c)


def test_html_report_of_a_passing_run_says_how_to_go_on(workspace_env, tmp_path, capsys):
    from checks.parity import run_parity

    ws, ing, src = _setup(workspace_env, tmp_path)
    rep = run_parity(ws, [ing], since=None, store=False, checks=("counts", "values"))
    assert rep.verdict == "pass"
    html = render_html(rep.as_dict(), rep.series)
    cmds = _commands(html)
    assert cmds == ["cutover parity history", "cutover plan --out plan.json", "cutover execute plan.json --dry-run"]
    for c in cmds:
        _real_command(capsys, c)
    assert "<figure class='chart'>" not in html  # no mismatch, no chart


def test_junit_times_properties_and_one_message_per_finding(failing):
    ws, ing, rep = failing
    d = rep.as_dict()
    root = ET.fromstring(render_junit(d).split("?>", 1)[1])
    assert root.tag == "testsuites" and float(root.get("time")) > 0
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "parity.orders" and suite.get("failures") == "1" and suite.get("tests") == "5"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", suite.get("timestamp"))
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["ingestion"] == "orders"
    assert props["window"].startswith("since the shadow fork .. ") and props["window"].endswith(" UTC")
    tbl = ws.catalog.load(ing.table)
    assert props["commit"] == (f"main@{tbl.metadata.refs['main'].snapshot_id}, "
                               f"cutover-shadow@{tbl.metadata.refs['cutover-shadow'].snapshot_id}")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["runs", "ledger", "counts", "values", "quality"]
    for c in cases.values():
        assert float(c.get("time")) >= 0 and re.fullmatch(r"\d+\.\d{3}", c.get("time"))
    assert float(cases["quality"].get("time")) > 0
    failures = cases["values"].findall("failure")
    assert [f.get("type") for f in failures] == ["values_mismatch", "values_mismatch"]
    msgs = [f.get("message") for f in failures]
    assert msgs[0].startswith(f"values_mismatch: column amount: {ROWS + ROWS // 2} of ")
    assert msgs[1].startswith("values_mismatch: column note: ") and 'legacy NULL, shadow ""' in msgs[1]
    assert all(not cases[n].findall("failure") for n in ("runs", "ledger", "counts", "quality"))


def test_junit_error_and_waived(failing):
    from datetime import datetime, timedelta, timezone

    from checks.parity import run_parity
    from cutover.core.state.waivers import WaiverStore

    ws, ing, rep = failing
    WaiverStore(ws.state_engine).add(ing.id, "values", reason="rounding agreed with finance", owner="ana",
                                     expires_at=datetime.now(timezone.utc) + timedelta(days=3))
    rep = run_parity(ws, [ing], since=None, store=False, checks=("values",))
    assert rep.verdict == "pass"
    root = ET.fromstring(render_junit(rep.as_dict()).split("?>", 1)[1])
    (case,) = root.iter("testcase")
    skipped = case.find("skipped")
    assert skipped is not None and "waived by ana" in skipped.get("message") and "2 finding(s)" in skipped.get("message")


def test_text_and_markdown_carry_the_value_findings(failing):
    ws, ing, rep = failing
    d = rep.as_dict()
    text = render_text(d)
    assert f"values   FAIL  ({ROWS + ROWS // 2} rows on main vs {ROWS + ROWS // 2} on cutover-shadow" in text
    assert "- values_mismatch: column amount:" in text and "- values_mismatch: column note:" in text
    md = render_md(d)
    assert "| column | rows differing | largest difference | example key | legacy | shadow |" in md
    assert re.search(r"\| note \| \d+ \| – \| order_id=\d+ \| NULL \| \"\" \|", md)
    assert re.search(r"\| amount \| 600 \| [\d,.]+ \| order_id=\d+ \| [\d.]+ \| [\d.]+ \|", md)
