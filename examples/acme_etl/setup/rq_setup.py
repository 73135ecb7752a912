"""Schedule ACME's RQ work: the nightly customer-index rebuild, repeated by RQ's own scheduler.

    REDIS_URL=redis://:pw@host:6379/0 python setup/rq_setup.py --home /opt/acme

The job is scheduled (``enqueue_at``, picked up by a worker started with ``--with-scheduler``)
and repeats daily (``Repeat``); the worker imports ``acme_etl.tasks`` from this directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

QUEUE = "acme"
JOB_ID = "acme-customer-index"


def schedule(redis_url: str, home: str, *, first: datetime | None = None) -> str:
    from redis import Redis
    from rq import Queue, Repeat

    from acme_etl.tasks import rebuild_customer_index

    q = Queue(QUEUE, connection=Redis.from_url(redis_url))
    when = first or (datetime.now(timezone.utc) + timedelta(days=1)).replace(hour=2, minute=0, second=0, microsecond=0)
    job = q.enqueue_at(when, rebuild_customer_index, f"{home}/data/inbox", f"{home}/data/warehouse/index",
                       job_id=JOB_ID, repeat=Repeat(times=365, interval=86400), result_ttl=86400)
    return job.id


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True)
    a = ap.parse_args(argv)
    url = os.environ.get("REDIS_URL")
    if not url:
        print("set REDIS_URL", file=sys.stderr)
        return 2
    print(schedule(url, a.home))
    return 0


if __name__ == "__main__":
    sys.exit(main())
