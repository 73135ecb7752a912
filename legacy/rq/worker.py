"""An RQ worker for cutover's workflows: ``cutover rq worker`` or ``python -m legacy.rq.worker``.

It is RQ's own forking ``Worker`` (one work-horse process per job, job timeouts, the
Started/Finished/Failed registries, ``rq suspend``/``rq resume``, ``--with-scheduler``); the
only addition is that the modules a job needs (pyarrow, pyiceberg, SQLAlchemy, the ingestion
service) are imported once in the worker process, so each forked horse starts warm instead
of paying ~1-2 s of imports per step. The stock CLI gets the same with
``rq worker --worker-class legacy.rq.worker.CutoverWorker -u URL --with-scheduler QUEUE...``
(with the repository on PYTHONPATH).

The Redis URL comes from ``--url``, else ``CUTOVER_RQ_REDIS_URL``, else the workspace's rq.json;
prefer the environment for a URL with a password (a command line is visible in ``ps``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from rq import Worker

import cutover.core.autoloader.service  # noqa: F401 - preloaded: every job imports these
import cutover.core.schedule.triggers  # noqa: F401
import cutover.core.state.fence  # noqa: F401
import cutover.core.workspace  # noqa: F401
import legacy.rq.jobs  # noqa: F401
from cutover.core.config import load_settings
from legacy.rq.model import RQConfig
from legacy.rq.store import connect


def preload() -> None:
    """Import what every job imports (no connection is opened: the horses fork after this); the
    first-party modules are imported at the top of this module."""
    import pyarrow  # noqa: F401
    import pyiceberg.catalog.sql  # noqa: F401
    import sqlalchemy  # noqa: F401


class CutoverWorker(Worker):
    """RQ's Worker; importing this module preloads the job modules (see the module docstring)."""


preload()


def run_worker(url: str, queues: list[str], *, with_scheduler: bool = True, burst: bool = False,
               name: str | None = None, logging_level: str = "INFO") -> bool:
    conn = connect(url)
    w = CutoverWorker(queues, connection=conn, name=name)
    return w.work(burst=burst, with_scheduler=with_scheduler, logging_level=logging_level)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m legacy.rq.worker", description=__doc__.splitlines()[0])
    p.add_argument("--url", help="Redis URL (default: $CUTOVER_RQ_REDIS_URL, else the workspace's rq.json)")
    p.add_argument("--queues", nargs="*", help="queues to listen on (default: every queue of rq.json)")
    p.add_argument("--with-scheduler", action="store_true", help="also move due scheduled jobs (kickoffs) to queues")
    p.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    p.add_argument("--name", help="worker name (default: RQ's)")
    p.add_argument("--log-level", default="INFO")
    ns = p.parse_args(argv)
    url, queues = ns.url or os.environ.get("CUTOVER_RQ_REDIS_URL"), ns.queues
    if not url or not queues:
        cfg = RQConfig.require(load_settings())
        url, queues = url or cfg.url, queues or cfg.queues()
    logging.basicConfig(level=ns.log_level.upper(), stream=sys.stderr)
    run_worker(url, queues, with_scheduler=ns.with_scheduler, burst=ns.burst, name=ns.name,
               logging_level=ns.log_level.upper())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
