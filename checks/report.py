"""Parity report renderers: text, JSON, Markdown, HTML (self-contained, with plots), JUnit."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from xml.etree import ElementTree as ET

from checks.model import CHECKS, ERROR, FAIL, PASS
from cutover.core.extras import require
from cutover.core.redact import redact_text

FORMATS = ("text", "json", "md", "html", "junit")
EXT = {"text": "txt", "json": "json", "md": "md", "html": "html", "junit": "xml"}
_MARK = {PASS: "PASS", FAIL: "FAIL", ERROR: "ERROR"}


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


def render_text(d: dict) -> str:
    lines = [f"parity {_MARK[d['verdict']]}  window {d['window']['since'] or 'since fork'} .. {d['window']['until']}"]
    for ing in d["ingestions"]:
        lines.append(f"{ing['id']}: {_MARK[ing['verdict']]} (clean streak {ing['streak']})")
        for c in ing["checks"]:
            lines.append(f"  {c['name']:<8} {_check_line(c)}")
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


def render_md(d: dict) -> str:
    out = [f"# Parity report: {_MARK[d['verdict']]}", "",
           f"Window: {d['window']['since'] or 'since the shadow fork'} .. {d['window']['until']}  ",
           f"Generated: {d['generated_at']}", "",
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
    return redact_text("\n".join(out) + "\n")


def _plot(series: dict, title: str) -> str | None:
    """Two small charts (records per run, run duration), legacy vs shadow, as a data: URI."""
    if not series or not (series.get("legacy") or series.get("shadow")):
        return None
    matplotlib = require("matplotlib", what="the plots of the HTML parity report")
    matplotlib.use("Agg")
    from datetime import datetime

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
        fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.9em}th{background:#f4f4f4}
.pass{background:#e6f4ea}.fail{background:#fce8e6}.error{background:#fff4e5}code{font-size:.9em}
h1 span{padding:.1em .5em;border-radius:.3em}"""


def render_html(d: dict, series: dict | None = None) -> str:
    e = html.escape
    series = series or {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>cutover parity {e(d['verdict'])}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Parity <span class='{d['verdict']}'>{_MARK[d['verdict']]}</span></h1>",
             f"<p>Window {e(d['window']['since'] or 'since the shadow fork')} .. {e(d['window']['until'])}; "
             f"generated {e(d['generated_at'])}.</p>",
             "<table><tr><th>ingestion</th><th>verdict</th><th>streak</th>" + "".join(f"<th>{c}</th>" for c in CHECKS) + "</tr>"]
    for ing in d["ingestions"]:
        by = {c["name"]: c for c in ing["checks"]}
        cells = "".join(
            f"<td class='{by[n]['verdict']}'>{_MARK[by[n]['verdict']]}{' (waived)' if by[n].get('waiver') else ''}</td>"
            if n in by else "<td>-</td>" for n in CHECKS)
        parts.append(f"<tr><td><a href='#{e(ing['id'])}'>{e(ing['id'])}</a></td><td class='{ing['verdict']}'>"
                     f"{_MARK[ing['verdict']]}</td><td>{ing['streak']}</td>{cells}</tr>")
    parts.append("</table>")
    for ing in d["ingestions"]:
        parts.append(f"<h2 id='{e(ing['id'])}'>{e(ing['id'])}: {_MARK[ing['verdict']]}</h2>")
        img = _plot(series.get(ing["id"]), ing["id"])
        if img:
            parts.append(f"<img alt='records and durations of {e(ing['id'])}' src='{img}'>")
        for c in ing["checks"]:
            parts.append(f"<h3>{e(c['name'])}: {e(_check_line(c))}</h3>")
            if c.get("metrics"):
                parts.append("<p>" + ", ".join(f"{e(str(k))}: <code>{e(str(v))}</code>" for k, v in c["metrics"].items()) + "</p>")
            if c["findings"]:
                parts.append("<table><tr><th>kind</th><th>file</th><th>legacy</th><th>shadow</th><th>detail</th></tr>")
                for f in c["findings"][:500]:
                    parts.append(f"<tr><td>{e(f['kind'])}</td><td>{e(f.get('file') or '')}</td>"
                                 f"<td><code>{e(json.dumps(f.get('legacy'), default=str))}</code></td>"
                                 f"<td><code>{e(json.dumps(f.get('shadow'), default=str))}</code></td>"
                                 f"<td>{e(f.get('detail') or '')}</td></tr>")
                parts.append("</table>")
    parts.append("</body></html>")
    return redact_text("\n".join(parts))


def render_junit(d: dict) -> str:
    """One testcase per ingestion x check; fail -> <failure>, error -> <error>, waived -> <skipped>."""
    suites = ET.Element("testsuites", name="cutover parity")
    suite = ET.SubElement(suites, "testsuite", name="parity", timestamp=d["generated_at"])
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for ing in d["ingestions"]:
        for c in ing["checks"]:
            counts["tests"] += 1
            case = ET.SubElement(suite, "testcase", classname=f"parity.{ing['id']}", name=c["name"])
            body = "\n".join(_finding_line(f) for f in c["findings"])
            if c["verdict"] == FAIL and c.get("waiver"):
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=f"waived: {c['waiver']['reason']}")
            elif c["verdict"] == FAIL:
                counts["failures"] += 1
                el = ET.SubElement(case, "failure", message=f"{len(c['findings'])} finding(s)", type="parity")
                el.text = body
            elif c["verdict"] == ERROR:
                counts["errors"] += 1
                ET.SubElement(case, "error", message=c.get("error") or "error", type="parity")
    for k, v in counts.items():
        suite.set(k, str(v))
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
