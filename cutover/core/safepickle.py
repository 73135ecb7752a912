"""Read pickles written by other programs without running their code.

A team's APScheduler job states and RQ job payloads are pickles. Reading them with ``pickle``
would import (and run) the team's modules and fail on any module that moved. :func:`safe_loads`
imports only trigger, date/time and plain container classes; anything else becomes an
:class:`Opaque` stand-in naming its ``module:Class`` -- so cutover can say *which* object it
could not read, and never executes foreign code while reading.
"""

from __future__ import annotations

import io
import pickle

_SAFE_MODULES = ("apscheduler.triggers", "datetime", "zoneinfo", "pytz", "dateutil.tz", "tzlocal", "decimal",
                 "uuid", "collections", "fractions", "pathlib")
_SAFE_BUILTINS = {"set", "frozenset", "bytearray", "complex", "range", "slice", "object", "list", "dict", "tuple",
                  "str", "int", "float", "bool", "bytes"}


class Opaque:
    """Stands in for an object of a class we will not (or cannot) import while reading a job state."""

    ref = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<unreadable {self.ref}>"


_opaque_classes: dict[str, type] = {}


def _opaque(module: str, name: str) -> type:
    ref = f"{module}:{name}"
    cls = _opaque_classes.get(ref)
    if cls is None:
        cls = _opaque_classes[ref] = type(f"Opaque_{name.replace('.', '_')}", (Opaque,), {"ref": ref})
    return cls


def _is_safe_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in _SAFE_MODULES)


def _safe_getattr(obj, name: str):
    """``getattr`` as pickles use it (``ZoneInfo._unpickle``), on the allowed classes only."""
    if isinstance(obj, type) and not issubclass(obj, Opaque) and _is_safe_module(obj.__module__) \
            and not name.startswith("__"):
        return getattr(obj, name)
    return _opaque(getattr(obj, "__module__", "?"), f"{getattr(obj, '__name__', type(obj).__name__)}.{name}")


class _StateUnpickler(pickle.Unpickler):
    """Unpickles job states importing only trigger, date/time and plain container classes.

    Anything else (a team's own classes in job args, a module that no longer
    exists) becomes an :class:`Opaque` stand-in: reading a job store never
    runs its code and never fails on a missing module.
    """

    def find_class(self, module: str, name: str):
        if module == "builtins" and name == "getattr":
            return _safe_getattr
        safe = (
            (module == "builtins" and name in _SAFE_BUILTINS)
            or (module == "copyreg" and name in ("_reconstructor", "__newobj__", "__newobj_ex__"))
            or (module == "_codecs" and name == "encode")
            or _is_safe_module(module)
        )
        if safe:
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                pass
        return _opaque(module, name)


def safe_loads(blob: bytes):
    """The object a pickle holds, with foreign classes as :class:`Opaque` stand-ins."""
    return _StateUnpickler(io.BytesIO(blob)).load()
