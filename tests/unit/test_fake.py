"""The fake side's failure injection (cutover.testing.fake): pure memory, no workspace."""

from __future__ import annotations

import time

import pytest

from cutover.core.records.ingestions import validate
from cutover.protocol import CREATED, UNCHANGED, OrchestratorError, OrchestratorWriter
from cutover.testing import FakeNotFound, FakeOrchestrator, FakeSides, SimulatedCrash


def _ing(iid: str, at: str = "03:10"):
    return validate({"id": iid, "source_uri": "/data/" + iid, "format": "csv", "table": f"ns.{iid}",
                     "schedule": {"frequency": "daily", "at": at}, "timezone": "UTC"})


@pytest.fixture
def fake():
    return FakeOrchestrator(ingestions=[_ing("a"), _ing("b")])


def test_it_is_a_writer_and_records_calls_and_effects(fake):
    assert isinstance(fake, OrchestratorWriter)
    assert fake.pause("a") is True and fake.pause("a") is False
    assert fake.ensure_job(_ing("c")) == CREATED and fake.ensure_job(_ing("c")) == UNCHANGED
    assert [m for m, _ in fake.calls] == ["pause", "pause", "ensure_job", "ensure_job"]
    assert fake.effects == [("pause", "a"), ("ensure_job", "c")]
    assert fake.effect_count("pause", "a") == 1
    assert fake.state()["a"][0] is True and fake.state()["b"][0] is False


def test_fail_at_the_nth_call_whatever_its_method(fake):
    fake.fail_at(2, OrchestratorError("second"))
    assert fake.pause("a") is True
    with pytest.raises(OrchestratorError, match="second"):
        fake.resume("a")
    assert fake.state()["a"][0] is True  # the failed call changed nothing
    assert fake.resume("a") is True  # one-shot


def test_down_and_back(fake):
    fake.down = True
    assert fake.unreachable
    for call in (fake.list_jobs, lambda: fake.pause("a"), lambda: fake.cancel_running("a")):
        with pytest.raises(OrchestratorError, match="unreachable"):
            call()
    assert not fake.health().ok and fake.effects == []
    fake.down = False
    assert fake.health().ok and fake.pause("a") is True


def test_slow(fake):
    fake.delay = 0.05
    t0 = time.monotonic()
    fake.pause("a")
    fake.list_jobs()
    assert time.monotonic() - t0 >= 0.1


def test_crash_after_the_side_effect(fake):
    fake.crash_after("pause", ingestion_id="b")
    assert fake.pause("a") is True  # not that one
    with pytest.raises(SimulatedCrash):
        fake.pause("b")
    assert fake.state()["b"][0] is True and fake.effects[-1] == ("pause", "b")  # it happened
    assert fake.pause("b") is False  # one-shot; the re-run finds it done
    assert not isinstance(SimulatedCrash("x"), Exception)  # `except Exception` does not swallow a kill
    fake.crash_after(call=2)
    fake.resume("a")
    with pytest.raises(SimulatedCrash):
        fake.resume("b")
    assert fake.state()["b"][0] is False


def test_missing_jobs_raise_or_answer_false_like_the_real_sides():
    strict = FakeOrchestrator()
    with pytest.raises(FakeNotFound):
        strict.pause("x")
    sides = FakeSides([_ing("a")])
    assert sides.prefect("live").pause("a") is False and sides.prefect("live").resume("a") is False
    assert sides.legacy().pause("a") is True


def test_clone_copies_jobs_and_runs_not_calls(fake):
    fake.hold_runs = True
    rid = fake.trigger("a")
    c = fake.clone()
    assert c.state() == fake.state() and [r.id for r in c.runs] == [rid] and c.calls == [] and c.effects == []
    c.pause("a")
    assert fake.state()["a"][0] is False  # independent
    assert c.flow_run_state(rid) == "RUNNING" and c.cancel_running("a") == 1 and c.flow_run_state(rid) == "CANCELLED"
