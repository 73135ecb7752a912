"""A saved plan cannot be edited behind our back (#13), through the CLI in this process:
`cutover execute EDITED_PLAN` exits 2 "plan was edited: ..." naming the edit, and writes nothing
anywhere (no lock row, no journal, no audit row: every store byte-identical)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import invoke_cli

from .conftest import store_dump


def _move(d: dict, iid: str) -> dict:
    return next(m for w in d["waves"] for m in w["moves"] if m["ingestion_id"] == iid)


EDITS = {
    # the measured bug: a move changed to LEGACY -> CUTOVER ran its fork step
    "a move flipped": (lambda d: _move(d, "a").__setitem__("to_state", "CUTOVER"),
                       "wave 1: a move was flipped (a: LEGACY -> SHADOW is now LEGACY -> CUTOVER)"),
    # the measured bug: an edited id resumed another plan's journal
    "plan id changed": (lambda d: d.__setitem__("id", "0123456789ab"), "the plan id changed (now '0123456789ab')"),
    "ingestion id changed": (lambda d: _move(d, "c").__setitem__("ingestion_id", "a"),
                             "wave 1: ingestion id changed (c is now a)"),
    "gate removed": (lambda d: d.__setitem__("gate", "streak>=0"), "a gate was removed (no_open_waiver)"),
    "step removed": (lambda d: _move(d, "b")["steps"].pop(1),
                     "wave 1, b: a step was removed or changed (wait for the in-flight legacy run to end (at most 5.0s))"),
}


@pytest.fixture
def saved(bench, tmp_path, capsys):
    env = bench.new("cli", plan=False)
    plan_file = tmp_path / "plan.json"
    code, out, err = invoke_cli(capsys, "plan", "--waves", "rest", "--gate", "streak>=0,no_open_waiver",
                                "--handoff-timeout", "5s", "--out", str(plan_file))
    assert code == 0, err
    return env, plan_file


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_plan_is_refused_and_nothing_is_written(saved, capsys, edit):
    env, plan_file = saved
    d = json.loads(plan_file.read_text())
    change, expected = EDITS[edit]
    change(d)
    plan_file.write_text(json.dumps(d, indent=2))
    before = store_dump(env.home)
    for args in (["--yes"], ["--dry-run"], ["--wave", "1", "--yes"]):
        code, out, err = invoke_cli(capsys, "execute", str(plan_file), *args)
        assert code == 2, (edit, args, out, err)
        assert "plan was edited: " in err and expected in err, err
        assert store_dump(env.home) == before, (edit, args)
    code, _, err = invoke_cli(capsys, "rollback", "--wave", "1", "--plan", str(plan_file))
    assert code == 2 and expected in err
    assert store_dump(env.home) == before
    assert env.calls_since() == {}


def test_the_saved_plan_itself_is_accepted(saved, capsys):
    env, plan_file = saved
    code, out, err = invoke_cli(capsys, "execute", str(plan_file), "--dry-run")
    assert code == 0, err
    assert "[would run] a: fork Iceberg branch cutover-shadow" in out and "Dry run: nothing was changed." in out


def test_a_forged_digest_still_never_resumes_the_plan_journal(bench):
    """Someone edits a move and recomputes the digest: the plan loads, but its operation id (which
    holds the content digest) is another one, so not one step of the real plan's journal counts."""
    from cutover.engine.execute import DryRun, operation_id
    from cutover.engine.plan import Plan
    from cutover.testing import SimulatedCrash

    from .conftest import crash_after_step, run_execute

    env = bench.new("forge")
    with crash_after_step(3, journaled=True), pytest.raises(SimulatedCrash):
        run_execute(env)
    d = json.loads(env.plan.to_json())
    _move(d, "a")["to_state"] = "CUTOVER"
    d.pop("digest")
    forged = Plan.loads(Plan.from_dict(d).to_json())
    assert forged.id == env.plan.id
    w, fw = env.plan.waves[0], forged.waves[0]
    assert operation_id(forged, fw) != operation_id(env.plan, w)
    res = DryRun(env.echo).run(env.ws, forged, fw)
    assert res.skipped == [] and len(res.applied) == 14
    assert len(DryRun(env.echo).run(env.ws, env.plan, w).skipped) == 4


def test_a_journal_that_records_other_steps_is_refused_before_anything_is_written(bench):
    from cutover.core.errors import InputError
    from cutover.core.state.journal import Journal
    from cutover.engine.execute import check_stale, operation_id

    env = bench.new("journal")
    w = env.plan.waves[0]
    Journal(env.ws.state_engine, operation_id(env.plan, w), "execute").register(["zz: pause the legacy job"])
    before = store_dump(env.home)
    with pytest.raises(InputError, match=r"plan was edited: the journal of operation .* records other steps "
                                         r"\(step 1: 'zz: pause the legacy job'\)"):
        check_stale(env.ws, env.plan, w)
    assert store_dump(env.home) == before


def test_a_plan_saved_from_json_output_loads_too(bench, tmp_path, capsys):
    bench.new("json", plan=False)
    code, out, err = invoke_cli(capsys, "plan", "--waves", "rest", "--gate", "streak>=0", "--json")
    assert code == 0, err
    f = tmp_path / "from-json.json"
    f.write_text(out)
    code, out, err = invoke_cli(capsys, "execute", str(f), "--dry-run")
    assert code == 0, err
