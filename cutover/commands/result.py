"""The base of every command's result: a dataclass that turns itself into the JSON of `--json`."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any


def plain(value: Any) -> Any:
    """A result's value as JSON-ready data: nested results by their ``as_dict``, containers copied."""
    if hasattr(value, "as_dict") and callable(value.as_dict):
        return value.as_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Result:
    """Mixin of the command results (dataclasses): ``as_dict()`` is what `--json` prints,
    ``exit_code`` what the command line exits with (0 unless the result says otherwise)."""

    @property
    def exit_code(self) -> int:
        return 0

    def as_dict(self) -> Any:
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]
