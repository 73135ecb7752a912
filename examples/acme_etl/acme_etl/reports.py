"""The daily revenue report: totals per currency of every order export, written as a CSV file.

Shadow-aware by reading the environment (no cutover import): when cutover runs it in shadow,
``CUTOVER_MODE=shadow`` and the report goes under ``CUTOVER_OUTPUT_PREFIX`` instead of the
production reports directory.
"""

from __future__ import annotations

import csv
import glob
import os
from collections import defaultdict
from pathlib import Path


def _output_dir(out_dir: str) -> Path:
    if os.environ.get("CUTOVER_MODE") == "shadow":
        prefix = os.environ.get("CUTOVER_OUTPUT_PREFIX")
        if not prefix:
            raise RuntimeError("CUTOVER_MODE=shadow without CUTOVER_OUTPUT_PREFIX: refusing to write production reports")
        return Path(prefix) / Path(out_dir).relative_to(Path(out_dir).anchor)
    return Path(out_dir)


def revenue_report(source_dir: str, out_dir: str, day: str | None = None) -> str:
    totals: dict[str, float] = defaultdict(float)
    orders = 0
    for path in sorted(glob.glob(os.path.join(source_dir, "orders_*.csv"))):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                totals[row["currency"]] += float(row["amount"])
                orders += 1
    target = _output_dir(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    name = f"revenue_{day or 'latest'}.csv"
    tmp = target / f".{name}.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["currency", "amount", "orders"])
        for cur in sorted(totals):
            w.writerow([cur, f"{totals[cur]:.2f}", orders])
    os.replace(tmp, target / name)
    return str(target / name)
