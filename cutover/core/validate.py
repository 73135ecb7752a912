"""The checks every input of cutover goes through, and the shape of their messages.

Every refusal is one :class:`~cutover.core.errors.InputError` line (exit 2, nothing written)
that names the field, shows the value (secrets masked, control bytes escaped, cut short) and
says how to fix it. Definition and plan files are typed by the models of :mod:`cutover.core.schema`
(pydantic), whose errors come out in this shape (:func:`show`, :func:`did_you_mean`). Unknown names (definition fields, settings keys, ``CUTOVER_*`` variables,
``--select`` keys) suggest the nearest valid one. Files are read as UTF-8 text or refused as
binary/undecodable; bytes of data files are shown escaped and cut short (:func:`show_bytes`).
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Iterable

from cutover.core.errors import InputError
from cutover.core.redact import redact_text

SHOW_MAX = 60  # characters of a value shown in a message
BYTES_MAX = 40  # bytes of a data file shown in a message or the ledger


def nearest(name: str, choices: Iterable[str]) -> str | None:
    """The valid name closest to ``name`` (difflib), or None when none is close."""
    choices = list(choices)
    got = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if not got:  # case/separator slips: CLAIM-TIMEOUT vs claim_timeout
        norm = {c.lower().replace("-", "_"): c for c in choices}
        return norm.get(name.lower().replace("-", "_"))
    return got[0]


def did_you_mean(name: str, choices: Iterable[str], *, valid: str = "valid names are") -> str:
    """The fix for an unknown ``name``: 'did you mean X?' or the list of valid names."""
    choices = sorted(choices)
    best = nearest(name, choices)
    if best:
        return f"did you mean {best!r}?"
    return f"{valid} {', '.join(choices)}"


def unknown_name(what: str, names: Iterable[str], choices: Iterable[str], *, where: str = "") -> InputError:
    """``where: unknown field 'colour'``: did you mean ...? (the first unknown name leads)."""
    names = sorted(names)
    choices = list(choices)
    head = f"{where}: " if where else ""
    more = f" (and {', '.join(repr(n) for n in names[1:])})" if len(names) > 1 else ""
    return InputError(f"{head}unknown {what} {names[0]!r}{more}", fix=did_you_mean(names[0], choices))


def show(value: Any, limit: int = SHOW_MAX) -> str:
    """``value`` for a message: repr-quoted, secrets masked, control characters escaped, cut short."""
    if isinstance(value, bytes):
        return show_bytes(value, limit)
    text = redact_text(value) if isinstance(value, str) else value
    r = repr(text)
    if len(r) > limit:
        r = r[:limit - 1] + "…"
    return r


def show_bytes(data: bytes, limit: int = BYTES_MAX) -> str:
    """Bytes of a data file for a message or the ledger: escaped (``b'\\xff\\x00ab'``), at most
    ``limit`` bytes, with the total when cut."""
    cut = data[:limit]
    r = repr(bytes(cut))
    return r + (f"… ({len(data)} bytes)" if len(data) > limit else "")


def clean_message(text: str, limit: int = 300) -> str:
    """A third-party error message made safe for one line, the ledger and a terminal: secrets
    masked, non-printable characters escaped, the first line only, cut short."""
    text = redact_text(str(text))
    first = text.strip().splitlines()[0] if text.strip() else ""
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in first)
    return out if len(out) <= limit else out[:limit - 1] + "…"


# -- files -----------------------------------------------------------------------------------

def read_text(path: Path | str, *, what: str) -> str:
    """A user's text file (definitions, plans, configs) as UTF-8 text; a missing file, a
    directory, a binary or undecodable file is a one-line InputError naming it."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist", fix=f"give the path of {what}")
    if p.is_dir():
        raise InputError(f"{p} is a directory", fix=f"give the path of {what}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"{p} cannot be read ({e.strerror or type(e).__name__})", fix=f"give a readable {what}") from None
    if b"\x00" in data[:8192]:
        raise InputError(f"{p} is a binary file, not text (starts {show_bytes(data[:16], 16)})",
                         fix=f"give {what} (UTF-8 text)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{p} is not UTF-8 text (undecodable byte {show_bytes(data[e.start:e.start + 1], 1)} at offset "
                         f"{e.start})", fix=f"save {what} as UTF-8") from None


# -- values ----------------------------------------------------------------------------------

def check_number(field: str, value: Any, *, minimum: float | None = 0.0, maximum: float | None = None,
                 integer: bool = False, source: str = "", fix: str = "") -> float | int:
    """A finite number within bounds (NaN, infinities and out-of-range values refused)."""
    where = f"{field} ({source})" if source else field
    fix = fix or "fix it in cutover.toml or the env var"
    if isinstance(value, bool):
        raise InputError(f"{where} is {value!r}, not a number", fix=fix)
    try:
        num = int(value) if integer and not isinstance(value, float) else float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{where} must be {'a whole number' if integer else 'a number'}, got {show(value)}", fix=fix) from None
    if integer and isinstance(value, float):
        if not value.is_integer():
            raise InputError(f"{where} must be a whole number, got {show(value)}", fix=fix)
        num = int(value)
    if isinstance(num, float) and not math.isfinite(num):
        raise InputError(f"{where} must be a finite number, got {show(value)}", fix=fix)
    if minimum is not None and num < minimum:
        raise InputError(f"{where} must be at least {minimum:g}, got {show(value)}", fix=fix)
    if maximum is not None and num > maximum:
        raise InputError(f"{where} must be at most {maximum:g}, got {show(value)}", fix=fix)
    return num


# -- URLs ------------------------------------------------------------------------------------

DB_URL_FIX = ("use sqlite:///PATH or postgresql+psycopg://<user>:<password>@<host>:<port>/<db> with @ # / : % ? & and spaces in "
              "the password percent-encoded")
# (dialect, driver) -> the module the driver needs
_DB_DRIVERS = {
    ("sqlite", "pysqlite"): "sqlite3",
    ("postgresql", "psycopg"): "psycopg",
    ("postgresql", "psycopg2"): "psycopg2",
    ("postgresql", "pg8000"): "pg8000",
}
_HOSTNAME = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_\-.%]+)$")


def check_db_url(url: str, field: str) -> None:
    """A database URL cutover can open: SQLite or PostgreSQL with an installed driver, a valid host
    and port (parsed like SQLAlchemy's make_url)."""
    if url.startswith(("sqlite:///", "sqlite+pysqlite:///")) or url in ("sqlite://", "sqlite:///:memory:"):
        return  # the embedded default: nothing to check, and no SQLAlchemy import just for this
    import importlib.util

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = show(url, 120)
    try:
        u = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise InputError(f"{field} {shown} is not a database URL ({clean_message(e, 80)})", fix=DB_URL_FIX) from None
    dialect, _, driver = u.drivername.partition("+")
    if dialect not in ("sqlite", "postgresql"):
        raise InputError(f"{field} {shown}: {dialect} is not supported (cutover's stores run on SQLite and PostgreSQL)",
                         fix=DB_URL_FIX)
    driver = driver or {"sqlite": "pysqlite", "postgresql": "psycopg2"}[dialect]
    module = _DB_DRIVERS.get((dialect, driver))
    if module is None:
        raise InputError(f"{field} {shown}: driver {driver!r} is not supported for {dialect}", fix=DB_URL_FIX)
    if importlib.util.find_spec(module) is None:
        raise InputError(f"{field} {shown}: its driver {module} is not installed",
                         fix="use postgresql+psycopg:// (installed with cutover)" if dialect == "postgresql" else DB_URL_FIX)
    if dialect == "postgresql":
        host = u.host or ""
        if "@" in host or (host and not _HOSTNAME.match(host)):
            # the "host" the driver would read holds part of the password: never shown
            raise InputError(f"{field} {shown}: the driver would not read a host name from it (a raw '@', '/' or '#' in "
                             "the password?)", fix="percent-encode the password: @ as %40, # as %23, / as %2F, : as %3A")
        if u.port is not None and not 1 <= u.port <= 65535:
            raise InputError(f"{field} {shown}: port {u.port} is out of range", fix="give a port between 1 and 65535")


def check_http_url(url: str, field: str, *, fix: str) -> None:
    """An http(s) URL with a host and a valid port (the Prefect API, a REST catalog)."""
    from urllib.parse import urlsplit

    shown = show(url, 120)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InputError(f"{field} {shown} is not a valid URL ({clean_message(e, 80)})", fix=fix) from None
    if parts.scheme not in ("http", "https"):
        raise InputError(f"{field} {shown}: scheme {parts.scheme or '(none)'!r} is not http or https", fix=fix)
    if not parts.hostname:
        raise InputError(f"{field} {shown} has no host", fix=fix)
    if port is not None and not 1 <= port <= 65535:
        raise InputError(f"{field} {shown}: port {port} is out of range", fix="give a port between 1 and 65535")


def check_home(home: Path, source: str) -> None:
    """CUTOVER_HOME must be a directory, or creatable as one (no file in the way)."""
    p = home
    while True:
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == home else f"cannot be created: {p} is a file"
                raise InputError(f"CUTOVER_HOME {home} {what} ({source})",
                                 fix="point CUTOVER_HOME at a directory (it is created on first use)")
            return
        if p.parent == p:
            return
        p = p.parent


def check_limit(limit: int | None, option: str = "--limit") -> None:
    """A row limit of at least 1 (0 or negative would show nothing, or everything on SQLite)."""
    if limit is not None and limit < 1:
        raise InputError(f"{option} {limit} must be at least 1", fix=f"give {option} N with N >= 1")
