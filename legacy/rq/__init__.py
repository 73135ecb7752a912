"""Redis RQ as a legacy orchestrator: ingestion workflows as DAGs of RQ jobs (issue #8).

Modules (none imports ``rq``/``redis`` at import time except ``store``, ``jobs`` at run time,
``worker`` and ``server``, which callers import lazily):

- ``model``: rq.json (:class:`~legacy.rq.model.RQConfig`), the workflow DAG and its rules;
- ``store``: cutover's keys in Redis next to RQ's: definitions, holds, kickoffs, run state;
- ``jobs``: what the workers run (kickoff, discover / ingest / publish);
- ``adapter``: :class:`~legacy.rq.adapter.RQAdapter`, the orchestrator protocol over RQ;
- ``side``: the engine's legacy side with RQ in it, and the incident pause's RQ part;
- ``worker``: ``cutover rq worker`` (RQ's Worker with the job modules preloaded);
- ``server``: a throwaway local ``redis-server`` for the demo and the tests.

See docs/rq.md for the design and the operating notes.
"""
