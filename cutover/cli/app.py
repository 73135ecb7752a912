"""One App object owns output, settings and exits (hatch-style)."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import date, datetime
from functools import cached_property
from typing import Any, Iterable, Sequence

import click

from cutover.core.errors import EXIT_PARTIAL, CutoverError
from cutover.core.redact import redact_text


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg = redact_text(record.getMessage())
            record.args = ()
        except Exception:  # noqa: BLE001 - never let logging break the command
            pass
        return True


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_cutover", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._cutover = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("alembic", "pyiceberg", "apscheduler", "httpx", "prefect"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _default(o: Any):
    if isinstance(o, (datetime, date)):
        return o.isoformat()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


class App:
    def __init__(self, verbose: int = 0):
        self.verbose = verbose
        setup_logging(verbose)

    @cached_property
    def settings(self):
        from cutover.core.config import load_settings

        return load_settings()

    # -- output ----------------------------------------------------------------------
    def echo(self, text: str = "", *, err: bool = False) -> None:
        click.echo(redact_text(text), err=err)

    def info(self, text: str) -> None:
        """Progress / notices: stderr, so stdout stays parseable."""
        click.echo(redact_text(text), err=True)

    def json(self, obj: Any) -> None:
        click.echo(redact_text(json.dumps(obj, indent=2, default=_default, sort_keys=False)))

    def table(self, rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
        rows = [["" if v is None else str(v) for v in r] for r in rows]
        widths = [len(h) for h in headers]
        for r in rows:
            widths = [max(w, len(c)) for w, c in zip(widths, r)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        self.echo(fmt.format(*headers).rstrip())
        self.echo(fmt.format(*["-" * w for w in widths]).rstrip())
        for r in rows:
            self.echo(fmt.format(*r).rstrip())


_command_started_at: float | None = None
_invocations = 0


def command_started_at() -> float:
    """When the running command started (Unix time): the process's own start for the first
    command of a process (so time-to-safe includes interpreter start-up, as the on-call engineer
    experiences it), the invocation itself for later in-process commands (the demo, tests)."""
    if _command_started_at is None:
        from cutover.engine.pause import process_started_at

        return process_started_at()
    return _command_started_at


def run_main(cli: click.Group, argv: list[str] | None) -> int:
    global _command_started_at, _invocations
    import time

    _invocations += 1
    if _invocations > 1:
        _command_started_at = time.time()
    try:
        rv = cli.main(args=argv, prog_name="cutover", standalone_mode=False)
        # click returns the code of a raised Exit instead of raising it in this mode
        return rv if isinstance(rv, int) else 0
    except CutoverError as e:
        click.echo(f"error: {redact_text(e.one_line())}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence, still redacted
        if os.environ.get("CUTOVER_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        click.echo(f"error: unexpected {type(e).__name__}: {redact_text(first)} (set CUTOVER_DEBUG=1 for the traceback)",
                   err=True)
        return EXIT_PARTIAL


pass_app = click.make_pass_decorator(App)


class LazySubGroup(click.Group):
    """A group whose sub-commands live in other modules, imported on use."""

    lazy: dict[str, tuple[str, str]] = {}

    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in self.lazy:
            return cmd
        import importlib

        mod, _, attr = self.lazy[name][0].partition(":")
        return getattr(importlib.import_module(mod), attr)

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy:
                rows.append((name, self.lazy[name][1]))
            else:
                cmd = super().get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit=80)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
