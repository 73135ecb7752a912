"""Pause / restore many legacy jobs in one transaction each (the mass pause's legacy side).

``JobSync.pause`` / ``JobSync.resume`` and ``IngestionRepo.set_batch_paused`` do one write
transaction per job: 1,000 of them cost seconds of CPU, which, during a mass pause, this
process would spend competing with the Prefect server for the same cores while the server is
the bottleneck. These do exactly what those methods do, row by row, inside ONE write
transaction (SQLite ``BEGIN IMMEDIATE``, PostgreSQL ``SELECT .. FOR UPDATE``), on the same
table, in APScheduler's own format:

- pause: ``next_run_time`` NULL, the pickled state's ``next_run_time`` None (an unreadable
  state gets the column alone, as ``JobSync.pause`` does);
- resume: the next fire time of the job's trigger from now (a job whose trigger will never fire
  again is removed, as APScheduler's ``resume_job`` and ``JobSync.resume`` do);
- batch flags: one UPDATE.

They use JobSync's table plumbing (``_tx``, ``_select``, ``_write``): if JobSync grows bulk
methods, these should call them instead.
"""

from __future__ import annotations

from datetime import datetime, timezone


def pause_jobs(settings, ids: list[str]) -> int:
    """Pause the APScheduler jobs of these ingestions; returns how many changed."""
    from sqlalchemy import update

    from legacy.apscheduler.scheduler import JobSync

    js = JobSync(settings)
    if not ids or not js.exists():
        return 0
    wanted = set(ids)
    n = 0
    with js._tx() as conn:
        for row in js._select(conn, lock=True):
            if row.id not in wanted or row.paused:
                continue
            if row.state is None:
                conn.execute(update(js.table).where(js.table.c.id == row.id).values(next_run_time=None))
            else:
                js._write(conn, {**row.state, "next_run_time": None}, new=False)
            n += 1
    return n


def restore_jobs(settings, paused: dict[str, bool]) -> tuple[int, int, list[str]]:
    """Each job to its paused flag: resumed at its next fire time from now, or paused.
    Returns (resumed, paused, problems)."""
    from sqlalchemy import delete, update

    from legacy.apscheduler.scheduler import JobSync

    js = JobSync(settings)
    if not paused or not js.exists():
        return 0, 0, []
    resumed = repaused = 0
    problems: list[str] = []
    now = datetime.now(timezone.utc)
    with js._tx() as conn:
        for row in js._select(conn, lock=True):
            want = paused.get(row.id)
            if want is None or row.paused == want:
                continue
            if want:
                if row.state is None:
                    conn.execute(update(js.table).where(js.table.c.id == row.id).values(next_run_time=None))
                else:
                    js._write(conn, {**row.state, "next_run_time": None}, new=False)
                repaused += 1
                continue
            if row.state is None:
                problems.append(f"APScheduler job {row.id} cannot be read ({row.error}): re-create it with "
                                "`cutover legacy sync`")
                continue
            nxt = row.state["trigger"].get_next_fire_time(None, now)
            if nxt is None:
                conn.execute(delete(js.table).where(js.table.c.id == row.id))
            else:
                js._write(conn, {**row.state, "next_run_time": nxt}, new=False)
            resumed += 1
    return resumed, repaused, problems


def set_batch_flags(ws, flags: dict[str, bool]) -> int:
    """Each ingestion's batch flag to the given value, in one transaction; returns how many changed."""
    from sqlalchemy import update

    from cutover.core.records.tables import ingestions as t

    if not flags:
        return 0
    now = datetime.now(timezone.utc)
    n = 0
    with ws.autoloader_engine.begin() as conn:
        for value in (True, False):
            ids = [i for i, v in flags.items() if v is value]
            for k in range(0, len(ids), 500):
                chunk = ids[k:k + 500]
                n += conn.execute(update(t).where(t.c.id.in_(chunk), t.c.batch_paused.is_not(value))
                                  .values(batch_paused=value, updated_at=now)).rowcount
    return n
