"""Spark Connect as the engine for file processing, counts and quality checks.

Light on purpose: importing ``cutover.core.spark`` never imports pyspark (the CLI
imports this module through the settings). The pieces:

- :mod:`cutover.core.spark.sql`      every Spark SQL statement / identifier cutover issues (pure functions);
- :mod:`cutover.core.spark.metadata` Iceberg ``snapshots`` / ``refs`` metadata-table rows -> the table view
  that ``checks.counts`` and the recovery check walk (pure);
- :mod:`cutover.core.spark.engine`   the Spark session (lazy, one per process) and the processor the
  ingestion service delegates read + append to when ``[ingest] engine = "spark"``.

Settings (``[ingest]`` in cutover.toml, see docs/spark.md):

- ``spark_remote``: a Spark Connect URL ``sc://host:15002[/;token=...]``, or ``local`` /
  ``local[N]`` / ``local[*]`` to start a Spark Connect server inside this process;
- ``spark_catalog``: the Spark-side Iceberg catalog the tables live in (default ``cutover``).
  The special value ``spark_catalog`` (Spark's built-in session catalog) selects the
  *local catalog mode*: plain Parquet tables, no snapshots, no branches (tests and one-machine
  trials; see docs/spark.md for what it cannot do).
"""

from __future__ import annotations

import re

from cutover.core.errors import InputError
from cutover.core.redact import MASK, is_secret_key, redact_url

LOCAL_CATALOG = "spark_catalog"
_LOCAL_REMOTE = re.compile(r"^local(\[(\d+|\*)\])?$")
_CATALOG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def is_local_remote(remote: str) -> bool:
    """``local``, ``local[2]``, ``local[*]``: start a Spark Connect server in this process."""
    return bool(_LOCAL_REMOTE.match(remote.strip()))


def check_remote(remote: str) -> str:
    if is_local_remote(remote) or remote.startswith("sc://"):
        return remote
    raise InputError(f"ingest.spark_remote {redact_remote(remote)!r} is not a Spark Connect URL",
                     fix='use "sc://host:15002" or "local[2]"')


def check_catalog_name(name: str) -> str:
    if _CATALOG_NAME.match(name):
        return name
    raise InputError(f"ingest.spark_catalog {name!r} is not a catalog name",
                     fix='use letters, digits and "_" (the name of spark.sql.catalog.<name>)')


def redact_remote(remote: str | None) -> str | None:
    """``sc://u:pw@h:15002/;token=abc;user_id=x`` -> ``sc://u:***@h:15002/;token=***;user_id=x``."""
    if not remote:
        return remote
    head, sep, params = remote.partition(";")
    out = redact_url(head) or head
    if sep:
        parts = []
        for p in params.split(";"):
            k, eq, v = p.partition("=")
            parts.append(f"{k}={MASK}" if eq and v and is_secret_key(k) else p)
        out += ";" + ";".join(parts)
    return out


def is_local_catalog(catalog: str) -> bool:
    return catalog == LOCAL_CATALOG
