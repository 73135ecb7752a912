"""`cutover schedules translate|verify` over many ingestions: seconds per 100 definitions, this tree vs a baseline.

Builds a fresh workspace of N ingestions (default 100) with *distinct* schedules of the kinds a
team has -- daily HH:MM and weekly in zones with and without DST, hourly :MM, crontab-style cron
lines, APScheduler cron triggers (``last`` day, ``2nd mon``), intervals with a start_date -- and
times whole processes (spawn to exit, what the user waits for), RUNS times each, median:

- ``floor``: ``schedules translate --schedule 'daily 02:30'`` (interpreter, CLI, the lazy prefect
  import: what any schedules call costs however few definitions it has);
- this tree: ``schedules translate --all`` and ``schedules verify --all`` in ONE call each (default
  horizon: at least 366 days and the next two DST changes), and ``verify --all --horizon 90d``;
- ``--baseline DIR`` (e.g. a checkout of main, run with the same interpreter): its ``translate``
  takes one id per call, so ``--sample`` ids are timed one process each and scaled to N; its
  ``verify --all`` is one call (its default horizon: 90 days).

Figures are per 100 definitions; "besides start" subtracts the floor. The last line reads
``schedules: translate A s/100 (B besides start), verify C s/100 (D besides start) [...]``.

    .venv/bin/python bench/schedules_bench.py --baseline /work/main --runs 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney")


def definitions(n: int, src: str) -> list[dict]:
    """n ingestions, every schedule distinct."""
    out = []
    for i in range(n):
        tz = ZONES[i % len(ZONES)]
        k = i % 10
        h, m = (i * 7) % 24, (i * 13) % 60
        if k in (0, 1, 2, 3):
            sched = f"daily {h:02d}:{m:02d}"
        elif k == 4:
            sched = f"weekly {('mon', 'tue', 'wed', 'thu', 'fri')[i % 5]} {h:02d}:{m:02d}"
        elif k == 5:
            sched = f"hourly :{m:02d}"
        elif k == 6:
            sched = f"cron {m} {h} * * 1-5"
        elif k == 7:
            sched = json.dumps({"trigger": "cron", "day": "last", "hour": h, "minute": m})
        elif k == 8:
            sched = json.dumps({"trigger": "cron", "day": "2nd mon", "hour": h, "minute": m})
        else:
            sched = json.dumps({"trigger": "interval", "hours": 2 + i % 5,
                                "start_date": f"2026-01-0{1 + i % 9}T{h:02d}:{m:02d}:00"})
        out.append({"id": f"bench-{i:03d}", "source_uri": src, "format": "csv", "table": f"raw.bench_{i:03d}",
                    "pattern": "*.csv", "schedule": sched, "timezone": tz})
    return out


CPU: dict[str, float] = {}  # label -> CPU seconds (user + sys) of the child: steadier than wall time on a busy machine


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(tree: Path, env: dict, args: list[str]) -> tuple[float, int, str]:
    t, c = time.perf_counter(), _cpu()
    p = subprocess.run([sys.executable, "-m", "cutover", *args], cwd=tree, env={**env, "PYTHONPATH": str(tree)},
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    CPU["last"] = _cpu() - c
    return time.perf_counter() - t, p.returncode, p.stdout


def timed(tree: Path, env: dict, args: list[str], runs: int) -> tuple[float, int, str]:
    results, cpus = [], []
    for _ in range(runs):
        results.append(run(tree, env, args))
        cpus.append(CPU["last"])
    CPU["last"] = statistics.median(cpus)
    return statistics.median(r[0] for r in results), results[-1][1], results[-1][2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100, help="definitions")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--baseline", type=Path, help="another checkout to compare with (e.g. main)")
    ap.add_argument("--sample", type=int, default=5, help="baseline: ids timed one process each for translate")
    a = ap.parse_args()
    per = 100 / a.n
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        defs = Path(tmp) / "defs.json"
        defs.write_text(json.dumps({"ingestions": definitions(a.n, str(src))}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CUTOVER_", "PREFECT_"))}
        env["CUTOVER_HOME"] = str(Path(tmp) / "home")
        _, rc, out = run(HERE, env, ["ingestion", "add", "--from-file", str(defs)])
        if rc:
            print(out)
            return 1
        floor, _, _ = timed(HERE, env, ["schedules", "translate", "--schedule", "daily 02:30", "--json"], a.runs)
        CPU["floor"] = CPU["last"]
        tr, tr_rc, tr_out = timed(HERE, env, ["schedules", "translate", "--all", "--json"], a.runs)
        CPU["translate"] = CPU["last"]
        ve, _, ve_out = timed(HERE, env, ["schedules", "verify", "--all", "--json"], a.runs)
        CPU["verify"] = CPU["last"]
        ve90, _, _ = timed(HERE, env, ["schedules", "verify", "--all", "--json", "--horizon", "90d"], a.runs)
        CPU["verify90"] = CPU["last"]
        counts = json.loads(ve_out)["counts"]
        untranslated = sum(1 for r in json.loads(tr_out)["results"] if r["error"])
        rows = [("floor (one ad-hoc translate)", floor, None, CPU["floor"]),
                (f"translate --all ({a.n} ids, one call)", tr, tr * per, CPU["translate"]),
                (f"verify --all, default horizon ({a.n} ids)", ve, ve * per, CPU["verify"]),
                (f"verify --all --horizon 90d ({a.n} ids)", ve90, ve90 * per, CPU["verify90"])]
        base = {}
        if a.baseline:
            ids = [f"bench-{i:03d}" for i in range(0, a.n, max(1, a.n // a.sample))][:a.sample]
            one, one_cpu = [], []
            for i in ids:
                one.append(run(a.baseline, env, ["schedules", "translate", i, "--json"])[0])
                one_cpu.append(CPU["last"])
            base["translate"] = statistics.median(one) * a.n
            base["verify"], _, _ = timed(a.baseline, env, ["schedules", "verify", "--all", "--json"], a.runs)
            rows += [(f"baseline translate, one process per id (median of {len(ids)} x {a.n})", base["translate"],
                      base["translate"] * per, statistics.median(one_cpu) * a.n),
                     (f"baseline verify --all (its default: 90d, {a.n} ids)", base["verify"], base["verify"] * per,
                      CPU["last"])]
    print(f"{'what':<66} {'wall s':>8} {'s/100':>8} {'cpu s':>8}")
    for what, s, p100, cpu in rows:
        print(f"{what:<66} {s:>8.2f} {'' if p100 is None else f'{p100:8.2f}':>8} {cpu:>8.2f}")
    print(f"verdicts (default horizon): {counts}; translate: {untranslated} untranslatable (exit {tr_rc})")
    line = (f"schedules: translate {tr * per:.2f} s/100 ({(tr - floor) * per:.2f} besides start), "
            f"verify {ve * per:.2f} s/100 ({(ve - floor) * per:.2f} besides start), "
            f"verify 90d {ve90 * per:.2f} s/100 ({(ve90 - floor) * per:.2f} besides start)")
    if base:
        line += (f"; baseline translate {base['translate'] * per:.2f} s/100, verify 90d {base['verify'] * per:.2f}"
                 f" s/100; ratio translate {base['translate'] / tr:.1f}x")
    print(line)
    print(f"cpu: floor {CPU['floor']:.2f} s, translate {CPU['translate']:.2f} s, verify {CPU['verify']:.2f} s, "
          f"verify 90d {CPU['verify90']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
