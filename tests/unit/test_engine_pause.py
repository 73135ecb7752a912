"""`cutover pause` / `cutover resume` against fake incident controls, killed after every side effect.

The sides are ``cutover.testing.fake_incident`` (a selective legacy fence, a global pool-like
fence), put in the registry's name table by the runner below; their world is a JSON file in
the workspace, so a pause killed for real (``os._exit``) and run again sees what it had done.
No server, no Redis, no Prefect: each command runs in a forked child of the test process.

For every k, a pause is killed right after its k-th side effect, run again, then resumed; and a
resume of a complete pause is killed after its k-th side effect and run again. Afterwards:
every job back exactly as before the pause (a job paused by hand before stays paused), every
fence down, no job paused or restored twice, each fence raised and lifted once.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cutover import registry
from cutover.cli import cli
from cutover.cli.app import run_main
from cutover.core.workspace import Workspace
from cutover.testing.fake_incident import SIDES, new_world, read_world
from tests.helpers import add_ingestion

KILLED = 137
IDS = ("alpha", "bravo", "charlie", "delta", "echo")
# before the pause: charlie's legacy job and delta's deployment were paused by hand
BEFORE = {"legacy": {i: i == "charlie" for i in IDS}, "prefect": {i: i == "delta" for i in IDS}}


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def fake_sides(monkeypatch):
    """The registry's incident name table holds the fakes (the children forked below inherit it)."""
    monkeypatch.setattr(registry, "INCIDENT_SIDES", dict(SIDES))


def run(home: Path, *args: str, kill_after: int | None = None, down: str | None = None) -> Done:
    """``cutover ARGS`` in a forked child of this (already imported) process: a process of its own,
    which the fake kills for real with ``os._exit`` -- but without a new interpreter's start-up."""
    out, err = home / "stdout.txt", home / "stderr.txt"
    env = {"CUTOVER_HOME": str(home)}
    if kill_after:
        env["CUTOVER_FAKE_KILL_AFTER"] = str(kill_after)
    if down:
        env["CUTOVER_FAKE_DOWN"] = down
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            for k in [k for k in os.environ if k.startswith("CUTOVER_") or k == "PREFECT_API_URL"]:
                del os.environ[k]
            os.environ.update(env)
            with open(out, "w") as o, open(err, "w") as e:
                os.dup2(o.fileno(), 1)
                os.dup2(e.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)
                sys.stderr = open(2, "w", closefd=False)
                code = run_main(cli, list(args))
                sys.stdout.flush()
                sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return Done(code, out.read_text(), err.read_text())


def last_json(p: Done) -> dict:
    """The last JSON object the command printed (pretty-printed: it starts at a line's first column)."""
    out = p.stdout
    starts = [i for i in range(len(out)) if out[i] == "{" and (i == 0 or out[i - 1] == "\n")]
    for i in reversed(starts):
        try:
            return json.JSONDecoder().raw_decode(out[i:])[0]
        except ValueError:
            continue
    raise AssertionError(f"no JSON in output:\n{p.stdout}\n{p.stderr}")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("pause-template")
    env_home = {"CUTOVER_HOME": str(home)}
    import os

    old = {k: os.environ.get(k) for k in env_home}
    os.environ.update(env_home)
    try:
        ws = Workspace()
        for iid in IDS:
            add_ingestion(ws, iid, home / "src" / iid)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    new_world(home, json.loads(json.dumps(BEFORE)))
    return home


def fresh(template: Path, tmp_path: Path, name: str) -> Path:
    home = tmp_path / name
    shutil.copytree(template, home)
    return home


def effects(home: Path, action: str) -> list:
    return [tuple(e) for e in read_world(home)["effects"] if e[1] == action]


def assert_paused(home: Path, snap: str) -> None:
    w = read_world(home)
    assert w["jobs"] == {side: {i: True for i in IDS} for side in BEFORE}
    assert w["fences"] == {"legacy": snap, "prefect": snap}
    paused = effects(home, "pause")
    assert len(paused) == len(set(paused)), f"a job was paused twice: {paused}"
    assert sorted(e[0] for e in effects(home, "fence")) == ["legacy", "prefect"]


def assert_restored(home: Path) -> None:
    w = read_world(home)
    assert w["jobs"] == BEFORE, "resume did not restore exactly"
    assert w["fences"] == {"legacy": None, "prefect": None}
    restored = effects(home, "restore")
    assert len(restored) == len(set(restored)), f"a job was restored twice: {restored}"
    assert sorted(e[0] for e in effects(home, "unfence")) == ["legacy", "prefect"]


def pause_all(home: Path, **kw) -> Done:
    return run(home, "pause", "--all", "--reason", "unit test", "--json", **kw)


def snapshot_id(home: Path) -> str:
    """The snapshot the fences are held for (each fake fence records its snapshot id)."""
    fences = set(read_world(home)["fences"].values())
    assert len(fences) == 1 and None not in fences, fences
    return fences.pop()


def count_effects(template: Path, tmp_path: Path) -> tuple[int, int]:
    """Side effects of an uninterrupted pause, and of the resume that follows it."""
    home = fresh(template, tmp_path, "count")
    p = pause_all(home)
    assert p.returncode == 0, p.stdout + p.stderr
    n_pause = len(read_world(home)["effects"])
    snap = last_json(p)["snapshot_id"]
    assert_paused(home, snap)
    p = run(home, "resume", "--snapshot", snap, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert_restored(home)
    return n_pause, len(read_world(home)["effects"]) - n_pause


def test_pause_then_resume_restores_exactly(template, tmp_path):
    n_pause, n_resume = count_effects(template, tmp_path)
    # 2 fences + 2 snapshot parts stored + 8 jobs not already paused; 8 restores + 2 fences lifted
    assert (n_pause, n_resume) == (12, 10)


def test_second_pause_says_it_is_in_force_and_exits_0(template, tmp_path):
    home = fresh(template, tmp_path, "twice")
    assert pause_all(home).returncode == 0
    before = read_world(home)["effects"]
    p = pause_all(home)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "already in force" in p.stdout + p.stderr and last_json(p)["already_paused"] is True
    assert read_world(home)["effects"] == before  # nothing was left to do, nothing was done


def test_pause_killed_after_every_side_effect_converges(template, tmp_path):
    t0 = time.monotonic()
    n_pause, _ = count_effects(template, tmp_path)
    for k in range(1, n_pause + 1):
        home = fresh(template, tmp_path, f"pause-kill-{k}")
        p = pause_all(home, kill_after=k)
        assert p.returncode == KILLED, f"k={k}: {p.stdout}{p.stderr}"
        assert len(read_world(home)["effects"]) == k
        p = pause_all(home)  # the re-run completes the same snapshot
        assert p.returncode == 0, f"k={k}: {p.stdout}{p.stderr}"
        snap = snapshot_id(home)
        assert_paused(home, snap)
        p = run(home, "resume", "--snapshot", snap, "--json")
        assert p.returncode == 0, f"k={k}: {p.stdout}{p.stderr}"
        assert_restored(home)
    assert time.monotonic() - t0 < 60


def test_resume_killed_after_every_side_effect_converges(template, tmp_path):
    _, n_resume = count_effects(template, tmp_path)
    paused = fresh(template, tmp_path, "paused")
    p = pause_all(paused)
    assert p.returncode == 0, p.stdout + p.stderr
    snap = last_json(p)["snapshot_id"]
    for k in range(1, n_resume + 1):
        home = fresh(paused, tmp_path, f"resume-kill-{k}")
        p = run(home, "resume", "--snapshot", snap, "--json", kill_after=k)
        assert p.returncode == KILLED, f"k={k}: {p.stdout}{p.stderr}"
        p = run(home, "resume", "--snapshot", snap, "--json")
        assert p.returncode == 0, f"k={k}: {p.stdout}{p.stderr}"
        assert_restored(home)
        p = run(home, "resume", "--snapshot", snap, "--json")  # a second resume is a no-op
        assert p.returncode == 0 and last_json(p)["already_resumed"], p.stdout
        assert_restored(home)


def test_a_side_down_is_reported_and_a_rerun_completes(template, tmp_path):
    home = fresh(template, tmp_path, "down")
    p = pause_all(home, down="prefect")
    assert p.returncode == 3, p.stdout + p.stderr  # partial: the legacy side is fenced and paused
    w = read_world(home)
    assert w["jobs"]["legacy"] == {i: True for i in IDS} and w["jobs"]["prefect"] == BEFORE["prefect"]
    p = pause_all(home)
    assert p.returncode == 0, p.stdout + p.stderr
    snap = snapshot_id(home)
    assert_paused(home, snap)
    assert run(home, "resume", "--snapshot", snap).returncode == 0
    assert_restored(home)


def test_dry_runs_change_nothing(template, tmp_path):
    home = fresh(template, tmp_path, "dry")
    before = read_world(home)
    p = run(home, "pause", "--all", "--reason", "x", "--dry-run")
    assert p.returncode == 0, p.stdout + p.stderr
    assert read_world(home) == before
    p = pause_all(home)
    snap = last_json(p)["snapshot_id"]
    paused = read_world(home)
    assert run(home, "resume", "--snapshot", snap, "--dry-run").returncode == 0
    assert read_world(home) == paused
