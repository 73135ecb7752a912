"""Small operating-system helpers shared by the lock, the local Prefect server, the legacy
sides' run logs and the tests."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path


def pid_alive(pid: int | str | None) -> bool:
    """True while process ``pid`` runs on this machine. A process we may not signal counts as
    alive; a zombie waiting for its reaper counts as gone; no pid (or garbage) is not alive."""
    try:
        pid = int(pid) if pid else 0
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    return True


def atomic_write(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` whole or not at all: a temp file in the same directory, fsync,
    ``os.replace``, then fsync the directory so the rename survives a crash."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable
        dfd = os.open(str(path.parent), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def process_started_at() -> float:
    """This process's start as a Unix time (from /proc; ~10 ms resolution), for time-to-safe."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return time.time()
