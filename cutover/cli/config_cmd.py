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
    api = d["prefect"]["api_url"] or "embedded local server (started on demand)"
    app.echo(f"Prefect API:     {api} [{d['prefect']['api_url_source']}]")
    app.echo(f"Prefect pool:    {d['prefect']['work_pool']}")
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
