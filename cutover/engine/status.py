"""`cutover status`: actual schedule states on both sides and the one-live-owner invariant."""

from __future__ import annotations

from cutover.core.redact import redact_text
from cutover.core.state import lock
from cutover.core.state import states
from cutover.core.state.journal import operations
from cutover.core.state.snapshots import active_summary, load
from cutover.engine.incident import drift
from cutover.registry import incident_controls


def active_pause(ws) -> dict | None:
    return active_summary(ws.state_engine)


def in_flight(ws) -> dict[str, str]:
    """Ingestions touched by an operation whose journal is not complete: {ingestion: operation id}."""
    out = {}
    for op in operations(ws.state_engine, limit=200):
        if any(s["status"] != "DONE" for s in op["steps"]):
            for s in op["steps"]:
                out.setdefault(s["step"].split(":", 1)[0], op["operation_id"])
    return out


def compute_status(ws, sides) -> dict:
    st = states.get_states(ws.state_engine)
    handoffs = in_flight(ws)
    errors: list[str] = []
    try:
        legacy = sides.legacy().live_state()
    except Exception as e:  # noqa: BLE001 - reported, invariant unknown
        errors.append(redact_text(f"legacy side: {e}"))
        legacy = None
    prefect: dict[tuple[str, str], bool] | None = {}
    try:
        for job in sides.prefect("live").list_jobs():
            prefect[(job.ingestion_id, job.mode or "live")] = not job.paused
    except Exception as e:  # noqa: BLE001
        errors.append(redact_text(f"prefect: {str(e).splitlines()[0] if str(e) else type(e).__name__}"))
        prefect = None
    paused_by_operator = active_pause(ws)
    behind, paused_ids = unpaused_behind_snapshot(ws, paused_by_operator, prefect, errors)
    rows = []
    for ing in ws.items.list():
        state = st.get(ing.id, states.LEGACY)
        owner = states.LIVE_OWNER[state]
        lg = legacy.get(ing.id) if legacy is not None else None

        def side(mode):
            if prefect is None:
                return "unknown", None
            if (ing.id, mode) not in prefect:
                return "absent", False
            return ("active" if prefect[(ing.id, mode)] else "paused"), prefect[(ing.id, mode)]

        live_text, live_on = side("live")
        shadow_text, _ = side("shadow")
        ok, problem = None, ""
        if lg is not None and live_on is not None:
            live_owners = [n for n, on in (("legacy", lg["live"]), ("prefect", live_on)) if on]
            if len(live_owners) > 1:
                ok, problem = False, "both sides are live"
            elif not live_owners and not paused_by_operator and ing.id not in handoffs:
                ok, problem = False, "no side is live"
            elif live_owners and live_owners[0] != owner and ing.id not in handoffs:
                ok, problem = False, f"{live_owners[0]} is live but the state {state} says {owner}"
            else:
                ok = True
        drifted = [d for d in behind if d["ingestion_id"] in (ing.id, None)
                   and (d["ingestion_id"] is not None or ing.id in paused_ids)]
        if drifted:  # the operator's pause is being undone behind its back
            ok = False
            problem = "; ".join(filter(None, [problem, f"un-paused behind pause snapshot {paused_by_operator['id']}: "
                                              + ", ".join(d["detail"] for d in drifted)]))
        rows.append({"id": ing.id, "state": state, "live_owner": owner,
                     "legacy": lg["text"] if lg else "unknown", "prefect_live": live_text,
                     "prefect_shadow": shadow_text, "invariant_ok": ok, "problem": problem,
                     "operation_in_flight": handoffs.get(ing.id)})
    return {"ingestions": rows, "errors": errors, "lock": lock.holder(ws.state_engine),
            "active_pause": paused_by_operator, "unpaused_behind_snapshot": behind}


def unpaused_behind_snapshot(ws, pause: dict | None, prefect: dict | None,
                             errors: list[str]) -> tuple[list[dict], set[str]]:
    """While a pause snapshot is ACTIVE: (what it paused that runs again, the ingestions it covers);
    each side's ``IncidentReader.drift`` (a side that cannot be read is left out of it)."""
    if pause is None:
        return [], set()
    try:
        snap = load(ws.state_engine, pause["id"])
        controls = incident_controls(ws, start_prefect=False)
        try:
            return drift(snap, controls), set(snap.ids)
        finally:
            for c in controls:
                c.close()
    except Exception as e:  # noqa: BLE001 - reported like any unreadable side
        errors.append(redact_text(f"pause snapshot {pause['id']}: {e}"))
        return [], set()
