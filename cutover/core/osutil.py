"""Small operating-system helpers shared by the lock, the local Prefect server, the legacy
sides' run logs and the tests."""

from __future__ import annotations

import os
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
