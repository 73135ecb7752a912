"""Create (or refresh) ACME's APScheduler job store: the jobs our scheduler process runs.

    python setup/jobstore.py --url sqlite:////var/lib/acme/jobs.sqlite --home /opt/acme

Idempotent (``replace_existing``). The scheduler itself is ``scheduler.py``; this only writes
the jobs, with a scheduler that never starts running them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))  # acme_etl is importable (APScheduler resolves the references)


def add_jobs(url: str, home: str, *, minute: int = 20) -> list[str]:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    data = f"{home}/data"
    sched = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone="UTC")
    sched.start(paused=True)  # writes the jobs, runs nothing
    try:
        sched.add_job("acme_etl.orders:load_orders", "interval", hours=1, start_date=f"2026-01-01 00:{minute:02d}:00",
                      id="acme-orders-load",
                      name="Load the order exports into acme.orders", kwargs={"source_dir": f"{data}/orders"},
                      misfire_grace_time=900, coalesce=True, max_instances=1, replace_existing=True)
        sched.add_job("acme_etl.reports:revenue_report", "cron", hour=6, minute=15, timezone="Europe/Berlin",
                      id="acme-revenue-report", name="Daily revenue report",
                      args=[f"{data}/orders", f"{data}/reports"], misfire_grace_time=3600, coalesce=True,
                      replace_existing=True)
        sched.add_job("acme_etl.notify:send_digest", "cron", day_of_week="mon-fri", hour=8, minute=0,
                      timezone="Europe/Berlin", id="acme-sales-digest", name="Morning digest to sales",
                      kwargs={"spool_dir": f"{data}/outbox", "recipients": ["sales@acme.example"]},
                      replace_existing=True)
        return [j.id for j in sched.get_jobs()]
    finally:
        sched.shutdown(wait=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="SQLAlchemy URL of the job store")
    ap.add_argument("--home", required=True, help="ACME_HOME (data lives in $ACME_HOME/data)")
    ap.add_argument("--minute", type=int, default=20, choices=range(60), metavar="0-59",
                    help="the minute past each hour the order load runs (default 20)")
    a = ap.parse_args(argv)
    for jid in add_jobs(a.url, a.home, minute=a.minute):
        print(jid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
