"""cutover.engine.execute against the fake sides: every step kind, failures, and a kill after
every step (after its side effect, and after it is journaled) and after every side-effecting
call of a side, each followed by a re-run that must converge to the uninterrupted end state
with every side effect applied exactly once."""

from __future__ import annotations

import pytest

from cutover.core.errors import GateFailed, InputError, PartialFailure
from cutover.core.state import states
from cutover.core.state.states import CUTOVER, LEGACY, ROLLED_BACK, SHADOW
from cutover.testing import SimulatedCrash

from .conftest import crash_after_step, end_state, live_owners, make_plan, run_execute, store_dump

N_STEPS = 4 + 6 + 4  # a: LEGACY -> SHADOW, b: SHADOW -> CUTOVER, c: ROLLED_BACK -> SHADOW


def _reference(bench):
    ref = bench.template("fresh")  # every kill point starts from a copy of this workspace
    res = run_execute(ref)
    assert res.failed is None and not res.deferred and len(res.applied) == N_STEPS
    want = end_state(ref)
    assert want["states"] == {"a": SHADOW, "b": CUTOVER, "c": SHADOW}
    assert {s for *_, s in want["journal"]} == {"DONE"} and len(want["journal"]) == N_STEPS
    assert want["locks"] == 0 and want["audit"] == ["execute"]
    assert want["sides"]["legacy"] == {i: (i == "b", *want["sides"]["legacy"][i][1:]) for i in "abc"}
    assert {i: s[0] for i, s in want["sides"]["prefect-live"].items()} == {"b": False, "c": True}
    assert {i: s[0] for i, s in want["sides"]["prefect-shadow"].items()} == {"a": False, "b": True, "c": False}
    assert [f[0] for f in want["forks"]] == ["a", "c"] and want["baseline"] == {"a": 1, "b": 0, "c": 1}
    assert want["branches"]["a"] == ["cutover-fork", "cutover-shadow", "main"]  # the fork kept by a tag that expiry keeps
    assert all(o == ["legacy"] for i, o in live_owners(ref).items() if i != "b") and live_owners(ref)["b"] == ["prefect"]
    return ref, want


def test_every_step_of_an_uninterrupted_run(bench):
    ref, want = _reference(bench)
    effects = ref.effects_since()
    assert sorted(effects.elements()) == sorted([
        ("legacy", "pause", "b"), ("prefect-shadow", "pause", "b"),
        ("prefect-shadow", "ensure_job", "a"), ("prefect-live", "ensure_job", "b"),
        ("prefect-live", "pause", "b"), ("prefect-live", "resume", "b"),
        ("prefect-shadow", "resume", "c")])  # after the rollback c's shadow deployment was there, paused
    # a second run of the same wave does nothing: "every wave of this plan is done"
    with pytest.raises(InputError, match="every wave of this plan is done"):
        run_execute(ref)
    assert end_state(ref) == want


@pytest.mark.parametrize("journaled", [False, True], ids=["after-side-effect", "after-journal"])
def test_a_kill_after_every_step_converges(bench, journaled):
    ref, want = _reference(bench)
    ref_calls, ref_effects = ref.calls_since(), ref.effects_since()
    for k in range(N_STEPS):
        env = bench.from_template("fresh")
        with crash_after_step(k, journaled=journaled):
            with pytest.raises(SimulatedCrash):
                run_execute(env)
        status = {seq: st for _, seq, _, st in end_state(env)["journal"]}
        assert status[k] == ("DONE" if journaled else "RUNNING"), (k, status)
        assert all(len(o) <= 1 for o in live_owners(env).values()), (k, live_owners(env))  # never two live owners
        if journaled and k == N_STEPS - 1:
            # killed after the last step was journaled, before the audit row: the wave is done,
            # and the same command says so (the audit row of that execution is missing)
            with pytest.raises(InputError, match="every wave of this plan is done"):
                run_execute(env)
            assert end_state(env) == {**want, "audit": []}
            continue
        res = run_execute(env)  # the same command again
        assert len(res.skipped) == k + (1 if journaled else 0), (k, res.skipped)
        assert end_state(env) == want, k
        assert env.effects_since() == ref_effects, (k, env.effects_since() - ref_effects)  # each effect once
        extra = env.calls_since() - ref_calls
        assert not (ref_calls - env.calls_since()), k
        if journaled:
            assert not extra, (k, extra)  # a DONE step is never run again
        else:
            step_iid = [s.ingestion_id for m in env.plan.waves[0].moves for s in m.steps][k]
            assert all(i == step_iid for _, _, i in extra), (k, extra)  # only step k was run again


def test_a_kill_inside_a_side_call_converges(bench):
    """The side applied the change and the process died before the call returned: for every call
    of the uninterrupted run that changed something, on each side."""
    ref, want = _reference(bench)
    ref_effects = ref.effects_since()
    n_calls = {n: len(f.calls) - ref.marks[n][0] for n, f in ref.sides.fakes.items()}
    cases = 0
    for side, n in n_calls.items():
        for call in range(1, n + 1):
            env = bench.from_template("fresh")
            env.sides.fakes[side].crash_after(call=call)
            with pytest.raises(SimulatedCrash):
                run_execute(env)
            assert all(len(o) <= 1 for o in live_owners(env).values()), (side, call, live_owners(env))
            run_execute(env)
            assert end_state(env) == want, (side, call)
            assert env.effects_since() == ref_effects, (side, call)
            cases += 1
    assert cases == sum(n_calls.values()) >= 8


def test_waves_run_in_order_each_with_its_own_journal(bench):
    env = bench.new("w", waves="1,1,rest")
    assert [len(w.moves) for w in env.plan.waves] == [1, 1, 1]
    for n in (1, 2, 3):
        res = run_execute(env)
        assert res.wave.number == n and len(res.applied) == len(env.plan.waves[n - 1].moves[0].steps)
    assert states.get_states(env.ws.state_engine) == {"a": SHADOW, "b": CUTOVER, "c": SHADOW}
    ops = {op for op, *_ in __import__("sqlite3").connect(env.home / "state.db").execute(
        "select distinct operation_id from journal")}
    assert ops == {f"{env.plan.id}-{env.plan.digest()[:16]}:wave{n}" for n in (1, 2, 3)}


# -- failures --------------------------------------------------------------------------------------

def test_a_side_down_stops_the_wave_and_the_same_command_resumes(bench):
    env = bench.new("down")
    env.sides.prefect("shadow").down = True
    with pytest.raises(PartialFailure, match="stopped at: a: deploy Prefect deployment shadow"):
        run_execute(env)
    st = end_state(env)
    assert [s for *_, s in st["journal"]][:3] == ["DONE", "FAILED", "PENDING"]
    assert "a" not in st["states"] and st["locks"] == 0 and st["audit"] == ["execute"]
    env.sides.prefect("shadow").down = False
    res = run_execute(env)
    assert len(res.skipped) == 1 and len(res.applied) == N_STEPS - 1
    assert states.get_states(env.ws.state_engine) == {"a": SHADOW, "b": CUTOVER, "c": SHADOW}


def test_a_failure_at_any_call_then_a_rerun_converges(bench):
    ref, want = _reference(bench)
    for n in range(1, 4):  # the live deployment's calls: ensure_job, pause, resume (all b's)
        env = bench.from_template("fresh")
        env.sides.prefect("live").fail_at(n)
        with pytest.raises(PartialFailure):
            run_execute(env)
        res = run_execute(env)
        assert res.failed is None
        st = end_state(env)
        assert {k: v for k, v in st.items() if k != "audit"} == {k: v for k, v in want.items() if k != "audit"}, n
        assert st["audit"] == ["execute", "execute"]


def test_a_slow_side_only_takes_longer(bench):
    import time

    env = bench.new("slow")
    for f in env.sides.fakes.values():
        f.delay = 0.02
    t0 = time.monotonic()
    run_execute(env)
    assert time.monotonic() - t0 >= 0.02 * 6
    assert states.get_states(env.ws.state_engine) == {"a": SHADOW, "b": CUTOVER, "c": SHADOW}


def test_wait_legacy_idle_waits_for_the_in_flight_run_then_times_out(bench):
    env = bench.new("idle", {"b": SHADOW}, handoff_timeout=0.2)
    run_id = env.ws.runs.start("b", orchestrator="legacy", mode="live", trigger="scheduled")
    with pytest.raises(PartialFailure, match="wait for the in-flight legacy run .* still running after 0s"):
        run_execute(env)
    assert env.sides.legacy().state()["b"][0] is True  # paused: no new legacy run starts meanwhile
    assert env.sides.prefect("live").state() == {}  # and Prefect was not touched
    env.ws.runs.finish(run_id, "SUCCESS")
    res = run_execute(env)
    assert res.applied[0] == "b: wait for the in-flight legacy run to end (at most 0.2s)"
    assert states.get_state(env.ws.state_engine, "b") == CUTOVER


def test_gate_not_met_and_a_stale_plan_change_nothing(bench):
    env = bench.new("gate", gate="streak>=3")
    before = store_dump(env.home)
    with pytest.raises(GateFailed, match="clean parity streak 0 < 3"):
        run_execute(env)
    assert store_dump(env.home) == before and env.calls_since() == {}
    env.plan = make_plan(env)
    states.set_state(env.ws.state_engine, "c", LEGACY, force=True)
    before = store_dump(env.home)
    with pytest.raises(GateFailed, match="plan is stale: c is LEGACY, the plan expected ROLLED_BACK"):
        run_execute(env)
    assert store_dump(env.home) == before and env.calls_since() == {}


def test_dry_run_shows_every_step_and_writes_nothing(bench):
    from cutover.engine.execute import DryRun, choose_wave, execute_wave

    env = bench.new("dry")
    before = store_dump(env.home)
    w = choose_wave(env.ws, env.plan, None)
    res = execute_wave(env.ws, env.plan, w, DryRun(env.echo))
    assert len(res.applied) == N_STEPS and not res.skipped
    assert "    [would run] b: pause the legacy job   (inverse: resume the legacy job)" in env.lines
    assert store_dump(env.home) == before and env.calls_since() == {}


# -- every step kind, one at a time ----------------------------------------------------------------

def _step_plan(env, *steps):
    from cutover.engine.plan import Move, Plan, Wave

    moves = tuple(Move(s.ingestion_id, "X", "Y", (s,)) for s in steps)
    return Plan("steps", "", "unit", "", (Wave(1, "steps", moves),), {})


def _apply(env, *steps):
    from cutover.engine.execute import Apply

    plan = _step_plan(env, *steps)
    return Apply(env.sides, env.echo, poll=0.01).run(env.ws, plan, plan.waves[0])


def test_every_step_kind_applies_and_is_idempotent(bench):
    from cutover.engine.plan import ACTIONS, Step, step_args as _args

    env = bench.new("kinds", {"a": LEGACY, "b": CUTOVER})
    lf, live, shadow = env.sides.legacy(), env.sides.prefect("live"), env.sides.prefect("shadow")
    steps = [
        (Step("fork_shadow", "a"), lambda: end_state(env)["forks"] == [("a", "raw.a", "cutover-shadow")]),
        (Step("deploy_prefect", "a", _args(mode="shadow")), lambda: shadow.state()["a"][0] is False),
        (Step("deploy_prefect", "a", _args(mode="live", paused=True)), lambda: live.state()["a"][0] is True),
        (Step("resume_prefect", "a", _args(mode="live")), lambda: live.state()["a"][0] is False),
        (Step("pause_prefect", "a", _args(mode="live")), lambda: live.state()["a"][0] is True),
        (Step("remove_prefect", "a", _args(mode="live")), lambda: "a" not in live.state()),
        (Step("pause_legacy", "a"), lambda: lf.state()["a"][0] is True),
        (Step("resume_legacy", "a"), lambda: lf.state()["a"][0] is False),
        (Step("wait_legacy_idle", "a", _args(timeout=1.0)), lambda: True),
        (Step("set_state", "a", _args(from_state=LEGACY, to_state=SHADOW)),
         lambda: states.get_state(env.ws.state_engine, "a") == SHADOW),
        (Step("cancel_prefect", "b", _args(timeout=1.0)),
         lambda: [r.status for r in live.runs] == ["CANCELLED"]),
    ]
    assert {s.action for s, _ in steps} == set(ACTIONS)
    live.hold_runs = True
    live.trigger("b")
    for k, (step, check) in enumerate(steps):
        for attempt in (1, 2):  # the second time: the journal of a new operation, the step changes nothing
            env.bookmark()
            plan_id = f"{k}-{step.action}-{attempt}"
            from cutover.engine.execute import Apply
            from cutover.engine.plan import Move, Plan, Wave

            plan = Plan(plan_id, "", "unit", "", (Wave(1, "s", (Move(step.ingestion_id, "X", "Y", (step,)),)),), {})
            res = Apply(env.sides, env.echo, poll=0.01).run(env.ws, plan, plan.waves[0])
            assert res.failed is None and res.applied == [step.describe()], (step, res)
            assert check(), (step, attempt)
            if attempt == 2:
                assert not env.effects_since(), (step, env.effects_since())


def test_cancel_prefect_closes_a_run_record_whose_process_is_gone(bench):
    """A Prefect run record still RUNNING after the cancellation, its flow run final on the side:
    closed CANCELLED by cutover once the timeout passed."""
    from cutover.engine.plan import Step, step_args as _args

    env = bench.new("cancel", {"b": CUTOVER})
    live = env.sides.prefect("live")
    live.hold_runs = True
    ext = live.trigger("b")
    run_id = env.ws.runs.start("b", orchestrator="prefect", mode="live", trigger="scheduled", external_id=ext)
    res = _apply(env, Step("cancel_prefect", "b", _args(timeout=0.05)))
    assert res.failed is None
    assert env.ws.runs.get(run_id).status == "CANCELLED"
    assert "1 flow run(s) cancelled, 1 run record(s) closed by cutover" in "\n".join(env.lines)
