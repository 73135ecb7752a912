"""The legacy side: the reference autoloader (ingestion services, batch
orchestrator, APScheduler scheduler) that a migration starts from."""
