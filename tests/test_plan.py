"""Plan building, gates parsing, fingerprints (pure logic, no stores)."""

from __future__ import annotations

import json

import pytest

from cutover.core.errors import InputError
from cutover.engine.plan import Plan, build_plan, parse_gate, parse_waves
from cutover.core.records.ingestions import validate


def _row(iid, state="LEGACY", size="small", streak=0, fpd=1.0, owner=None):
    ing = validate({"id": iid, "source_uri": "/data/" + iid, "format": "csv", "table": f"ns.{iid.replace('-', '_')}",
                    "size_class": size, "owner": owner})
    return {"ingestion": ing, "state": state, "streak": streak, "fires_per_day": fpd}


def test_canary_takes_lowest_risk_and_summary_counts_moves():
    inv = [_row("big", size="large", streak=9, fpd=0.1), _row("busy", fpd=24, streak=9),
           _row("quiet", fpd=1, streak=5), _row("quiet2", fpd=1, streak=7, state="SHADOW"),
           _row("done", state="CUTOVER"), _row("medium", size="medium", fpd=1)]
    p = build_plan(inv, waves="canary=2,25%,rest")
    assert [w.name for w in p.waves] == ["canary", "wave-2", "wave-3"]
    assert [m.ingestion_id for m in p.waves[0].moves] == ["quiet2", "quiet"]  # small, infrequent, longest streak first
    assert [m.ingestion_id for m in p.waves[1].moves] == ["busy", "medium"]  # 25% of 5, rounded up
    assert [m.ingestion_id for m in p.waves[2].moves] == ["big"]
    assert p.summary() == {"shadow": 4, "cutover": 1, "rollback": 0}
    assert p.summary_line() == "Plan: 4 to shadow, 1 to cut over, 0 to roll back."
    assert "done" not in p.fingerprints  # nothing to move


def test_cutover_steps_follow_the_handoff_order_and_have_inverses():
    p = build_plan([_row("a", state="SHADOW")], waves="rest")
    steps = p.waves[0].moves[0].steps
    assert [s.action for s in steps] == ["pause_legacy", "wait_legacy_idle", "pause_prefect", "deploy_prefect",
                                         "resume_prefect", "set_state"]
    assert steps[0].inverse().action == "resume_legacy"
    assert steps[-1].inverse().kw == {"from_state": "CUTOVER", "to_state": "SHADOW"}
    assert steps[1].inverse() is None


def test_plan_round_trips_through_json():
    p = build_plan([_row("a"), _row("b", state="SHADOW")], waves="canary=1,rest", gate="streak>=2")
    q = Plan.from_dict(json.loads(p.to_json()))
    assert q == p


def test_select_filters():
    inv = [_row("orders-eu", owner="shop"), _row("orders-us", owner="shop"), _row("clicks", owner="web")]
    assert [m.ingestion_id for w in build_plan(inv, waves="rest", select="orders-*").waves for m in w.moves] == ["orders-eu", "orders-us"]
    assert [m.ingestion_id for w in build_plan(inv, waves="rest", select="owner=web").waves for m in w.moves] == ["clicks"]
    with pytest.raises(InputError):
        build_plan(inv, select="colour=red")


@pytest.mark.parametrize("bad", ["canary=x", "rest,2", "", "10 %"])
def test_bad_waves(bad):
    with pytest.raises(InputError):
        parse_waves(bad)


def test_gates():
    assert parse_gate("streak>=3, schedule_verified,no_open_waiver") == [("streak", 3), ("schedule_verified", None), ("no_open_waiver", None)]
    with pytest.raises(InputError):
        parse_gate("streak>three")
