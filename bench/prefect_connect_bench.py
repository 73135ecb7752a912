"""Time to a clear error when the Prefect API does not answer: `cutover status` and
`cutover prefect deploy` of this checkout vs a baseline measured in the same run.

Two dead servers, both local and reproducible: a closed port (connection refused) and a listener
that accepts and never answers (what a hung server or a firewall that lets the handshake through
looks like). Baseline: the same command line run from another checkout (``--baseline-root``, e.g.
a worktree of the commit before the change), else Prefect's own client with its defaults (one
``read_work_pools`` through ``get_client(sync_client=True)``, what the old code did first in a
deploy), capped at ``--cap`` seconds.

    python bench/prefect_connect_bench.py [--baseline-root DIR] [--cap 300]

Prints one line per case: seconds for this checkout, seconds for the baseline, the ratio.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

BASELINE_CLIENT = """
import sys, time
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
with temporary_settings(updates={PREFECT_API_URL: sys.argv[1]}):
    with get_client(sync_client=True) as c:
        c.read_work_pools()
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, url: str, root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUTOVER_", "PREFECT_"))}
    env.update(CUTOVER_HOME=str(home), PREFECT_API_URL=url, PYTHONPATH=str(root),
               PREFECT_HOME=str(home / "user-prefect"))
    return env


def _time(cmd: list[str], env: dict, cwd: Path, cap: float) -> tuple[float, int, str]:
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=cap)
        lines = (r.stdout + "\n" + r.stderr).splitlines()
        said = [x for x in lines if x.startswith(("error:", "cannot read:"))] or lines[-1:] or [""]
        rc, out = r.returncode, said[0]
    except subprocess.TimeoutExpired:
        rc, out = -1, f"still waiting after {cap:.0f}s (cap)"
    return time.monotonic() - t0, rc, out[:160]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline-root", type=Path, help="another checkout whose CLI is the baseline")
    ap.add_argument("--cap", type=float, default=300.0)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cutover-connect-bench-"))
    home = tmp / "ws"
    (tmp / "src").mkdir()
    setup = _env(home, "http://127.0.0.1:9/api", ROOT)
    subprocess.run([PY, "-m", "cutover", "ingestion", "add", "orders", "--source", str(tmp / "src"), "--pattern",
                    "*.csv", "--format", "csv", "--table", "raw.orders", "--schedule", "daily 02:00"],
                   env=setup, cwd=ROOT, check=True, capture_output=True)
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(1)
    dead = {"refused": f"http://127.0.0.1:{_closed_port()}/api", "silent": f"http://127.0.0.1:{hang.getsockname()[1]}/api"}
    print(f"{'case':40} {'this s':>8} {'base s':>8} {'ratio':>6}  this checkout's message")
    try:
        for kind, url in dead.items():
            for args in (["status"], ["prefect", "deploy", "orders", "--mode", "live"]):
                now, rc, msg = _time([PY, "-m", "cutover", *args], _env(home, url, ROOT), ROOT, a.cap)
                if a.baseline_root:
                    base, _, _ = _time([PY, "-m", "cutover", *args], _env(home, url, a.baseline_root),
                                       a.baseline_root, a.cap)
                else:
                    base, _, _ = _time([PY, "-c", BASELINE_CLIENT, url], _env(home, url, ROOT), ROOT, a.cap)
                print(f"{kind + ': cutover ' + ' '.join(args[:2]):40} {now:8.1f} {base:8.1f} {base / now:6.1f}  "
                      f"rc={rc} {msg}", flush=True)
    finally:
        hang.close()


if __name__ == "__main__":
    main()
