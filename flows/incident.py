"""The Prefect side's incident control (``cutover.protocol.IncidentWriter`` + ``LateRunHandler``),
over the small REST client (``flows.http``: no ``import prefect``).

- fence: the work pool paused (one PATCH per pool): workers pick up no run of that pool. The
  pool is shared by every deployment, so it is a global switch (``--all`` / ``--fence-pool``).
  Stored before: the pool's and its queues' ``is_paused`` flags (``{"pools": {pool: {"paused",
  "queues": {queue: paused}}}}``); unfence puts exactly those back;
- snapshot part: ``{"deployments": [{"id", "name", "ingestion_id", "mode", "paused",
  "work_pool", "work_queue", "schedules": [{"id", "slug", "active"}]}], "complete", "api_url"}``
  of the deployments tagged ``cutover`` and ``ingestion:<id>`` of the selection;
- durable pause: page by page, each page stored before it is paused (the server's
  ``POST /deployments/{id}/pause_deployment``, sequential: the server is the bottleneck; the
  next page is read meanwhile);
- restore: page by page, each deployment's ``paused`` flag and each schedule's ``active`` flag
  back to the snapshot;
- late runs: flow runs of the fenced pool(s) that became due behind the fence (state type
  SCHEDULED, due now, expected after the pause began): ``skip`` cancels them all, ``run-once``
  keeps the newest per deployment; done before the pool is un-paused (PrefectHQ/prefect#19313).
"""

from __future__ import annotations

import queue
import threading
from datetime import datetime, timezone
from typing import Callable

from cutover.core.progress import Progress
from cutover.protocol import OrchestratorError, Restored
from flows.deploy import TAG, ingestion_of, mode_of
from flows.http import PAGE, NotFoundHTTP, PrefectHTTP
from flows.local import PrefectUnavailable, local_url, up


def prefect_url(ws, *, start: bool) -> str:
    """The selected Prefect API (environment, then profile), else the local server; ``start``: start
    the local server (server only, no worker) when it is not running, so that the pause can be made
    durable. No probe here: the REST client's first call fails in one line within its connect timeout."""
    s = ws.settings
    conn = s.prefect
    if conn.problem:
        raise OrchestratorError(f"Prefect API configuration: {conn.public()['problem']}")
    if not conn.embedded:
        return str(conn.url)
    url = local_url(s)
    if url:
        return url
    if not start:
        raise OrchestratorError(f"the embedded Prefect server is not running (no Prefect API configured: {conn.source})")
    try:
        return up(s, worker=False).state.url
    except PrefectUnavailable as e:
        raise OrchestratorError(f"Prefect API unavailable: {e.one_line()}") from None


def _parse(s: str | None) -> datetime | None:
    if not s:
        return None
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def deployment_state(d: dict, wanted: set[str]) -> dict | None:
    """The snapshot form of a deployment (None: not a cutover deployment of the selection)."""
    tags = d.get("tags") or []
    iid = ingestion_of(tags)
    if iid not in wanted:
        return None
    return {"id": str(d["id"]), "name": d.get("name"), "ingestion_id": iid, "mode": mode_of(tags),
            "paused": bool(d.get("paused")), "work_pool": d.get("work_pool_name"),
            "work_queue": d.get("work_queue_name"),
            "schedules": [{"id": str(s["id"]), "slug": s.get("slug"), "active": bool(s.get("active"))}
                          for s in d.get("schedules") or []]}


def deployment_changes(snap_deps: list[dict], current: list[dict]) -> tuple[list, list, list[str]]:
    """([(dep id, name, paused)], [(dep id, name, schedule id, active)], notes) to restore the snapshot."""
    cur = {d["id"]: d for d in current}
    flags, scheds, notes = [], [], []
    for d in snap_deps:
        c = cur.get(d["id"])
        if c is None:
            notes.append(f"deployment {d['name']} ({d['id']}) was deleted since the snapshot: nothing to restore")
            continue
        if c["paused"] != d["paused"]:
            flags.append((d["id"], d["name"], d["paused"]))
        cs = {s["id"]: s for s in c["schedules"]}
        for s in d["schedules"]:
            if s["id"] not in cs:
                notes.append(f"schedule {s['slug'] or s['id']} of {d['name']} was removed since the snapshot")
            elif cs[s["id"]]["active"] != s["active"]:
                scheds.append((d["id"], d["name"], s["id"], s["active"]))
    return flags, scheds, notes


class PrefectIncident:
    name = "prefect"
    label = "Prefect deployments"
    fence_label = "Prefect work pool paused (one PATCH)"
    fence_selective = False

    def __init__(self, ws, *, start: bool = True, timeout: float = 30.0, retries: int = 5, **_):
        self.ws = ws
        self.start = start
        self.timeout, self.retries = timeout, retries
        self.pools = [ws.settings.prefect_work_pool]
        self._http: PrefectHTTP | None = None
        self._down: str | None = None
        self._lock = threading.Lock()
        self.url: str | None = None

    @property
    def http(self) -> PrefectHTTP:
        """The client, connected on first use (today's configuration, not a recorded URL)."""
        with self._lock:
            if self._http is None:
                if self._down is not None:  # found down once in this command: not waited for again
                    raise OrchestratorError(self._down)
                try:
                    self.url = prefect_url(self.ws, start=self.start)
                except OrchestratorError as e:
                    self._down = str(e)
                    raise
                self._http = PrefectHTTP(self.url, timeout=self.timeout, retries=self.retries)
            return self._http

    @property
    def retried(self) -> int:
        return self._http.retried if self._http is not None else 0

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # -- reader
    def read_fence(self) -> dict:
        out = {}
        for p in self.pools:
            wp = self.http.work_pool(p)
            out[p] = {"paused": bool(wp.get("is_paused")),
                      "queues": {q["name"]: bool(q.get("is_paused")) for q in self.http.work_queues(p)}}
        return {"pools": out}

    def read(self, ids: list[str]) -> dict:
        wanted = set(ids)
        deps = [x for x in (deployment_state(d, wanted) for d in self.http.deployments([TAG])) if x is not None]
        return {"deployments": deps, "complete": True, "api_url": self.url}

    def pages(self, ids: list[str]):
        """Pages of :meth:`read`'s deployments, the next page read by a thread while the caller works on
        the current one (the writes of a page overlap the read of the next)."""
        http = self.http
        wanted = set(ids)
        q: queue.Queue = queue.Queue(maxsize=2)
        body = {"deployments": {"tags": {"all_": [TAG]}}, "sort": "NAME_ASC"}

        def reader() -> None:
            offset = 0
            try:
                while True:
                    page = http.request("POST", "/deployments/filter", {**body, "limit": PAGE, "offset": offset})
                    q.put([x for x in (deployment_state(d, wanted) for d in page) if x is not None])
                    if len(page) < PAGE:
                        break
                    offset += PAGE
                q.put(None)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                q.put(e)

        threading.Thread(target=reader, name="deployments-reader", daemon=True).start()
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def counts(self, state: dict | None) -> dict:
        deps = None if state is None else state.get("deployments")
        return {"deployments": None if deps is None else len(deps),
                "deployments_already_paused": None if deps is None else sum(1 for d in deps if d["paused"])}

    def describe_pause(self, state: dict, *, fence: bool) -> list[str]:
        c = self.counts(state)
        return [f"Prefect: {c['deployments']} deployment(s), {c['deployments'] - c['deployments_already_paused']} "
                f"to pause ({c['deployments_already_paused']} already paused, they stay paused)"]

    def describe_restore(self, state: dict, fence_before: dict | None) -> tuple[list[str], list[str]]:
        deps = state.get("deployments") or []
        flags, scheds, notes = deployment_changes(deps, self.read([d["ingestion_id"] for d in deps])["deployments"])
        return ([f"Prefect: {sum(1 for *_, p in flags if not p)} deployment(s) to resume, "
                 f"{sum(1 for *_, p in flags if p)} to re-pause, {len(scheds)} schedule flag(s) to restore"], notes)

    def drift(self, state: dict | None, *, snapshot_id: str, fence_before: dict | None) -> list[dict]:
        out: list[dict] = []
        try:
            with PrefectHTTP(prefect_url(self.ws, start=False), timeout=5.0, retries=1) as http:
                deps = (state or {}).get("deployments") or []
                if deps:
                    wanted = {d["ingestion_id"] for d in deps}
                    now = {x["id"]: x for x in (deployment_state(d, wanted) for d in http.deployments([TAG]))
                           if x is not None}
                    for d in deps:
                        c = now.get(d["id"])
                        if c is not None and not c["paused"] and (not c["schedules"]
                                                                  or any(s["active"] for s in c["schedules"])):
                            out.append({"kind": "prefect deployment", "ingestion_id": d["ingestion_id"],
                                        "item": d["name"], "detail": f"Prefect deployment {d['name']} un-paused"})
                for name in (fence_before or {}).get("pools") or {}:
                    if not http.work_pool(name).get("is_paused"):
                        out.append({"kind": "work pool", "ingestion_id": None, "item": name,
                                    "detail": f"work pool {name} un-paused"})
        except OrchestratorError:
            pass
        return out

    # -- writer
    def fence(self, snapshot_id: str, *, ids: list[str] | None, reason: str | None) -> None:
        for p in self.pools:
            self.http.set_pool_paused(p, True)

    def unfence(self, snapshot_id: str, before: dict) -> dict:
        pools = before.get("pools") or {}
        for p, st in pools.items():
            wq = {q["name"]: bool(q.get("is_paused")) for q in self.http.work_queues(p)}
            for q, was in st["queues"].items():
                if q in wq and wq[q] != was:
                    self.http.set_queue_paused(p, q, was)
            if bool(self.http.work_pool(p).get("is_paused")) != st["paused"]:
                self.http.set_pool_paused(p, st["paused"])
        return {"work_pools": {p: "paused" if s["paused"] else "active" for p, s in pools.items()}}

    def pause_many(self, ids: list[str], state: dict | None, *, store: Callable[[dict], None],
                   progress_stream=None) -> int:
        """Page by page: add the deployments the part does not hold yet (their state now, which no
        one has changed for this pause) and store it; then pause every deployment of that page that
        the part holds and that is not paused now (sequential). Returns how many were paused."""
        http = self.http
        state = dict(state or {"deployments": [], "complete": False, "api_url": self.url})
        held = {d["id"] for d in state.get("deployments") or []}
        building = not state.get("complete")
        try:
            total = int(http.request("POST", "/deployments/count", {"deployments": {"tags": {"all_": [TAG]}}}))
        except Exception:  # noqa: BLE001 - only for the progress bar
            total = len(held)
        bar = Progress("pausing Prefect deployments", total, progress_stream)
        seen = n = 0
        for page in self.pages(ids):
            if building:
                new = [d for d in page if d["id"] not in held]
                if new:
                    state["deployments"] = (state.get("deployments") or []) + new
                    state["api_url"] = state.get("api_url") or self.url
                    held.update(d["id"] for d in new)
                    store(state)  # stored before any of them is touched
            for d in page:
                seen += 1
                if d["id"] in held and d["paused"] is False:
                    try:
                        http.set_deployment_paused(d["id"], True)
                        n += 1
                    except NotFoundHTTP:  # deleted meanwhile: nothing left to pause
                        pass
                bar.update(min(seen, total) if total else seen)
        bar.close()
        if building:
            state["complete"] = True
            store(state)
        return n

    def complete(self, state: dict | None) -> bool:
        return bool(state and state.get("complete"))

    def restore(self, state: dict, *, progress_stream=None) -> Restored:
        out = Restored({}, [], [])
        held = {d["id"]: d for d in state.get("deployments") or []}
        if not held:
            return out
        http = self.http
        bar = Progress("restoring Prefect deployments", len(held), progress_stream)
        d_flags, d_scheds, seen = [], [], set()
        for page in self.pages(sorted({d["ingestion_id"] for d in held.values()})):
            mine = [c for c in page if c["id"] in held]
            seen.update(c["id"] for c in mine)
            p_flags, p_scheds, p_notes = deployment_changes([held[c["id"]] for c in mine], mine)
            out.notes += p_notes
            for dep_id, _name, paused in p_flags:
                try:
                    http.set_deployment_paused(dep_id, paused)
                except NotFoundHTTP:
                    out.notes.append(f"deployment {dep_id} was deleted meanwhile")
            for dep_id, _name, sched_id, act in p_scheds:
                try:
                    http.set_schedule_active(dep_id, sched_id, act)
                except NotFoundHTTP:
                    out.notes.append(f"schedule {sched_id} was deleted meanwhile")
            d_flags += p_flags
            d_scheds += p_scheds
            bar.update(len(seen))
        bar.close()
        out.notes += [f"deployment {d['name']} ({i}) was deleted since the snapshot: nothing to restore"
                      for i, d in held.items() if i not in seen]
        out.changes = {"deployments_resumed": sum(1 for *_, p in d_flags if not p),
                       "deployments_repaused": sum(1 for *_, p in d_flags if p),
                       "schedule_flags_restored": len(d_scheds)}
        return out

    # -- late runs
    def late_runs(self, fence_before: dict, *, since: datetime, policy: str, apply: bool, message: str) -> dict:
        pools = sorted((fence_before.get("pools") or {}).keys())
        if not pools:
            return {"cancelled": [], "kept": []}
        now = datetime.now(timezone.utc)
        runs = []
        for r in self.http.scheduled_runs(pools=pools, before=now.isoformat()):
            t = _parse(r.get("expected_start_time") or r.get("next_scheduled_start_time"))
            if t is not None and t >= since:
                runs.append(r)
        if policy == "skip":
            cancel, keep = runs, []
        else:
            newest: dict[str, dict] = {}
            for r in runs:
                key = str(r.get("deployment_id") or r["id"])
                t = _parse(r.get("expected_start_time") or r.get("next_scheduled_start_time"))
                if key not in newest or t > _parse(newest[key].get("expected_start_time")
                                                   or newest[key].get("next_scheduled_start_time")):
                    newest[key] = r
            keep_ids = {r["id"] for r in newest.values()}
            cancel, keep = [r for r in runs if r["id"] not in keep_ids], list(newest.values())
        if apply:
            for r in cancel:
                self.http.cancel_flow_run(r["id"], message)
        return {"cancelled": [r["id"] for r in cancel], "kept": [r["id"] for r in keep]}
