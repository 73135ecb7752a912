"""`cutover demo --scenario NAME` (`make demo SCENARIO=NAME`): the registry, its errors, and the
cron story end to end.

The autoloader story (the default scenario) runs end to end in tests/test_runbooks.py, whose
runbooks need its workspace.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cutover.cli import cli
from cutover.cli.app import run_main

ROOT = Path(__file__).resolve().parent.parent


def _demo(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = run_main(cli, ["demo", *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def foreign_home(workspace_env):
    """A CUTOVER_HOME holding somebody's file: no failing demo invocation may touch it."""
    workspace_env.mkdir(parents=True)
    (workspace_env / "precious.txt").write_text("not a demo\n")
    return workspace_env


def _choices() -> str:
    from cutover.demos.autoloader import available_scenarios

    return f"use --scenario with one of: {', '.join(available_scenarios())}"


def _untouched(home: Path) -> bool:
    return sorted(p.name for p in home.iterdir()) == ["precious.txt"] and \
        (home / "precious.txt").read_text() == "not a demo\n"


# -- the registry ---------------------------------------------------------------------------------

def test_unknown_scenario_is_a_one_line_input_error(foreign_home, capsys):
    rc, out, err = _demo(capsys, "--scenario", "nope")
    assert rc == 2 and out == ""
    assert err == f"error: demo scenario 'nope' does not exist: {_choices()}\n"
    assert {"autoloader", "cron"} <= set(_choices().partition(": ")[2].split(", "))
    assert _untouched(foreign_home)


def test_registered_but_missing_module_is_a_one_line_input_error(foreign_home, capsys, monkeypatch):
    from cutover.demos import autoloader as demo

    monkeypatch.setitem(demo.SCENARIOS, "ghost", "cutover.demo_ghost:run_ghost_demo")
    rc, out, err = _demo(capsys, "--scenario", "ghost")
    assert rc == 2 and out == ""
    assert "ghost" not in demo.available_scenarios()
    assert err == ("error: demo scenario 'ghost' is registered (cutover.demo_ghost:run_ghost_demo) but module "
                   f"cutover.demo_ghost is missing: {_choices()}\n")
    assert _untouched(foreign_home)


def test_scenario_module_without_its_function_or_with_a_missing_dependency(foreign_home, capsys, monkeypatch,
                                                                           tmp_path):
    from cutover.demos import autoloader as demo

    monkeypatch.setitem(demo.SCENARIOS, "nofn", "cutover.demos.cron:run_nothing")
    rc, _, err = _demo(capsys, "--scenario", "nofn")
    assert rc == 2 and err.count("\n") == 1
    assert err == ("error: demo scenario 'nofn' is registered (cutover.demos.cron:run_nothing) but cutover.demos.cron "
                   f"has no function run_nothing: {_choices()}\n")

    pkg = tmp_path / "mods"
    pkg.mkdir()
    (pkg / "demo_needs_dep.py").write_text("import cutover_test_absent_dependency\n\ndef run(*a, **k):\n    return 0\n")
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setitem(demo.SCENARIOS, "dep", "demo_needs_dep:run")
    rc, _, err = _demo(capsys, "--scenario", "dep")
    assert rc == 2 and err.count("\n") == 1
    assert "demo_needs_dep needs the missing module 'cutover_test_absent_dependency'" in err
    assert _untouched(foreign_home)


def test_an_option_the_scenario_does_not_take_is_refused_before_anything_changes(foreign_home, capsys):
    rc, out, err = _demo(capsys, "--scenario", "cron", "--seed", "3")
    assert rc == 2 and err == "error: --seed does not apply to the cron demo scenario: leave --seed out\n"
    assert _untouched(foreign_home)


def test_every_scenario_refuses_to_wipe_a_directory_that_is_not_a_demo_workspace(foreign_home, capsys):
    from cutover.demos import autoloader as demo

    for name in demo.available_scenarios():
        rc, out, err = _demo(capsys, "--scenario", name)
        assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, (name, out, err)
        assert _untouched(foreign_home), name
        if name in ("autoloader", "cron"):  # (another scenario may refuse earlier, e.g. for a missing server)
            assert "holds files that are not a cutover demo workspace: " in err and "--force" in err


def test_the_registry_names_real_story_functions_and_autoloader_is_the_default():
    from cutover.demos import autoloader as demo
    from cutover.cli.demo_cmd import demo as demo_cmd

    assert demo.DEFAULT_SCENARIO == "autoloader"
    assert demo.load_scenario("autoloader") is demo.run_demo
    assert [p.default for p in demo_cmd.params if p.name == "scenario"] == ["autoloader"]
    from cutover.demos.cron import run_cron_demo

    assert demo.load_scenario("cron") is run_cron_demo
    for name in demo.available_scenarios():
        params = inspect.signature(demo.load_scenario(name)).parameters
        assert list(params)[:3] == ["invoke", "echo", "settings"], name
        assert params["force"].kind is inspect.Parameter.KEYWORD_ONLY, name


def test_make_demo_passes_the_scenario():
    assert shutil.which("make"), "make is not installed: it is how README's two commands run"
    def dry(*args: str) -> str:
        res = subprocess.run(["make", "-n", "demo", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert "/cutover demo --scenario autoloader" in dry()
    assert "/cutover demo --scenario cron" in dry("SCENARIO=cron")
    assert "/cutover demo --scenario team" in dry("SCENARIO=team")


# -- the cron story end to end (slow: a real Prefect server, wrapper processes) ---------------------

@pytest.mark.slow
@pytest.mark.prefect
def test_cron_demo_end_to_end():
    from legacy.cron.side import BEGIN, END, PAUSED, parse_crontab, read_run_log

    # cutover-prefect-<x>/owner.pid, cutover-home, prefect-home: the layout
    # tests.prefect_fixtures.reap_orphans cleans up if this pytest is killed
    root = Path(tempfile.mkdtemp(prefix="cutover-prefect-demo-"))
    (root / "owner.pid").write_text(str(os.getpid()))
    home = root / "cutover-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUTOVER_", "PREFECT_"))}
    env.update(CUTOVER_HOME=str(home), CUTOVER_PREFECT_HOME=str(root / "prefect-home"))

    def cli_(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cutover", *args], cwd=root, env=env, capture_output=True,
                              text=True, timeout=timeout)

    try:
        res = cli_("demo", "--scenario", "cron", timeout=600)
        assert res.returncode == 0, f"cutover demo --scenario cron -> {res.returncode}\n{res.stdout[-4000:]}\n" \
                                    f"{res.stderr[-3000:]}"
        out = res.stdout
        checks = [ln for ln in out.splitlines() if ln.startswith("check: ")]
        assert "DEMO FAILED" not in out and len(checks) >= 15 and all(c.endswith(": OK") for c in checks), checks
        assert f"\n    +{PAUSED}" in out  # the diff of the cutover shows the bronze line commented out
        assert "bronze: exit 75, run" in out and "SKIPPED: ingestion medallion-bronze is paused" in out

        # the workspace it leaves behind, read independently of the demo's own checks
        assert (home / ".cutover-demo").exists()
        crontab = home / "etl" / "crontab"
        text = crontab.read_text()
        lines = parse_crontab(text)
        managed = [ln for ln in lines if ln.managed]
        assert [(ln.ingestion_id, ln.kind) for ln in managed] == [("medallion-bronze", "job")]  # rolled back: active
        assert "/usr/local/bin/pg-backup.sh --full" in text.partition(BEGIN)[0]  # the foreign line, outside
        assert "run_step.py silver" in text.partition(BEGIN)[0] and "run_step.py gold" in text.partition(BEGIN)[0]
        assert text.partition(END)[2].strip() == ""
        backups = sorted(crontab.parent.glob("crontab.bak.*"))
        assert len(backups) == 3  # the import's adoption, the cutover's pause, the rollback's resume
        assert backups[1].read_text() == text  # the copy kept before the cutover's edit is today's file

        con = sqlite3.connect(home / "state.db")
        try:
            assert dict(con.execute("select ingestion_id, state from cutover_states").fetchall()) == \
                {"medallion-bronze": "ROLLED_BACK"}
            verdicts = [v for (v,) in con.execute("select verdict from parity_results order by id")]
        finally:
            con.close()
        assert "fail" in verdicts and verdicts[-1] == "pass"

        log = read_run_log(home / "etl" / "logs" / "runs.jsonl")
        bronze = [(d["status"], d.get("files_processed")) for d in log if d["job"] == "bronze"]
        # import, shadow run, divergence, the stale copy during the cutover, after the rollback
        assert bronze == [("SUCCESS", 3), ("SUCCESS", 2), ("SUCCESS", 1), ("SKIPPED", 0), ("SUCCESS", 1)]
        assert [d["job"] for d in log if d["job"] != "bronze"] == ["silver", "gold"] * 3

        runs = json.loads(cli_("runs", "--ingestion", "medallion-bronze", "--json", "--limit", "50").stdout)
        live = sorted((r["orchestrator"], r["mode"]) for r in runs if r["files_processed"])
        assert live.count(("prefect", "live")) == 1 and live.count(("legacy", "live")) == 4
        assert ("prefect", "shadow") in live
    finally:
        cli_("prefect", "down")
        shutil.rmtree(root, ignore_errors=True)


# -- the team story end to end: a team's own jobs (examples/acme_etl), issue #15 -----------------------

@pytest.mark.slow
@pytest.mark.prefect
@pytest.mark.rq
def test_team_demo_end_to_end():
    """`make demo SCENARIO=team`'s story on a fresh workspace: import the acme job store, crontab and
    RQ schedules, verify, shadow (refused until declared), parity, execute, pause/resume, rollback.
    The story checks itself (`check: ...: OK` lines); here: every check passed, none was skipped,
    and the workspace it leaves has the team's crontab back byte for byte."""
    root = Path(tempfile.mkdtemp(prefix="cutover-prefect-demo-"))
    (root / "owner.pid").write_text(str(os.getpid()))
    home = root / "cutover-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUTOVER_", "PREFECT_"))}
    env.update(CUTOVER_HOME=str(home), CUTOVER_PREFECT_HOME=str(root / "prefect-home"))
    try:
        res = subprocess.run([sys.executable, "-m", "cutover", "demo", "--scenario", "team"], cwd=root, env=env,
                             capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, f"cutover demo --scenario team -> {res.returncode}\n{res.stdout[-4000:]}\n" \
                                    f"{res.stderr[-3000:]}"
        checks = [ln for ln in res.stdout.splitlines() if ln.startswith("check: ")]
        assert "DEMO FAILED" not in res.stdout and len(checks) >= 25, checks
        assert all(c.endswith(": OK") for c in checks), [c for c in checks if not c.endswith(": OK")]
        assert "exit 2" in res.stdout or "refused" in res.stdout  # shadow without a declaration is refused
    finally:
        subprocess.run([sys.executable, "-m", "cutover", "prefect", "down"], cwd=root, env=env, capture_output=True,
                       text=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
