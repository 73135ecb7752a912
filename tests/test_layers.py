"""The house stays layered (README "Architecture"): checks that import-linter cannot make.

import-linter (``make test`` runs ``lint-imports``; contracts in pyproject.toml) enforces the
layers, the registry as the only way to a side, and the independence of the sides. It reads
module-level and function-level imports alike, but it does not look for circles inside a
layer, nor for private names taken across packages. These tests do, from the source text
(``ast``), so a function-level import cannot hide a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cutover", "legacy", "flows", "checks")
# The only places in cutover/ allowed to name a side's package: the registry (it maps side
# names to their modules) and the demos (they tell a story across sides).
SIDE_IMPORT_ALLOWED = ("cutover.registry", "cutover.demos")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "migrations" in path.parts and "versions" in path.parts:
                continue
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts)
            if name.endswith(".__init__"):
                name = name[: -len(".__init__")]
            mods[name] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path):
    """Yield (line, imported module, imported name or None) for every first-party import,
    wherever it stands in the file (module level, function level, TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PACKAGES:
                    yield node.lineno, a.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                if not is_pkg:
                    parts = parts[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                yield node.lineno, base, a.name


def _target(base: str, name: str | None) -> str | None:
    """The first-party module an import makes this module depend on."""
    if name and f"{base}.{name}" in MODULES:
        return f"{base}.{name}"
    t = base
    while t and t not in MODULES:
        t = t.rpartition(".")[0]
    return t or None


def _graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for _, base, name in _imports(mod, path):
            t = _target(base, name)
            if t and t != mod:
                g[mod].add(t)
    return g


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def _package(mod: str) -> str:
    path = MODULES[mod]
    return mod if path.name == "__init__.py" else mod.rpartition(".")[0]


def test_the_graph_is_read():
    g = _graph()
    assert len(g) > 100, "the first-party modules were not found"
    assert "cutover.core.errors" in g["cutover.core.config"], "a plain import was not seen"


def test_cycles_are_found():
    """The circle finder itself: a planted circle, one edge of it at function level."""
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(g) == [["a", "b", "c"]]


def test_no_first_party_import_circle():
    cycles = _cycles(_graph())
    assert not cycles, "first-party import circles (function-level imports included):\n" + "\n".join(
        " -> ".join(c) for c in cycles)


def test_no_private_name_taken_from_another_package():
    bad = []
    for mod, path in MODULES.items():
        for line, base, name in _imports(mod, path):
            if not name or not name.startswith("_") or name.startswith("__"):
                continue
            target = _target(base, None)
            if target is None:
                continue
            if _package(target) != _package(mod):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {name} from {base}")
    assert not bad, "private names imported from another package (make them public):\n" + "\n".join(bad)


def test_cutover_names_no_side_outside_registry_and_demos():
    bad = []
    for mod, path in MODULES.items():
        if not mod.startswith("cutover.") or mod.startswith(SIDE_IMPORT_ALLOWED):
            continue
        for line, base, _ in _imports(mod, path):
            if base.split(".")[0] in ("legacy", "flows"):
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {base}")
    assert not bad, "cutover/ imports a side directly (go through the protocol and cutover.registry):\n" + "\n".join(bad)


@pytest.mark.parametrize("pkg", PACKAGES)
def test_rooms_are_small(pkg):
    """Every module readable in one sitting."""
    limit = 700
    big = [f"{p.relative_to(ROOT)}: {n} lines" for m, p in MODULES.items() if m.split(".")[0] == pkg
           for n in [len(p.read_text().splitlines())] if n > limit]
    assert not big, f"modules over {limit} lines (split them by concern):\n" + "\n".join(big)
