"""Incident controls: rollback, mass pause and resume (DESIGN §4, "the on-call engineer at 3 a.m.").

- :mod:`cutover.engine.rollback` — ``cutover rollback``: pause the Prefect
  deployments (live and shadow), optionally cancel their in-flight flow runs
  (:mod:`cutover.engine.inflight`), resume the legacy job at its next correct fire time, clear
  the batch flag, state ROLLED_BACK; built on :func:`cutover.engine.operation.operation`
  (journaled, under the operation lock, resumable, refused while a pause is in force). Prefect
  steps may fail without stopping the legacy side: the command exits 3 and the same command
  completes them later. Reports the legacy fire times missed since the cutover.
- :mod:`cutover.engine.pause` / :mod:`cutover.engine.resume` — ``cutover pause`` / ``cutover
  resume`` over the sides' incident controls (``cutover.protocol.IncidentWriter``, by name from
  ``cutover.registry``): fences first (O(1), no lock), then, under the operation lock, each side's
  state stored in the snapshot (``cutover.core.state.snapshots``) before it is paused durably;
  ``resume`` restores exactly the snapshot, handles the runs that turned Late behind the fence,
  lifts the fences last.
- :mod:`cutover.engine.operation` — the evaluators (DryRun, Apply) and the one-wave operation.

The engine imports only ``cutover.core``, ``cutover.protocol`` and ``cutover.registry``, at module level.
"""
