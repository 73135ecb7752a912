"""The morning digest e-mail to the sales team.

Sending mail cannot be done twice, nor redirected by an environment variable the mail relay
knows nothing of: this job is *observe-only* during a migration (cutover compares when it runs
on both schedulers instead of running it twice). Here the "relay" is a spool directory.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def send_digest(spool_dir: str, recipients: list[str], subject: str = "ACME daily digest") -> str:
    spool = Path(spool_dir)
    spool.mkdir(parents=True, exist_ok=True)
    msg = {"to": list(recipients), "subject": subject, "sent_at": time.time(), "pid": os.getpid()}
    path = spool / f"digest-{time.time_ns()}.json"
    path.write_text(json.dumps(msg))
    return str(path)
