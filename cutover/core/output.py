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
import sys
from datetime import date, datetime
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


def json_default(o: Any):
    """``json.dumps`` default: dates as ISO text, sets and tuples as lists, the rest as str."""
    if isinstance(o, (datetime, date)):
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


def table_lines(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> list[str]:
    """A left-aligned text table: header, dashes, rows (None prints empty)."""
    rows = [["" if v is None else str(v) for v in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers).rstrip(), fmt.format(*["-" * w for w in widths]).rstrip()]
    out.extend(fmt.format(*r).rstrip() for r in rows)
    return out


class Output:
    """Output of one command line: stdout for results, stderr for progress, secrets redacted."""

    def __init__(self, verbose: int = 0):
        self.verbose = verbose
        setup_logging(verbose)

    @cached_property
    def settings(self):

        return load_settings()

    def echo(self, text: str = "", *, err: bool = False) -> None:
        click.echo(redact_text(text), err=err)

    def info(self, text: str) -> None:
        """Progress / notices: stderr, so stdout stays parseable."""
        click.echo(redact_text(text), err=True)

    def json(self, obj: Any) -> None:
        click.echo(to_json(obj))

    def table(self, rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
        for line in table_lines(rows, headers):
            self.echo(line)


pass_output = click.make_pass_decorator(Output)


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
