"""demo: recreate the demo workspace and run one legacy orchestrator's end-to-end story."""

from __future__ import annotations

from typing import Callable

from cutover.core.config import Settings
from cutover.core.db import dispose_engines, reset_schema_cache
from cutover.demos.autoloader import DEFAULT_SCENARIO, SCENARIOS, load_scenario, run_scenario

__all__ = ["DEFAULT_SCENARIO", "SCENARIOS", "demo"]


def demo(settings: Settings, scenario: str, invoke: Callable[[list[str]], int], echo: Callable[[str], None], *,
         force: bool = False, seed: int | None = None) -> int:
    """Run the story ``scenario``; ``invoke(argv)`` runs one `cutover` command line of it and
    returns its exit code. Returns the story's exit code. An unknown scenario fails before
    anything is touched."""
    load_scenario(scenario)
    dispose_engines()
    reset_schema_cache()
    return run_scenario(scenario, invoke, echo, settings, force=force, seed=seed)
