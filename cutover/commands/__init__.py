"""One importable function per `cutover` verb (alembic's ``command.py``): no printing, no click.

Each takes the workspace (or the settings) and the verb's options and returns a result object
(``cutover.commands.result.Result``: ``as_dict()`` for `--json`, ``exit_code``); long-running
verbs report progress through an ``echo``/``info`` callable they are given. The command line
(``cutover.cli``) parses, calls one of these, and renders. The sides' own verbs (cron, rq,
APScheduler, Prefect, backfill) live with their side (``<side>/cli.py``, via ``cutover.registry``).

By area:

- ``setup``: config_show, config_init, db_upgrade, db_downgrade, db_current, db_history
- ``ingestions``: ingestion_add|list|show|export|remove, runs, ledger, table_counts, table_snapshots
- ``schedules``: schedules_verify, schedules_translate
- ``migration``: inventory, plan, execute_check + execute, status, log, unlock,
  shadow_start, shadow_stop, shadow_run_once
- ``verdicts``: parity, parity_history, waive, waivers_list, waivers_remove
- ``incident``: rollback, pause, pause_list, resume, watch
- ``runbook``: runbook_list, runbook_show, runbook_prepare + runbook_run
- ``demos``: demo
"""

from __future__ import annotations

from cutover.commands.demos import demo
from cutover.commands.incident import pause, pause_list, resume, rollback, watch, watch_interval
from cutover.commands.ingestions import (ingestion_add, ingestion_export, ingestion_list, ingestion_remove,
                                        ingestion_show, ledger, runs, table_counts, table_snapshots)
from cutover.commands.migration import (execute, execute_check, inventory, log, plan, shadow_run_once, shadow_start,
                                        shadow_stop, status, unlock)
from cutover.commands.verdicts import parity, parity_history, waive, waivers_list, waivers_remove
from cutover.commands.runbook import runbook_list, runbook_prepare, runbook_run, runbook_show
from cutover.commands.schedules import schedules_translate, schedules_verify
from cutover.commands.setup import config_init, config_show, db_current, db_downgrade, db_history, db_upgrade

__all__ = [
    "config_init", "config_show", "db_current", "db_downgrade", "db_history", "db_upgrade", "demo", "execute",
    "execute_check", "ingestion_add", "ingestion_export", "ingestion_list", "ingestion_remove", "ingestion_show",
    "inventory", "ledger", "log", "parity", "parity_history", "pause", "pause_list", "plan", "resume", "rollback",
    "runbook_list", "runbook_prepare", "runbook_run", "runbook_show", "runs", "schedules_translate",
    "schedules_verify", "shadow_run_once", "shadow_start", "shadow_stop", "status", "table_counts",
    "table_snapshots", "unlock", "waive", "waivers_list", "waivers_remove", "watch", "watch_interval",
]
