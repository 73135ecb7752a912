"""The audit trail: every mutating action with who, when, why."""

from __future__ import annotations

import getpass
import os
import socket
from datetime import datetime, timezone

from sqlalchemy import insert, select

from cutover.core.redact import redact_mapping, redact_text
from cutover.core.state.models import audit_log as t_audit


def who() -> str:
    user = os.environ.get("CUTOVER_OPERATOR")
    if not user:
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no passwd entry in some containers
            user = "unknown"
    return f"{user}@{socket.gethostname()}"


def record(engine, action: str, *, target: str | None = None, reason: str | None = None, detail: dict | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(insert(t_audit).values(at=datetime.now(timezone.utc), who=who(), action=action, target=target,
                                            reason=redact_text(reason) if reason else None,
                                            detail=redact_mapping(detail) if detail else None))


def entries(engine, limit: int = 100) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(t_audit).order_by(t_audit.c.id.desc()).limit(limit)).all()
    out = []
    for r in rows:
        at = r.at if r.at.tzinfo else r.at.replace(tzinfo=timezone.utc)
        out.append({"id": r.id, "at": at.isoformat(), "who": r.who, "action": r.action, "target": r.target,
                    "reason": r.reason, "detail": r.detail})
    return out
