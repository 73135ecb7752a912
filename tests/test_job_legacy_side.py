"""The legacy side as the engine sees it routes a team's job to the side it was imported from
(cutover.registry.jobsides): a crontab command job is paused, resumed, run now and reported live
through its wrapped line -- the path of `execute`, `rollback`, `shadow run --once` and `status`."""

from __future__ import annotations

from cutover.core.workspace import Workspace
from cutover.registry.sides import LiveSides
from tests.helpers import invoke_cli


def test_a_crontab_job_through_the_engines_legacy_side(workspace_env, tmp_path, capsys):
    out = tmp_path / "out.txt"
    crontab = tmp_path / "crontab"
    crontab.write_text(f"SHELL=/bin/sh\n# nightly\n15 2 * * * echo synced >> {out}\n")
    code, _, err = invoke_cli(capsys, "cron", "import", "--crontab", str(crontab), "--jobs", "--timezone", "UTC")
    assert code == 0, err
    imported = crontab.read_text()
    ws = Workspace()
    (job,) = ws.jobs.list()
    legacy = LiveSides(ws).legacy()
    assert legacy.live_state()[job.id] == {"live": True, "text": "scheduled"}
    assert legacy.pause(job.id) is True and legacy.pause(job.id) is False
    assert legacy.live_state()[job.id]["live"] is False and crontab.read_text() != imported
    assert legacy.resume(job.id) is True and crontab.read_text() == imported
    rid = legacy.run_now(job.id)
    rec = ws.runs.get(rid)
    assert (rec.ingestion_id, rec.orchestrator, rec.trigger, rec.status) == (job.id, "legacy", "manual", "SUCCESS")
    assert out.read_text() == "synced\n"
