"""`cutover cron exec`: what wrapping a crontab line costs each run.

Times whole processes (spawn to exit), RUNS times each, in a fresh CUTOVER_HOME holding one command
job (its records store created once, before timing):

- baseline: the line as cron runs it, ``/bin/sh -c 'echo hello'``;
- wrapped: ``python -m cutover cron exec --home H --job j -- /bin/sh -c 'echo hello'`` (start record,
  the command, end record with exit code, duration and output tail).

The last line reads ``cron-exec: plain A ms, wrapped B ms, overhead C ms per run, ratio D×``.

    .venv/bin/python bench/cron_exec_bench.py --runs 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict, runs: int) -> float:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - t)
    return statistics.median(out) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "CUTOVER_HOME": d, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", "from cutover.core.workspace import Workspace;"
                        "from cutover.core.records.jobs import validate_job;"
                        "Workspace().jobs.upsert([validate_job({'id': 'j', 'kind': 'command', 'shell': 'echo hello'})],"
                        " replace_existing=False)"], env=env, check=True, cwd=str(ROOT))
        cmd = ["/bin/sh", "-c", "echo hello"]
        plain = timed(cmd, env, args.runs)
        wrapped = timed([sys.executable, "-m", "cutover", "cron", "exec", "--home", d, "--job", "j", "--", *cmd], env,
                        args.runs)
        n = subprocess.run([sys.executable, "-c", "from cutover.core.workspace import Workspace;"
                            "from cutover.core.records.jobruns import JobRunStore;"
                            "print(len(JobRunStore(Workspace().autoloader_engine).list(job_id='j')))"],
                           env=env, check=True, capture_output=True, text=True, cwd=str(ROOT)).stdout.strip()
    print(f"{'':10}{'median ms':>12}")
    print(f"{'plain':10}{plain:12.1f}")
    print(f"{'wrapped':10}{wrapped:12.1f}   ({n} runs recorded)")
    print(f"cron-exec: plain {plain:.1f} ms, wrapped {wrapped:.1f} ms, overhead {wrapped - plain:.1f} ms per run, "
          f"ratio {wrapped / plain:.1f}×")


if __name__ == "__main__":
    main()
