"""config show | init (the work: cutover.commands.config)."""

from __future__ import annotations

import click

from cutover.cli.app import App, pass_app
from cutover.commands import config as C


@click.group()
def config() -> None:
    """Settings: defaults < $CUTOVER_HOME/cutover.toml < CUTOVER_* env vars."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def show(app: App, as_json: bool) -> None:
    """Print the resolved settings, secrets redacted, and where each came from."""
    d = C.config_show(app.settings).as_dict()
    if as_json:
        app.json(d)
        return
    app.echo(f"home:            {d['home']}")
    app.echo(f"config file:     {d['config_file']}{'' if d['config_file_exists'] else ' (absent: defaults apply)'}")
    app.echo(f"autoloader DB:   {d['database']['autoloader_url']}")
    app.echo(f"state DB:        {d['database']['state_url']}")
    app.echo(f"job store:       {d['scheduler']['jobstore_url']} (table {d['scheduler']['jobstore_table']})")
    cat = dict(d["catalog"])
    app.echo(f"catalog:         {cat.pop('name')} type={cat.pop('type', '?')} uri={cat.pop('uri', '-')}")
    app.echo(f"warehouse:       {cat.pop('warehouse', '-')}")
    for k, v in sorted(cat.items()):
        app.echo(f"catalog.{k}: {v}")
    pf = d["prefect"]
    api = pf["api_url"] or "embedded local server (started by `cutover prefect up`, shadow, execute, deploy)"
    app.echo(f"Prefect API:     {api} [from {pf['api_url_source']}]")
    if pf["api_key"] or pf["auth_string"]:
        app.echo(f"Prefect auth:    {'API key' if pf['api_key'] else 'auth string'} set"
                 f" [from {pf['api_key_source'] or 'env/profile'}]")
    if pf["tls_insecure_skip_verify"]:
        app.echo("Prefect TLS:     certificate NOT verified (PREFECT_API_TLS_INSECURE_SKIP_VERIFY)")
    elif pf["ssl_cert_file"] and (str(pf["api_url"] or "").startswith("https")
                                  or pf["ssl_cert_file_source"] != "env SSL_CERT_FILE"):
        app.echo(f"Prefect TLS:     CA bundle {pf['ssl_cert_file']} [from {pf['ssl_cert_file_source']}]")
    if pf["problem"]:
        app.echo(f"Prefect PROBLEM: {pf['problem']}")
    app.echo(f"Prefect pool:    {pf['work_pool']}")
    app.echo(f"engine:          {d['ingest']['engine']}")
    app.echo(f"claim timeout:   {d['ingest']['claim_timeout_s']:.0f}s")


@config.command("init")
@click.option("--dry-run", is_flag=True, help="Show what would be written, write nothing.")
@pass_app
def init(app: App, dry_run: bool) -> None:
    """Write a commented cutover.toml into the workspace (never overwrites)."""
    res = C.config_init(app.settings, dry_run=dry_run)
    if res.action == "exists":
        app.echo(f"{res.path} exists: left as it is")
    elif res.action == "would_write":
        app.echo(f"would write {res.path}:\n{res.text}")
    else:
        app.echo(f"wrote {res.path}")
