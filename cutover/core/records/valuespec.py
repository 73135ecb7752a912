"""The ``values:`` block of an ingestion definition: how the values check matches and compares rows.

::

    values:
      key: [order_id]            # rows matched by these columns; or `key: row` (whole rows matched)
      tolerances:
        amount: {abs: 0.01}                      # |a - b| <= 0.01
        price: {rel: 1.0e-9}                     # |a - b| <= rel * max(|a|, |b|)
        created_at: {timestamp_precision: seconds}
        ratio: {nan_equal: false}                # NaN never equals NaN (default: it does)
        customer: {normalize: [strip, lower]}    # strings compared after these steps
        note: {normalize: null_as_empty}         # NULL equals ''
      ignore: [ingested_at]      # columns not compared
      sensitive: [email]         # values and example keys of these columns are masked in reports

Without ``values.key`` the key is the definition's ``key_columns``; with neither there is no
key, and the values check refuses to guess (its error names both choices). Validated here, at
definition time (pure Python: the CLI stays fast); the comparison lives in checks/values.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from cutover.core.errors import InputError

ROW = "row"
DEFAULT_BUCKETS = 65536
TIMESTAMP_UNITS = ("microseconds", "milliseconds", "seconds", "minutes", "hours", "days")
NORMALIZE = ("strip", "lower", "null_as_empty")
SPEC_FIELDS = ("key", "tolerances", "ignore", "sensitive")
NO_KEY_FIX = ("set `values: {key: [column, ...]}` (rows matched by those columns) or `values: {key: row}` "
              "(whole rows matched) in the ingestion definition")


@dataclass(frozen=True)
class Tolerance:
    """How two values of one column may differ and still be equal.

    - ``abs``: numbers equal when ``|a - b| <= abs``;
    - ``rel``: numbers equal when ``|a - b| <= rel * max(|a|, |b|)``;
    - ``timestamp_precision``: timestamps compared truncated to this unit (``seconds`` …);
    - ``nan_equal`` (default True): NaN equals NaN;
    - ``normalize``: strings compared after ``strip`` (white space), ``lower`` (case) and/or
      ``null_as_empty`` (NULL equals the empty string; off by default: NULL ↔ '' is a change).
    """

    abs: float | None = None
    rel: float | None = None
    timestamp_precision: str | None = None
    nan_equal: bool = True
    normalize: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("abs", "rel"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0):
                raise InputError(f"tolerance {name}={v!r} is not a number >= 0", fix=f"set {name} to e.g. 0.01")
        if self.timestamp_precision is not None and self.timestamp_precision not in TIMESTAMP_UNITS:
            raise InputError(f"timestamp_precision {self.timestamp_precision!r} is not a unit",
                             fix="use one of " + ", ".join(TIMESTAMP_UNITS))
        if not isinstance(self.nan_equal, bool):
            raise InputError(f"nan_equal={self.nan_equal!r} is not true or false", fix="write nan_equal: false")
        bad = [n for n in self.normalize if n not in NORMALIZE]
        if bad:
            raise InputError(f"normalize {', '.join(map(repr, bad))} is not known", fix="use " + ", ".join(NORMALIZE))

    @property
    def strip(self) -> bool:
        return "strip" in self.normalize

    @property
    def lower(self) -> bool:
        return "lower" in self.normalize

    @property
    def null_as_empty(self) -> bool:
        return "null_as_empty" in self.normalize

    @classmethod
    def parse(cls, column: str, raw: Any) -> "Tolerance":
        if isinstance(raw, Tolerance):
            return raw
        if not isinstance(raw, dict):
            raise InputError(f"tolerance for column {column!r} must be a mapping, not {type(raw).__name__}",
                             fix="e.g. {abs: 0.01} or {timestamp_precision: seconds}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError(f"unknown tolerance field(s) {', '.join(unknown)} for column {column!r}",
                             fix="use " + ", ".join(sorted(known)))
        kw = dict(raw)
        norm = kw.get("normalize", ())
        if isinstance(norm, str):
            norm = (norm,)
        if not isinstance(norm, (list, tuple)) or not all(isinstance(n, str) for n in norm):
            raise InputError(f"normalize for column {column!r} must be a name or a list of names",
                             fix="use " + ", ".join(NORMALIZE))
        kw["normalize"] = tuple(norm)
        return cls(**kw)

    def as_dict(self) -> dict:
        d: dict[str, Any] = {}
        for k in ("abs", "rel", "timestamp_precision"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if not self.nan_equal:
            d["nan_equal"] = False
        if self.normalize:
            d["normalize"] = list(self.normalize)
        return d


@dataclass(frozen=True)
class ValueSpec:
    """What to compare: the key (column names, or ``"row"``), per-column tolerances, columns to
    ignore, columns whose values are never shown (examples masked)."""

    key: tuple[str, ...] | str | None
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    ignore: frozenset[str] = frozenset()
    sensitive: frozenset[str] = frozenset()
    examples: int = 5
    buckets: int = DEFAULT_BUCKETS

    @classmethod
    def build(cls, key, *, tolerances: dict | None = None, ignore: Iterable[str] = (), sensitive: Iterable[str] = (),
              examples: int = 5, buckets: int = DEFAULT_BUCKETS) -> "ValueSpec":
        if key is None or key == [] or key == ():
            raise InputError("the values check needs a key and this ingestion declares none", fix=NO_KEY_FIX)
        if isinstance(key, str):
            if key != ROW:
                key = (key,)
        elif isinstance(key, (list, tuple)) and all(isinstance(k, str) and k for k in key):
            key = tuple(key)
        else:
            raise InputError(f"values key {key!r} is neither a list of column names nor `row`", fix=NO_KEY_FIX)
        if tolerances is not None and not isinstance(tolerances, dict):
            raise InputError("values tolerances must be a mapping of column -> tolerance",
                             fix="e.g. tolerances: {amount: {abs: 0.01}}")
        tol = {str(c): Tolerance.parse(str(c), t) for c, t in (tolerances or {}).items()}
        for name, cols in (("ignore", ignore), ("sensitive", sensitive)):
            if isinstance(cols, str) or not all(isinstance(c, str) for c in cols):
                raise InputError(f"values {name} must be a list of column names", fix=f"e.g. {name}: [email]")
        if key != ROW and set(key) & set(ignore):
            raise InputError(f"key column(s) {', '.join(sorted(set(key) & set(ignore)))} are also ignored",
                             fix="remove them from `ignore`")
        if buckets < 1:
            raise InputError(f"buckets={buckets} must be >= 1", fix="leave the default")
        return cls(key, tol, frozenset(ignore), frozenset(sensitive), examples, buckets)

    def as_dict(self) -> dict:
        """The stored (JSON) form; ``build(**as_dict())`` gives it back."""
        return {"key": self.key if self.key == ROW else list(self.key or ()),
                "tolerances": {c: t.as_dict() for c, t in self.tolerances.items()},
                "ignore": sorted(self.ignore), "sensitive": sorted(self.sensitive)}


def validate_values(raw: Any, *, key_columns: Iterable[str], where: str) -> dict | None:
    """The ``values:`` block of a definition, checked and in its stored form (None when absent).
    A block without ``key`` takes ``key_columns``; with neither, it is refused here. Its shape (fields,
    types, finite tolerances) was checked by the typed model (cutover.core.schema.definitions.ValuesDef)."""
    if raw is None:
        return None
    key = raw.get("key") or list(key_columns) or None
    try:
        spec = ValueSpec.build(key, tolerances=raw.get("tolerances"), ignore=raw.get("ignore") or (),
                               sensitive=raw.get("sensitive") or ())
    except InputError as e:
        raise InputError(f"{where}: {e.message}", fix=e.fix) from None
    out = spec.as_dict()
    if not raw.get("key"):
        out.pop("key")  # follows key_columns
    return out


def spec_for(values: dict | None, key_columns: Iterable[str]) -> ValueSpec:
    """The ValueSpec of an ingestion (its stored ``values`` block and ``key_columns``); no key →
    InputError naming both choices."""
    v = dict(values or {})
    return ValueSpec.build(v.get("key") or list(key_columns) or None, tolerances=v.get("tolerances"),
                           ignore=v.get("ignore") or (), sensitive=v.get("sensitive") or ())
