"""Test support that is maintained code: the in-memory fake orchestrator and fake sides."""

from cutover.testing.fake import FakeNotFound, FakeOrchestrator, FakePaused, FakeSides, SimulatedCrash

__all__ = ["FakeOrchestrator", "FakeNotFound", "FakePaused", "FakeSides", "SimulatedCrash"]
