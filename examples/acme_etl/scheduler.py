"""ACME's scheduler process: APScheduler running the jobs of the job store (setup/jobstore.py).

    ACME_JOBSTORE=sqlite:////var/lib/acme/jobs.sqlite python scheduler.py

Other processes add jobs to the store too (the admin tool's "run now"), so the scheduler looks at
the store every few seconds (``ACME_TICK_SECONDS``, default 5) instead of sleeping until the next
fire time it knows of.

When the team adopts cutover, its run-recording listeners are the one line added here (active
when ``CUTOVER_HOME`` names the cutover workspace): every run becomes a legacy run record.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _tick() -> None:
    """Nothing: waking the scheduler is the point (it then reads the job store)."""


def main() -> None:
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sched = BlockingScheduler(jobstores={"default": SQLAlchemyJobStore(url=os.environ["ACME_JOBSTORE"]),
                                         "internal": MemoryJobStore()}, timezone="UTC")
    sched.add_job(_tick, "interval", seconds=float(os.environ.get("ACME_TICK_SECONDS", "5")), id="tick",
                  jobstore="internal")
    if os.environ.get("CUTOVER_HOME"):  # added when adopting cutover: legacy run records
        from legacy.apscheduler.teamside import record_runs

        record_runs(sched)
    signal.signal(signal.SIGTERM, lambda *_: sched.shutdown(wait=True))
    sched.start()


if __name__ == "__main__":
    main()
