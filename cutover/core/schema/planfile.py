"""The plan file (``cutover plan --out FILE``), typed: what ``cutover execute`` and ``cutover
rollback --plan`` read back. The digest is checked first (an edit says "plan was edited"); this
model then refuses a plan of the wrong shape whose digest matches (one forged or written by
another tool) with one line naming the field, before a step runs.

The action names are those of ``cutover.engine.plan.ACTIONS`` (a test keeps them equal).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cutover.core.schema import Strict
from cutover.core.state.states import STATES

State = Literal[STATES]  # type: ignore[valid-type]
Action = Literal["fork_shadow", "deploy_prefect", "remove_prefect", "pause_prefect", "resume_prefect",
                 "pause_legacy", "resume_legacy", "wait_legacy_idle", "set_state", "cancel_prefect"]
Seconds = Annotated[float, Field(ge=0)]


class StepArgs(Strict):
    mode: Literal["shadow", "live"] | None = Field(default=None, description="Which Prefect deployment.",
                                                   examples=["shadow"])
    paused: bool | None = Field(default=None, description="Deploy paused.", examples=[True])
    timeout: Seconds | None = Field(default=None, description="Seconds to wait at most.", examples=[600.0])
    from_state: State | None = Field(default=None, description="State before the move.", examples=["LEGACY"])
    to_state: State | None = Field(default=None, description="State after the move.", examples=["SHADOW"])
    on_failure: Literal["continue"] | None = Field(default=None, description="A failure does not stop the operation.",
                                                   examples=["continue"])


class StepFile(Strict):
    action: Action = Field(description="What the step does.", examples=["pause_legacy"])
    ingestion_id: str = Field(description="The ingestion or job it acts on.", examples=["orders"])
    args: StepArgs = Field(default_factory=StepArgs, description="The step's arguments.", examples=[{"mode": "shadow"}])


class MoveFile(Strict):
    ingestion_id: str = Field(description="The ingestion or job moved.", examples=["orders"])
    from_state: State = Field(description="Its state when the plan was made.", examples=["LEGACY"])
    to_state: State = Field(description="Its state after the move.", examples=["SHADOW"])
    steps: list[StepFile] = Field(description="The steps, in order.", examples=[[]])


class WaveFile(Strict):
    number: Annotated[int, Field(ge=1)] = Field(description="1, 2, ...", examples=[1])
    name: str = Field(description="The wave's name.", examples=["canary"])
    moves: list[MoveFile] = Field(description="The moves of the wave.", examples=[[]])


class DigestFile(Strict):
    algorithm: Literal["sha256"] = Field(description="sha256", examples=["sha256"])
    plan: str = Field(description="SHA-256 of the content.", examples=["0" * 64])
    inventory: str = Field(description="SHA-256 of the fingerprints.", examples=["0" * 64])
    parts: dict[str, Any] = Field(description="A short hash of every part.", examples=[{}])


class PlanFile(Strict):
    """A saved plan (version 2)."""

    version: Literal[2] = Field(description="Plan format version.", examples=[2])
    id: str = Field(description="Plan id.", examples=["3f2a9c1d0b7e"])
    created_at: str = Field(description="ISO 8601 creation time.", examples=["2026-12-03T08:00:00+00:00"])
    created_by: str = Field(description="Who made it.", examples=["ops"])
    gate: str = Field(description="The gate conditions.", examples=["streak>=3,schedule_verified,no_open_waiver"])
    handoff_timeout: Seconds = Field(description="Seconds to wait for an in-flight legacy run.", examples=[600.0])
    fingerprints: dict[str, str] = Field(description="Ingestion id -> fingerprint of what the plan was built from.",
                                         examples=[{"orders": "0123456789abcdef"}])
    waves: list[WaveFile] = Field(description="The waves, in order.", examples=[[]])
    digest: DigestFile = Field(description="The seal of the content.", examples=[{}])
