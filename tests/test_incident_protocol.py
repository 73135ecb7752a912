"""The incident-control protocol and the engine's layering (issue #13), without any orchestrator running."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

ENGINE = ROOT / "cutover" / "engine"
ALLOWED = ("cutover.core", "cutover.protocol", "cutover.registry", "cutover.engine")


def first_party_imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, module, at module level?) of every cutover/legacy/flows/checks import of a file."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("cutover", "legacy", "flows", "checks"):
                out.append((node.lineno, name, id(node) in top))
    return out


# Function-level imports the engine may make: none to dodge a cycle, only the lazy load of a module
# whose import costs every command's start-up — the pydantic models of the plan file
# (cutover.core.schema), loaded where a plan file is read, not on `cutover pause`'s way to its fence.
LAZY_ALLOWED = ("cutover.core.schema",)


def test_the_engine_imports_only_core_protocol_and_registry_at_module_level():
    bad = []
    for path in sorted(ENGINE.glob("*.py")):
        for line, module, at_top in first_party_imports(path):
            if not module.startswith(ALLOWED):
                bad.append(f"{path.name}:{line}: imports {module}")
            elif not at_top and not module.startswith(LAZY_ALLOWED):
                bad.append(f"{path.name}:{line}: function-level import of {module}")
    assert bad == []


def test_no_underscore_name_is_imported_by_the_engine():
    bad = []
    for path in sorted(ENGINE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                bad += [f"{path.name}:{node.lineno}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_")]
    assert bad == []


def test_every_registered_side_implements_the_incident_protocol(workspace_env):
    from cutover.core.workspace import Workspace
    from cutover.protocol import IncidentReader, IncidentWriter
    from cutover.registry import incident_controls, incident_sides

    ws = Workspace()
    assert list(incident_sides())[:1] == ["legacy"] and list(incident_sides())[-1] == "prefect"  # fence order
    controls = incident_controls(ws, start_prefect=False)
    assert [c.name for c in controls] == ["legacy", "prefect"]  # no RQ setup here
    for c in controls:
        assert isinstance(c, IncidentWriter) and isinstance(c, IncidentReader)
        c.close()


def test_snapshot_parts_are_json_and_a_version_1_row_reads_as_today(workspace_env):
    import json

    from cutover.core.state.snapshots import upgrade_body

    v1 = {"version": 1, "selection": {"all": True, "select": None, "ids": ["a"]}, "pool_fence": True,
          "legacy": {"jobs": {"a": {"paused": False, "next_run_time": None}}, "batch": {"a": False},
                     "rq": {"holds": {"a": True}}},
          "prefect": {"api_url": "u", "pools": {"p": {"paused": False, "queues": {}}},
                      "deployments": [], "deployments_complete": True},
          "rq_fence": {"suspended_before": False},
          "progress": {"legacy_fence_at": "t", "pool_fence_at": "t", "legacy_durable_at": "t",
                       "prefect_durable_at": "t", "durable_at": "t"}}
    b = upgrade_body(v1)
    json.dumps(b)
    assert b["sides"]["legacy"]["jobs"] == v1["legacy"]["jobs"] and b["sides"]["rq"] == {"holds": {"a": True}}
    assert b["sides"]["prefect"]["complete"] is True and b["fences"]["prefect"]["pools"] == v1["prefect"]["pools"]
    assert b["fences"]["rq"] == {"suspended_before": False}
    assert b["progress"]["fenced"] == {"legacy": "t", "prefect": "t"}
    assert b["progress"]["durable"] == {"legacy": "t", "rq": "t", "prefect": "t"}
