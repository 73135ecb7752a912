"""Optional parts of cutover and the extra that installs each (``pip install 'cutover[spark]'``).

``pip install cutover`` brings the core: the records stores, the arrow engine, the APScheduler,
cron and batch sides, Prefect, Iceberg. The heavy parts are extras (pyproject.toml):

============  ===============================  ==============================================
extra         brings                           needed by
============  ===============================  ==============================================
``spark``     pyspark[connect], pandas         ``[ingest] engine = "spark"``, Spark parity checks
``rq``        rq, redis                        the RQ legacy side (``cutover rq …``)
``quality``   great_expectations, duckdb       the ``quality`` and ``values`` parity checks
``plots``     matplotlib                       the duration plots of the HTML parity report
``all``       all of the above
============  ===============================  ==============================================

A command that needs a missing extra exits 2 with one line naming it (:func:`require`).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from cutover.core.errors import InputError

# top-level module -> the extra that installs it
EXTRA_OF = {
    "pyspark": "spark",
    "pandas": "spark",
    "rq": "rq",
    "redis": "rq",
    "great_expectations": "quality",
    "duckdb": "quality",
    "matplotlib": "plots",
}


class MissingExtra(InputError):
    """An optional part of cutover is not installed (exit 2, the fix names the extra)."""

    def __init__(self, module: str, extra: str, what: str, otherwise: str | None = None):
        self.module = module
        self.extra = extra
        super().__init__(f"{what} needs {module}, which is not installed",
                         fix=f"pip install 'cutover[{extra}]' (or 'cutover[all]')" + (f", or {otherwise}" if otherwise else ""))


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, *, what: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` (dotted names allowed) or raise :class:`MissingExtra` naming the extra
    that installs it. ``what``: what needs it, for the message ("the Spark engine")."""
    top = module.split(".")[0]
    extra = extra or EXTRA_OF.get(top, "all")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] != top and available(top):
            raise  # the package is there but broken: not a missing extra
        raise MissingExtra(top, extra, what) from None


def require_installed(module: str, *, what: str, extra: str | None = None, otherwise: str | None = None) -> None:
    """Like :func:`require` without importing: the early check of a command, before it writes
    anything. ``otherwise``: how to do without it, added to the fix."""
    top = module.split(".")[0]
    if not available(top):
        raise MissingExtra(top, extra or EXTRA_OF.get(top, "all"), what, otherwise)
