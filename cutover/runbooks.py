"""Operational runbooks: Markdown files whose ```sh blocks are the steps.

Format (see runbooks/*.md):

- the first ``# `` heading is the title, the first paragraph after it the summary;
- every fenced block whose info string is exactly ``sh`` is one step, run by
  ``cutover runbook run`` with ``bash -euo pipefail``; other fences (``text``,
  ``console``) are documentation and never run;
- a step's title is the last line of prose before its block (list markers and
  ``#`` stripped);
- ``{{name}}`` is a placeholder (``[A-Za-z_][A-Za-z0-9_]*``), filled from
  ``--var name=value``; the value is inserted shell-quoted, so a placeholder is
  written bare (``--reason {{reason}}``, never ``"{{reason}}"``). Every
  placeholder of the runbook must be given, and every ``--var`` used, before
  anything runs;
- a comment line ``# expect-exit: 0,1`` in a block lists the exit codes the step
  accepts (default 0), e.g. for ``cutover status`` mid-incident. Under ``-e`` the
  first command that exits non-zero ends the block with its code, so a command that
  may legitimately exit non-zero goes last in its block (or alone);
- ``cutover`` in a block runs ``<this python> -m cutover``: the same interpreter
  and venv as the runner.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from cutover.core.errors import InputError

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ANY_BRACES = re.compile(r"\{\{.*?\}\}")
_QUOTED = re.compile(r"""(["'])\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\}\1""")
_EXPECT = re.compile(r"^\s*#\s*expect-exit\s*:\s*(.+?)\s*$", re.IGNORECASE)
_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([^\s`]*)\s*$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def default_dir() -> Path:
    """``runbooks/`` of this checkout (next to the package), else ./runbooks."""
    here = Path(__file__).resolve().parent.parent / "runbooks"
    return here if here.is_dir() else Path("runbooks").absolute()


@dataclass(frozen=True)
class Step:
    number: int
    title: str
    code: str  # as written, placeholders unfilled
    expect: tuple[int, ...] = (0,)
    line: int = 0  # of the opening fence, 1-based

    @property
    def placeholders(self) -> list[str]:
        return list(dict.fromkeys(PLACEHOLDER.findall(self.code)))

    def render(self, values: Mapping[str, str]) -> str:
        return PLACEHOLDER.sub(lambda m: shlex.quote(values[m.group(1)]), self.code)


@dataclass(frozen=True)
class Runbook:
    name: str
    path: Path
    title: str
    summary: str
    text: str
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def placeholders(self) -> list[str]:
        return list(dict.fromkeys(p for s in self.steps for p in s.placeholders))


def _step_title(prose: list[str]) -> str:
    """The last paragraph before the block, list marker stripped, first sentence."""
    para: list[str] = []
    for line in reversed(prose):
        if not line.strip():
            if para:
                break
            continue
        para.insert(0, line.strip())
    t = re.sub(r"^(#+|[-*+]|\d+[.)])\s+", "", " ".join(para)).strip()
    first = re.split(r"(?<=[.:!?])\s", t, maxsplit=1)[0]
    t = (first if len(first) >= 10 else t).rstrip(":").rstrip(".")
    if len(t) > 110:
        t = t[:107].rsplit(" ", 1)[0].rstrip(",;(") + " ..."
    return t


def parse(text: str, *, name: str, path: Path | None = None) -> Runbook:
    """Parse and lint one runbook; InputError names the line of any mistake."""
    where = str(path or name)
    lines = text.splitlines()
    title, summary_lines, steps = "", [], []
    prose: list[str] = []
    i = 0
    in_summary = False
    while i < len(lines):
        line = lines[i]
        m = _FENCE.match(line)
        if m:
            fence, info, start = m.group(2), m.group(3), i
            body = []
            i += 1
            while i < len(lines) and not (lines[i].strip().startswith(fence[0] * len(fence))
                                          and lines[i].strip().strip(fence[0]) == ""):
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise InputError(f"{where}:{start + 1}: code block is not closed", fix=f"close it with {fence}")
            i += 1
            in_summary = False
            if info != "sh":
                continue
            code = "\n".join(body).strip("\n")
            if not code.strip():
                raise InputError(f"{where}:{start + 1}: empty sh block", fix="remove it or write the commands")
            expect: tuple[int, ...] = (0,)
            for b in body:
                em = _EXPECT.match(b)
                if em:
                    try:
                        expect = tuple(sorted({int(x) for x in re.split(r"[,\s]+", em.group(1)) if x}))
                    except ValueError:
                        raise InputError(f"{where}:{start + 1}: bad expect-exit {em.group(1)!r}",
                                         fix="write e.g. `# expect-exit: 0,1`") from None
            q = _QUOTED.search(code)
            if q:
                raise InputError(f"{where}:{start + 1}: quoted placeholder {q.group(0)}",
                                 fix="write placeholders bare: the value is inserted shell-quoted")
            for bad in _ANY_BRACES.findall(code):
                if not PLACEHOLDER.fullmatch(bad):
                    raise InputError(f"{where}:{start + 1}: {bad} is not a placeholder",
                                     fix="use {{name}} with letters, digits and _")
            steps.append(Step(len(steps) + 1, _step_title(prose) or f"step {len(steps) + 1}", code, expect, start + 1))
            prose = []
            continue
        if not title and line.startswith("# "):
            title = line[2:].strip()
            in_summary = True
        elif in_summary:
            if line.strip():
                if line.startswith("#"):
                    in_summary = False
                else:
                    summary_lines.append(line.strip())
            elif summary_lines:
                in_summary = False
        prose.append(line)
        i += 1
    if not title:
        raise InputError(f"{where}: no `# Title` line", fix="start the runbook with `# <what it is for>`")
    if not steps:
        raise InputError(f"{where}: no ```sh block", fix="a runbook needs at least one command block")
    return Runbook(name, path or Path(name), title, " ".join(summary_lines), text, tuple(steps))


def names(directory: Path | None = None) -> list[str]:
    d = directory or default_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.md") if p.stem.lower() != "readme" and _NAME.match(p.stem))


def load(name: str, directory: Path | None = None) -> Runbook:
    d = directory or default_dir()
    stem = name[:-3] if name.endswith(".md") else name
    path = d / f"{stem}.md"
    if not _NAME.match(stem) or not path.is_file():
        known = names(d)
        raise InputError(f"no runbook {name!r} in {d}",
                         fix=f"one of: {', '.join(known)}" if known else "add Markdown runbooks there")
    return parse(path.read_text(), name=stem, path=path)


def load_all(directory: Path | None = None) -> list[Runbook]:
    d = directory or default_dir()
    return [load(n, d) for n in names(d)]


def parse_vars(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise InputError(f"--var {item!r} is not NAME=VALUE", fix="e.g. --var ingestion=orders")
        if key in out:
            raise InputError(f"--var {key} given twice", fix="give each variable once")
        out[key] = value
    return out


def check_vars(rb: Runbook, values: Mapping[str, str]) -> None:
    """Every placeholder given, every --var used: before anything runs."""
    needed = rb.placeholders
    missing = [p for p in needed if p not in values]
    unknown = [k for k in values if k not in needed]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(f"--var {p}=..." for p in missing))
    if unknown:
        problems.append(f"unknown --var {', '.join(unknown)}")
    if problems:
        raise InputError(f"runbook {rb.name}: {'; '.join(problems)}",
                         fix=f"it takes {', '.join(needed) if needed else 'no variables'}")
    empty = [p for p in needed if values[p] == ""]
    if empty:
        raise InputError(f"runbook {rb.name}: --var {', '.join(empty)} is empty", fix="give a value")


def preamble(python: str | None = None) -> str:
    """Bash lines before each block: `cutover` is this interpreter's cutover."""
    exe = shlex.quote(python or sys.executable)
    return f'cutover() {{ {exe} -m cutover "$@"; }}\nexport -f cutover\n'


@dataclass
class StepResult:
    step: Step
    exit_code: int | None  # None: not run (skipped / dry run)
    ok: bool
    skipped: bool = False


def run_step(step: Step, values: Mapping[str, str], *, env: Mapping[str, str] | None = None,
             cwd: Path | None = None, python: str | None = None) -> int:
    """Run one block with bash -euo pipefail; output goes straight to the terminal."""
    script = preamble(python) + step.render(values) + "\n"
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=dict(env if env is not None else os.environ),
                          cwd=cwd)
    return proc.returncode


def execute(rb: Runbook, values: Mapping[str, str], *, echo: Callable[[str], None],
            confirm: Callable[[Step], str] | None = None, dry_run: bool = False, start: int = 1,
            env: Mapping[str, str] | None = None, python: str | None = None) -> tuple[int, list[StepResult]]:
    """Run the steps from ``start`` on, stopping at the first failing one.

    ``confirm(step)`` returns "y" (run), "s" (skip) or "q" (stop); None runs all.
    Returns (exit code, results): 0 all ran, 1 stopped by the operator, 3 a step failed.
    """
    check_vars(rb, values)
    if not 1 <= start <= len(rb.steps):
        raise InputError(f"--from {start}: runbook {rb.name} has steps 1..{len(rb.steps)}", fix="pick one of them")
    results: list[StepResult] = []
    total = len(rb.steps)
    for step in rb.steps[start - 1:]:
        echo("")
        echo(f"== step {step.number}/{total}: {step.title}")
        for line in step.render(values).splitlines():
            if _EXPECT.match(line):
                continue
            echo(f"   $ {line}" if line.strip() and not line.lstrip().startswith("#") else f"     {line}")
        if step.expect != (0,):
            echo(f"   (accepts exit {', '.join(map(str, step.expect))})")
        if dry_run:
            results.append(StepResult(step, None, True, skipped=True))
            continue
        answer = confirm(step) if confirm else "y"
        if answer == "q":
            echo(f"stopped before step {step.number} by the operator; resume with --from {step.number}")
            return 1, results
        if answer == "s":
            echo(f"   skipped step {step.number}")
            results.append(StepResult(step, None, True, skipped=True))
            continue
        t0 = time.monotonic()
        rc = run_step(step, values, env=env, python=python)
        took = time.monotonic() - t0
        ok = rc in step.expect
        results.append(StepResult(step, rc, ok))
        if not ok:
            echo(f"step {step.number}/{total} FAILED: exit {rc} (accepts {', '.join(map(str, step.expect))}); "
                 f"nothing after it ran. Fix the cause, then resume with --from {step.number}")
            return 3, results
        echo(f"   step {step.number} ok (exit {rc}, {took:.1f}s)")
    return 0, results
