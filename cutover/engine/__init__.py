"""Incident controls: rollback, mass pause and resume (DESIGN §4, "the on-call engineer at 3 a.m.").

- :mod:`cutover.engine.rollback` — ``cutover rollback``: pause the Prefect
  deployments (live and shadow), optionally cancel their in-flight flow runs
  (claims released), resume the legacy job at its next correct fire time, clear
  the batch flag, state ROLLED_BACK; built on :func:`cutover.engine.execute.operation`
  (journaled, locked, resumable). Prefect steps may fail without stopping the
  legacy side: an unreachable Prefect API leaves them FAILED in the journal, the
  command exits 3 and the same command completes them later. Reports the legacy
  fire times missed since the legacy side was paused for the cutover.
- :mod:`cutover.engine.pause` — ``cutover pause`` / ``cutover resume``: a
  snapshot of every schedule state on both sides, an O(1) fence (the Prefect work
  pool paused with one PATCH; one row that the legacy trigger paths check), then
  every deployment, job and batch flag paused durably; ``resume`` restores exactly
  the snapshot, handles the runs that turned Late behind the fence, lifts the
  fences last.
- :mod:`cutover.core.state.fence` — the legacy fence row.
- :mod:`flows.http` — a small REST client for the mass
  operations (no ``import prefect``: 0.9 s the on-call engineer does not have).

Nothing heavy is imported at module level.
"""
