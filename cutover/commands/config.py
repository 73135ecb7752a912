"""config show|init: the workspace's settings (no database touched)."""

from __future__ import annotations

from dataclasses import dataclass

from cutover.commands.result import Result
from cutover.core.config import DEFAULT_TOML, Settings

@dataclass
class ConfigShow(Result):
    settings: dict  # Settings.public_dict(): secrets redacted, with their sources

    def as_dict(self) -> dict:
        return self.settings


def config_show(settings: Settings) -> ConfigShow:
    """The resolved settings, secrets redacted, and where each came from."""
    return ConfigShow(settings.public_dict())


@dataclass
class ConfigInit(Result):
    path: str
    action: str  # exists | would_write | wrote
    text: str


def config_init(settings: Settings, *, dry_run: bool = False) -> ConfigInit:
    """Write a commented cutover.toml into the workspace (never overwrites)."""
    path = settings.config_file
    if path.exists():
        return ConfigInit(str(path), "exists", "")
    if dry_run:
        return ConfigInit(str(path), "would_write", DEFAULT_TOML)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEFAULT_TOML)
    return ConfigInit(str(path), "wrote", DEFAULT_TOML)
