"""cutover.core.osutil.pid_alive: the one liveness rule the lock, the local Prefect server, the cron
run log and the RQ worker list share."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from cutover.core.osutil import pid_alive


def test_pid_alive():
    assert pid_alive(os.getpid()) and pid_alive(str(os.getpid()))
    assert not pid_alive(None) and not pid_alive(0) and not pid_alive("x") and not pid_alive(-5)
    assert not pid_alive(2**70)  # OverflowError is not a live process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while time.time() < deadline and child.poll() is None:  # poll() reaps it
        time.sleep(0.02)
    assert not pid_alive(child.pid)


def test_a_zombie_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while time.time() < deadline:  # exited but not reaped: a zombie
        with open(f"/proc/{child.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.02)
    assert not pid_alive(child.pid)
    child.wait()
