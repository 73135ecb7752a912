"""CLI start-up: what the on-call engineer waits for before `cutover pause --all` does anything.

Times whole processes (spawn to exit), RUNS times each, on a fresh empty CUTOVER_HOME:

- baseline: ``python -c pass`` with the same interpreter (what any Python CLI costs);
- ``cutover --help``, ``cutover config show`` and ``cutover pause --help`` (the incident verb);
- and, per command, the heavy modules it imported (``-X importtime``): prefect,
  great_expectations, pyspark, pyiceberg, pandas, rq and redis must load lazily, never at start.

Prints a table of medians and the ratio to the baseline; the last line reads
``cli-start: --help A ms, config show B ms, pause --help C ms, python D ms, ratio E× (--help ÷ python)``.

    .venv/bin/python bench/cli_start_bench.py --runs 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HEAVY = ("prefect", "great_expectations", "pyspark", "pyiceberg", "pandas", "rq", "redis", "pydantic")
COMMANDS = {"--help": ["--help"], "config show": ["config", "show"], "pause --help": ["pause", "--help"]}


def timed(argv: list[str], env: dict, runs: int) -> float:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def heavy_imports(args: list[str], env: dict) -> list[str]:
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "cutover", *args], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    seen = set()
    for line in p.stderr.splitlines():
        name = line.rpartition("|")[2].strip()
        top = name.split(".")[0]
        if top in HEAVY:
            seen.add(top)
    return sorted(seen)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "CUTOVER_HOME": home}
        env.pop("PREFECT_API_URL", None)
        base = timed([sys.executable, "-c", "pass"], env, a.runs)
        rows = []
        for label, args in COMMANDS.items():
            ms = timed([sys.executable, "-m", "cutover", *args], env, a.runs)
            rows.append((label, ms, heavy_imports(args, env)))
    print(f"{'command':<16}{'median ms':>10}{'× python':>10}  heavy modules imported")
    print(f"{'python -c pass':<16}{base:>10.0f}{1:>10.1f}")
    for label, ms, heavy in rows:
        print(f"{label:<16}{ms:>10.0f}{ms / base:>10.1f}  {', '.join(heavy) or 'none'}")
    ms = {label: v for label, v, _ in rows}
    print(f"cli-start: --help {ms['--help']:.0f} ms, config show {ms['config show']:.0f} ms, "
          f"pause --help {ms['pause --help']:.0f} ms, python {base:.0f} ms, ratio {ms['--help'] / base:.1f}× (--help ÷ python)")
    return 1 if any(heavy for _, _, heavy in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
