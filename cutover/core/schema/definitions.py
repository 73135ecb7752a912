"""The definition file (``cutover ingestion add --from-file``): ingestions and generic jobs.

Shape only: what each field may hold. What a value means (id and table patterns, schedule
forms, timezones, Kubernetes quantities, values rules) is checked after, on the validated data:
``cutover.core.records.ingestions.validate``, ``cutover.core.records.jobs.validate_job``,
``cutover.core.deployspec``, ``cutover.core.records.valuespec``. ``cutover ingestion schema``
prints the JSON Schema of :class:`DefinitionFile`; docs/definitions.md holds the field tables
(:func:`fields_markdown`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag

from cutover.core.schema import Strict, either

TextOrList = either("text or a list of text", text=str, list=list[str])
Number = Union[int, float]  # a whole number stays whole (env N: 3 is "3", not "3.0")
Scalar = either("text, a number or true/false", flag=(bool, bool), number=(Number, (int, float)), text=(str, str))
Quantity = either("a quantity (text such as 500m or 2Gi, or a number)", number=(Number, (int, float)),
                  text=(str, str))
ExitCode = Annotated[int, Field(ge=0, le=255)]
ExitCodes = either("an exit code or a list of exit codes", code=(ExitCode, int), list=(list[ExitCode], list))
Schedule = either("a schedule mapping or a schedule line", mapping=(dict[str, Any], dict), text=(str, str))
Seconds = Annotated[float, Field(ge=0)]


def _f(description: str, *examples: Any, **kw: Any) -> Any:
    return Field(default=kw.pop("default", None), description=description, examples=list(examples) or None, **kw)


class DeployDef(Strict):
    """``deploy:`` where and how the Prefect deployment runs (missing keys: the [deploy] settings)."""

    work_pool: str | None = _f("Prefect work pool (default: [prefect] work_pool).", "cutover-k8s")
    pool_type: str | None = _f("process, docker or kubernetes (default: [deploy] pool_type).", "kubernetes")
    image: str | None = _f("Container image of docker/kubernetes pools.", "registry.example.com/data/cutover:1.4")
    env: dict[str, Scalar | None] | None = _f("Environment of the flow run (no credentials: they are refused).",
                                              {"TZ": "Europe/Berlin"})
    cpu: Quantity | None = _f("Kubernetes CPU quantity: 2, 0.5, 500m.", "500m")
    memory: Quantity | None = _f("Kubernetes memory quantity: 512Mi, 2Gi, 1G.", "2Gi")
    namespace: str | None = _f("Kubernetes namespace (kubernetes pools only).", "data-ingest")
    labels: dict[str, Scalar | None] | None = _f("Kubernetes labels of the job.", {"team": "finance"})
    git_repository: str | None = _f("Code delivery: a git URL without credentials (git_clone pull step).",
                                    "https://git.example.com/data/cutover.git")
    git_branch: str | None = _f("Branch of git_repository.", "main")
    git_credentials: str | None = _f("Prefect block holding the git token, TYPE/NAME.", "secret/git-token")
    directory: str | None = _f("Code delivery: a directory on the worker (set_working_directory).", "/opt/cutover")


class ToleranceDef(Strict):
    """How two values of one column may differ and still be equal."""

    abs: Seconds | None = _f("Numbers equal when |a - b| <= abs.", 0.01)
    rel: Seconds | None = _f("Numbers equal when |a - b| <= rel * max(|a|, |b|).", 1e-9)
    timestamp_precision: str | None = _f("Timestamps compared truncated to this unit (microseconds ... days).",
                                         "seconds")
    nan_equal: bool | None = _f("NaN equals NaN (default true).", False)
    normalize: TextOrList | None = _f("Strings compared after strip, lower and/or null_as_empty.", ["strip", "lower"])


class ValuesDef(Strict):
    """``values:`` how the values check matches and compares rows (docs/values.md)."""

    key: TextOrList | None = _f("Key columns matching rows, or `row` (whole rows); default: key_columns.",
                                ["order_id"])
    tolerances: dict[str, ToleranceDef] | None = _f("Per column: how values may differ.", {"amount": {"abs": 0.01}})
    ignore: list[str] | None = _f("Columns not compared.", ["ingested_at"])
    sensitive: list[str] | None = _f("Columns whose values are masked in reports.", ["email"])


class IngestionDef(Strict):
    """An ingestion: files of a source into an Iceberg table, on a schedule."""

    kind: Literal["ingestion"] | None = _f("ingestion (the default when no kind is given).", "ingestion")
    id: str = Field(description="Unique id: lower-case letters, digits, '-' and '_' (max 128).", examples=["orders"])
    name: str | None = _f("Display name (default: the id).", "Orders")
    source_uri: str | None = _f("Local directory or fsspec URL (s3://bucket/prefix); it must exist.",
                                "/data/landing/orders")
    source: str | None = _f("Another name for source_uri.", "/data/landing/orders")
    pattern: str | None = _f("Glob of the files below the source (default *).", "*.csv")
    format: str = Field(description="csv, jsonl (or json) or parquet.", examples=["csv"])
    table: str = Field(description="Destination Iceberg table, namespace.table.", examples=["shop.orders"])
    schedule: Schedule | None = _f("A schedule mapping (docs/schedules.md) or a line such as 'daily 02:30'; "
                                   "none: manual only.", {"frequency": "daily", "at": "02:30"})
    timezone: str | None = _f("IANA timezone of the schedule (default UTC).", "Europe/Berlin")
    size_class: str | None = _f("small, medium or large (large runs on the high-memory queue).", "small")
    priority: str | None = _f("normal or high (high runs on the priority queue).", "normal")
    key_columns: TextOrList | None = _f("Key columns (a list, or comma-separated text).", ["order_id"])
    owner: str | None = _f("Owning team or person.", "data-team")
    options: dict[str, Any] | None = _f("Reader options of the format.", {"delimiter": ";"})
    credentials: dict[str, Any] | None = _f("fsspec storage options (stored, never printed).",
                                            {"key": "...", "secret": "..."})
    deploy: DeployDef | None = _f("Where and how the Prefect deployment runs.", {"pool_type": "kubernetes"})
    values: ValuesDef | None = _f("The values check: key, tolerances, ignored and sensitive columns.",
                                  {"key": ["order_id"]})


class _JobCommon(Strict):
    id: str = Field(description="Unique id (shared with ingestions).", examples=["orders-eu"])
    name: str | None = _f("Display name (default: the id).", "Orders EU")
    schedule: Schedule | None = _f("A schedule mapping or line, as an ingestion's.", "daily 02:30")
    timezone: str | None = _f("IANA timezone of the schedule (default UTC).", "Europe/Berlin")
    timeout_s: Seconds | None = _f("Seconds before a run is stopped (none: no limit).", 600)
    retries: Annotated[int, Field(ge=0)] | None = _f("Retries of a failed run.", 3)
    retry_delay_s: Seconds | None = _f("Seconds between retries.", 60)
    shadow: str | None = _f("How the job can be shadowed: observe, env or sdk.", "observe")
    owner: str | None = _f("Owning team or person.", "data-team")
    paused: bool | None = _f("Paused in its legacy orchestrator.", False)
    legacy: dict[str, Any] | None = _f("Where it came from and legacy-only settings.", {"orchestrator": "cron"})
    table: str | None = _f("The Iceberg table an sdk job appends to (cutover.sdk), namespace.table.", "acme.orders")


class CallableJobDef(_JobCommon):
    """A Python function of the team's code, called on a schedule."""

    kind: Literal["callable"] = Field(description="callable", examples=["callable"])
    target: str = Field(description="Import path pkg.module:function.", examples=["acme.etl.orders:load"])
    args: list[Any] | None = _f("Positional arguments.", ["eu"])
    kwargs: dict[str, Any] | None = _f("Keyword arguments.", {"full": True})
    code_location: str | None = _f("A directory put first on sys.path, or package:NAME.", "/opt/etl")


class CommandJobDef(_JobCommon):
    """A process run on a schedule: argv (no shell) or a shell line."""

    kind: Literal["command"] = Field(description="command", examples=["command"])
    argv: list[str] | None = _f("Program and arguments (no shell).", ["/opt/etl/bin/sync.sh", "--full"])
    shell: str | None = _f("A shell command line (/bin/sh -c, or env SHELL).", "/opt/etl/bin/sync.sh --full")
    cwd: str | None = _f("Working directory.", "/opt/etl")
    env: dict[str, Scalar | None] | None = _f("Environment added to the process (stored, masked in output).",
                                              {"ETL_ENV": "prod"})
    ok_exit_codes: ExitCodes | None = _f("Exit codes that mean success (default [0]).", [0, 3])
    stdin: str | None = _f("Text written to the command's standard input.", "line 1\n")


KINDS = {"ingestion": IngestionDef, "callable": CallableJobDef, "command": CommandJobDef}


def _kind(v: Any) -> str | None:
    if not isinstance(v, dict):
        return "ingestion"  # its own error: not a mapping
    k = v.get("kind", "ingestion")
    return k if isinstance(k, str) and k in KINDS else None


DefinitionItem = Annotated[
    Union[tuple(Annotated[m, Tag(k)] for k, m in KINDS.items())],
    Discriminator(_kind, custom_error_type="kind_type", custom_error_message="kind is not ingestion, callable or command"),
]


class DefinitionFile(Strict):
    """A definition file: ingestions and jobs (a plain list of items, or one item, works too)."""

    ingestions: list[DefinitionItem] | None = _f("Ingestions (and jobs: an item's kind says which).", [])
    jobs: list[DefinitionItem] | None = _f("Jobs (kind: callable or command), beside the ingestions.", [])


def fields_markdown() -> str:
    """The field tables of docs/definitions.md, from the models (a test keeps the doc equal)."""
    out = []
    for title, model in (("Ingestion", IngestionDef), ("`deploy:`", DeployDef), ("`values:`", ValuesDef),
                         ("`values.tolerances.<column>:`", ToleranceDef), ("Callable job", CallableJobDef),
                         ("Command job", CommandJobDef)):
        out += [f"### {title}", "", "| field | type | required | meaning | example |", "|---|---|---|---|---|"]
        schema = model.model_json_schema()
        for name, f in model.model_fields.items():
            ex = f.examples[0] if f.examples else ""
            ex_text = ex if isinstance(ex, str) else _json(ex)
            out.append(f"| `{name}` | {_type_text(schema['properties'][name])} | {'yes' if f.is_required() else 'no'} "
                       f"| {f.description or ''} | `{ex_text}` |".replace("\n", "\\n"))
        out.append("")
    return "\n".join(out)


def _json(v: Any) -> str:
    return json.dumps(v)


def _type_text(s: dict) -> str:
    """A short type of a JSON Schema property (text, number, list of text, mapping ...)."""
    names = {"string": "text", "integer": "whole number", "number": "number", "boolean": "true/false",
             "array": "list", "object": "mapping", "null": ""}
    if "$ref" in s:
        return "mapping"
    if "const" in s:
        return f"`{s['const']}`"
    for k in ("anyOf", "oneOf"):
        if k in s:
            parts = [_type_text(x) for x in s[k]]
            return " or ".join(dict.fromkeys(p for p in parts if p))
    t = s.get("type")
    if t == "array" and "items" in s:
        return f"list of {_type_text(s['items'])}"
    if "enum" in s:
        return " or ".join(f"`{e}`" for e in s["enum"])
    return names.get(t, t or "any")
