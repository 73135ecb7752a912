"""ACME's ETL jobs: a small team codebase that schedules its own functions and scripts.

It is not built on cutover: APScheduler (a SQLAlchemy job store, ``setup/jobstore.py``) calls the
functions, cron (``setup/crontab``) runs the shell scripts, RQ (``setup/rq_setup.py``) runs the
customer-index rebuild. Only :mod:`acme_etl.orders` imports ``cutover.sdk``, the way a team adopts
it for the one job whose rows parity should follow file by file.
"""
