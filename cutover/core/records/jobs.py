"""Generic jobs: a team's own code, beside the ingestions, in the same inventory (issue #15).

Two kinds, next to the ``ingestion`` kind of ``cutover.core.records.ingestions``:

- ``callable``: a Python function, ``target: "pkg.module:function"`` (dotted attribute paths after
  the colon are allowed: ``pkg.mod:Class.method`` for a static/class method), called with
  ``args``/``kwargs``, imported from ``code_location`` -- a directory put first on ``sys.path``,
  or ``package:NAME`` (an installed distribution; nothing is added to the path);
- ``command``: a process, ``argv: [prog, arg, ...]`` (no shell) or ``shell: "a shell line"``
  (run by ``/bin/sh -c``, or the crontab's SHELL), in ``cwd`` with ``env`` added to the
  environment, succeeding when its exit code is one of ``ok_exit_codes`` (default ``[0]``). The
  shell line runs under ``env["SHELL"]`` when the job sets it (a crontab's SHELL), else /bin/sh;
  ``stdin`` (optional) is written to the command's standard input (a crontab's ``%`` part).

Both: ``schedule``/``timezone`` (the same forms as an ingestion's, ``cutover.core.schedule.triggers``),
``timeout_s`` (None: no limit), ``retries`` and ``retry_delay_s``, ``shadow`` (how the job can be
shadowed: ``observe`` | ``env`` | ``sdk``, or None = undeclared: such a job cannot enter SHADOW),
``owner``, ``paused`` (paused in its legacy orchestrator when imported), and ``legacy``: where it
came from and the legacy settings that have no Prefect field of their own
(``{"orchestrator": "apscheduler", "job_id": ..., "misfire_grace_time": ..., "coalesce": ...,
"max_instances": ..., "jitter": ..., "next_run_time": ...}``, a crontab line number ...).

Arguments are stored as JSON. Values JSON has no type for are tagged, so that the callable is
called with exactly what the legacy scheduler passed: ``{"$cutover": "tuple", "items": [...]}``,
``datetime`` / ``date`` / ``time`` / ``timedelta`` / ``decimal`` / ``bytes`` / ``set``; a
mapping with non-string keys as ``{"$cutover": "dict", "items": [[k, v], ...]}``. :func:`encode_value`
and :func:`decode_value` are each other's inverse; anything else (an arbitrary object) is refused
with its class named.

Ids are shared with the ingestions: one id names one thing in the inventory (runs, states,
parity all key on it). Secrets: ``env`` values and kwargs whose names look like credentials are
stored (the job needs them) but masked in every printed form (:meth:`Job.public_dict`).
"""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable

from cutover.core.errors import InputError
from cutover.core.redact import MASK, is_secret_key, redact_mapping
from cutover.core.records.jobruns import redact_output, secret_values
from cutover.core.records.repo import Repo
from cutover.core.records.tables import jobs as t_jobs
from cutover.core.schedule import triggers as sched

INGESTION, CALLABLE, COMMAND = "ingestion", "callable", "command"
KINDS = (INGESTION, CALLABLE, COMMAND)
GENERIC_KINDS = (CALLABLE, COMMAND)
SHADOW_MODES = ("observe", "env", "sdk")
_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,127}$")
_TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
COMMON_FIELDS = {"id", "kind", "name", "schedule", "timezone", "timeout_s", "retries", "retry_delay_s", "shadow",
                 "owner", "paused", "legacy", "table"}
FIELDS = {
    CALLABLE: COMMON_FIELDS | {"target", "args", "kwargs", "code_location"},
    COMMAND: COMMON_FIELDS | {"argv", "shell", "cwd", "env", "ok_exit_codes", "stdin"},
}
TAG = "$cutover"


# -- argument values: JSON with tags for what JSON has no type for ------------------------------


class Unencodable(ValueError):
    """A value that cannot be stored as a job argument (its class is named)."""


def encode_value(v: Any, *, path: str = "value") -> Any:
    """A JSON-able form of ``v`` that :func:`decode_value` turns back into an equal value."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return {TAG: "float", "value": repr(v)}
        return v
    if isinstance(v, list):
        return [encode_value(x, path=f"{path}[{i}]") for i, x in enumerate(v)]
    if isinstance(v, tuple):
        return {TAG: "tuple", "items": [encode_value(x, path=f"{path}[{i}]") for i, x in enumerate(v)]}
    if isinstance(v, (set, frozenset)):
        items = [encode_value(x, path=f"{path}{{}}") for x in v]
        return {TAG: "frozenset" if isinstance(v, frozenset) else "set",
                "items": sorted(items, key=repr)}
    if isinstance(v, dict):
        if all(isinstance(k, str) for k in v) and TAG not in v:
            return {k: encode_value(x, path=f"{path}.{k}") for k, x in v.items()}
        return {TAG: "dict", "items": [[encode_value(k, path=f"{path} key"), encode_value(x, path=f"{path}[{k!r}]")]
                                       for k, x in v.items()]}
    if isinstance(v, datetime):
        return {TAG: "datetime", "value": v.isoformat()}
    if isinstance(v, date):
        return {TAG: "date", "value": v.isoformat()}
    if isinstance(v, time):
        return {TAG: "time", "value": v.isoformat()}
    if isinstance(v, timedelta):
        return {TAG: "timedelta", "days": v.days, "seconds": v.seconds, "microseconds": v.microseconds}
    if isinstance(v, Decimal):
        return {TAG: "decimal", "value": str(v)}
    if isinstance(v, (bytes, bytearray)):
        return {TAG: "bytes", "value": base64.b64encode(bytes(v)).decode("ascii")}
    cls = type(v)
    raise Unencodable(f"{path} is a {cls.__module__}.{cls.__qualname__}, which cutover cannot store")


def decode_value(v: Any) -> Any:
    """The Python value :func:`encode_value` stored."""
    if isinstance(v, list):
        return [decode_value(x) for x in v]
    if not isinstance(v, dict):
        return v
    tag = v.get(TAG)
    if tag is None:
        return {k: decode_value(x) for k, x in v.items()}
    if tag == "tuple":
        return tuple(decode_value(x) for x in v["items"])
    if tag == "set":
        return {decode_value(x) for x in v["items"]}
    if tag == "frozenset":
        return frozenset(decode_value(x) for x in v["items"])
    if tag == "dict":
        return {decode_value(k): decode_value(x) for k, x in v["items"]}
    if tag == "datetime":
        return datetime.fromisoformat(v["value"])
    if tag == "date":
        return date.fromisoformat(v["value"])
    if tag == "time":
        return time.fromisoformat(v["value"])
    if tag == "timedelta":
        return timedelta(days=v["days"], seconds=v["seconds"], microseconds=v["microseconds"])
    if tag == "decimal":
        return Decimal(v["value"])
    if tag == "bytes":
        return base64.b64decode(v["value"])
    if tag == "float":
        return float(v["value"])
    raise ValueError(f"unknown tagged value {tag!r}")


# -- the job -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: str
    kind: str  # callable | command
    name: str
    schedule: dict | None = None
    timezone: str = "UTC"
    # callable
    target: str | None = None  # pkg.module:function
    args: list = field(default_factory=list)  # encoded (encode_value)
    kwargs: dict = field(default_factory=dict)  # encoded
    code_location: str | None = None  # a directory, or package:NAME
    # command
    argv: tuple[str, ...] | None = None
    shell: str | None = None
    cwd: str | None = None
    env: dict = field(default_factory=dict, repr=False)
    ok_exit_codes: tuple[int, ...] = (0,)
    stdin: str | None = None  # written to the command's stdin
    # both
    timeout_s: float | None = None
    retries: int = 0
    retry_delay_s: float = 0.0
    shadow: str | None = None  # observe | env | sdk | None (undeclared)
    owner: str | None = None
    paused: bool = False  # paused in the legacy orchestrator
    legacy: dict = field(default_factory=dict)  # provenance and legacy-only settings
    table: str | None = None  # shadow: sdk -- the Iceberg table it appends to (forked at shadow start, counted by parity)
    prefect_deployment_id: str | None = None
    prefect_flow_id: str | None = None

    @property
    def schedule_timezone(self) -> str:
        return sched.schedule_timezone(self.schedule, self.timezone)

    # -- what the engine reads of every inventory item (an ingestion's fields, a job's values) --
    size_class = "small"
    priority = "normal"
    work_queue = "default"
    credentials = None
    key_columns = ()
    batch_paused = False

    @property
    def format(self) -> str:
        return self.kind

    @property
    def code_package(self) -> str | None:
        """The installed distribution of ``code_location: package:NAME``; None for a directory."""
        if self.code_location and self.code_location.startswith("package:"):
            return self.code_location[len("package:"):]
        return None

    def call_args(self) -> tuple[list, dict]:
        """(args, kwargs) as the legacy scheduler passed them (decoded)."""
        return decode_value(self.args), decode_value(self.kwargs)

    def command_line(self) -> str:
        """The command as one line (for display): the shell line, or the argv quoted."""
        if self.shell is not None:
            return self.shell
        return shlex.join(self.argv or ())

    def describe_target(self) -> str:
        """One short line: what the job runs (secrets masked)."""
        if self.kind == CALLABLE:
            a, k = self.call_args()
            parts = [repr(x) for x in a] + [f"{n}={MASK if is_secret_key(n) else repr(v)}" for n, v in k.items()]
            text = f"{self.target}({', '.join(parts)})"
            return redact_output(text if len(text) <= 160 else text[:157] + "...")
        return redact_output(self.command_line(), secret_values(self.env))

    def public_dict(self) -> dict[str, Any]:
        """The printable form: env values and credential-like kwargs masked."""
        d = asdict(self)
        d["argv"] = list(self.argv) if self.argv is not None else None
        d["ok_exit_codes"] = list(self.ok_exit_codes)
        d["env"] = {k: MASK for k in self.env}
        d["kwargs"] = redact_mapping(self.kwargs)
        d["schedule_text"] = sched.describe(self.schedule)
        d["target_text"] = self.describe_target()
        if self.shell is not None:
            d["shell"] = redact_output(self.shell, secret_values(self.env))
        if self.argv is not None:
            d["argv"] = [redact_output(a, secret_values(self.env)) for a in self.argv]
        if self.stdin is not None:
            d["stdin"] = redact_output(self.stdin, secret_values(self.env))
        if self.legacy:
            d["legacy"] = {k: redact_output(v, secret_values(self.env)) if isinstance(v, str) else v
                           for k, v in redact_mapping(self.legacy).items()}
        return d

    def definition(self) -> dict[str, Any]:
        """The form a definition file takes (`cutover ingestion add --from-file`): only the fields of
        its kind, defaults left out, env values masked (like an ingestion's credentials)."""
        d = self.public_dict()
        out: dict[str, Any] = {}
        defaults = {"args": [], "kwargs": {}, "env": {}, "ok_exit_codes": [0], "retries": 0, "retry_delay_s": 0.0,
                    "timezone": None, "legacy": {}, "paused": False}
        for k in ["id", "kind", "name", *sorted(FIELDS[self.kind] - {"id", "kind", "name"})]:
            v = d.get(k)
            if v is None or defaults.get(k, object()) == v:
                continue
            out[k] = v
        out["timezone"] = self.timezone
        if out.get("name") == self.id:
            out.pop("name")
        return out


def validate_job(raw: dict[str, Any], *, where: str = "job", at: tuple = ()) -> Job:
    """Build a Job from user input (a definition-file item with ``kind: callable|command``), or
    raise one clear InputError. The shape (kind, types, bounds, unknown fields) is checked by the
    typed models (cutover.core.schema.definitions: CallableJobDef, CommandJobDef); the meaning here,
    on their validated data. ``at``: the item's path in its file (``("jobs", 0)``)."""
    # pydantic loads here, where a definition is read (the CLI starts without it)
    from cutover.core.schema import dotted, validated
    from cutover.core.schema.definitions import KINDS as MODELS

    if not isinstance(raw, dict):
        raise InputError(f"{where}: a job must be a mapping", fix="write it as key: value pairs")
    kind = raw.get("kind")
    if kind not in GENERIC_KINDS:
        raise InputError(f"{where}: kind {kind!r} is not a job kind", fix="use kind: callable or kind: command")
    model = validated(MODELS[kind], raw, where=where, at=at)
    raw = model.model_dump(exclude_unset=True)
    where = f"{where}: {dotted(at)}" if at else where
    jid = raw["id"].strip()
    if not _ID.match(jid):
        raise InputError(f"{where}: id {jid!r} is not valid", fix="use lower-case letters, digits, '-' and '_' (max 128)")
    where = f"job {jid}"
    tz = str(raw.get("timezone") or "UTC")
    sched.check_timezone(tz)
    try:
        spec = sched.normalize_schedule(raw.get("schedule"))
    except InputError as e:
        raise InputError(f"{where}: {e.message}", fix=e.fix) from None
    shadow = raw.get("shadow")
    if shadow is not None and shadow not in SHADOW_MODES:
        raise InputError(f"{where}: shadow {shadow!r} is not one of {', '.join(SHADOW_MODES)}",
                         fix="observe (Prefect does not run it in shadow), env (it reads CUTOVER_MODE ...) or sdk")
    common = dict(
        id=jid, kind=kind, name=raw.get("name") or jid, schedule=spec, timezone=tz,
        timeout_s=raw.get("timeout_s"), retries=raw.get("retries") or 0,
        retry_delay_s=float(raw.get("retry_delay_s") or 0.0), shadow=shadow,
        owner=raw.get("owner"), paused=bool(raw.get("paused") or False), legacy=dict(raw.get("legacy") or {}),
        table=_table(raw.get("table"), where),
    )
    if common["timeout_s"] == 0:
        raise InputError(f"{where}: timeout_s 0 would stop every run at once", fix="leave it out for no limit")
    if kind == CALLABLE:
        return _callable(raw, where, common)
    return _command(raw, where, common)


def _table(value, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", value):
        raise InputError(f"{where}: table {value!r} is not 'namespace.table'",
                         fix="name the Iceberg table the job appends to through cutover.sdk, e.g. table: acme.orders")
    return value


def _callable(raw: dict, where: str, common: dict) -> Job:
    target = str(raw.get("target") or "").strip()
    if not _TARGET.match(target):
        raise InputError(f"{where}: target {target!r} is not an import path 'pkg.module:function'",
                         fix="name the module and the function, e.g. target: acme.etl.orders:load")
    args = raw.get("args") or []
    kwargs = raw.get("kwargs") or {}
    try:  # args/kwargs come in the stored form (tags for tuples, dates ...): decoded, then encoded again
        args_e = encode_value(decode_value(list(args)), path="args")
        kwargs_e = encode_value(decode_value(dict(kwargs)), path="kwargs")
    except (Unencodable, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{where}: {e}", fix="give plain values (strings, numbers, lists, mappings, dates)") from None
    loc = raw.get("code_location")
    if loc is not None:
        loc = str(loc).strip()
        if not loc:
            loc = None
        elif loc.startswith("package:"):
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]*", loc[len("package:"):]):
                raise InputError(f"{where}: code_location {loc!r} names no package",
                                 fix="package:NAME (an installed distribution) or a directory")
        else:
            from pathlib import Path

            loc = str(Path(loc).expanduser().absolute())
    return Job(**common, target=target, args=list(args_e), kwargs=dict(kwargs_e), code_location=loc)


def _command(raw: dict, where: str, common: dict) -> Job:
    argv, shell = raw.get("argv"), raw.get("shell")
    if (argv is None) == (shell is None):
        raise InputError(f"{where}: a command job needs exactly one of argv and shell",
                         fix="argv: [prog, arg, ...] (no shell) or shell: 'a command line'")
    if argv is not None:
        if not argv or not argv[0]:
            raise InputError(f"{where}: argv must be a non-empty list of strings",
                             fix="e.g. argv: [/opt/etl/bin/sync.sh, --full] (or use shell: for a command line)")
        argv = tuple(argv)
    elif not shell.strip():
        raise InputError(f"{where}: shell must be a non-empty command line", fix="e.g. shell: '/opt/etl/bin/sync.sh --full'")
    env = raw.get("env") or {}
    if not all(_ENV_NAME.match(k) for k in env):
        raise InputError(f"{where}: env must map variable names to values", fix="e.g. env: {ETL_ENV: prod}")
    if any(v == MASK for v in env.values()):
        raise InputError(f"{where}: env contains the mask {MASK!r}, not real values",
                         fix="give the real values (exported definitions never carry them)")
    codes = raw.get("ok_exit_codes")
    codes = [0] if codes is None else codes
    if isinstance(codes, int):
        codes = [codes]
    if not codes:
        raise InputError(f"{where}: ok_exit_codes must be a list of exit codes 0-255", fix="e.g. ok_exit_codes: [0, 3]")
    cwd = raw.get("cwd")
    stdin = raw.get("stdin")
    return Job(**common, argv=argv, shell=shell, cwd=str(cwd) if cwd else None, stdin=stdin,
               env={k: "" if v is None else str(v) for k, v in env.items()},
               ok_exit_codes=tuple(sorted(set(codes))))


def kind_of(raw: Any) -> str:
    """The kind of a definition-file item (``ingestion`` when it says none)."""
    if isinstance(raw, dict):
        k = raw.get("kind") or INGESTION
        if k not in KINDS:
            raise InputError(f"kind {k!r} (item {raw.get('id')!r}) is not one of {', '.join(KINDS)}",
                             fix="kind: ingestion (the default), callable or command")
        return str(k)
    return INGESTION


def split_definitions(items: list, *, where: str,
                      paths: list[tuple] | None = None) -> tuple[list[tuple[int, dict]], list[Job]]:
    """Definition-file items split by kind: ([(position, ingestion item)], [Job]). ``paths``: each
    item's path in its file (``("jobs", 0)``), for the messages."""
    ingestions, jobs = [], []
    for i, item in enumerate(items):
        k = kind_of(item)
        if k == INGESTION:
            ingestions.append((i, item))
        else:
            jobs.append(validate_job(item, where=where, at=paths[i] if paths else (i,)))
    return ingestions, jobs


# -- storage -------------------------------------------------------------------------------------

_SPEC_KEYS = ("args", "kwargs", "code_location", "argv", "shell", "cwd", "env", "ok_exit_codes",
              "retry_delay_s", "stdin", "table")


def values_of(job: Job) -> dict[str, Any]:
    spec = {k: getattr(job, k) for k in _SPEC_KEYS}
    spec["argv"] = list(job.argv) if job.argv is not None else None
    spec["ok_exit_codes"] = list(job.ok_exit_codes)
    return {"kind": job.kind, "name": job.name, "target": job.target, "schedule": job.schedule,
            "timezone": job.timezone, "spec": spec, "timeout_s": job.timeout_s, "retries": job.retries,
            "shadow": job.shadow, "owner": job.owner, "legacy": job.legacy}


def _row_to_job(row) -> Job:
    spec = dict(row.spec or {})
    return Job(
        id=row.id, kind=row.kind, name=row.name, schedule=row.schedule, timezone=row.timezone, target=row.target,
        args=list(spec.get("args") or []), kwargs=dict(spec.get("kwargs") or {}), code_location=spec.get("code_location"), table=spec.get("table"),
        argv=tuple(spec["argv"]) if spec.get("argv") is not None else None, shell=spec.get("shell"), cwd=spec.get("cwd"),
        env=dict(spec.get("env") or {}), ok_exit_codes=tuple(spec.get("ok_exit_codes") or (0,)), stdin=spec.get("stdin"),
        timeout_s=row.timeout_s, retries=row.retries, retry_delay_s=float(spec.get("retry_delay_s") or 0.0),
        shadow=row.shadow, owner=row.owner, paused=bool(row.paused), legacy=dict(row.legacy or {}),
        prefect_deployment_id=row.prefect_deployment_id, prefect_flow_id=row.prefect_flow_id,
    )


def unique_id(base: str, taken: set[str]) -> str:
    """``base`` as an inventory id (``job-`` before it unless it starts with a letter or digit),
    made unique against ``taken`` with ``-2``, ``-3`` ...; the id is added to ``taken``."""
    base = base or "job"
    if not base[0].isalnum():
        base = "job-" + base
    jid, k = base, 2
    while jid in taken:
        jid, k = f"{base}-{k}", k + 1
    taken.add(jid)
    return jid


class JobRepo(Repo[Job]):
    """CRUD on the jobs table of the autoloader DB (the records store; cutover.core.records.repo)."""

    table = t_jobs
    noun = "job"
    empty_hint = "import some with `cutover legacy import --jobstore`"

    def from_row(self, row) -> Job:
        return _row_to_job(row)

    def values(self, item: Job) -> dict[str, Any]:
        return {**values_of(item), "paused": item.paused}

    def upsert(self, items: list[Job], *, replace_existing: bool, taken: Iterable[str] = ()) -> list[tuple[str, Job]]:
        """Create or update in one transaction: all of them, or none. ``taken``: ids the inventory
        already uses for something else (ingestions): refused."""
        clash = sorted({j.id for j in items} & set(taken))
        if clash:
            raise InputError(f"id(s) {', '.join(clash)} already name an ingestion",
                             fix="give the job another id (ids are shared by ingestions and jobs)")
        return super().upsert(items, replace_existing=replace_existing)

    def set_paused(self, jid: str, paused: bool) -> bool:
        """Returns whether anything changed."""
        return self.set_flag(jid, "paused", paused)


def with_schedule(job: Job, spec: dict | None, tz: str) -> Job:
    return replace(job, schedule=spec, timezone=tz)


def load_inventory_file(path) -> tuple[list, list[Job]]:
    """Ingestions and jobs from one definition file (YAML or JSON): a list, or a mapping with key
    ``ingestions`` (and/or ``jobs``); each item's ``kind`` (default ``ingestion``) says which.
    Every item is validated before anything is returned; ids must be unique across both."""
    from pathlib import Path

    from cutover.core.records.ingestions import load_yaml_or_json, validate
    from cutover.core.schema import validated  # pydantic: loaded where a definition file is read
    from cutover.core.schema.definitions import DefinitionFile, DefinitionItem

    path = Path(path)
    data = load_yaml_or_json(path, what="a YAML or JSON file of ingestions and jobs")
    if isinstance(data, dict) and ("ingestions" in data or "jobs" in data):
        validated(DefinitionFile, data, where=path.name)  # the whole file's shape first: one error, its path
        paths = [("ingestions", i) for i in range(len(data.get("ingestions") or []))] + \
                [("jobs", i) for i in range(len(data.get("jobs") or []))]
        items = list(data.get("ingestions") or []) + list(data.get("jobs") or [])
    elif isinstance(data, list) and data:
        validated(list[DefinitionItem], data, where=path.name)
        items, paths = data, [(i,) for i in range(len(data))]
    else:
        items, paths = ([data], [()]) if isinstance(data, dict) else (None, [])
    if not isinstance(items, list) or not items:
        raise InputError(f"{path} holds no ingestions or jobs",
                         fix="write a list, or a mapping with key 'ingestions' (items with kind: callable|command are jobs)")
    raw_ings, jobs = split_definitions(items, where=path.name, paths=paths)
    ings = [validate(item, where=path.name, at=paths[i]) for i, item in raw_ings]
    seen: set[str] = set()
    for x in [*ings, *jobs]:
        if x.id in seen:
            raise InputError(f"{path}: id {x.id!r} appears twice", fix="make ids unique (ingestions and jobs share them)")
        seen.add(x.id)
    return ings, jobs
