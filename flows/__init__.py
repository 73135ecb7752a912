"""Prefect 3 side: the ingestion flow (``flows.ingest``), the deployment builder
(``flows.deploy``) and the Prefect orchestrator adapter (``flows.adapter``).

Nothing is imported here: ``flows.ingest`` imports prefect, and the CLI must not
pay for it unless a Prefect command runs.
"""
