"""What every command line of cutover shares: text tables, JSON, redaction, the exit codes.

The root CLI (``cutover/cli/app.py``) and the click groups a side brings (``legacy/cron/cli.py``,
``flows/cli.py`` ...) render through :class:`Output` and map errors to exit codes with
:func:`run_click`, so that a verb looks and exits the same whichever package defines it. A side's
command reaches the running output object with ``@pass_output``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from datetime import date, datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Sequence

import click

from cutover.core.errors import EXIT_FAIL, EXIT_PARTIAL, EXIT_USAGE, CutoverError, OrchestratorError
from cutover.core.redact import redact_text
from cutover.core.config import load_settings
from cutover.core.osutil import atomic_write

EXIT_INTERRUPTED = 130


class RedactingFilter(logging.Filter):
    """Redacts secrets from every log record before a handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg = redact_text(record.getMessage())
            record.args = ()
        except Exception:  # noqa: BLE001 - never let logging break the command
            pass
        return True


_base_factory = logging.getLogRecordFactory()


def _redacting_record(*args, **kwargs) -> logging.LogRecord:
    """Every log record of the process, redacted when it is made: a library's own handler
    (Prefect's console handler, Great Expectations') never sees a secret either."""
    record = _base_factory(*args, **kwargs)
    try:
        msg = record.getMessage()
        clean = redact_text(msg)
        if clean != msg:
            record.msg, record.args = clean, ()
    except Exception:  # noqa: BLE001 - never let logging break the command
        pass
    return record


def setup_logging(verbose: int) -> None:
    if logging.getLogRecordFactory() is not _redacting_record:
        logging.setLogRecordFactory(_redacting_record)
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_cutover", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._cutover = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level)
    global _library_level
    # third-party libraries stay quiet (errors only) unless -v: then their warnings, -vv everything
    _library_level = logging.ERROR if verbose == 0 else logging.WARNING if verbose == 1 else logging.DEBUG
    for name in LIBRARY_LOGGERS:
        quiet_library(name)


# loggers of the libraries cutover drives; a library imported lazily that sets its own level on
# import (Great Expectations does) calls quiet_library(name) right after the import
LIBRARY_LOGGERS = ("alembic", "pyiceberg", "apscheduler", "httpx", "httpcore", "prefect", "great_expectations",
                   "py4j", "pyspark", "urllib3", "asyncio", "rq", "sqlalchemy", "matplotlib", "fsspec", "duckdb")
_library_level = logging.ERROR


def quiet_library(name: str) -> None:
    """Apply the library log level of this command (-v) to logger ``name`` and to those of its
    children that set a level of their own."""
    logging.getLogger(name).setLevel(_library_level)
    for child, lg in list(logging.root.manager.loggerDict.items()):
        if child.startswith(name + ".") and isinstance(lg, logging.Logger) and lg.level != logging.NOTSET:
            lg.setLevel(_library_level)


def iso_time(value: Any) -> Any:
    """The one time style of cutover's output: ISO 8601 to the second, with the zone (UTC as ``Z``):
    ``2026-12-03T07:31:28Z``. Takes a datetime or an ISO text (a naive one is UTC: cutover stores UTC);
    anything else is returned unchanged."""
    if isinstance(value, str):
        if not _ISO.match(value):
            return value
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    text = value.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")


def json_default(o: Any):
    """``json.dumps`` default: dates as ISO text (times to the second, with the zone), sets and tuples as lists,
    the rest as str."""
    if isinstance(o, datetime):
        return iso_time(o)
    if isinstance(o, date):
        return o.isoformat()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj or obj in (float("inf"), float("-inf")):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    """``obj`` as redacted JSON text (one line with ``indent=None``). Never a bare NaN or
    Infinity (not JSON): non-finite numbers become null."""
    try:
        text = json.dumps(obj, indent=indent, default=json_default, sort_keys=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(obj), indent=indent, default=json_default, sort_keys=False, allow_nan=False)
    return redact_text(text)


ELLIPSIS = "…"


def _cell(v: Any) -> str:
    if v is None:
        return ""
    return str(iso_time(v)) if isinstance(v, (datetime, str)) else str(v)


def fit_widths(widths: Sequence[int], headers: Sequence[str], width: int | None, gap: int = 2) -> list[int]:
    """Column widths that fit ``width`` characters: the widest columns give way first, none below
    min(its natural width, max(6, its header up to 12)) -- or 3 when there are too many columns for that."""
    widths = list(widths)
    if width is None or not widths:
        return widths
    room = width - gap * (len(widths) - 1)
    if sum(widths) <= room:
        return widths
    floors = [min(w, max(6, min(len(h), 12))) for w, h in zip(widths, headers)]
    if sum(floors) > room:  # many columns: every one may shrink to 3 characters
        floors = [min(w, 3) for w in widths]
    if sum(floors) >= room:
        return floors
    lo, hi = 0, max(widths)  # the largest cap c with sum(max(floor, min(w, c))) <= room
    while lo < hi:
        c = (lo + hi + 1) // 2
        if sum(max(f, min(w, c)) for w, f in zip(widths, floors)) <= room:
            lo = c
        else:
            hi = c - 1
    out = [max(f, min(w, lo)) for w, f in zip(widths, floors)]
    spare = room - sum(out)
    for i in sorted(range(len(out)), key=lambda i: -widths[i]):  # hand out what rounding left
        if spare <= 0:
            break
        add = min(spare, widths[i] - out[i])
        out[i] += add
        spare -= add
    return out


def table_lines(rows: Iterable[Sequence[Any]], headers: Sequence[str], *, width: int | None = None) -> list[str]:
    """A left-aligned text table: header, dashes, rows (None prints empty; times in the one time
    style). With ``width``, columns are cut (ending in …) so that every line fits."""
    return _table(rows, headers, width)[0]


def _table(rows: Iterable[Sequence[Any]], headers: Sequence[str], width: int | None) -> tuple[list[str], bool]:
    rows = [[_cell(v) for v in r] for r in rows]
    natural = [len(h) for h in headers]
    for r in rows:
        natural = [max(w, len(c)) for w, c in zip(natural, r)]
    widths = fit_widths(natural, headers, width)

    def cut(text: str, w: int) -> str:
        return text if len(text) <= w else text[:max(w - 1, 0)] + ELLIPSIS

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{cut(c, w):<{w}}" for c, w in zip(cells, widths)).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    return out, widths != natural


def header_text(h: str) -> str:
    """One header style: lower case; no "(UTC)" (every time says its zone)."""
    return re.sub(r"\s*\(utc\)", "", str(h).lower())


def terminal_width() -> int | None:
    """The width tables must fit: $COLUMNS when set, the terminal's when stdout is one, else None
    (output into a pipe or file keeps full values)."""
    env = os.environ.get("COLUMNS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        if sys.stdout.isatty():
            return shutil.get_terminal_size().columns
    except (AttributeError, ValueError, OSError):
        pass
    return None


def rich_tables() -> bool:
    """Whether tables are drawn with rich: on an interactive terminal (stdout is a TTY), or when
    forced (``FORCE_COLOR``, ``CUTOVER_RICH=1``); ``CUTOVER_RICH=0`` forces the plain format. Output
    into a pipe or file keeps the plain, stable format that scripts parse (docs/json.md)."""
    forced = os.environ.get("CUTOVER_RICH", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if os.environ.get("FORCE_COLOR", ""):
        return True
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError, OSError):
        return False


RICH_GAP = 2  # characters between two columns of a rich table (collapsed padding)


def rich_table_lines(rows: Iterable[Sequence[Any]], headers: Sequence[str], width: int) -> tuple[list[str], bool]:
    """The table drawn by rich (``box.SIMPLE_HEAD``, header in bold cyan, cells on one line, cut with …)
    so that every line fits ``width``; times in the one time style; no colour under NO_COLOR.
    Returns (lines, whether a value was cut)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    cells = [[redact_text(_cell(v)) for v in r] for r in rows]
    natural = [len(h) for h in headers]
    for r in cells:
        natural = [max(w, len(c)) for w, c in zip(natural, r)]
    # widths chosen as for the plain table (the widest columns give way first, every column stays):
    # left to itself rich would drop the columns that do not fit
    widths = fit_widths(natural, headers, width, gap=RICH_GAP)
    table = Table(box=box.SIMPLE_HEAD, header_style="bold cyan", show_edge=False, pad_edge=False,
                  collapse_padding=True, expand=False)
    for h, w in zip(headers, widths):
        table.add_column(str(h), overflow="ellipsis", no_wrap=True, width=max(w, 1))
    for r in cells:
        table.add_row(*r)
    console = Console(width=width, force_terminal=True, no_color=bool(os.environ.get("NO_COLOR")),
                      highlight=False, emoji=False, markup=False)
    with console.capture() as cap:
        console.print(table, crop=True)
    lines = [ln.rstrip() for ln in cap.get().splitlines()]
    return lines, widths != natural


class Output:
    """Output of one command line: stdout for results, stderr for progress, secrets redacted."""

    def __init__(self, verbose: int = 0):
        self.verbose = verbose
        self.json_mode = False  # set by the generic --json of a command without its own JSON (see cutover.cli)
        self.json_emitted = False
        self.collected: list[str] = []
        self.tables: list[dict] = []
        self.cut_columns = False
        setup_logging(verbose)

    @cached_property
    def settings(self):

        return load_settings()

    def echo(self, text: str = "", *, err: bool = False) -> None:
        if self.json_mode and not err:  # collected into the command's JSON document (see finish_json)
            self.collected.append(redact_text(str(text)))
            return
        click.echo(redact_text(text), err=err)

    def info(self, text: str) -> None:
        """Progress / notices: stderr, so stdout stays parseable."""
        click.echo(redact_text(text), err=True)

    def json(self, obj: Any) -> None:
        self.json_emitted = True
        click.echo(to_json(obj))

    def table(self, rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
        """A table that fits the terminal (:func:`terminal_width`); under --json its rows as objects."""
        rows = [list(r) for r in rows]
        headers = [header_text(h) for h in headers]
        if self.json_mode:
            self.tables.append({"columns": list(headers),
                                "rows": [dict(zip(headers, (iso_time(v) for v in r))) for r in rows]})
            return
        width = terminal_width()
        if rich_tables():
            width = width or 80
            lines, cut = rich_table_lines(rows, headers, width)
        else:
            lines, cut = _table(rows, headers, width)
        for line in lines:
            self.echo(line)
        if cut and not self.cut_columns:
            self.cut_columns = True
            self.info(f"(values cut with {ELLIPSIS} to fit {width} columns: --json prints them in full)")

    def finish_json(self, command: str, exit_code: int) -> None:
        """Under the generic --json: the command's output as one JSON document, unless it printed its own."""
        if self.json_mode and not self.json_emitted:
            self.json_mode = False
            self.json({"command": command, "exit_code": exit_code, "tables": self.tables,
                       "messages": [ln for ln in self.collected if ln.strip()]})


pass_output = click.make_pass_decorator(Output)
JSON_PARAM = "cutover_generic_json"


def _is_output_format(param: click.Parameter) -> bool:
    """Whether a ``--format`` chooses how the result is printed and knows json (``text,json,md``, ``yaml|json``),
    not, say, the file format of an ingestion."""
    if isinstance(param.type, click.Choice):
        return "json" in param.type.choices and bool({"yaml", "text"} & set(param.type.choices))
    return param.default == "text"


def add_json_option(cmd: click.Command) -> click.Command:
    """Give ``cmd`` (and every command under it) a ``--json`` if it has none: a command with a
    ``--format`` that knows json gets ``--format json``; any other prints its tables (rows as
    objects) and messages as one JSON document on stdout (schema: docs/json.md)."""
    if isinstance(cmd, click.Group):
        for sub in list(cmd.commands.values()):
            add_json_option(sub)
        return cmd
    if getattr(cmd, "_cutover_json", False) or cmd.callback is None:
        return cmd
    cmd._cutover_json = True  # type: ignore[attr-defined]
    if any("--json" in getattr(p, "opts", ()) for p in cmd.params):
        return cmd
    fmt = next((p for p in cmd.params if "--format" in getattr(p, "opts", ())), None)
    if fmt is not None and not _is_output_format(fmt):
        fmt = None
    orig = cmd.callback

    def callback(*args, **kwargs):
        as_json = kwargs.pop(JSON_PARAM, False)
        if not as_json:
            return orig(*args, **kwargs)
        if fmt is not None:
            kwargs[fmt.name] = "json"
            return orig(*args, **kwargs)
        ctx = click.get_current_context()
        out = ctx.find_object(Output)
        if out is None:
            return orig(*args, **kwargs)
        out.json_mode = True
        try:
            rv = orig(*args, **kwargs)
        except click.exceptions.Exit as e:
            out.finish_json(ctx.command_path, e.exit_code)
            raise
        out.finish_json(ctx.command_path, 0)
        return rv

    callback.__doc__ = orig.__doc__
    cmd.callback = callback
    cmd.params.append(click.Option(["--json", JSON_PARAM], is_flag=True,
                                   help="Print the result as JSON (--format json)." if fmt is not None else
                                        "Print the result as one JSON document (docs/json.md)."))
    return cmd


def exit_with(code: int) -> None:
    """End the command with exit ``code`` (0 returns)."""
    if code:
        raise click.exceptions.Exit(code)


def run_click(cli: click.Command, argv: list[str] | None, *, prog_name: str = "cutover") -> int:
    """Run a click command and return its exit code: a CutoverError exits with its own code
    (2 usage, 1 refused, 3 partial), one redacted line on stderr; anything unexpected exits 3."""
    try:
        rv = cli.main(args=argv, prog_name=prog_name, standalone_mode=False)
        # click returns the code of a raised Exit instead of raising it in this mode
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except CutoverError as e:
        click.echo(f"error: {redact_text(e.one_line())}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except OrchestratorError as e:
        # a server the settings point at does not answer (PREFECT_API_URL, the Redis URL): the
        # settings or the server need fixing, like any other bad input
        click.echo(f"error: {redact_text(' '.join(str(e).split()))}: check that the server is up and its URL in "
                   "`cutover config show` is right", err=True)
        return EXIT_USAGE
    except click.UsageError as e:
        # one line, like every other input error: the problem, then where the usage is
        ctx = e.ctx
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        click.echo(f"error: {redact_text(' '.join(e.format_message().split()))}{where}", err=True)
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"error: {redact_text(' '.join(e.format_message().split()))}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_FAIL
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the last line of defence, still redacted
        if os.environ.get("CUTOVER_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        click.echo(f"error: unexpected {type(e).__name__}: {redact_text(first)} (set CUTOVER_DEBUG=1 for the traceback)",
                   err=True)
        return EXIT_PARTIAL


def write_text_atomic(path, text: str, *, mode: int = 0o644) -> None:
    """Write a command's output file whole or not at all (``cutover.core.osutil.atomic_write``)."""
    atomic_write(Path(path), text, mode=mode)


def human_duration(seconds: float) -> str:
    """90 -> '1m30s', 3600 -> '1h', 5400 -> '1h30m', 42 -> '42s'."""
    s = int(round(seconds))
    for unit, n in (("h", 3600), ("m", 60)):
        if s >= n and s % n == 0:
            return f"{s // n}{unit}"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
