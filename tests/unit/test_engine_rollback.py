"""cutover.engine.rollback against the fake sides: the rollback of a cut-over wave killed after
every step and every side call then run again; a rollback from every point of an interrupted
cutover; the Prefect side down (legacy resumed all the same, exit 3, the same command completes)."""

from __future__ import annotations

import pytest

from cutover.core.errors import PartialFailure
from cutover.core.state import states
from cutover.core.state.states import CUTOVER, LEGACY, ROLLED_BACK, SHADOW
from cutover.testing import SimulatedCrash

from .conftest import crash_after_step, end_state, live_owners, run_execute, run_rollback, store_dump

STEPS_PER_MOVE = 5  # pause live, pause shadow, cancel in-flight, resume legacy, state


def _execute_and_start_a_flow_run(env) -> None:
    run_execute(env)
    live = env.sides.prefect("live")
    live.hold_runs = True
    live.trigger("b")


def _cut_over(bench, name):
    """a, c in SHADOW, b in CUTOVER (an uninterrupted execute), a flow run of b in flight on Prefect:
    a copy of the template "cut" (made on first use)."""
    if "cut" not in bench.templates:
        return bench.template("cut", then=_execute_and_start_a_flow_run)
    return bench.from_template("cut")


def _reference(bench):
    ref = _cut_over(bench, "ref")
    report = run_rollback(ref)
    assert report["partial"] is None and report["ingestions"] == ["a", "b", "c"]
    want = end_state(ref)
    assert want["states"] == {"a": ROLLED_BACK, "b": ROLLED_BACK, "c": ROLLED_BACK}
    rb = [r for r in want["journal"] if r[0] == "rollback"]
    assert len(rb) == 3 * STEPS_PER_MOVE and {r[3] for r in rb} == {"DONE"}
    assert want["audit"] == ["execute", "rollback"] and want["locks"] == 0
    assert live_owners(ref) == {i: ["legacy"] for i in "abc"}
    assert all(p for p, *_ in want["sides"]["prefect-shadow"].values())
    assert [r.status for r in ref.sides.prefect("live").runs] == ["CANCELLED"]
    assert sorted(ref.effects_since().elements()) == sorted([
        ("prefect-live", "pause", "b"), ("prefect-shadow", "pause", "a"), ("prefect-shadow", "pause", "c"),
        ("prefect-live", "cancel_running", "b"), ("legacy", "resume", "b")])
    return ref, want


def test_an_uninterrupted_rollback(bench):
    ref, want = _reference(bench)
    assert set(ref.plan and want["states"]) == {"a", "b", "c"}
    # the same command again: nothing to roll back
    report = run_rollback(ref)
    assert report["ingestions"] == [] and report["notes"] == [f"{i}: already ROLLED_BACK" for i in "abc"]


def _journal_pending(st) -> list:
    return [r for r in st["journal"] if r[3] != "DONE"]


@pytest.mark.parametrize("journaled", [False, True], ids=["after-side-effect", "after-journal"])
def test_a_kill_after_every_rollback_step_converges(bench, journaled):
    ref, want = _reference(bench)
    ref_effects = ref.effects_since()
    for k in range(3 * STEPS_PER_MOVE):
        env = _cut_over(bench, f"k{k}")
        with crash_after_step(k, journaled=journaled):
            with pytest.raises(SimulatedCrash):
                run_rollback(env)
        assert all(len(o) <= 1 for o in live_owners(env).values()), (k, live_owners(env))
        run_rollback(env)  # the same command again
        got = end_state(env)
        assert env.effects_since() == ref_effects, (k, env.effects_since() - ref_effects)  # each effect once
        assert {x: got[x] for x in ("states", "sides", "forks", "baseline", "branches", "locks")} == \
               {x: want[x] for x in ("states", "sides", "forks", "baseline", "branches", "locks")}, k
        assert live_owners(env) == {i: ["legacy"] for i in "abc"}, k
        if k < STEPS_PER_MOVE - 1:
            # killed before the first ingestion's state changed: the same journal is resumed
            assert got["journal"] == want["journal"] and got["audit"] == want["audit"], k


def test_a_rollback_killed_between_two_ingestions_is_resumed_not_restarted(bench):
    """Killed after a's state changed: the re-run computes moves for b and c only, yet resumes the
    first journal (its saved plan) instead of leaving it unfinished for ever."""
    _reference(bench)
    env = _cut_over(bench, "between")
    with crash_after_step(STEPS_PER_MOVE - 1, journaled=False):  # a's state changed, b and c not started
        with pytest.raises(SimulatedCrash):
            run_rollback(env)
    run_rollback(env)
    got = end_state(env)
    assert [r for r in got["journal"] if r[3] != "DONE"] == []


def test_a_kill_inside_a_side_call_during_rollback_converges(bench):
    ref, want = _reference(bench)
    ref_effects = ref.effects_since()
    n_calls = {n: len(f.calls) - ref.marks[n][0] for n, f in ref.sides.fakes.items()}
    for side, n in n_calls.items():
        for call in range(1, n + 1):
            env = _cut_over(bench, f"{side}-{call}")
            env.sides.fakes[side].crash_after(call=call)
            with pytest.raises(SimulatedCrash):
                run_rollback(env)
            run_rollback(env)
            got = end_state(env)
            assert got["states"] == want["states"] and got["sides"] == want["sides"], (side, call)
            assert env.effects_since() == ref_effects, (side, call)


def test_a_rollback_from_every_point_of_an_interrupted_cutover(bench):
    """execute killed after step k, then `cutover rollback a b c` instead of the re-run: whatever
    k, the legacy side is the only live owner and nothing is left CUTOVER."""
    n = len([s for m in bench.template("fresh").plan.waves[0].moves for s in m.steps])
    for k in range(n):
        env = bench.from_template("fresh")
        with crash_after_step(k, journaled=False):
            with pytest.raises(SimulatedCrash):
                run_execute(env)
        cur = states.get_states(env.ws.state_engine)
        report = run_rollback(env)
        assert report["partial"] is None, (k, report)
        after = states.get_states(env.ws.state_engine)
        for iid in "abc":
            before = cur.get(iid, LEGACY)
            assert after.get(iid, LEGACY) == (ROLLED_BACK if before in (SHADOW, CUTOVER) else before), (k, iid)
        assert live_owners(env) == {i: ["legacy"] for i in "abc"}, (k, live_owners(env))
        assert {i: s[0] for i, s in env.sides.prefect("live").state().items()} == \
               {i: True for i in env.sides.prefect("live").state()}, k


def test_prefect_down_the_legacy_side_is_resumed_all_the_same_then_completed(bench):
    env = _cut_over(bench, "down")
    for mode in ("live", "shadow"):
        env.sides.prefect(mode).down = True
    with pytest.raises(PartialFailure) as e:
        run_rollback(env)
    report = e.value.report
    assert report["partial"].startswith("rollback: 12 step(s) not done")
    # the legacy side took over all the same; b's live deployment could not be paused (Prefect is
    # down, so it cannot start a run either); the live ledger fences an overlap when it comes back
    assert live_owners(env) == {"a": ["legacy"], "b": ["legacy", "prefect"], "c": ["legacy"]}
    st = end_state(env)
    assert st["states"] == {"a": SHADOW, "b": CUTOVER, "c": SHADOW}  # the state waits for every step
    rb = [(step.split(": ", 1)[1], status) for op, _, step, status in st["journal"] if op == "rollback"]
    assert {s for _, s in rb} == {"FAILED", "DONE", "PENDING"}
    assert [s for step, s in rb if step == "resume the legacy job"] == ["DONE"] * 3
    # fail fast: after the first "unreachable", no other Prefect call was tried
    assert sum(len(f.calls) - env.marks[n][0] for n, f in env.sides.fakes.items() if n != "legacy") == 1
    for mode in ("live", "shadow"):
        env.sides.prefect(mode).down = False
    report = run_rollback(env)  # the same command: the same operation, completed
    assert report["partial"] is None
    st = end_state(env)
    assert st["states"] == {i: ROLLED_BACK for i in "abc"}
    assert {status for op, _, _, status in st["journal"] if op == "rollback"} == {"DONE"}
    assert len([1 for op, *_ in st["journal"] if op == "rollback"]) == 3 * STEPS_PER_MOVE  # one journal


def test_rollback_dry_run_writes_nothing(bench):
    env = _cut_over(bench, "dry")
    before = store_dump(env.home)
    report = run_rollback(env, dry_run=True)
    assert report["dry_run"] and report["ingestions"] == ["a", "b", "c"]
    assert store_dump(env.home) == before and env.calls_since() == {}
    assert "    [would run] b: resume the legacy job   (inverse: pause the legacy job)" in env.lines
