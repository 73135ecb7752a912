"""RQ tasks: work the web app enqueues, and the scheduled rebuild of the customer index.

``rebuild_customer_index`` reads the customer exports and writes one JSON index; it reads the
environment like :mod:`acme_etl.reports` (``CUTOVER_OUTPUT_PREFIX`` in shadow).
"""

from __future__ import annotations

import csv
import glob
import json
import os
from pathlib import Path


def rebuild_customer_index(source_dir: str, out_dir: str) -> int:
    index = {}
    for path in sorted(glob.glob(os.path.join(source_dir, "customers*.csv"))):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                index[row["customer"]] = row["name"]
    target = Path(out_dir)
    if os.environ.get("CUTOVER_MODE") == "shadow":
        target = Path(os.environ["CUTOVER_OUTPUT_PREFIX"]) / target.relative_to(target.anchor)
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / ".customers.json.tmp"
    tmp.write_text(json.dumps(index, sort_keys=True))
    os.replace(tmp, target / "customers.json")
    return len(index)
