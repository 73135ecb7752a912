"""No secret fragment anywhere (issue #18): passwords holding each of ``@ # / : % ? &`` and a space,
written raw or percent-encoded in URLs, in settings, definitions and credentials, through every
output format (text, JSON, YAML, the five parity report formats), the error line and the log.

Every password is ``Kq7<c>Vz3-<n>``: a leak of either side of the special character (``Kq7`` or
``Vz3``) fails the test, so a redaction that cuts the URL at the wrong ``@`` or ``#`` is caught.
"""

from __future__ import annotations

import json
import logging
import os
from urllib.parse import quote

import pytest
import yaml

from cutover.cli import cli
from cutover.cli.app import run_main
from cutover.core import redact

SPECIALS = ["@", "#", "/", ":", "%", "?", "&", " "]
PASSWORDS = [f"Kq7{c}Vz3-{i}" for i, c in enumerate(SPECIALS)] + ["Kq7@#/:%?& Vz3-all"]
FRAGMENTS = ("Kq7", "Vz3")


def assert_clean(text: str, where: str) -> None:
    for frag in FRAGMENTS:
        assert frag not in text, f"{where}: secret fragment {frag!r} in {text[:400]!r}"


@pytest.fixture(autouse=True)
def _fresh_registry():
    redact.forget_secrets()
    yield
    redact.forget_secrets()


# -- the parser ------------------------------------------------------------------------------

@pytest.mark.parametrize("pw", PASSWORDS)
@pytest.mark.parametrize("template", [
    "postgresql+psycopg://app:{pw}@db.example:5432/cutover",
    "postgresql://app:{pw}@127.0.0.1/cutover?sslmode=require",
    "redis://:{pw}@localhost:6379/0",
    "s3://AKIA:{pw}@bucket/landing/orders",
    "https://user:{pw}@[::1]:8443/api",
])
def test_url_passwords_are_masked_raw_and_encoded(pw, template):
    for form in (pw, quote(pw, safe="")):
        url = template.format(pw=form)
        shown = redact.redact_url(url)
        assert_clean(shown, f"redact_url({url})")
        host = template.split("@", 1)[1].split("/", 1)[0]
        assert shown.endswith(template.split("{pw}@", 1)[1].format()) and host in shown, shown
        redact.forget_secrets()  # free text alone must hold too, without the registry
        for text in (f"cannot connect to {url}: refused", f"url={url}", f"'{url}'", f"({url})", url):
            assert_clean(redact.redact_text(text), f"redact_text({text})")


def test_registry_masks_the_bare_value_in_every_encoding():
    for pw in PASSWORDS:
        redact.redact_url(f"postgresql+psycopg://app:{quote(pw, safe='')}@db/x")  # registers the decoded password
        for text in (f"FATAL: password authentication failed: {pw!r}", json.dumps({"p": pw}),
                     f"<td>{__import__('html').escape(pw)}</td>", f"pw={quote(pw, safe='')}"):
            assert_clean(redact.redact_text(text), text)


def test_url_parsed_like_sqlalchemy_keeps_host_and_database():
    assert redact.url_password("postgresql://u:a#b/c:d@h:5432/db") == "a#b/c:d"
    assert redact.url_password("postgresql://u:p%40ss@h/db") == "p@ss"
    assert redact.redact_url("postgresql://u:p@ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact.redact_text("see https://example.com/a and mail x@y.com") == "see https://example.com/a and mail x@y.com"
    assert redact.redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


# -- every output of the CLI -----------------------------------------------------------------

def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = run_main(cli, [str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("pw", PASSWORDS, ids=[f"pw{i}" for i in range(len(PASSWORDS))])
def test_no_fragment_in_any_output_format_or_log(workspace_env, tmp_path, monkeypatch, capsys, pw):
    enc = quote(pw, safe="")
    raw_ok = "@" not in pw  # a raw '@' makes the driver read part of the password as the host: refused
    state_url = f"postgresql+psycopg://app:{pw if raw_ok else enc}@127.0.0.1:1/cutover"
    monkeypatch.setenv("CUTOVER_CATALOG_S3__SECRET_ACCESS_KEY", pw)
    src = tmp_path / "src"
    src.mkdir()
    defs = tmp_path / "defs.yaml"
    defs.write_text(yaml.safe_dump({"ingestions": [
        {"id": "orders", "source_uri": str(src), "format": "csv", "table": "shop.orders",
         "credentials": {"key": "AKIA-ID", "secret": pw}},
        {"id": "events", "source_uri": f"s3://AKIA:{enc}@bucket/events", "format": "jsonl", "table": "shop.events"},
    ]}))
    outputs: dict[str, str] = {}
    rc, out, err = _cli(capsys, "ingestion", "add", "--from-file", defs)
    assert rc == 0, err
    outputs["add"] = out + err
    for args in (["ingestion", "list"], ["ingestion", "list", "--json"], ["ingestion", "show", "events"],
                 ["ingestion", "show", "orders", "--json"], ["ingestion", "export"],
                 ["ingestion", "export", "--format", "json"]):
        rc, out, err = _cli(capsys, *args)
        assert rc == 0, (args, err)
        outputs[" ".join(args)] = out + err
    # the reports: a real parity run (error verdicts: no shadow yet) in every format, with a finding
    # message that quotes the password the way a driver error would
    rc, out, err = _cli(capsys, "parity", "orders", "--format", "json", "--no-store", "--checks", "runs,ledger,counts")
    report = json.loads(out)
    report["ingestions"][0]["checks"][0]["error"] = f"driver said: password {pw!r} rejected for {state_url}"
    from checks.report import render_html, render_json, render_junit, render_md, render_text

    for name, fn in (("text", render_text), ("json", render_json), ("md", render_md), ("junit", render_junit)):
        outputs[f"report {name}"] = fn(report)
    outputs["report html"] = render_html(report, {})
    # settings: text, JSON, the log at -vv, a library's log record quoting the password
    monkeypatch.setenv("CUTOVER_DATABASE_STATE_URL", state_url)
    for args in (["config", "show"], ["config", "show", "--json"], ["-vv", "config", "show"]):
        rc, out, err = _cli(capsys, *args)
        assert rc == 0, (args, err)
        outputs[" ".join(args)] = out + err
    logging.getLogger("psycopg.pool").error("login failed for %s with password %s", state_url, pw)
    outputs["log record"] = capsys.readouterr().err
    assert "login failed for" in outputs["log record"]
    # an error line quoting a refused URL
    monkeypatch.setenv("CUTOVER_DATABASE_STATE_URL", f"oracle://app:{pw}@127.0.0.1/x")
    rc, out, err = _cli(capsys, "status")
    assert rc == 2
    outputs["error line"] = out + err
    for where, text in outputs.items():
        assert_clean(text, where)
    assert "***" in outputs["config show --json"] and "***" in outputs["report html"]


def test_raw_at_in_a_password_is_refused_naming_the_fix(workspace_env, monkeypatch, capsys):
    monkeypatch.setenv("CUTOVER_DATABASE_STATE_URL", "postgresql+psycopg://app:Kq7@Vz3@127.0.0.1:5432/x")
    rc, out, err = _cli(capsys, "config", "show")
    assert rc == 2 and "%40" in err and len(err.strip().splitlines()) == 1
    assert_clean(out + err, "error")


def test_a_library_handler_of_its_own_never_sees_a_secret(workspace_env, monkeypatch, capsys):
    """Prefect and Great Expectations log through handlers of their own (not propagated to
    cutover's): the records are redacted when they are made."""
    import io

    monkeypatch.setenv("CUTOVER_DATABASE_STATE_URL", f"postgresql+psycopg://app:{quote(PASSWORDS[-1], safe='')}@h/x")
    assert _cli(capsys, "config", "show")[0] == 0  # loads the settings: the password is registered
    stream = io.StringIO()
    lib = logging.getLogger("prefect.flow_runs.test")
    handler = logging.StreamHandler(stream)
    lib.addHandler(handler)
    lib.propagate = False
    try:
        lib.error("auth failed with %s for %s", PASSWORDS[-1], "postgresql+psycopg://app:x@h/x")
    finally:
        lib.removeHandler(handler)
        lib.propagate = True
    assert "auth failed with ***" in stream.getvalue()
    assert_clean(stream.getvalue(), "library handler")
