"""cutover: move ingestion pipelines from legacy orchestrators to Prefect 3, safely."""

__version__ = "0.1.0"
