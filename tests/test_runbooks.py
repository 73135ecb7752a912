"""Runbooks: the format and the runner, then EVERY runbook of runbooks/ executed against a demo
workspace (`cutover demo`) so that none of them can rot.

The fast part needs nothing. The incident story (marked slow + prefect) builds one demo
workspace for the module; the demo runs its own embedded Prefect server (it refuses
PREFECT_API_URL) and stops it at the end, which is exactly the starting point of the
prefect-server-down runbook. The workspace's Prefect home is a ``cutover-prefect-*``
directory with an ``owner.pid``, so a server left behind by a killed pytest is stopped by
tests.prefect_fixtures.reap_orphans on the next run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import pytest

from cutover.core.errors import InputError
from cutover.runbooks import check_vars, execute, load_all, names, parse, parse_vars

ROOT = Path(__file__).resolve().parent.parent
CUTOVER = [sys.executable, "-m", "cutover"]
# every runbook of runbooks/ and the test of this module that runs it
EXERCISED = {
    "prefect-server-down": "test_prefect_server_down",
    "stuck-claims": "test_stuck_claims",
    "emergency-pause-everything": "test_emergency_pause_everything",
    "resume-after-incident": "test_resume_after_incident",
    "roll-back-a-wave": "test_roll_back_a_wave",
}
SAMPLE = '''# Sample

What it is for.

## Steps

1. Look first.

```sh
# expect-exit: 0,1
echo look {{who}}
exit 1
```

2. Documentation only, never run:

```text
rm -rf /
```

3. Then act:

```sh
echo act {{who}} {{what}} > out.txt
```
'''


# -- format and runner (fast) ---------------------------------------------------------------------

def test_parse_steps_titles_placeholders_expect():
    rb = parse(SAMPLE, name="sample")
    assert rb.title == "Sample" and rb.summary == "What it is for."
    assert [(s.number, s.title, s.expect) for s in rb.steps] == [(1, "Look first", (0, 1)), (2, "Then act", (0,))]
    assert rb.placeholders == ["who", "what"]
    assert rb.steps[1].render({"who": "it's me", "what": "$(touch pwned)"}) == \
        "echo act 'it'\"'\"'s me' '$(touch pwned)' > out.txt"


@pytest.mark.parametrize("text, msg", [
    ("# T\n```sh\necho \"{{x}}\"\n```\n", "quoted placeholder"),
    ("# T\n```sh\necho {{x-y}}\n```\n", "is not a placeholder"),
    ("# T\n```sh\necho hi\n", "not closed"),
    ("# T\n```sh\n# expect-exit: zero\necho\n```\n", "bad expect-exit"),
    ("no title\n```sh\necho\n```\n", "no `# Title`"),
    ("# T\n```text\necho\n```\n", "no ```sh block"),
])
def test_parse_rejects_mistakes(text, msg):
    with pytest.raises(InputError, match=msg):
        parse(text, name="bad")


def test_vars_must_match_exactly():
    rb = parse(SAMPLE, name="sample")
    with pytest.raises(InputError, match=r"missing --var what=\.\.\."):
        check_vars(rb, {"who": "a"})
    with pytest.raises(InputError, match="unknown --var whom"):
        check_vars(rb, {"who": "a", "what": "b", "whom": "c"})
    with pytest.raises(InputError, match="not NAME=VALUE"):
        parse_vars(["who"])
    assert parse_vars(["reason=a=b c"]) == {"reason": "a=b c"}


def test_runner_stops_at_the_first_failing_step_and_resumes(tmp_path):
    (tmp_path / "b.md").write_text(
        "# B\n\n```sh\ntouch one\n```\n\n```sh\ntouch two\nfalse\ntouch never\n```\n\n```sh\ntouch three\n```\n")
    [rb] = load_all(tmp_path)
    out: list[str] = []
    env = dict(os.environ)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code, res = execute(rb, {}, echo=out.append, env=env)
        assert code == 3 and [r.exit_code for r in res] == [0, 1]
        assert any("step 2/3 FAILED: exit 1" in line and "--from 2" in line for line in out)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["b.md", "one", "two"]  # -e: `never` not touched
        code, res = execute(rb, {}, echo=out.append, env=env, start=3)
        assert code == 0 and (tmp_path / "three").exists()
    finally:
        os.chdir(cwd)


def rb_cli(*args, cwd, env=None):
    return subprocess.run([*CUTOVER, "runbook", *args], cwd=cwd, env=env or os.environ, capture_output=True,
                          text=True, timeout=120)


def test_cli_list_show_dry_run_and_validation(tmp_path):
    d = tmp_path / "books"
    d.mkdir()
    (d / "sample.md").write_text(SAMPLE)
    res = rb_cli("--dir", str(d), "list", cwd=tmp_path)
    assert res.returncode == 0 and "sample" in res.stdout and "who, what" in res.stdout
    res = rb_cli("--dir", str(d), "show", "sample", cwd=tmp_path)
    assert res.returncode == 0 and "rm -rf /" in res.stdout and "2. Then act" in res.stdout
    # missing variable: exit 2, nothing ran
    res = rb_cli("--dir", str(d), "run", "sample", "--var", "who=me", "--yes", cwd=tmp_path)
    assert res.returncode == 2 and "missing --var what=..." in res.stderr
    assert not (tmp_path / "out.txt").exists() and "look" not in res.stdout
    res = rb_cli("--dir", str(d), "run", "sample", "--var", "who=me", "--var", "what=x y", "--dry-run", cwd=tmp_path)
    assert res.returncode == 0 and "$ echo act me 'x y' > out.txt" in res.stdout and "Dry run" in res.stdout
    assert not (tmp_path / "out.txt").exists()
    res = rb_cli("--dir", str(d), "run", "sample", "--var", "who=me", "--var", "what=x y", "--yes", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "out.txt").read_text() == "act me x y\n"  # step 1 exited 1: accepted
    res = rb_cli("--dir", str(d), "run", "nope", cwd=tmp_path)
    assert res.returncode == 2 and "one of: sample" in res.stderr


def test_cli_confirms_each_step(tmp_path):
    d = tmp_path / "books"
    d.mkdir()
    (d / "c.md").write_text("# C\n\n```sh\ntouch a\n```\n\n```sh\ntouch b\n```\n\n```sh\ntouch c\n```\n")
    p = subprocess.run([*CUTOVER, "runbook", "--dir", str(d), "run", "c"], cwd=tmp_path, input="y\ns\nq\n",
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "resume with --from 3" in p.stdout
    assert (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_cutover_in_a_block_is_this_interpreter(tmp_path):
    """No `cutover` on PATH: the block still runs this very installation."""
    d = tmp_path / "books"
    d.mkdir()
    (d / "v.md").write_text("# V\n\n```sh\ncutover --version > v.txt\ncutover runbook --dir . list | grep -c V\n```\n")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env["PATH"] = "/usr/bin:/bin"
    res = subprocess.run([sys.executable, "-m", "cutover", "runbook", "--dir", str(d), "run", "v", "--yes"], cwd=d,
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    from cutover import __version__

    assert __version__ in (d / "v.txt").read_text()


# -- the runbooks of runbooks/ (fast: they parse, and every cutover command in them exists) -----

def _cutover_commands(code: str):
    """Every `cutover ...` invocation of a block: its argument list up to a shell operator."""
    ops = {"|", "||", "&&", ";", "&", ">", ">>", "<", "(", ")", ";;", "|&"}
    for line in code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
        for i, t in enumerate(tokens):
            if t == "cutover" and (i == 0 or tokens[i - 1] in ops | {"if", "then", "!", "do", "while"}):
                args = []
                for a in tokens[i + 1:]:
                    if a in ops:
                        break
                    args.append(a)
                yield args


def _check_exists(args: list[str]) -> None:
    from cutover.cli import cli

    ctx = click.Context(cli)
    cmd: click.Command = cli
    path = ["cutover"]
    rest = list(args)
    while isinstance(cmd, click.Group):
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])} | {"-h", "--help", "--version", "-v"}
        while rest and rest[0].startswith("-"):
            assert rest[0].split("=")[0] in opts, f"`{' '.join(path)}` has no option {rest[0]}"
            flag = next((p for p in cmd.params if rest[0].split("=")[0] in getattr(p, "opts", [])), None)
            rest.pop(0)
            if flag is not None and not getattr(flag, "is_flag", False) and rest:
                rest.pop(0)
        if not rest:
            return
        sub = cmd.get_command(ctx, rest[0])
        if sub is None and getattr(cmd, "default", None):  # a DefaultGroup: `ledger ID` is `ledger show ID`
            rest.insert(0, cmd.default)
            sub = cmd.get_command(ctx, cmd.default)
        assert sub is not None, f"`{' '.join(path)}` has no command {rest[0]!r} (a runbook uses it)"
        path.append(rest.pop(0))
        cmd = sub
    opts = {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])} | {"-h", "--help"}
    for a in rest:
        if a.startswith("-"):
            assert a.split("=")[0] in opts, f"`{' '.join(path)}` has no option {a}"


def test_every_runbook_parses_and_uses_only_existing_commands():
    found = names()
    assert set(found) == set(EXERCISED), f"runbooks without a test here (or tests without a runbook): " \
                                         f"{sorted(set(found) ^ set(EXERCISED))}"
    for rb in load_all():
        assert rb.title and rb.summary, rb.name
        text = rb.text.lower()
        assert "## when to use it" in text and "## what to check first" in text, rb.name
        dummy = {p: f"dummy-{p}" for p in rb.placeholders}
        for step in rb.steps:
            for args in _cutover_commands(step.render(dummy)):
                _check_exists(args)


# -- the incident story: every runbook against a demo workspace (slow, a real Prefect server) ------

def _env(home: Path, prefect_home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUTOVER_", "PREFECT_"))}
    env["CUTOVER_HOME"] = str(home)
    env["CUTOVER_PREFECT_HOME"] = str(prefect_home)
    return env


class Demo:
    def __init__(self, root: Path):
        self.root = root
        self.home = root / "cutover-home"
        self.env = _env(self.home, root / "prefect-home")

    def cli(self, *args, check=None, timeout=300):
        res = subprocess.run([*CUTOVER, *args], cwd=self.root, env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        if check is not None:
            assert res.returncode == check, f"cutover {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
        return res

    def runbook(self, name: str, **variables):
        args = ["runbook", "run", name, "--yes"]
        for k, v in variables.items():
            args += ["--var", f"{k}={v}"]
        res = self.cli(*args)
        assert res.returncode == 0, f"runbook {name} -> exit {res.returncode}\n{res.stdout}\n{res.stderr}"
        return res

    def status(self) -> dict:
        res = self.cli("status", "--json")
        assert res.returncode in (0, 1), res.stderr
        return json.loads(res.stdout)

    def active_pause(self) -> str | None:
        import sqlite3

        con = sqlite3.connect(self.home / "state.db")
        try:
            r = con.execute("select id from pause_snapshots where status = 'ACTIVE'").fetchone()
        finally:
            con.close()
        return r[0] if r else None

    def states(self) -> dict[str, str]:
        """Straight from the state DB: `cutover status` would start the embedded Prefect server."""
        import sqlite3

        con = sqlite3.connect(self.home / "state.db")
        try:
            return dict(con.execute("select ingestion_id, state from cutover_states").fetchall())
        finally:
            con.close()


@pytest.fixture(scope="module")
def demo():
    # cutover-prefect-<x>/owner.pid, cutover-home, prefect-home: the layout reap_orphans cleans up
    root = Path(tempfile.mkdtemp(prefix="cutover-prefect-rb-"))
    (root / "owner.pid").write_text(str(os.getpid()))
    d = Demo(root)
    try:
        res = d.cli("demo", timeout=600)
        assert res.returncode == 0, f"cutover demo -> {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        yield d
    finally:
        d.cli("prefect", "down", timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.prefect
def test_prefect_server_down(demo):
    """The demo stops its Prefect server at the end: the runbook starts from a real outage."""
    assert demo.cli("prefect", "status").returncode == 1  # (`cutover status` would start it again)
    res = demo.runbook("prefect-server-down")
    assert "runbook prefect-server-down done: 7 step(s) ran" in res.stdout
    demo.cli("prefect", "status", check=0)
    log = json.loads(demo.cli("log", "--json", "--limit", "50", check=0).stdout)
    actions = [e["action"] for e in reversed(log)]
    if "CUTOVER" in demo.states().values():  # watch only looks when something is live on Prefect
        assert actions.index("watch-prefect-down") < actions.index("watch-prefect-up")


@pytest.mark.slow
@pytest.mark.prefect
def test_stuck_claims(demo, monkeypatch):
    """A legacy run killed while it held a claim: the runbook's re-run takes the stale claim over."""
    import glob
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    import cutover.core.db
    from cutover.core.workspace import Workspace
    from cutover.core.autoloader.discovery import discover
    from cutover.core.records.tables import processed_files as t_pf
    from cutover.core.records.tables import runs as t_runs

    states = demo.states()
    iid = next((i for i, s in sorted(states.items()) if s in ("SHADOW", "LEGACY", "ROLLED_BACK")), None)
    assert iid, f"the demo left no legacy-owned ingestion: {states}"
    for k, v in demo.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    cutover.core.db.dispose_engines()
    cutover.core.db.reset_schema_cache()
    try:
        ws = Workspace()
        ing = ws.ingestions.get(iid)
        src = sorted(glob.glob(os.path.join(ing.source_uri, ing.pattern)))[0]
        new = os.path.join(ing.source_uri, "zz-stuck" + Path(src).suffix)
        shutil.copy(src, new)
        dead = ws.runs.start(iid, orchestrator="legacy", mode="live", trigger="scheduled")
        f = next(x for x in discover(ing.source_uri, ing.pattern) if x.path.endswith(Path(new).name))
        assert ws.ledger(iid, "live").claim(f, dead) is not None
        old = datetime.now(timezone.utc) - timedelta(hours=1)  # older than the 15m claim timeout
        with ws.autoloader_engine.begin() as c:
            c.execute(update(t_pf).where(t_pf.c.claimed_by == dead).values(claimed_at=old))
            c.execute(update(t_runs).where(t_runs.c.id == dead).values(started_at=old, heartbeat_at=old))
        assert ws.ledger(iid, "live").counts().get("PROCESSING") == 1
    finally:
        cutover.core.db.dispose_engines()
        cutover.core.db.reset_schema_cache()
    res = demo.runbook("stuck-claims", ingestion=iid)
    assert "zz-stuck" in res.stdout  # step 2 showed the stuck claim
    assert "PROCESSING" not in demo.cli("ledger", iid, "--summary", check=0).stdout
    runs = json.loads(demo.cli("runs", "--ingestion", iid, "--json", "--limit", "200", check=0).stdout)
    assert next(r for r in runs if r["id"] == dead)["status"] == "CRASHED"


@pytest.mark.slow
@pytest.mark.prefect
def test_emergency_pause_everything(demo):
    demo.runbook("emergency-pause-everything", reason="test: catalog outage")
    st = demo.status()
    assert st["active_pause"] and st["active_pause"]["reason"] == "test: catalog outage"
    assert all(r["legacy"] == "paused" and r["prefect_live"] in ("paused", "absent")
               and r["prefect_shadow"] in ("paused", "absent") for r in st["ingestions"]), st["ingestions"]


@pytest.mark.slow
@pytest.mark.prefect
def test_resume_after_incident(demo):
    if demo.active_pause() is None:  # this test on its own
        demo.cli("pause", "--all", "--reason", "test: setup", check=0)
    snapshot = demo.active_pause()
    demo.runbook("resume-after-incident", snapshot=snapshot)
    st = demo.status()
    assert st["active_pause"] is None and all(r["invariant_ok"] for r in st["ingestions"]), st
    owners = {r["id"]: (r["live_owner"], r["legacy"], r["prefect_live"]) for r in st["ingestions"]}
    assert all(o == ("legacy", "scheduled", "absent") or o == ("legacy", "scheduled", "paused")
               or o == ("prefect", "paused", "active") for o in owners.values()), owners


@pytest.mark.slow
@pytest.mark.prefect
def test_roll_back_a_wave(demo):
    if demo.active_pause() is not None:
        demo.cli("resume", "--snapshot", demo.active_pause(), check=0)
    states = demo.states()
    plan = demo.home / "plan.json"
    wave = 1
    moved = []
    if plan.exists():
        w = next((w for w in json.loads(plan.read_text())["waves"] if w["number"] == wave), None)
        moved = [m["ingestion_id"] for m in (w or {}).get("moves", [])]
    if not moved or any(states.get(i) != "CUTOVER" for i in moved):  # the demo did not cut a wave over
        iid = next(i for i, s in sorted(states.items()) if s == "SHADOW")
        plan = demo.root / "rb-plan.json"
        demo.cli("plan", "--select", iid, "--waves", "rest", "--gate", "streak>=0", "--out", str(plan), check=0)
        demo.cli("execute", str(plan), "--yes", check=0)
        moved = [iid]
    assert all(demo.states()[i] == "CUTOVER" for i in moved)
    demo.runbook("roll-back-a-wave", plan=str(plan), wave=str(wave), reason="test: parity failed after cutover")
    st = {r["id"]: r for r in demo.status()["ingestions"]}
    for i in moved:
        assert (st[i]["state"], st[i]["live_owner"], st[i]["legacy"], st[i]["prefect_live"]) == \
            ("ROLLED_BACK", "legacy", "scheduled", "paused"), st[i]
    assert all(r["invariant_ok"] for r in st.values()), st
