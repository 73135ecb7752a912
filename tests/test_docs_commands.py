"""Every `cutover …` line in README.md, docs/ and runbooks/ names a real command path and real
options (issue #18). The command tree is walked as click resolves it: the root group, the lazy
verbs (the sides' included), sub-groups and their default commands (`cutover parity ID` is
`cutover parity check ID`). A doc line that drifts from the CLI fails here, naming file and line.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from cutover.cli import cli as root
from cutover.cli.app import DefaultGroup

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md")), *sorted((ROOT / "runbooks").glob("**/*.md"))]
# where a shell command line stops
STOP = {"|", "||", "&&", ";", ">", ">>", "2>&1", "&", "<"}
_INLINE = re.compile(r"`(cutover\s[^`]+)`")
# `cutover` in command position only: at the start of a line or after a prompt, `python -m`, a
# shell operator or keyword, an env assignment or a path; not as an argument's value
# (`prefect worker start --pool cutover`), a YAML value or a Python import (`from cutover import sdk`)
_IN_BLOCK = re.compile(r"(?:^\s*|[$(|;&`]\s*|\bpython3? -m\s+|(?:^|\s)(?:if|then|do|while|until|!|sudo|exec|time|env)\s+"
                       r"|(?:^|\s)[A-Za-z_][A-Za-z0-9_]*=\S*\s+|(?:^|\s)[\w.~/-]*/)(cutover\s+[^\n`]*)")


def doc_lines() -> list[tuple[str, int, str]]:
    """(file, line number, 'cutover …' text) for every command line in the docs: inline code spans
    anywhere, and every line of a fenced code block that runs cutover."""
    out = []
    for path in DOCS:
        in_block = False
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if line.lstrip().startswith("```"):
                in_block = not in_block
                continue
            if in_block:
                code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
                for m in _IN_BLOCK.finditer(code):
                    out.append((str(path.relative_to(ROOT)), n, m.group(1)))
            else:
                for m in _INLINE.finditer(line):
                    out.append((str(path.relative_to(ROOT)), n, m.group(1)))
    return out


def _tokens(text: str) -> list[str]:
    text = text.replace("…", " ").replace("...", " ")
    try:
        toks = shlex.split(text, comments=False)
    except ValueError:  # an unbalanced quote in a usage line: split on blanks
        toks = text.split()
    out = []
    for t in toks[1:]:
        if t in STOP or t.startswith(("$(", "`")):
            break
        out.append(t.strip("[](){},"))
    return [t for t in out if t]


def _options(cmd: click.Command, ctx: click.Context) -> set[str]:
    names = set(ctx.help_option_names)
    for p in cmd.get_params(ctx):
        if isinstance(p, click.Option):
            names.update(p.opts)
            names.update(p.secondary_opts)
    return names


def check_line(text: str) -> str | None:
    """None when ``text`` names a real command path with real options, else why not."""
    cmd: click.Command = root
    ctx = click.Context(root, info_name="cutover")
    path = ["cutover"]
    toks = _tokens(text)
    i = 0
    while isinstance(cmd, click.Group) and i < len(toks):
        tok = toks[i]
        group_opts = _options(cmd, ctx)
        if tok.startswith("-") and tok.split("=", 1)[0] in group_opts:
            # an option of the group itself (`cutover -v status`, `cutover pause --all --reason R`)
            opt = next(p for p in cmd.get_params(ctx) if tok.split("=", 1)[0] in (*p.opts, *p.secondary_opts)) \
                if tok.split("=", 1)[0] not in ctx.help_option_names else None
            takes_value = opt is not None and isinstance(opt, click.Option) and not opt.is_flag and not opt.count
            i += 2 if takes_value and "=" not in tok else 1
            continue
        alternatives = [t for t in tok.split("|") if t] if not tok.startswith("-") else [tok]
        subs = [cmd.get_command(ctx, t) for t in alternatives]
        if all(s is not None for s in subs) and subs:
            for t in alternatives[1:]:  # `rq pause|resume`: every alternative must be a command
                path_alt = " ".join([*path, t])
                if cmd.get_command(ctx, t) is None:
                    return f"{path_alt}: no such command"
            sub, name = subs[0], alternatives[0]
            i += 1
        elif isinstance(cmd, DefaultGroup):
            sub, name = cmd.get_command(ctx, cmd.default), f"({cmd.default})"  # the token is the default's
        elif tok.startswith("-"):
            return f"{' '.join(path)}: no option {tok}"
        else:
            return f"{' '.join(path)}: no command {tok!r}"
        path.append(name)
        ctx = click.Context(sub, info_name=name, parent=ctx)
        cmd = sub
    if isinstance(cmd, click.Group):
        return None  # `cutover parity` alone, `cutover legacy`: a group named as such
    own = _options(cmd, ctx) | set(ctx.help_option_names)
    for tok in toks[i:]:
        if tok == "--":  # end of options: what follows is arguments (`cron exec --job ID -- CMD ...`)
            break
        for alt in tok.split("|"):
            if alt.startswith("-") and not re.match(r"^-\d", alt) and alt != "-":
                if alt.split("=", 1)[0] not in own:
                    return f"{' '.join(path)}: no option {alt.split('=', 1)[0]}"
    return None


LINES = doc_lines()


def test_the_docs_name_commands_at_all():
    assert len(LINES) >= 40, LINES[:5]


@pytest.mark.parametrize("where,line,text", LINES, ids=[f"{f}:{n}" for f, n, _ in LINES])
def test_doc_command_exists(where, line, text):
    problem = check_line(text)
    assert problem is None, f"{where}:{line}: `{text}`: {problem}"


@pytest.mark.parametrize("text,needle", [
    ("cutover statsu", "no command 'statsu'"),
    ("cutover runs --sinse 1d", "no option --sinse"),
    ("cutover ledger retry orders --all", "no option --all"),
    ("cutover parity orders --colour red", "no option --colour"),
    ("cutover cron exec --jobb sync -- /bin/true", "no option --jobb"),
])
def test_the_checker_catches_drift(text, needle):
    problem = check_line(text)
    assert problem is not None and needle in problem, problem


def test_the_checker_accepts_real_lines():
    for text in ("cutover ledger retry orders --status FAILED --dry-run", "cutover parity orders --format html",
                 "cutover -v status --json", "cutover ledger orders --summary", "cutover parity history orders",
                 "cutover cron exec --home /srv/c --job sync -- /bin/bash -c 'x --full'"):
        assert check_line(text) is None, (text, check_line(text))


def test_only_cutover_in_command_position_is_a_command_line():
    for code in ("cutover status", "$ cutover status", "15 2 * * * /venv/bin/python -m cutover cron exec --job a",
                 "if cutover ledger x --summary | grep -q P; then", "CUTOVER_HOME=/srv/c cutover status",
                 "x && cutover status", "/usr/local/bin/cutover status", "see `cutover schedules verify b`"):
        assert [m.group(1) for m in _IN_BLOCK.finditer(code)], code
    for code in ("prefect worker start --pool cutover --type process", "from cutover import sdk",
                 "queue: cutover", "pip install cutover[all]"):
        assert not [m.group(1) for m in _IN_BLOCK.finditer(code)], code
