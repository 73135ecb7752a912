"""`cutover parity` over many ingestions in one command (issue #17: 17 ingestions took 12.6–52 s).

Sets up a workspace with N ingestions (default 17), each with a history on ``main`` from
before the shadow fork and a window of files ingested after it by both sides (legacy live
on main, the shadow on ``cutover-shadow``: the same ingestion service the Prefect flow
calls), then times ``python -m cutover parity --since 24h`` as a user runs it, in a fresh
process each time (start-up, Great Expectations' import and all), ``--repeat`` times.

It imports the cutover of the current directory, so the same script measures two checkouts::

    cd /work/main && .venv/bin/python /path/to/bench/parity_many_bench.py     # before
    cd <worktree> && /work/main/.venv/bin/python bench/parity_many_bench.py   # after

Last line: ``parity over N ingestions: median A s wall (runs …), median C s CPU, verdict V, setup B s,
load average L``. The CPU time (user + system of the parity process) is the figure to compare when
the machine is shared: wall time under load stretches with the other processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())  # the checkout being measured, not necessarily this file's


def _csv(path: Path, rows: int, start: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fh.write("id,name,amount,day\n")
        fh.writelines(f"{start + i},n{start + i},{(start + i) % 997 * 1.25:.2f},2026-11-{1 + i % 28:02d}\n"
                      for i in range(rows))


def setup(home: Path, n: int, history_rows: int, history_files: int, window_rows: int, window_files: int) -> None:
    os.environ["CUTOVER_HOME"] = str(home)
    from cutover.core.records.ingestions import validate
    from cutover.core.shadowfork import ensure_fork
    from cutover.core.state import states
    from cutover.core.workspace import Workspace
    from cutover.engine.baseline import seed_baseline

    ws = Workspace()
    for k in range(n):
        src = home.parent / "src" / f"ing{k:02d}"
        for f in range(history_files):
            _csv(src / f"hist-{f:03d}.csv", history_rows // history_files, f * 10_000_000)
        ing = validate({"id": f"ing{k:02d}", "source_uri": str(src), "pattern": "*.csv", "format": "csv",
                        "table": f"bench.t{k:02d}", "key_columns": ["id"]})
        ws.ingestions.upsert([ing], replace_existing=True)
        ing = ws.ingestions.get(ing.id)
        ws.service.run(ing)  # history, before the fork
        seed_baseline(ws, ing, ensure_fork(ws, ing))
        states.set_state(ws.state_engine, ing.id, states.SHADOW)
        for f in range(window_files):
            _csv(src / f"win-{f:03d}.csv", window_rows // window_files, 900_000_000 + f * 1_000_000)
        ws.service.run(ing, orchestrator="legacy", mode="live")
        ws.service.run(ing, orchestrator="prefect", mode="shadow")


def time_parity(home: Path) -> tuple[float, float, str]:
    """(wall s, CPU s of the parity process -- user + system, a figure the machine's load bends less, verdict)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "CUTOVER_HOME": str(home),
           "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "cutover", "parity", "--since", "24h", "--format", "json"],
                         cwd=os.getcwd(), env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if res.returncode not in (0, 1):
        raise SystemExit(f"cutover parity failed ({res.returncode}): {res.stderr[-2000:]}")
    verdict = json.loads(res.stdout)["verdict"]
    return took, cpu, verdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ingestions", type=int, default=17)
    ap.add_argument("--history-rows", type=int, default=200_000, help="rows per ingestion on main before the fork")
    ap.add_argument("--history-files", type=int, default=4)
    ap.add_argument("--window-rows", type=int, default=4_000, help="rows per ingestion per side after the fork")
    ap.add_argument("--window-files", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="parity-many-") as tmp:
        home = Path(tmp) / "home"
        t = time.perf_counter()
        setup(home, args.ingestions, args.history_rows, args.history_files, args.window_rows, args.window_files)
        setup_s = time.perf_counter() - t
        runs, cpus = [], []
        verdict = None
        for _ in range(args.repeat):
            took, cpu, verdict = time_parity(home)
            runs.append(took)
            cpus.append(cpu)
            print(f"cutover parity: {took:.2f} s wall, {cpu:.2f} s CPU, verdict {verdict}", flush=True)
    load = os.getloadavg()[0]
    print(f"parity over {args.ingestions} ingestions: median {statistics.median(runs):.2f} s wall "
          f"(runs {', '.join(f'{r:.2f}' for r in runs)}), median {statistics.median(cpus):.2f} s CPU, "
          f"verdict {verdict}, setup {setup_s:.1f} s, load average {load:.1f} [code: {os.getcwd()}]")


if __name__ == "__main__":
    main()
