"""Ledger check: per file, the live ledger (legacy) vs the shadow ledger (Prefect).

Files judged: those processed within the window on either side, minus files
seeded as baseline at the shadow fork, minus files still in flight on either
side, minus files younger than the grace period (their counterpart may simply
not have run yet).

How it stays fast at ten million entries per side (bench/parity_bench.py):

* The comparison runs inside the database as a GROUP BY path over the covering
  index ``ix_processed_files_parity`` (ingestion_id, path, namespace, status,
  records, processed_at), read in index order: no join, no sort, no heap access.
  Only the differences travel back, so the ledgers never become Python objects.
* Each path has at most one row per namespace (``uq_processed_files_key``), so two
  integer sums per path say everything: ``f`` packs how many rows of each kind the
  path has (live, shadow, in the window, excluded, SUCCESS) into bit fields, and
  ``d`` is the live row's ``records*8 + status code`` minus the shadow row's. With two
  rows, ``d == 0`` exactly when status and records are equal (the status codes are
  below 8), so the verdict is exact, not a hash. Two plain sums cost a fraction of
  the conditional MAX() per column the first version used.
* One pass per chunk gives the files judged, the count per finding kind and the
  differing paths themselves (a JSON array aggregated with FILTER), so a failing
  ledger costs no second scan.
* The path range is cut into chunks at boundaries sampled by primary-key probes, and
  the chunks run on a few connections at once (SQLite releases the GIL while it
  steps; PostgreSQL runs them as separate backends). A path's two rows always fall
  in the same chunk because the chunks are ranges of the path itself.

SKIPPED rows in the shadow namespace are the baseline seeded at the fork (nothing
else writes SKIPPED there).

Claims in flight (PROCESSING) are not judged while they are younger than the claim
timeout. Older ones are ``stale_claim`` findings with their age, whatever the window:
their run died or is frozen, and the file stays unjudged until the next run takes it over.
They come from the partial index ``ix_processed_files_processing`` (PROCESSING rows only,
by claim age), not from a ledger scan.
"""

from __future__ import annotations

import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, case, func, literal_column, select

from checks.model import CheckResult, Finding
from cutover.core.records.ledger import FAILED, PROCESSING, SKIPPED, SUCCESS
from cutover.core.records.tables import processed_files as t_pf

MAX_FINDINGS = 10_000
CHUNK_ROWS = 500_000  # index entries (both namespaces) per chunk, roughly
MAX_CHUNKS = 256
PROBES = 4_000  # primary-key probes used to place chunk boundaries

# bit fields of f: each counts rows of one path (at most one per namespace, so at most 2: 2 bits)
_LIVE, _SHADOW, _SUCCESS, _IN_WINDOW, _EXCLUDED = 1, 4, 16, 64, 256
_STATUS_CODE = {SUCCESS: 1, FAILED: 2, SKIPPED: 3, PROCESSING: 4}  # anything else: 5; all below 8


def classify(f: int, d: int) -> str | None:
    """The finding kind of one judged path from its two sums, None when both sides agree.
    Mirrors the SQL filter in :func:`_chunk_query` (which sends only the differing paths)."""
    live, shadow = f % 4, f // _SHADOW % 4
    if shadow == 0:
        return "file_missing_in_shadow"
    if live == 0:
        return "file_missing_in_legacy"
    if abs(d) % 8 != 0:  # the status codes differ (|difference| < 8 whatever the records)
        return "status_mismatch"
    if d != 0 and f // _SUCCESS % 4 == 2:  # same status, both SUCCESS, other record counts
        return "records_mismatch"
    return None


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.astimezone(timezone.utc) if dt.tzinfo else dt


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class Chunk:
    low: str | None  # inclusive
    high: str | None  # exclusive


def _chunk_query(dialect: str, ingestion_id: str, since: datetime | None, cutoff: datetime, chunk: Chunk):
    """One row for the chunk: the number of judged paths, and the judged paths that differ as a
    JSON array of [path, f, d]."""
    c = t_pf.c
    at = c.processed_at
    in_window = and_(at.is_not(None), at <= cutoff)
    if since is not None:
        in_window = and_(in_window, at >= since)
    excluded = (c.status == PROCESSING) | and_(c.namespace == "shadow", c.status == SKIPPED)
    f = func.sum(
        case((c.namespace == "live", _LIVE), else_=_SHADOW)
        + case((c.status == SUCCESS, _SUCCESS), else_=0)
        + case((in_window, _IN_WINDOW), else_=0)
        + case((excluded, _EXCLUDED), else_=0)
    ).label("f")
    code = case(*[(c.status == s, n) for s, n in _STATUS_CODE.items()], else_=5)
    d = func.sum(case((c.namespace == "live", 1), else_=-1) * (func.coalesce(c.records_ingested, -1) * 8 + code)).label("d")
    where = [c.ingestion_id == ingestion_id, c.namespace.in_(("live", "shadow"))]
    if chunk.low is not None:
        where.append(c.path >= chunk.low)
    if chunk.high is not None:
        where.append(c.path < chunk.high)
    g = select(c.path.label("path"), f, d).where(*where).group_by(c.path).subquery("g")
    gf, gd = g.c.f, g.c.d

    def mod(x, n):
        return x.op("%")(n)

    def div(x, n):  # integer division on both dialects (SQLAlchemy's / would be true division)
        return x.op("/")(n)

    # judged: some row in the window (f >= 64) and none excluded (f < 256)
    judged = gf.between(_IN_WINDOW, _EXCLUDED - 1)
    differing = (mod(gf, 16) != _LIVE + _SHADOW) | (mod(gd, 8) != 0) | and_(gd != 0, div(mod(gf, 64), 16) == 2)
    if dialect == "postgresql":
        paths = func.json_agg(func.json_build_array(g.c.path, gf, gd)).filter(differing)
    else:
        paths = func.json_group_array(func.json_array(g.c.path, gf, gd)).filter(differing)
    return select(func.count(), paths).select_from(g).where(judged)


def plan_chunks(engine, ingestion_id: str, *, chunk_rows: int = CHUNK_ROWS, probes: int = PROBES,
                max_chunks: int = MAX_CHUNKS) -> list[Chunk]:
    """Path ranges holding about ``chunk_rows`` index entries each; one open range when the
    ingestion is small. The boundaries are existing paths sorted by the database."""
    with engine.connect() as conn:
        lo, hi = conn.execute(select(func.min(t_pf.c.id), func.max(t_pf.c.id))).one()
        if lo is None:
            return [Chunk(None, None)]
        span = hi - lo + 1
        rng = random.Random(f"{ingestion_id}:{lo}:{hi}")
        n_probes = min(probes, span)
        ids = sorted(rng.sample(range(lo, hi + 1), n_probes)) if span > n_probes else list(range(lo, hi + 1))
        hits: list[str] = []
        for i in range(0, len(ids), 900):
            # ORDER BY in the database: boundaries must follow its collation, not Python's
            hits += conn.execute(select(t_pf.c.path).where(
                t_pf.c.id.in_(ids[i:i + 900]), t_pf.c.ingestion_id == ingestion_id,
                t_pf.c.namespace.in_(("live", "shadow")))).scalars().all()
        estimate = span * len(hits) / max(1, len(ids))
        n = min(max_chunks, int(estimate // max(1, chunk_rows)), len(hits))
        if n < 2:
            return [Chunk(None, None)]
        distinct = sorted(set(hits))
        picked = [distinct[(i * len(distinct)) // n] for i in range(1, n)]
        # sorted by the database (max_chunks < 900 keeps this one statement): a chunk is a range in
        # the order the database compares paths, which need not be Python's
        ordered = conn.execute(select(t_pf.c.path).where(
            t_pf.c.ingestion_id == ingestion_id, t_pf.c.path.in_(picked))
            .group_by(t_pf.c.path).order_by(t_pf.c.path)).scalars().all()
    bounds = [None, *ordered, None]
    return [Chunk(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def _run_chunk(engine, ingestion_id, since, cutoff, chunk: Chunk, keep: int):
    """(files judged, {kind: count}, the first ``keep`` differing [path, kind] by path)."""
    q = _chunk_query(engine.dialect.name, ingestion_id, since, cutoff, chunk)
    with engine.connect() as conn:
        judged, rows = conn.execute(q).one()
    if isinstance(rows, str):
        rows = json.loads(rows)
    counts: dict[str, int] = {}
    differing = []
    for path, f, d in rows or ():
        kind = classify(int(f), int(d))
        if kind is None:  # cannot happen: the SQL filter is the same rule
            raise AssertionError(f"ledger check: {path!r} sent as differing with f={f} d={d}")
        counts[kind] = counts.get(kind, 0) + 1
        differing.append((path, kind))
    differing.sort()
    return judged, counts, differing[:max(0, keep)]


def _chunks_in_processes(url: str, ingestion_id, since, cutoff, chunks: list[Chunk], keep: int, workers: int):
    """SQLite: threads of one process serialise on SQLite's global allocator mutex (measured:
    two threads on half the rows each take as long as one thread on all), separate processes
    do not. Each worker is a plain ``python -m checks.ledger_worker`` reading its share of the
    chunks from stdin (so nothing depends on the caller's ``__main__``, and the URL is never on
    a command line), answering one JSON line per chunk."""
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    shares = [list(range(i, len(chunks), workers)) for i in range(workers)]
    procs = []
    for share in shares:
        job = {"url": url, "ingestion_id": ingestion_id, "since": since.isoformat() if since else None,
               "cutoff": cutoff.isoformat(), "keep": keep,
               "chunks": [[i, chunks[i].low, chunks[i].high] for i in share]}
        p = subprocess.Popen([sys.executable, "-m", "checks.ledger_worker"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        p.stdin.write(json.dumps(job))
        p.stdin.close()
        procs.append(p)
    results: dict[int, tuple] = {}
    errors = []
    for p in procs:
        out = p.stdout.read()
        err = p.stderr.read()
        if p.wait() != 0:
            errors.append(err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}")
            continue
        for line in out.splitlines():
            i, judged, counts, paths = json.loads(line)
            results[i] = (judged, counts, [tuple(x) for x in paths])
    if errors:
        raise RuntimeError(f"ledger check worker failed: {errors[0]}")
    return [results[i] for i in range(len(chunks))]


def worker_main(stdin, stdout) -> None:
    """The worker side of :func:`_chunks_in_processes`."""
    from sqlalchemy import create_engine

    job = json.loads(stdin.read())
    engine = create_engine(job["url"])
    since = datetime.fromisoformat(job["since"]) if job["since"] else None
    cutoff = datetime.fromisoformat(job["cutoff"])
    for i, low, high in job["chunks"]:
        judged, counts, paths = _run_chunk(engine, job["ingestion_id"], since, cutoff, Chunk(low, high), job["keep"])
        stdout.write(json.dumps([i, judged, counts, paths]) + "\n")
        stdout.flush()
    engine.dispose()


def _run_chunks(engine, ingestion_id, since, cutoff, chunks: list[Chunk], keep: int, workers: int):
    if workers <= 1 or len(chunks) <= 1:
        return [_run_chunk(engine, ingestion_id, since, cutoff, ch, keep) for ch in chunks]
    if engine.dialect.name == "sqlite":
        db = engine.url.database or ""
        if db in ("", ":memory:") or "mode=memory" in str(engine.url):  # another process would see another DB
            return [_run_chunk(engine, ingestion_id, since, cutoff, ch, keep) for ch in chunks]
        url = engine.url.render_as_string(hide_password=False)
        return _chunks_in_processes(url, ingestion_id, since, cutoff, chunks, keep, workers)
    # PostgreSQL (and other servers): each connection is its own backend, threads are enough
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ledger-parity") as pool:
        return list(pool.map(lambda ch: _run_chunk(engine, ingestion_id, since, cutoff, ch, keep), chunks))


def _brief(status, records, run_id, error) -> dict:
    return {"status": status, "records": records, "run_id": run_id, "error": error}


def _details(engine, ingestion_id: str, paths: list[str]) -> dict[tuple[str, str], dict]:
    """The rows of the differing files only (by the unique key)."""
    out = {}
    c = t_pf.c
    with engine.connect() as conn:
        for i in range(0, len(paths), 500):
            chunk = paths[i:i + 500]
            for r in conn.execute(select(c.path, c.namespace, c.status, c.records_ingested, c.run_id, c.error).where(
                    c.ingestion_id == ingestion_id, c.namespace.in_(("live", "shadow")), c.path.in_(chunk))):
                out[(r.path, r.namespace)] = _brief(r.status, r.records_ingested, r.run_id, r.error)
    return out


def stale_claims(engine, ingestion_id: str, *, until: datetime, claim_timeout_s: float,
                 limit: int = MAX_FINDINGS) -> tuple[int, list[Finding]]:
    """Claims (PROCESSING) older than the claim timeout at ``until``: (how many, findings with their age)."""
    c = t_pf.c
    cutoff = _utc(until - timedelta(seconds=claim_timeout_s))
    # the literal (not a bound parameter) lets SQLite match the partial index's WHERE
    where = (c.ingestion_id == ingestion_id, c.namespace.in_(("live", "shadow")),
             c.status == literal_column(f"'{PROCESSING}'"), c.claimed_at < cutoff)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(t_pf).where(*where)).scalar() or 0
        rows = conn.execute(select(c.path, c.namespace, c.claimed_by, c.claimed_at, c.batch_id, c.fence)
                            .where(*where).order_by(c.claimed_at, c.path).limit(limit)).all() if n else []
    out = []
    now = _utc(until)
    for r in rows:
        at = r.claimed_at if r.claimed_at.tzinfo else r.claimed_at.replace(tzinfo=timezone.utc)
        age = (now - at).total_seconds()
        brief = {"run_id": r.claimed_by, "claimed_at": at.isoformat(), "age_s": round(age, 1),
                 "staged_batch": r.batch_id, "fence": r.fence}
        side = "legacy" if r.namespace == "live" else "shadow"
        out.append(Finding("stale_claim", file=r.path, **{side: brief},
                           detail=f"{side} claim by run {r.claimed_by} is {_age(age)} old (claim timeout "
                                  f"{_age(claim_timeout_s)}): its run died or is frozen; the file is judged once the "
                                  "next run takes the claim over"))
    return n, out


def _age(s: float) -> str:
    s = int(s)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def check_ledger(engine, ingestion_id: str, *, since: datetime | None, until: datetime, grace_s: float = 0.0,
                 max_findings: int = MAX_FINDINGS, workers: int | None = None,
                 chunk_rows: int = CHUNK_ROWS, claim_timeout_s: float | None = None) -> CheckResult:
    """``claim_timeout_s``: claims older than this are ``stale_claim`` findings (None: not looked for)."""
    since, cutoff = _utc(since), _utc(until - timedelta(seconds=grace_s))
    chunks = plan_chunks(engine, ingestion_id, chunk_rows=chunk_rows)
    workers = max(1, min(workers or default_workers(), len(chunks)))
    results = _run_chunks(engine, ingestion_id, since, cutoff, chunks, max_findings, workers)
    judged, by_kind, differing_paths = 0, {}, []
    for n, counts, paths in results:  # chunks are in path order: the first findings by path win
        judged += n
        for kind, cnt in counts.items():
            by_kind[kind] = by_kind.get(kind, 0) + cnt
        differing_paths += paths[:max(0, max_findings - len(differing_paths))]
    with engine.connect() as conn:
        baseline = conn.execute(select(func.count()).select_from(t_pf).where(
            t_pf.c.ingestion_id == ingestion_id, t_pf.c.namespace == "shadow", t_pf.c.status == SKIPPED)).scalar()
    details = _details(engine, ingestion_id, [p for p, _ in differing_paths])
    findings = []
    for path, kind in differing_paths:
        le, se = details.get((path, "live")), details.get((path, "shadow"))
        ls, ss = (le or {}).get("status"), (se or {}).get("status")
        if kind == "file_missing_in_shadow":
            findings.append(Finding(kind, file=path, legacy=le, detail=f"legacy {ls}, shadow never saw the file"))
        elif kind == "file_missing_in_legacy":
            findings.append(Finding(kind, file=path, shadow=se, detail=f"shadow {ss}, legacy never saw the file"))
        elif kind == "status_mismatch":
            findings.append(Finding(kind, file=path, legacy=le, shadow=se, detail=f"legacy {ls}, shadow {ss}"))
        else:
            lr, sr = (le or {}).get("records"), (se or {}).get("records")
            findings.append(Finding(kind, file=path, legacy=lr, shadow=sr, detail=f"legacy {lr} records, shadow {sr}"))
    n_stale = 0
    if claim_timeout_s is not None:
        n_stale, stale = stale_claims(engine, ingestion_id, until=until, claim_timeout_s=claim_timeout_s,
                                      limit=max(0, max_findings - len(findings)))
        findings += stale
        if n_stale:
            by_kind["stale_claim"] = n_stale
    differing = sum(n for k, n in by_kind.items() if k != "stale_claim")
    metrics = {"files_judged": judged, "differing_files": differing, "baseline_files": baseline,
               "by_kind": dict(sorted(by_kind.items())), "chunks": len(chunks), "stale_claims": n_stale}
    if differing + n_stale > len(findings):
        metrics["findings_truncated_to"] = len(findings)
    return CheckResult.from_findings("ledger", findings, metrics)
