"""Ingestions: what to ingest, from where, into which table, when.

An ingestion definition is validated completely before anything is written,
so bad input leaves every store as it was. Credentials (fsspec storage
options) are stored but never part of any printed or reported form.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cutover.core.deployspec import check_deploy
from cutover.core.errors import InputError
from cutover.core.redact import MASK, redact_mapping, redact_url, register_mapping_secrets, register_secret
from cutover.core.validate import did_you_mean, read_text
from cutover.core.schedule import triggers as sched
from cutover.core.records.repo import Repo
from cutover.core.records.tables import ingestions as t_ingestions
from cutover.core.records.valuespec import validate_values

FORMATS = ("csv", "jsonl", "json", "parquet")
SIZE_CLASSES = ("small", "medium", "large")
PRIORITIES = ("normal", "high")
WORK_QUEUES = ("default", "high-memory", "priority")
_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,127}$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
# the fields of a definition (IngestionDef of cutover.core.schema.definitions; a test keeps them equal)
FIELDS = {
    "id", "name", "source_uri", "source", "pattern", "format", "table", "schedule", "timezone",
    "size_class", "priority", "key_columns", "owner", "options", "credentials",
    "deploy",  # where/how the Prefect deployment runs: cutover.core.deployspec
    "values",  # the values check: key, tolerances, ignored and sensitive columns (core/records/valuespec.py)
}


@dataclass(frozen=True)
class Ingestion:
    id: str
    name: str
    source_uri: str
    pattern: str
    format: str
    table: str
    schedule: dict | None = None
    timezone: str = "UTC"
    size_class: str = "small"
    priority: str = "normal"
    key_columns: tuple[str, ...] = ()
    owner: str | None = None
    options: dict = field(default_factory=dict)
    credentials: dict | None = field(default=None, repr=False)
    batch_paused: bool = False
    prefect_deployment_id: str | None = None
    prefect_flow_id: str | None = None
    deploy: dict = field(default_factory=dict)  # cutover.core.deployspec.KEYS (validated)
    values: dict | None = None  # the `values:` block, validated (cutover/core/records/valuespec.py)

    @property
    def work_queue(self) -> str:
        """Prefect work queue from size class / priority."""
        if self.priority == "high":
            return "priority"
        if self.size_class == "large":
            return "high-memory"
        return "default"

    @property
    def schedule_timezone(self) -> str:
        return sched.schedule_timezone(self.schedule, self.timezone)

    def storage_options(self) -> dict:
        return dict(self.credentials or {})

    def public_dict(self) -> dict[str, Any]:
        """The printable form: credentials masked, URL passwords hidden."""
        d = asdict(self)
        d["key_columns"] = list(self.key_columns)
        d["source_uri"] = redact_url(self.source_uri)
        d["credentials"] = {k: MASK for k in (self.credentials or {})} or None
        d["options"] = redact_mapping(self.options)
        d["deploy"] = redact_mapping(self.deploy) if self.deploy else {}
        d["schedule_text"] = sched.describe(self.schedule)
        d["work_queue"] = self.work_queue
        return d

    def definition(self) -> dict[str, Any]:
        """The form `ingestion add --from-file` takes (credentials masked)."""
        d = self.public_dict()
        for k in ("batch_paused", "prefect_deployment_id", "prefect_flow_id", "schedule_text", "work_queue"):
            d.pop(k, None)
        return d


def validate(raw: dict[str, Any], *, where: str = "ingestion", at: tuple = ()) -> Ingestion:
    """Build an Ingestion from user input, or raise one clear InputError. The shape (types, unknown
    fields) is checked by the typed model (cutover.core.schema.definitions.IngestionDef); the
    meaning here, on its validated data. ``at``: the item's path in its file (``("ingestions", 2)``)."""
    # pydantic loads here, where a definition is read (the CLI starts without it)
    from cutover.core.schema import dotted, validated
    from cutover.core.schema.definitions import IngestionDef

    model = validated(IngestionDef, raw, where=where, at=at)
    return build(model.model_dump(exclude_unset=True), where=f"{where}: {dotted(at)}" if at else where)


def build(raw: dict[str, Any], *, where: str) -> Ingestion:
    """The Ingestion of a definition the model validated (``IngestionDef.model_dump(exclude_unset=True)``):
    the semantic checks (id and table patterns, format, timezone, schedule, deploy, values)."""
    iid = str(raw.get("id") or "").strip()
    if not _ID.match(iid):
        raise InputError(f"{where}: id {iid!r} is not valid", fix="use lower-case letters, digits, '-' and '_' (max 128)")
    where = f"ingestion {iid}"
    source = raw.get("source_uri") or raw.get("source")
    if not source:
        raise InputError(f"{where}: source_uri is missing", fix="give a local directory or an fsspec URL such as s3://bucket/prefix")
    fmt = str(raw.get("format") or "").lower()
    if fmt == "json":
        fmt = "jsonl"
    if fmt not in FORMATS:
        raise InputError(f"{where}: format {raw.get('format')!r} is not supported", fix="use csv, jsonl or parquet")
    table = str(raw.get("table") or "")
    if not _TABLE.match(table):
        raise InputError(f"{where}: table {table!r} is not 'namespace.table'", fix="name the Iceberg table as namespace.table")
    tz = str(raw.get("timezone") or "UTC")
    sched.check_timezone(tz)
    try:
        spec = sched.normalize_schedule(raw.get("schedule"))
    except InputError as e:
        raise InputError(f"{where}: {e.message}", fix=e.fix) from None
    size = str(raw.get("size_class") or "small")
    if size not in SIZE_CLASSES:
        raise InputError(f"{where}: size_class {size!r} is not one of {', '.join(SIZE_CLASSES)}", fix="pick one")
    prio = str(raw.get("priority") or "normal")
    if prio not in PRIORITIES:
        raise InputError(f"{where}: priority {prio!r} is not one of {', '.join(PRIORITIES)}", fix="pick one")
    keys = raw.get("key_columns") or []
    if isinstance(keys, str):
        keys = [k.strip() for k in keys.split(",") if k.strip()]
    options = raw.get("options") or {}
    creds = raw.get("credentials")
    register_mapping_secrets(creds or {})
    for v in (creds or {}).values():
        register_secret(v)
    if creds and any(v == MASK for v in creds.values()):
        raise InputError(f"{where}: credentials contain the mask {MASK!r}, not real values",
                         fix="give the real credentials (exported definitions never carry them)")
    values = validate_values(raw.get("values"), key_columns=keys, where=where)
    src = str(source)
    if "://" not in src:
        src = str(Path(src).expanduser().absolute())
    return Ingestion(
        id=iid,
        name=str(raw.get("name") or iid),
        source_uri=src,
        pattern=str(raw.get("pattern") or "*"),
        format=fmt,
        table=table,
        schedule=spec,
        timezone=tz,
        size_class=size,
        priority=prio,
        key_columns=tuple(keys),
        owner=raw.get("owner"),
        options=dict(options),
        credentials=dict(creds) if creds else None,
        deploy=check_deploy(raw.get("deploy"), where),
        values=values,
    )


def check_source(ing: Ingestion) -> None:
    """The source must be reachable in form: a local directory that exists, or a URL of a
    filesystem fsspec knows (``s3://``, ``gs://`` ...). Checked when a user adds an ingestion."""
    src = ing.source_uri
    if "://" not in src or src.startswith("file://"):
        local = Path(src[len("file://"):] if src.startswith("file://") else src)
        if not local.exists():
            raise InputError(f"ingestion {ing.id}: source_uri {local} does not exist",
                             fix=f"create it first (mkdir -p {local}) or fix the path")
        return
    import fsspec

    protocol = src.split("://", 1)[0].lower()
    known = set(fsspec.available_protocols())
    if protocol not in known:
        raise InputError(f"ingestion {ing.id}: source_uri {redact_url(src)}: {protocol}:// is not a filesystem fsspec knows",
                         fix=did_you_mean(protocol, known, valid="use one of"))


def load_yaml_or_json(path: Path, *, what: str) -> Any:
    """The parsed content of a ``.json`` (JSON) or any other (YAML) file; a missing file or bad
    syntax is a one-line InputError (``what``: what the file should be, for the fix)."""
    text = read_text(path, what=what)
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - yaml.YAMLError / ValueError
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path} cannot be parsed ({first})", fix="fix the YAML/JSON syntax") from None


def load_definitions(path: Path) -> list[Ingestion]:
    """Ingestions from a YAML or JSON file: a list, or a mapping with key ``ingestions``."""
    data = load_yaml_or_json(path, what="a YAML or JSON file of ingestions")
    prefix: tuple | None = ()  # the items' path in the file: ingestions[i], [i], or none (one item)
    if isinstance(data, dict) and "ingestions" in data:
        data, prefix = data["ingestions"], ("ingestions",)
    if isinstance(data, dict):
        data, prefix = [data], None
    if not isinstance(data, list) or not data:
        raise InputError(f"{path} holds no ingestions", fix="write a list of ingestions, or a mapping with key 'ingestions'")
    out = [validate(item, where=path.name, at=() if prefix is None else (*prefix, i)) for i, item in enumerate(data)]
    seen: set[str] = set()
    for ing in out:
        if ing.id in seen:
            raise InputError(f"{path}: ingestion id {ing.id!r} appears twice", fix="make ids unique")
        seen.add(ing.id)
    return out


def _registered(creds: dict | None) -> dict | None:
    """Stored credentials, every value registered as a secret (masked in any output from now on)."""
    if not creds:
        return None
    for v in creds.values():
        register_secret(v)
    return dict(creds)


def _row_to_ingestion(row) -> Ingestion:
    redact_url(row.source_uri)  # registers a password in the source URL
    return Ingestion(
        id=row.id,
        name=row.name,
        source_uri=row.source_uri,
        pattern=row.pattern,
        format=row.format,
        table=row.table_name,
        schedule=row.schedule,
        timezone=row.timezone,
        size_class=row.size_class,
        priority=row.priority,
        key_columns=tuple(row.key_columns or ()),
        owner=row.owner,
        options=dict(row.options or {}),
        credentials=_registered(row.credentials),
        batch_paused=bool(row.batch_paused),
        prefect_deployment_id=row.prefect_deployment_id,
        prefect_flow_id=row.prefect_flow_id,
        deploy=dict(row.deploy or {}),
        values=dict(row.values_spec) if row.values_spec else None,
    )


def values_of(ing: Ingestion) -> dict[str, Any]:
    return {
        "name": ing.name,
        "source_uri": ing.source_uri,
        "pattern": ing.pattern,
        "format": ing.format,
        "table_name": ing.table,
        "schedule": ing.schedule,
        "timezone": ing.timezone,
        "size_class": ing.size_class,
        "priority": ing.priority,
        "key_columns": list(ing.key_columns),
        "owner": ing.owner,
        "options": ing.options,
        "credentials": ing.credentials,
        "deploy": ing.deploy or None,
        "values_spec": ing.values,
    }


class IngestionRepo(Repo[Ingestion]):
    """CRUD on the ingestions table of the autoloader DB (cutover.core.records.repo)."""

    table = t_ingestions
    noun = "ingestion"
    empty_hint = "add one with `cutover ingestion add`"

    def from_row(self, row) -> Ingestion:
        return _row_to_ingestion(row)

    def values(self, item: Ingestion) -> dict[str, Any]:
        return values_of(item)

    def created_values(self, item: Ingestion) -> dict[str, Any]:
        return {"batch_paused": False}

    def set_batch_paused(self, iid: str, paused: bool) -> bool:
        """Returns whether anything changed."""
        return self.set_flag(iid, "batch_paused", paused)


def with_schedule(ing: Ingestion, spec: dict | None, tz: str) -> Ingestion:
    return replace(ing, schedule=spec, timezone=tz)
