"""Test support that is maintained code: the in-memory fake orchestrator."""

from cutover.testing.fake import FakeOrchestrator, FakeNotFound, FakePaused

__all__ = ["FakeOrchestrator", "FakeNotFound", "FakePaused"]
