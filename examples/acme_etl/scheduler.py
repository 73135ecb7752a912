"""ACME's scheduler process: APScheduler running the jobs of the job store (setup/jobstore.py).

    ACME_JOBSTORE=sqlite:////var/lib/acme/jobs.sqlite python scheduler.py
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler

    logging.basicConfig(level=logging.INFO)
    sched = BlockingScheduler(jobstores={"default": SQLAlchemyJobStore(url=os.environ["ACME_JOBSTORE"])},
                              timezone="UTC")
    sched.start()


if __name__ == "__main__":
    main()
