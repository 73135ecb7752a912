"""The workspace: settings plus the stores they point at, opened on demand."""

from __future__ import annotations

import os
from functools import cached_property

from cutover.core.autoloader.batching import BatchLimits
from cutover.core.autoloader.service import IngestionService, processor_for
from cutover.core.config import Settings, load_settings
from cutover.core.db import ensure_schema, get_engine
from cutover.core.iceberg import Catalog
from cutover.core.records.ingestions import IngestionRepo
from cutover.core.records.items import Items
from cutover.core.records.jobs import JobRepo
from cutover.core.records.ledger import Ledger
from cutover.core.records.runs import RunStore


class Workspace:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or load_settings()

    @cached_property
    def autoloader_engine(self):
        ensure_schema(self.settings)
        return get_engine(self.settings.autoloader_url)

    @cached_property
    def state_engine(self):
        ensure_schema(self.settings)
        return get_engine(self.settings.state_url)

    @cached_property
    def ingestions(self):
        return IngestionRepo(self.autoloader_engine)

    @cached_property
    def jobs(self):
        """The generic jobs (callables, commands) of the inventory (cutover.core.records.jobs)."""
        return JobRepo(self.autoloader_engine)

    @cached_property
    def items(self):
        """Ingestions and generic jobs by id (cutover.core.records.items): what the engine moves."""
        return Items(self.ingestions, self.jobs)

    @cached_property
    def catalog(self):
        return Catalog.from_settings(self.settings)

    @cached_property
    def service(self):
        return IngestionService(self.autoloader_engine, self.catalog, claim_timeout=self.settings.claim_timeout,
                                processor=processor_for(self.settings),
                                batch_limits=BatchLimits.from_settings(self.settings))

    @cached_property
    def runs(self):
        return RunStore(self.autoloader_engine)

    def ledger(self, ingestion_id: str, namespace: str = "live"):
        return Ledger(self.autoloader_engine, ingestion_id, namespace, claim_timeout=self.settings.claim_timeout)


_PROCESS: tuple[tuple, Workspace] | None = None


def process_workspace() -> Workspace:
    """The Workspace of this process (a flow run's, from the environment), made once -- and made
    again when CUTOVER_HOME or the working directory changed (a library user or a test session
    with several workspaces in one process must never read another one's records)."""
    global _PROCESS
    key = (os.environ.get("CUTOVER_HOME"), os.getcwd())
    if _PROCESS is None or _PROCESS[0] != key:
        _PROCESS = (key, Workspace())
    return _PROCESS[1]
