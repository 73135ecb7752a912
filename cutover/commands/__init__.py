"""One importable function per `cutover` verb (alembic's ``command.py``): no printing, no click.

Each takes the workspace (or the settings) and the verb's options and returns a result object
(``cutover.commands.result.Result``: ``as_dict()`` for `--json`, ``exit_code``); long-running
verbs report progress through an ``echo``/``info`` callable they are given. The command line
(``cutover.cli``) parses, calls one of these, and renders. The sides' own verbs (cron, rq,
APScheduler, Prefect, backfill) live with their side (``<side>/cli.py``, via ``cutover.registry``).

By area:

- ``config``: config_show, config_init; ``db``: db_upgrade, db_downgrade, db_current, db_history
- ``ingestions``: ingestion_add|list|show|export|remove, runs, ledger, table_counts, table_snapshots
- ``schedules``: schedules_verify, schedules_translate
- ``migration``: inventory, plan, execute_check + execute, status, log, unlock,
  shadow_start, shadow_stop, shadow_run_once, shadow_declare
- ``verdicts``: parity, parity_history, waive, waivers_list, waivers_remove
- ``rollback``: rollback; ``pause``: pause, pause_list, resume; ``watch``: watch_interval, watch
- ``runbook``: runbook_list, runbook_show, runbook_prepare + runbook_run
- ``demos``: demo
"""

# The package imports none of its modules: a verb loads only its own (``from cutover.commands import
# setup``), so `cutover config show` does not pay for the engine, the demos or the sides.
