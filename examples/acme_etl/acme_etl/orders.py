"""Load the shop's order exports (CSV files dropped hourly) into the Iceberg table acme.orders.

Uses ``cutover.sdk`` so that it is shadow-safe and parity-visible: the ledger claims each file
once per mode (live / shadow), and the rows go to the branch of the mode (``main`` when the
legacy scheduler runs it, ``cutover-shadow`` when Prefect shadows it).
"""

from __future__ import annotations

import logging

log = logging.getLogger("acme_etl.orders")

JOB_ID = "acme-orders-load"


def load_orders(source_dir: str, table: str = "acme.orders") -> dict:
    import pyarrow.csv as pcsv

    from cutover import sdk

    with sdk.Run(JOB_ID) as run:
        for f in run.files(source_dir, "orders_*.csv"):
            if run.claim(f):
                run.append(table, pcsv.read_csv(f.path), file=f)
    s = run.summary
    log.info("load_orders (%s): %d file(s), %d rows", s.mode, s.processed, s.records)
    return {"mode": s.mode, "files": s.processed, "rows": s.records}
