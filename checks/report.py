"""Parity report renderers: text, JSON, Markdown, HTML (self-contained, with charts), JUnit.

Every format carries every finding of every check, value findings included (per column: rows
differing, largest difference, an example key; rows on one side; duplicated keys). The HTML
report is for people: times to the second in UTC, numbers with separators, a caption under
every chart saying what it shows and what passing looks like, and a "what next" block with
the exact commands. The JUnit report is for CI: one testcase per ingestion × check with its
time, one ``<failure>`` per finding with its own message, and properties naming the
ingestion, the window and the Iceberg commits (branch heads) judged.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree as ET

from checks.model import CHECKS, ERROR, FAIL, PASS
from cutover.core.redact import redact_text

FORMATS = ("text", "json", "md", "html", "junit")
EXT = {"text": "txt", "json": "json", "md": "md", "html": "html", "junit": "xml"}
_MARK = {PASS: "PASS", FAIL: "FAIL", ERROR: "ERROR"}
JUNIT_MAX_FAILURES = 100  # <failure> elements per testcase; the rest are counted in one more
_CI_COMMIT = ("GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT", "BUILD_SOURCEVERSION")
_ISO = re.compile(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


# -- shared helpers ---------------------------------------------------------------------------

def when(text: str | None, default: str = "") -> str:
    """An ISO time as people read it: '2026-12-03 07:38:15 UTC' (to the second, in UTC)."""
    if not text:
        return default
    try:
        dt = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return str(text)
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def seconds_text(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec} s" if m < 60 else f"{m // 60} h {m % 60} min"


def number(v) -> str:
    """1234567 -> '1,234,567'; 0.123456789 -> '0.1235'; NaN stays 'NaN'."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v == int(v) and abs(v) < 1e15:
            return f"{int(v):,}"
        if abs(v) >= 1:
            return f"{v:,.2f}".rstrip("0").rstrip(".")
        return f"{v:.4g}"
    return str(v)


def cell(v) -> str:
    """A compared value (legacy or shadow side of a finding): NULL and the empty string stay visible."""
    if v is None:
        return "NULL"
    if v == "":
        return '""'
    if isinstance(v, (int, float, str)) and not isinstance(v, bool):
        return str(v)  # the value itself, exact: no separators, no rounding, timestamps to the digit
    return human(v)


def key_text(key) -> str:
    """An example key: order_id=5094 (identifiers as they are, no separators)."""
    if isinstance(key, dict):
        return ", ".join(f"{k}={v}" for k, v in key.items())
    return cell(key)


def human(v) -> str:
    """Any metric or finding value as text without Python or JSON syntax."""
    if v is None:
        return "–"
    if isinstance(v, (bool, int, float)):
        return number(v)
    if isinstance(v, str):
        return when(v) if _ISO.match(v) else v
    if isinstance(v, dict):
        return "; ".join(f"{k}: {human(x)}" for k, x in v.items()) or "–"
    if isinstance(v, (list, tuple)):
        return ", ".join(human(x) for x in v) or "–"
    return str(v)


def _check_line(c: dict) -> str:
    tag = _MARK[c["verdict"]]
    if c.get("waiver"):
        w = c["waiver"]
        tag += f" (waived by {w['owner']} until {w['expires_at'][:10]}: {w['reason']})"
    if c.get("error"):
        tag += f" - {c['error']}"
    return tag


def _finding_line(f: dict) -> str:
    where = f" {f['file']}" if f.get("file") else ""
    return f"{f['kind']}{where}: {f.get('detail') or ''}".rstrip(": ")


def values_summary(c: dict) -> str:
    """One line for the values check: rows compared per side and from how many files."""
    m = c.get("metrics") or {}
    if "rows_legacy" not in m:
        return ""
    differ = f"; {number(m['differing_rows'])} row(s) with differing values" if m.get("differing_rows") else ""
    return (f"{number(m['rows_legacy'])} rows on main vs {number(m['rows_shadow'])} on cutover-shadow, "
            f"from {number(m.get('source_files', 0))} source file(s) of the window{differ}")


def _window(d: dict) -> str:
    return f"{when(d['window']['since'], 'since the shadow fork')} .. {when(d['window']['until'])}"


def _commit(ing: dict) -> str:
    heads = ing.get("heads") or {}
    return ", ".join(f"{b}@{s}" for b, s in heads.items() if s is not None)


# -- text, JSON, Markdown ---------------------------------------------------------------------

def render_text(d: dict) -> str:
    lines = [f"parity {_MARK[d['verdict']]}  window {_window(d)}"]
    for ing in d["ingestions"]:
        lines.append(f"{ing['id']}: {_MARK[ing['verdict']]} (clean streak {ing['streak']})")
        for c in ing["checks"]:
            extra = f"  ({values_summary(c)})" if c["name"] == "values" and values_summary(c) else ""
            lines.append(f"  {c['name']:<8} {_check_line(c)}{extra}")
            for f in c["findings"][:20]:
                lines.append(f"    - {_finding_line(f)}")
            if len(c["findings"]) > 20:
                lines.append(f"    ... {len(c['findings']) - 20} more (see the JSON report)")
    n = len(d["ingestions"])
    passed = sum(1 for i in d["ingestions"] if i["verdict"] == PASS)
    lines.append(f"{passed}/{n} ingestion(s) pass")
    return redact_text("\n".join(lines))


def render_json(d: dict) -> str:
    return redact_text(json.dumps(d, indent=2, default=str))


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_md(d: dict) -> str:
    out = [f"# Parity report: {_MARK[d['verdict']]}", "",
           f"Window: {_window(d)}  ",
           f"Generated: {when(d['generated_at'])}", "",
           "| ingestion | verdict | streak | " + " | ".join(CHECKS) + " |",
           "|---|---|---|" + "---|" * len(CHECKS)]
    for ing in d["ingestions"]:
        by = {c["name"]: c for c in ing["checks"]}
        cells = [(_MARK[by[n]["verdict"]] + (" (waived)" if by[n].get("waiver") else "")) if n in by else "-" for n in CHECKS]
        out.append(f"| {ing['id']} | **{_MARK[ing['verdict']]}** | {ing['streak']} | " + " | ".join(cells) + " |")
    for ing in d["ingestions"]:
        findings = [(c["name"], f) for c in ing["checks"] for f in c["findings"]]
        errors = [c for c in ing["checks"] if c.get("error")]
        if not findings and not errors:
            continue
        out += ["", f"## {ing['id']}", ""]
        for c in errors:
            out.append(f"- `{c['name']}` error: {c['error']}")
        for name, f in findings:
            out.append(f"- `{name}` **{f['kind']}**{' `' + f['file'] + '`' if f.get('file') else ''}: {f.get('detail', '')}")
        for c in ing["checks"]:
            cols = (c.get("metrics") or {}).get("columns") or {}
            if c["name"] == "values" and cols:
                out += ["", f"Values, per column ({values_summary(c)}):", "",
                        "| column | rows differing | largest difference | example key | legacy | shadow |",
                        "|---|---|---|---|---|---|"]
                for col, v in _by_mismatches(cols):
                    ex = (v.get("examples") or [{}])[0]
                    out.append(f"| {_md(col)} | {number(v['mismatches'])} | {_largest(v)} | {_md(key_text(ex.get('key')))} "
                               f"| {_md(cell(ex.get('legacy')))} | {_md(cell(ex.get('shadow')))} |")
    return redact_text("\n".join(out) + "\n")


def _by_mismatches(cols: dict) -> list[tuple[str, dict]]:
    return sorted(cols.items(), key=lambda kv: (-kv[1]["mismatches"], kv[0]))


def _largest(v: dict) -> str:
    if v.get("max_abs_diff") is None:
        return "–"
    return number(v["max_abs_diff"]) + (f" {v['unit']}" if v.get("unit") else "")


# -- HTML -------------------------------------------------------------------------------------

def _plot(series: dict, title: str) -> str | None:
    """Two small charts (records per run, run duration), legacy vs shadow, as a data: URI; None
    without runs or without matplotlib (the optional plotting library)."""
    if not series or not (series.get("legacy") or series.get("shadow")):
        return None
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 2.8), dpi=90)
    for side, style in (("legacy", "o-"), ("shadow", "s--")):
        pts = series.get(side) or []
        xs = [datetime.fromisoformat(p["at"]) for p in pts]
        axes[0].plot(xs, [p["records"] for p in pts], style, label=side, markersize=4)
        axes[1].plot(xs, [p["duration_s"] or 0 for p in pts], style, label=side, markersize=4)
    axes[0].set_title(f"{title}: records per run", fontsize=9)
    axes[1].set_title(f"{title}: run duration (s)", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
        fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


_RUNS_CAPTION = ("Each run in the window, legacy (circles) and the Prefect shadow (squares): records ingested per run "
                 "(left) and run duration in seconds (right). Passing looks like: the two lines on top of each other "
                 "on the left; on the right, durations of the same order. The runs check fails on duration only when "
                 "the shadow takes more than parity.max_duration_ratio (default 1.5) times legacy's time on runs "
                 "longer than parity.min_duration_s (default 5 s), so a gap between short runs is not a failure.")


def _values_chart(c: dict) -> str:
    """The per-column mismatch chart of the values check, as HTML bars (no plotting library)."""
    m = c.get("metrics") or {}
    cols = m.get("columns") or {}
    e = html.escape
    rows = m.get("rows_legacy") or 0
    if not cols:
        return ""
    top = max(v["mismatches"] for v in cols.values()) or 1
    bars = []
    for col, v in _by_mismatches(cols):
        width = max(1.0, 100.0 * v["mismatches"] / top)
        share = f" ({v['mismatches'] / rows:.1%} of rows)" if rows else ""
        bars.append(f"<tr><th scope='row'>{e(col)}</th><td class='bar'><div style='width:{width:.1f}%'></div></td>"
                    f"<td>{number(v['mismatches'])}{share}</td><td>{e(_largest(v))}</td></tr>")
    return ("<figure class='chart'><table class='bars'><tr><th>column</th><th>rows whose value differs</th>"
            "<th>count</th><th>largest difference</th></tr>" + "".join(bars) + "</table>"
            f"<figcaption>Rows whose value differs between main (legacy) and cutover-shadow, per column, among the "
            f"{number(rows)} rows the window's files hold on main, after the declared tolerances. Passing looks like: "
            f"no column listed here (the chart is empty and the values check passes).</figcaption></figure>")


def _what_next(d: dict) -> list[str]:
    """The exact commands to run next, per ingestion that is not passing, or towards the cutover."""
    items: list[str] = []
    for ing in d["ingestions"]:
        i = ing["id"]
        for c in ing["checks"]:
            name = c["name"]
            if c["verdict"] == ERROR and "shadow start" in (c.get("error") or ""):
                items.append((f"{i}: no shadow yet", f"cutover shadow start {i}"))
                break
            if c["verdict"] == ERROR:
                items.append((f"{i}: the {name} check could not run ({c.get('error')}); fix that, then re-run it",
                              f"cutover parity {i} --checks {name} --since fork"))
            elif c["verdict"] == FAIL and not c.get("waiver"):
                look = {"runs": f"cutover runs --ingestion {i} --since 24h",
                        "ledger": f"cutover ledger {i} --namespace shadow --status FAILED",
                        "counts": f"cutover table snapshots {ing.get('table') or 'TABLE'} --branch cutover-shadow",
                        "values": f"cutover parity {i} --checks values --since fork --format json",
                        "quality": f"cutover parity {i} --checks quality --since fork --format json"}[name]
                items.append((f"{i}: {name} failed; look closer", look))
                items.append((f"{i}: once fixed, re-check", f"cutover parity {i} --checks {name} --since fork"))
                items.append((f"{i}: or, if the difference is understood and accepted, waive it for a while",
                              f"cutover waive {i} --check {name} --owner YOU --reason \"WHY\" --expires YYYY-MM-DD"))
    if not items:
        items.append(("every ingestion passes: see the clean streaks the cutover gate counts", "cutover parity history"))
        items.append(("plan the cutover in waves (the gate needs a clean streak)", "cutover plan --out plan.json"))
        items.append(("see what the first wave would do, changing nothing", "cutover execute plan.json --dry-run"))
    e = html.escape
    out = ["<section id='what-next'><h2>What next</h2><ol>"]
    for why, cmd in items:
        out.append(f"<li>{e(why)}:<br><code>{e(cmd)}</code></li>")
    out.append("</ol></section>")
    return out


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.9em}th{background:#f4f4f4}
.pass{background:#e6f4ea}.fail{background:#fce8e6}.error{background:#fff4e5}code{font-size:.9em}
h1 span{padding:.1em .5em;border-radius:.3em}figure{margin:1em 0}figcaption{font-size:.85em;color:#555;max-width:60em}
.bars td.bar{width:20em}.bars td.bar div{background:#c5221f;height:.9em}dl.metrics{display:grid;
grid-template-columns:max-content auto;gap:.1em 1em;font-size:.9em}dl.metrics dt{color:#555}dl.metrics dd{margin:0}
#what-next{border:1px solid #ccc;padding:.5em 1em;background:#f8f9fa}#what-next li{margin:.4em 0}"""


def render_html(d: dict, series: dict | None = None) -> str:
    e = html.escape
    series = series or {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>cutover parity {e(d['verdict'])}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Parity <span class='{d['verdict']}'>{_MARK[d['verdict']]}</span></h1>",
             f"<p>Window {e(when(d['window']['since'], 'since the shadow fork'))} to {e(when(d['window']['until']))}; "
             f"generated {e(when(d['generated_at']))}.</p>",
             "<table><tr><th>ingestion</th><th>verdict</th><th>clean streak</th>"
             + "".join(f"<th>{c}</th>" for c in CHECKS) + "</tr>"]
    for ing in d["ingestions"]:
        by = {c["name"]: c for c in ing["checks"]}
        cells = "".join(
            f"<td class='{by[n]['verdict']}'>{_MARK[by[n]['verdict']]}{' (waived)' if by[n].get('waiver') else ''}</td>"
            if n in by else "<td>–</td>" for n in CHECKS)
        parts.append(f"<tr><td><a href='#{e(ing['id'])}'>{e(ing['id'])}</a></td><td class='{ing['verdict']}'>"
                     f"{_MARK[ing['verdict']]}</td><td>{number(ing['streak'])}</td>{cells}</tr>")
    parts.append("</table>")
    parts += _what_next(d)
    for ing in d["ingestions"]:
        parts.append(f"<h2 id='{e(ing['id'])}'>{e(ing['id'])}: {_MARK[ing['verdict']]}</h2>")
        if _commit(ing):
            parts.append(f"<p>Iceberg commits judged: {e(_commit(ing))}.</p>")
        img = _plot(series.get(ing["id"]), ing["id"])
        if img:
            parts.append(f"<figure><img alt='records and durations of {e(ing['id'])}' src='{img}'>"
                         f"<figcaption>{e(_RUNS_CAPTION)}</figcaption></figure>")
        for c in ing["checks"]:
            took = f" <small>({e(seconds_text(c.get('seconds')))})</small>" if c.get("seconds") is not None else ""
            parts.append(f"<h3>{e(c['name'])}: {e(_check_line(c))}{took}</h3>")
            if c["name"] == "values":
                if values_summary(c):
                    parts.append(f"<p>{e(values_summary(c))}.</p>")
                parts.append(_values_chart(c))
            metrics = {k: v for k, v in (c.get("metrics") or {}).items()
                       if not (c["name"] == "values" and k in ("columns", "only_examples", "duplicate_examples"))}
            if metrics:
                parts.append("<dl class='metrics'>" + "".join(
                    f"<dt>{e(str(k).replace('_', ' '))}</dt><dd>{e(str(v) if str(k).endswith('id') else human(v))}</dd>"
                    for k, v in metrics.items()) + "</dl>")
            if c["findings"]:
                parts.append("<table><tr><th>kind</th><th>file</th><th>legacy</th><th>shadow</th><th>detail</th></tr>")
                for f in c["findings"][:500]:
                    parts.append(f"<tr><td>{e(f['kind'])}</td><td>{e(f.get('file') or '')}</td>"
                                 f"<td>{e(cell(f.get('legacy')))}</td><td>{e(cell(f.get('shadow')))}</td>"
                                 f"<td>{e(f.get('detail') or '')}</td></tr>")
                parts.append("</table>")
                if len(c["findings"]) > 500:
                    parts.append(f"<p>{number(len(c['findings']) - 500)} more finding(s): see the JSON report.</p>")
    parts.append("</body></html>")
    return redact_text("\n".join(parts))


# -- JUnit ------------------------------------------------------------------------------------

def render_junit(d: dict) -> str:
    """One testsuite per ingestion (properties: ingestion, window, commit), one testcase per
    check with its time; fail -> one <failure> per finding (its own message), error -> <error>,
    waived -> <skipped>."""
    stamp = when(d["generated_at"]).replace(" UTC", "").replace(" ", "T")
    window = _window(d)
    ci = next((os.environ[k] for k in _CI_COMMIT if os.environ.get(k)), None)
    suites = ET.Element("testsuites", name="cutover parity")
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for ing in d["ingestions"]:
        suite = ET.SubElement(suites, "testsuite", name=f"parity.{ing['id']}", timestamp=stamp)
        props = ET.SubElement(suite, "properties")
        for k, v in (("ingestion", ing["id"]), ("window", window), ("commit", _commit(ing) or "none"),
                     ("table", ing.get("table")), ("ci_commit", ci), ("verdict", ing["verdict"])):
            if v:
                ET.SubElement(props, "property", name=k, value=str(v))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        suite_time = 0.0
        for c in ing["checks"]:
            counts["tests"] += 1
            t = float(c.get("seconds") or 0.0)
            suite_time += t
            case = ET.SubElement(suite, "testcase", classname=f"parity.{ing['id']}", name=c["name"], time=f"{t:.3f}")
            if c["verdict"] == FAIL and c.get("waiver"):
                counts["skipped"] += 1
                w = c["waiver"]
                ET.SubElement(case, "skipped", message=f"waived by {w['owner']} until {w['expires_at'][:10]}: {w['reason']} "
                                                       f"({len(c['findings'])} finding(s))")
            elif c["verdict"] == FAIL:
                counts["failures"] += 1
                for f in c["findings"][:JUNIT_MAX_FAILURES]:
                    el = ET.SubElement(case, "failure", message=_finding_line(f), type=f["kind"])
                    el.text = json.dumps({k: f.get(k) for k in ("file", "legacy", "shadow")}, default=str)
                if len(c["findings"]) > JUNIT_MAX_FAILURES:
                    ET.SubElement(case, "failure", type="more",
                                  message=f"{len(c['findings']) - JUNIT_MAX_FAILURES} more finding(s): see the JSON report")
                if c["name"] == "values" and values_summary(c):
                    ET.SubElement(case, "system-out").text = values_summary(c)
            elif c["verdict"] == ERROR:
                counts["errors"] += 1
                ET.SubElement(case, "error", message=c.get("error") or "error", type="parity")
        for k, v in counts.items():
            suite.set(k, str(v))
            total[k] += v
        suite.set("time", f"{suite_time:.3f}")
        total_time += suite_time
    for k, v in total.items():
        suites.set(k, str(v))
    suites.set("time", f"{total_time:.3f}")
    return redact_text(ET.tostring(suites, encoding="unicode", xml_declaration=True))


def write_reports(d: dict, formats: list[str], out_dir: Path, series: dict | None = None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out_dir / f"parity.{EXT[fmt]}"
        text = {"text": lambda: render_text(d), "json": lambda: render_json(d), "md": lambda: render_md(d),
                "html": lambda: render_html(d, series), "junit": lambda: render_junit(d)}[fmt]()
        path.write_text(text)
        written.append(path)
    return written
