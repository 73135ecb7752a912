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


# -- the digest: a saved plan cannot be edited behind our back ------------------------------------

def _saved(**kw) -> dict:
    inv = [_row("a"), _row("b", state="SHADOW"), _row("c", state="SHADOW", streak=9)]
    return json.loads(build_plan(inv, waves="canary=1,rest", **kw).to_json())


def _refused(d: dict) -> str:
    with pytest.raises(InputError) as e:
        Plan.loads(json.dumps(d), "plan.json")
    assert e.value.message.startswith("plan was edited: "), e.value.message
    assert "cutover plan --out FILE" in e.value.fix
    return e.value.message


def _move(d: dict, iid: str) -> dict:
    return next(m for w in d["waves"] for m in w["moves"] if m["ingestion_id"] == iid)


def test_a_saved_plan_carries_a_digest_and_loads_back():
    d = _saved()
    assert set(d["digest"]) == {"algorithm", "plan", "inventory", "parts"}
    p = Plan.loads(json.dumps(d, indent=None, sort_keys=True))  # formatting is not content
    assert p.digest() == d["digest"]["plan"] == Plan.from_dict(d).digest()
    assert json.loads(p.to_json()) == d


def test_a_flipped_move_is_named():
    d = _saved()
    m = _move(d, "a")
    assert (m["from_state"], m["to_state"]) == ("LEGACY", "SHADOW")
    m["to_state"] = "CUTOVER"  # the steps stay the shadow ones: this plan must never run
    msg = _refused(d)
    assert "a move was flipped (a: LEGACY -> SHADOW is now LEGACY -> CUTOVER)" in msg
    assert msg.count(";") == 0, msg  # only that


def test_a_changed_ingestion_id_is_named_with_the_old_one():
    d = _saved()
    m = _move(d, "b")
    m["ingestion_id"] = "zz"
    msg = _refused(d)
    assert "ingestion id changed (b is now zz)" in msg


def test_a_removed_gate_is_named():
    d = _saved(gate="streak>=3, schedule_verified,no_open_waiver")
    d["gate"] = "streak>=3,schedule_verified"
    assert _refused(d) == "plan was edited: a gate was removed (no_open_waiver) (plan.json does not match its digest)"
    d = _saved(gate="streak>=7,no_open_waiver")
    d["gate"] = "streak>=1,no_open_waiver"
    msg = _refused(d)
    assert "a gate was removed (streak>=7)" in msg and "a gate was added or changed (streak>=1)" in msg


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d.__setitem__("id", "0123456789ab"), "the plan id changed (now '0123456789ab')"),
    (lambda d: d.__setitem__("handoff_timeout", 1.0), "the handoff timeout changed (now 1.0)"),
    (lambda d: d["fingerprints"].__setitem__("a", "0" * 16), "the fingerprint of a changed"),
    (lambda d: d["fingerprints"].pop("c"), "the fingerprint of c was removed"),
    (lambda d: d["waves"].pop(), "wave 2 was removed"),
    (lambda d: d["waves"][1]["moves"].pop(0), "wave 2: a move was removed ("),
    (lambda d: d["waves"][1].__setitem__("name", "big-bang"), "wave 2: the wave name changed (now 'big-bang')"),
    (lambda d: _move(d, "c")["steps"].pop(1),
     "wave 1, c: a step was removed or changed (wait for the in-flight legacy run to end (at most 600.0s))"),
    (lambda d: _move(d, "c")["steps"].reverse(), "wave 1, c: the steps were reordered"),
    (lambda d: _move(d, "c")["steps"][0]["args"].__setitem__("on_failure", "continue"),
     "wave 1, c: a step was added or changed (step 1: pause the legacy job (a failure does not stop the operation))"),
    (lambda d: d.__setitem__("note", "x"), "field(s) note were added"),
    (lambda d: d.pop("digest"), "carries no digest"),
    (lambda d: d["digest"].__setitem__("plan", "0" * 64), "a field the digest does not itemize changed"),
])
def test_every_edit_is_refused_and_named(edit, expected):
    d = _saved()
    assert [m["ingestion_id"] for w in d["waves"] for m in w["moves"]] == ["c", "a", "b"]
    edit(d)
    assert expected in _refused(d)


def test_a_plan_of_the_previous_version_is_refused():
    d = _saved()
    d["version"] = 1
    with pytest.raises(InputError, match="plan version 1 is not supported"):
        Plan.loads(json.dumps(d))


def test_the_operation_id_holds_the_content_digest():
    from cutover.engine.execute import operation_id

    p = Plan.loads(json.dumps(_saved()))
    d = json.loads(p.to_json())
    _move(d, "a")["to_state"] = "CUTOVER"
    q = Plan.from_dict(d)  # what an edited plan would be, had its digest been forged
    assert p.id == q.id and p.waves[1].number == q.waves[1].number
    assert operation_id(p, p.waves[1]) != operation_id(q, q.waves[1])
    assert operation_id(p, p.waves[1]).startswith(f"{p.id}-{p.digest()[:16]}:wave2")
