"""Resolved settings: defaults < ``$CUTOVER_HOME/cutover.toml`` < ``CUTOVER_*`` env vars.

Every key lives in a section of the TOML file and has an env var named
``CUTOVER_<SECTION>_<KEY>`` (upper case). Catalog properties are open-ended
(any pyiceberg catalog property): ``CUTOVER_CATALOG_<PROP>`` sets property
``<prop>`` lower-cased, with ``__`` standing for ``.`` (``CUTOVER_CATALOG_S3__ENDPOINT``
-> ``s3.endpoint``). The Prefect API is resolved as Prefect resolves it (environment, then the
active profile, else the embedded server): ``cutover.core.prefectconn``.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cutover.core.deployspec import SETTINGS_KEYS as DEPLOY_KEYS
from cutover.core.deployspec import check_value as check_deploy_value
from cutover.core.errors import InputError
from cutover.core.prefectconn import PrefectConnection, resolve as resolve_prefect, user_prefect_env
from cutover.core.redact import (is_secret_key, redact_mapping, redact_text, redact_url, register_mapping_secrets,
                                 register_secret)
from cutover.core.validate import (check_db_url, check_home, check_http_url, check_number, did_you_mean, read_text,
                                   show, unknown_name)
from cutover.core.spark import check_catalog_name, check_remote, redact_remote

CONFIG_FILE = "cutover.toml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


MAX_DURATION = 100 * 366 * 86400.0  # a century: longer is a typo, and overflows datetime arithmetic


def parse_duration(value: Any, *, what: str = "duration") -> float:
    """``"15m"`` -> 900.0 seconds; plain numbers are seconds. Negative, NaN, infinite and
    longer-than-a-century values are refused (InputError)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            raise InputError(f"{what} must be a finite duration, got {value}", fix="give a value like 90s, 15m or 2h")
        if value < 0:
            raise InputError(f"{what} must not be negative, got {value}", fix="give a value like 90s, 15m or 2h")
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise InputError(f"{what} {show(value)} is not a duration", fix="give a value like 90s, 15m, 2h or 7d")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds > MAX_DURATION:
        raise InputError(f"{what} {show(value)} is longer than 100 years", fix="give a value like 90s, 15m, 2h or 7d")
    return seconds


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _truthy(value: Any, what: str = "flag") -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise InputError(f"{what} must be true or false, got {show(value)}", fix="use true/false (or 1/0, yes/no, on/off)")


# section -> key -> (type, default factory taking home)
_SCHEMA: dict[str, dict[str, tuple[str, Any]]] = {
    "database": {
        "autoloader_url": ("str", lambda h: f"sqlite:///{h / 'autoloader.db'}"),
        "state_url": ("str", lambda h: f"sqlite:///{h / 'state.db'}"),
    },
    "ingest": {
        "claim_timeout": ("duration", lambda h: 900.0),
        "engine": ("str", lambda h: "arrow"),
        "commit_retries": ("int", lambda h: 12),
        # one Iceberg commit per batch of files, closed at whichever limit comes first
        "batch_files": ("int", lambda h: 1000),
        "batch_bytes": ("int", lambda h: 256 * 1024 * 1024),
        "batch_seconds": ("duration", lambda h: 30.0),
        "spark_remote": ("str", lambda h: "sc://localhost:15002"),  # or "local" / "local[N]": see docs/spark.md
        "spark_catalog": ("str", lambda h: "cutover"),  # "spark_catalog": plain local tables, no Iceberg
    },
    "scheduler": {
        "jobstore_url": ("str", lambda h: None),  # defaults to the autoloader DB
        "jobstore_table": ("str", lambda h: "apscheduler_jobs"),
        "poll_interval": ("duration", lambda h: 10.0),
        "max_workers": ("int", lambda h: 4),
        "misfire_grace_time": ("duration", lambda h: 300.0),
    },
    "parity": {
        "max_duration_ratio": ("float", lambda h: 1.5),
        "min_duration_s": ("duration", lambda h: 5.0),
        "max_failure_rate": ("float", lambda h: 0.0),
        "run_match_window": ("duration", lambda h: 900.0),
        "ledger_grace": ("duration", lambda h: 0.0),
        "quality_sample_rows": ("int", lambda h: 0),
    },
    "watch": {  # `cutover watch`: rollback triggers for ingestions in CUTOVER
        "failure_rate": ("float", lambda h: 0.05),  # Prefect live runs FAILED/CRASHED above this share fire
        "window": ("duration", lambda h: 86400.0),
        "unreachable_after": ("duration", lambda h: 900.0),  # Prefect API down longer than this fires
        "duration_regression": ("float", lambda h: 0.5),  # median Prefect live vs legacy live duration, +50%
        "auto_rollback": ("bool", lambda h: False),
        "min_runs": ("int", lambda h: 3),  # fewer runs than this on a side are not judged
        "min_duration": ("duration", lambda h: 5.0),  # legacy medians below this are noise, not judged
    },
    "prefect": {
        "api_url": ("str", lambda h: None),
        "work_pool": ("str", lambda h: "cutover"),
        "home": ("str", lambda h: str(h / "prefect")),
        # how long `cutover prefect up` (and every command that starts the embedded server) waits
        # for it to answer: a loaded machine needs more than the ~7 s of a fresh SQLite DB
        "start_timeout": ("duration", lambda h: 180.0),
    },
    # defaults of the ingestions' `deploy:` (cutover.core.deployspec): pool type, image, resources, code delivery
    "deploy": {k: ("str", lambda h: None) for k in DEPLOY_KEYS} | {"pool_type": ("str", lambda h: "process")},
}

# key -> (minimum, maximum) for numbers; every number must also be finite (NaN and inf refused)
_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "ingest.commit_retries": (0, 1000),
    "ingest.batch_files": (1, None),
    "ingest.batch_bytes": (1, None),
    "scheduler.max_workers": (1, 1024),
    "parity.max_duration_ratio": (0, None),
    "parity.max_failure_rate": (0, 1),
    "parity.quality_sample_rows": (0, None),
    "watch.failure_rate": (0, 1),
    "watch.duration_regression": (0, None),
    "watch.min_runs": (0, None),
}

# CUTOVER_* variables that are not settings keys: read where they are used (and test hooks)
OTHER_ENV = {
    "CUTOVER_HOME", "CUTOVER_DEBUG", "CUTOVER_SET_PREFECT_HOME", "CUTOVER_OPERATOR", "CUTOVER_PAUSE_LOCK_WAIT_S", "CUTOVER_RQ_REDIS_URL",
    "CUTOVER_CRON_CRONTAB", "CUTOVER_CRON_RUN_ID", "CUTOVER_CRON_TRIGGER", "CUTOVER_RACE_ROUNDS", "CUTOVER_FROZEN_ROUNDS",
    # what a run of a team's job is told (cutover.core.jobenv: the shadow contract, read by cutover.sdk)
    "CUTOVER_MODE", "CUTOVER_ICEBERG_BRANCH", "CUTOVER_LEDGER_NAMESPACE", "CUTOVER_OUTPUT_PREFIX", "CUTOVER_JOB_ID",
    "CUTOVER_RUN_ID", "CUTOVER_ORCHESTRATOR", "CUTOVER_RUN_RECORDER",
    "CUTOVER_RICH",  # 1: tables drawn with rich even into a pipe, 0: plain even on a terminal (docs/json.md)
}
OTHER_ENV_PREFIXES = ("CUTOVER_CATALOG_", "CUTOVER_TEST_", "CUTOVER_FAKE_")

_CATALOG_DEFAULTS = {
    "name": lambda h: "cutover",
    "type": lambda h: "sql",
    "uri": lambda h: f"sqlite:///{h / 'catalog.db'}",
    "warehouse": lambda h: (h / "warehouse").resolve().as_uri(),
}


@dataclass(frozen=True)
class Settings:
    home: Path
    autoloader_url: str
    state_url: str
    claim_timeout: float
    engine: str
    commit_retries: int
    jobstore_url: str
    jobstore_table: str
    scheduler_poll_interval: float
    scheduler_max_workers: int
    misfire_grace_time: float
    prefect_api_url: str | None
    prefect_work_pool: str
    prefect_home: Path
    catalog_name: str
    spark_remote: str = "sc://localhost:15002"
    spark_catalog: str = "cutover"
    batch_files: int = 1000
    batch_bytes: int = 256 * 1024 * 1024
    batch_seconds: float = 30.0
    prefect_start_timeout: float = 180.0
    prefect: PrefectConnection = field(default_factory=lambda: PrefectConnection(url=None, source="embedded"))
    parity: dict[str, float] = field(default_factory=dict)
    watch: dict[str, Any] = field(default_factory=dict)
    deploy: dict[str, Any] = field(default_factory=dict)  # [deploy]: see cutover.core.deployspec
    catalog_properties: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # key -> where the value came from

    @property
    def config_file(self) -> Path:
        return self.home / CONFIG_FILE

    @property
    def is_embedded_autoloader(self) -> bool:
        return _is_embedded_sqlite(self.autoloader_url, self.home)

    @property
    def is_embedded_state(self) -> bool:
        return _is_embedded_sqlite(self.state_url, self.home)

    def public_dict(self) -> dict[str, Any]:
        """Everything, with secrets redacted: what `cutover config show` prints."""
        return {
            "home": str(self.home),
            "config_file": str(self.config_file),
            "config_file_exists": self.config_file.exists(),
            "database": {
                "autoloader_url": redact_url(self.autoloader_url),
                "state_url": redact_url(self.state_url),
            },
            "ingest": {
                "claim_timeout_s": self.claim_timeout,
                "engine": self.engine,
                "commit_retries": self.commit_retries,
                "spark_remote": redact_remote(self.spark_remote),
                "spark_catalog": self.spark_catalog,
                "batch_files": self.batch_files,
                "batch_bytes": self.batch_bytes,
                "batch_seconds": self.batch_seconds,
            },
            "scheduler": {
                "jobstore_url": redact_url(self.jobstore_url),
                "jobstore_table": self.jobstore_table,
                "poll_interval_s": self.scheduler_poll_interval,
                "max_workers": self.scheduler_max_workers,
                "misfire_grace_time_s": self.misfire_grace_time,
            },
            "prefect": {
                **self.prefect.public(),
                "work_pool": self.prefect_work_pool,
                "home": str(self.prefect_home),
                "start_timeout_s": self.prefect_start_timeout,
            },
            "parity": dict(self.parity),
            "watch": dict(self.watch),
            "deploy": dict(self.deploy),
            "catalog": redact_mapping({"name": self.catalog_name, **self.catalog_properties}),
            "sources": dict(sorted(self.sources.items())),
        }


def _is_embedded_sqlite(url: str, home: Path) -> bool:
    if not url.startswith("sqlite:///"):
        return False
    path = Path(url[len("sqlite:///"):])
    try:
        return path.resolve().is_relative_to(home.resolve())
    except OSError:
        return False


def _coerce(kind: str, value: Any, what: str, name: str = "") -> Any:
    if value is None:
        return None
    if kind == "duration":
        return parse_duration(value, what=what)
    if kind in ("int", "float"):
        lo, hi = _BOUNDS.get(name, (0, None))
        return check_number(what, value, minimum=lo, maximum=hi, integer=kind == "int")
    if kind == "bool":
        return _truthy(value, what)
    if not isinstance(value, str):
        raise InputError(f"{what} must be text, got {show(value)}", fix=f"quote it in cutover.toml: {name.split('.')[-1]} = \"...\"")
    return value


def check_env(env: Mapping[str, str]) -> None:
    """Every CUTOVER_* variable must be a known one: a misspelt key is an error naming the nearest."""
    valid = {f"CUTOVER_{section}_{key}".upper() for section, keys in _SCHEMA.items() for key in keys} | OTHER_ENV
    for name in sorted(env):
        if name.startswith("CUTOVER_") and name not in valid and not name.startswith(OTHER_ENV_PREFIXES):
            raise InputError(f"unknown environment variable {name}", fix=did_you_mean(name, valid, valid="known ones are"))


def _register_env_secrets(env: Mapping[str, str]) -> None:
    for name, val in env.items():
        if (name.startswith(("CUTOVER_", "PREFECT_")) and is_secret_key(name)) or name == "PGPASSWORD":
            register_secret(val)
        elif name.startswith("CUTOVER_") and "://" in (val or ""):
            redact_url(val)  # registers a URL's password


def resolve_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("CUTOVER_HOME") or "./.cutover").expanduser().absolute()


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    _register_env_secrets(env)
    check_env(env)
    home = resolve_home(env)
    check_home(home, "env CUTOVER_HOME" if env.get("CUTOVER_HOME") else "the default ./.cutover")
    cfg_path = home / CONFIG_FILE
    file_cfg: dict[str, Any] = {}
    if cfg_path.exists():
        try:
            file_cfg = tomllib.loads(read_text(cfg_path, what="a cutover.toml settings file"))
        except tomllib.TOMLDecodeError as e:
            raise InputError(f"{cfg_path} is not valid TOML ({e})", fix="fix the file or move it away") from None
        unknown = set(file_cfg) - set(_SCHEMA) - {"catalog"}
        if unknown:
            raise unknown_name("section", unknown, [*_SCHEMA, "catalog"], where=str(cfg_path))

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for section, keys in _SCHEMA.items():
        sect = file_cfg.get(section, {})
        if not isinstance(sect, dict):
            raise InputError(f"{cfg_path}: [{section}] must be a table", fix="write it as a [section] with key = value lines")
        unknown_keys = set(sect) - set(keys)
        if unknown_keys:
            raise unknown_name("key", unknown_keys, keys, where=f"{cfg_path} [{section}]")
        for key, (kind, default) in keys.items():
            env_name = f"CUTOVER_{section}_{key}".upper()
            name = f"{section}.{key}"
            if env.get(env_name) not in (None, ""):
                raw, src = env[env_name], f"env {env_name}"
            elif key in sect:
                raw, src = sect[key], str(cfg_path)
            else:
                raw, src = default(home), "default"
            values[name] = _coerce(kind, raw, f"{name} ({src})", name)
            sources[name] = src

    # the Prefect API as Prefect resolves it: PREFECT_API_URL in the environment wins over the
    # workspace's [prefect] api_url, which wins over the active Prefect profile
    conn = resolve_prefect(user_prefect_env(env), workspace_url=values["prefect.api_url"] or None,
                           workspace_source=sources["prefect.api_url"])
    values["prefect.api_url"] = conn.url
    sources["prefect.api_url"] = conn.source

    catalog_file = file_cfg.get("catalog", {})
    if not isinstance(catalog_file, dict):
        raise InputError(f"{cfg_path}: [catalog] must be a table", fix="write it as [catalog] with key = value lines")
    catalog: dict[str, str] = {}
    for key, default in _CATALOG_DEFAULTS.items():
        catalog[key] = default(home)
        sources[f"catalog.{key}"] = "default"
    for key, val in catalog_file.items():
        if isinstance(val, (dict, list)):
            raise InputError(f"{cfg_path}: [catalog] {key} must be a single value, got {show(val)}",
                             fix="write it as key = \"value\"")
        catalog[key] = str(val)
        sources[f"catalog.{key}"] = str(cfg_path)
    for env_name, val in env.items():
        if env_name.startswith("CUTOVER_CATALOG_") and val != "":
            key = env_name[len("CUTOVER_CATALOG_"):].lower().replace("__", ".")
            catalog[key] = val
            sources[f"catalog.{key}"] = f"env {env_name}"
    catalog_name = catalog.pop("name")
    register_mapping_secrets(catalog)
    _check_urls(values, sources, catalog)

    engine = values["ingest.engine"]
    if engine not in ("arrow", "spark"):
        raise InputError(f"ingest.engine must be 'arrow' or 'spark', got {engine!r}", fix="set CUTOVER_INGEST_ENGINE or [ingest] engine")
    check_remote(values["ingest.spark_remote"])
    check_catalog_name(values["ingest.spark_catalog"])

    return Settings(
        home=home,
        autoloader_url=values["database.autoloader_url"],
        state_url=values["database.state_url"],
        claim_timeout=values["ingest.claim_timeout"],
        engine=engine,
        commit_retries=values["ingest.commit_retries"],
        jobstore_url=values["scheduler.jobstore_url"] or values["database.autoloader_url"],
        jobstore_table=values["scheduler.jobstore_table"],
        scheduler_poll_interval=values["scheduler.poll_interval"],
        scheduler_max_workers=values["scheduler.max_workers"],
        misfire_grace_time=values["scheduler.misfire_grace_time"],
        prefect_api_url=values["prefect.api_url"],
        prefect_work_pool=values["prefect.work_pool"],
        prefect_home=Path(values["prefect.home"]),
        prefect_start_timeout=values["prefect.start_timeout"],
        prefect=conn,
        catalog_name=catalog_name,
        spark_remote=values["ingest.spark_remote"],
        spark_catalog=values["ingest.spark_catalog"],
        batch_files=values["ingest.batch_files"],
        batch_bytes=values["ingest.batch_bytes"],
        batch_seconds=values["ingest.batch_seconds"],
        parity={k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("parity.")},
        watch={k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("watch.")},
        deploy={k.split(".", 1)[1]: check_deploy_value(k.split(".", 1)[1], v, f"{k} ({sources[k]})")
                for k, v in values.items() if k.startswith("deploy.") and k != "deploy.home"}
        | {"home": values["deploy.home"]},
        catalog_properties=catalog,
        sources=sources,
    )


def _check_urls(values: dict[str, Any], sources: dict[str, str], catalog: dict[str, str]) -> None:
    for name in ("database.autoloader_url", "database.state_url", "scheduler.jobstore_url", "prefect.api_url"):
        if values.get(name):
            redact_url(values[name])  # registers the password, wherever the URL came from
    for name in ("database.autoloader_url", "database.state_url", "scheduler.jobstore_url"):
        if values.get(name):
            check_db_url(values[name], f"{name} ({sources[name]})")
    if values.get("prefect.api_url"):
        check_http_url(values["prefect.api_url"], f"prefect.api_url ({sources['prefect.api_url']})",
                       fix="give the Prefect API URL, e.g. http://127.0.0.1:4200/api, or unset it for the embedded server")
    if catalog.get("type", "sql") == "sql" and catalog.get("uri"):
        check_db_url(catalog["uri"], f"catalog.uri ({sources.get('catalog.uri', 'default')})")


DEFAULT_TOML = """\
# cutover workspace settings. Every key can be overridden by an env var
# CUTOVER_<SECTION>_<KEY>, e.g. CUTOVER_DATABASE_STATE_URL.

[database]
# autoloader_url = "postgresql+psycopg://user:password@host:5432/autoloader"
# state_url      = "postgresql+psycopg://user:password@host:5432/cutover"

[ingest]
# claim_timeout = "15m"   # claims of a dead run are taken over after this
# engine = "arrow"        # or "spark"
# spark_remote = "sc://localhost:15002"   # Spark Connect; "local[2]" starts one in-process
# spark_catalog = "cutover"               # Spark-side Iceberg catalog; "spark_catalog" = plain local tables
# batch_files = 1000      # one Iceberg commit per batch: at most this many files,
# batch_bytes = 268435456 # this many source bytes,
# batch_seconds = "30s"   # or this long reading

[watch]
# `cutover watch` rollback triggers for ingestions in CUTOVER
# failure_rate = 0.05          # share of FAILED/CRASHED Prefect live runs in the window
# window = "24h"
# unreachable_after = "15m"    # Prefect API unreachable for longer than this
# duration_regression = 0.5    # median Prefect live duration above legacy's by more than 50%
# auto_rollback = false        # true: `cutover rollback` instead of only alerting
# min_runs = 3                 # never judge on fewer runs
# min_duration = "5s"          # legacy median below this: durations are noise, not judged

[prefect]
# The Prefect API: PREFECT_API_URL in the environment wins, then this, then the active Prefect
# profile (PREFECT_PROFILE / profiles.toml under PREFECT_HOME), else the embedded local server.
# api_url = "http://prefect.internal:4200/api"
# work_pool = "cutover"
# start_timeout = "3m"    # how long starting the embedded server may take
[deploy]
# defaults for the ingestions' `deploy:` (docs/prefect.md); a definition's own keys win
# pool_type = "process"   # or "docker" / "kubernetes" (pools created from prefect-docker / prefect-kubernetes)
# image = "registry.example.com/data/cutover:1.4"
# cpu = "1"               # Kubernetes quantities
# memory = "1Gi"
# high_memory = "8Gi"     # memory of the ingestions on the high-memory queue
# namespace = "data-ingest"
# git_repository = "https://git.example.com/data/cutover.git"   # pull step git_clone ...
# git_branch = "main"
# git_credentials = "secret/git-token"                         # ... with this Prefect block
# directory = "/opt/cutover"   # ... or set_working_directory (default: this checkout)
# home = "/var/lib/cutover"    # CUTOVER_HOME of the flow runs on the worker (default: this home)

[catalog]
# Any pyiceberg catalog: type = "rest", uri = "https://...", warehouse = "..."
# name = "cutover"
"""


# the settings a flow run or an RQ job needs to open the same workspace (secrets never copied)
JOB_ENV_PREFIXES = ("CUTOVER_DATABASE_", "CUTOVER_INGEST_", "CUTOVER_CATALOG_")


def job_env(settings, environ: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """The env a flow run needs to open the same workspace; secrets are never copied."""
    environ = dict(os.environ if environ is None else environ)
    env = {"CUTOVER_HOME": str(settings.home)}
    warnings = []
    for k in sorted(environ):
        if not k.startswith(JOB_ENV_PREFIXES) or environ[k] == "":
            continue
        v = environ[k]
        secret_name = any(w in k for w in ("PASSWORD", "SECRET", "TOKEN", "CREDENTIAL", "_KEY"))
        if secret_name or redact_text(v) != v:
            warnings.append(f"{k} carries a credential and is not copied into the deployment: put it in "
                            f"{settings.config_file} or in the worker's environment")
            continue
        env[k] = v
    return env, warnings
