"""The Prefect orchestrator adapter (``cutover.protocol.OrchestratorWriter``).

One adapter works on the deployments of one *mode*: ``PrefectAdapter(ws, mode="shadow")``
(the default: a deployment created by mistake then writes only to the shadow
branch and ledger namespace, never to production) or ``mode="live"`` (the
cutover handoff). ``ensure_job``, ``remove_job``, ``pause``, ``resume``,
``trigger`` and ``cancel_running`` act on the deployment ``<ingestion>-<mode>``;
``list_jobs`` lists every cutover deployment (both modes, ``JobInfo.mode`` says
which); ``read_runs`` / ``read_ledger`` read the run records and ledger of the
Prefect side.

- pause / resume: ``pause_deployment`` / ``resume_deployment`` (the deployment's
  ``paused`` flag: the scheduler stops creating runs and removes future auto-
  scheduled ones); idempotent, they return whether anything changed. A job is
  reported paused when the deployment is paused *or* all its schedules are
  inactive (``prefect deployment schedule pause``): either way nothing is scheduled.
- trigger: a flow run from the deployment with ``trigger="manual"`` (what
  ``run_deployment(..., timeout=0)`` does, without its polling); returns the flow-run id.
- cancel_running: Running/Pending flow runs get a Cancelling state (the worker
  kills them); Scheduled ones (incl. Late), which no worker holds yet, become Cancelled.
- Writes are sequential (SQLite-backed servers answer concurrent writes with 503);
  ``retries`` counts the client's retried requests.
- An unreachable API raises ``OrchestratorError`` with a one-line reason.

The API URL is ``api_url`` if given, else the selected server (environment, then Prefect profile:
``cutover.core.prefectconn``), else the embedded server, started only when ``start`` (with its
worker when ``worker``); ``health`` never starts it.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any, Iterator

from cutover.core.errors import CutoverError, GateFailed, NotFound
from cutover.core.redact import redact_text, redact_url
from cutover.core.shadowfork import ensure_fork
from cutover.protocol import CREATED, UNCHANGED, UPDATED, Health, JobInfo, OrchestratorError, OrphanRun
from flows.deploy import (FLOW_NAME, TAG, apply, check_mode, deployment_name, describe_schedule, desired, full_name,
                          ingestion_of, mode_of, plan_one, prepare, record_ids)
from flows.http import PrefectHTTP, PrefectUnavailable, RetryCounter, check_health, open_client, require_worker
from flows.local import api_url, ensure_work_pool, never_started
from flows.jobdeploy import desired_job, flow_name_of, is_job, runs_in

PAGE = 200
_ACTIONS = {"create": CREATED, "update": UPDATED, "unchanged": UNCHANGED}


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return redact_text(f"{type(e).__name__}: {text}")[:300]


class PrefectAdapter:
    name = "prefect"

    def __init__(self, workspace, api_url: str | None = None, *, mode: str = "shadow",
                 paused_on_create: bool | None = None, allow_approx: bool = False, start: bool = True,
                 worker: bool = True):
        self.ws = workspace
        self.mode = check_mode(mode)
        self.paused_on_create = paused_on_create
        self.allow_approx = allow_approx
        self.start = start
        self.worker = worker
        self._api_url = api_url
        self._client = None
        self._tmp_settings = None
        self._retries = None
        self._flow_ids: dict[str, Any] = {}  # flow name -> id, once created/read
        self._flow_names: dict[str, str] = {}  # id -> its flow (cutover-ingest, or a job's flow)
        self._pool_checked: set[str] = set()  # work pools known to exist (with their queues)

    # -- plumbing ------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        if self._api_url is None:
            # a configuration problem raises InputError, a server that does not answer
            # PrefectUnavailable (an OrchestratorError; both exit 2), an embedded server that
            # cutover started and that did not come up PrefectStartFailed (exit 3): one line each
            self._api_url = api_url(self.ws.settings, start=self.start, worker=self.worker)
        return self._api_url

    def require_worker(self) -> dict:
        """Fail fast (PrefectUnavailable naming the pool and `prefect worker start --pool ...`) unless a
        live worker polls the work pool: a flow run would wait forever."""
        return require_worker(self.api_url, self.ws.settings.prefect_work_pool)

    @property
    def retries(self) -> int:
        return self._retries.count if self._retries is not None else 0

    def _open(self):
        if self._client is None:
            self._client = open_client(self.api_url)
            if self._retries is None:
                self._retries = RetryCounter()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.__exit__(None, None, None)
            self._client = None

    def __enter__(self) -> "PrefectAdapter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """The open client; connection failures become OrchestratorError."""
        import httpx
        from prefect.exceptions import PrefectHTTPStatusError

        c = self._open()
        assert self._retries is not None
        try:
            with self._retries.watching():
                yield c
        except (httpx.ConnectError, httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as e:
            raise PrefectUnavailable(f"Prefect API at {redact_url(self.api_url)} is unreachable ({_reason(e)})",
                                     fix="see `cutover config show` for which server is selected") from None
        except PrefectHTTPStatusError as e:
            code = e.response.status_code if e.response is not None else 0
            if code >= 500 or code in (408, 429):
                raise OrchestratorError(f"Prefect API at {redact_url(self.api_url)} failed: HTTP {code} "
                                        f"after the client's retries") from None
            raise

    def _deployment(self, c, ingestion_id: str) -> dict | None:
        """The deployment of this mode as plain JSON (None when absent).

        Raw JSON on purpose: validating a DeploymentResponse validates its schedules, and the
        Prefect 3.8 client checks each schedule's timezone against a fresh scan of the tz
        database (~10 ms each): that dominated pause/resume and list_jobs.
        """
        from prefect.exceptions import PrefectHTTPStatusError

        try:
            r = c.request("GET", "/deployments/name/{flow_name}/{deployment_name}",
                          path_params={"flow_name": self._flow_name(ingestion_id),
                                       "deployment_name": deployment_name(ingestion_id, self.mode)})
        except PrefectHTTPStatusError as e:
            if e.response is not None and e.response.status_code == 404:
                return None
            raise
        return r.json()

    def _flow_name(self, iid: str) -> str:
        """The flow whose deployments run ``iid``: cutover-ingest, or a generic job's flow."""
        if iid not in self._flow_names:
            job = self.ws.jobs.find(iid) if self.ws.ingestions.find(iid) is None else None
            self._flow_names[iid] = flow_name_of(job) if job is not None else FLOW_NAME
        return self._flow_names[iid]

    def _desired(self, item):
        if is_job(item):
            return desired_job(self.ws, item, self.mode, paused_on_create=self.paused_on_create,
                               allow_approx=self.allow_approx)
        return desired(self.ws, item, self.mode, paused_on_create=self.paused_on_create,
                       allow_approx=self.allow_approx)

    # -- reader --------------------------------------------------------------------------
    def list_jobs(self) -> list[JobInfo]:
        """Every cutover deployment, read with the REST client (plain JSON, no ``import prefect``:
        `cutover status` stays light, and a server that does not answer costs one probe)."""
        out: list[JobInfo] = []
        if self._api_url is None and not self.start and self.ws.settings.prefect.embedded \
                and not self.ws.settings.prefect.problem and never_started(self.ws.settings):
            return out  # the embedded server never ran: it holds no deployment (and a reader starts nothing)
        with PrefectHTTP(self.api_url) as http:
            for d in http.deployments([TAG]):
                tags = d.get("tags") or []
                iid = ingestion_of(tags)
                if iid is None:
                    continue
                scheds = d.get("schedules") or []
                inactive = bool(scheds) and not any(s.get("active") for s in scheds)
                active = [s for s in scheds if s.get("active")] or scheds
                out.append(JobInfo(ingestion_id=iid, orchestrator=self.name, job_id=str(d["id"]),
                                   schedule=describe_schedule(active[0].get("schedule")) if active else None,
                                   paused=bool(d.get("paused") or inactive), next_run_time=None,
                                   mode=mode_of(tags)))
        return out

    def read_runs(self, *, since: datetime | None = None, ingestion_id: str | None = None):
        return self.ws.runs.list(orchestrator="prefect", ingestion_id=ingestion_id, since=since)

    def read_ledger(self, ingestion_id: str, namespace: str, *, since: datetime | None = None):
        return self.ws.ledger(ingestion_id, namespace).entries(since=since)

    def health(self) -> Health:
        try:
            url = self.api_url if self._api_url or not self.start else None
            if url is None:
                url = api_url(self.ws.settings, start=False)
        except (OrchestratorError, CutoverError) as e:
            msg = e.one_line() if isinstance(e, CutoverError) else str(e)
            return Health(False, msg)
        ok, detail = check_health(url)
        return Health(ok, f"Prefect API {redact_url(url)}: {detail}")

    # -- writer --------------------------------------------------------------------------
    def plan_job(self, ingestion):
        """What ensure_job would do (read calls only): a flows.deploy.PlanItem."""
        want = self._desired(ingestion)
        with self.client() as c:
            return plan_one(c, want)

    def ensure_job(self, ingestion) -> str:
        """``ingestion``: an ingestion or a generic job (cutover.core.records.jobs.Job). A job that
        Prefect does not run in this mode (``shadow: observe`` in shadow) gets no deployment."""
        if is_job(ingestion) and not runs_in(ingestion, self.mode):
            return UNCHANGED
        want = self._desired(ingestion)  # validates (schedule translation) before any write
        if self.mode == "shadow" and not is_job(ingestion):
            ensure_fork(self.ws, ingestion)
        with self.client() as c:
            item = plan_one(c, want)
            if item.secret in ("create", "update") or (item.action != "unchanged"
                                                        and want.work_pool not in self._pool_checked):
                prepare(c, self.ws, [item])  # pool/queues only if missing, the Secret block only if it differs
                self._pool_checked.add(want.work_pool)
            if item.action == "create":
                name = want.flow_name
                cached = name in self._flow_ids
                if not cached:
                    self._flow_ids[name] = c.create_flow_from_name(name)
                try:
                    apply(c, item, flow_id=self._flow_ids[name])
                except Exception:  # noqa: BLE001 - a cached flow id may be stale (flow deleted): once more
                    if not cached:
                        raise
                    self._flow_ids[name] = c.create_flow_from_name(name)
                    apply(c, item, flow_id=self._flow_ids[name])
            else:
                apply(c, item)
        if is_job(ingestion):
            if item.deployment_id and (ingestion.prefect_deployment_id, ingestion.prefect_flow_id) != \
                    (item.deployment_id, item.flow_id):
                self.ws.jobs.set_prefect_ids(ingestion.id, item.deployment_id, item.flow_id)
        else:
            record_ids(self.ws, item)
        return _ACTIONS[item.action]

    def remove_job(self, ingestion_id: str) -> bool:
        from prefect.exceptions import ObjectNotFound

        with self.client() as c:
            dep = self._deployment(c, ingestion_id)
            if dep is None:
                return False
            try:
                c.delete_deployment(dep["id"])
            except ObjectNotFound:
                return False
        ing = self.ws.ingestions.find(ingestion_id) or self.ws.jobs.find(ingestion_id)
        if ing is not None and ing.prefect_deployment_id == str(dep["id"]):
            (self.ws.jobs if is_job(ing) else self.ws.ingestions).set_prefect_ids(ingestion_id, None, None)
        return True

    def pause(self, ingestion_id: str) -> bool:
        with self.client() as c:
            dep = self._deployment(c, ingestion_id)
            if dep is None or dep["paused"]:
                return False
            c.pause_deployment(dep["id"])
            return True

    def resume(self, ingestion_id: str) -> bool:
        with self.client() as c:
            dep = self._deployment(c, ingestion_id)
            if dep is None or not dep["paused"]:
                return False
            c.resume_deployment(dep["id"])
            return True

    def is_paused(self, ingestion_id: str) -> bool | None:
        with self.client() as c:
            dep = self._deployment(c, ingestion_id)
            return None if dep is None else bool(dep["paused"])

    def trigger(self, ingestion_id: str, *, force: bool = False) -> str:
        """A manual flow run now. A paused deployment is honoured like the batch side's pause flag
        (an operator paused it, maybe mid-incident): refused unless ``force``."""
        with self.client() as c:
            dep = self._deployment(c, ingestion_id)
            if dep is None:
                raise NotFound(f"no Prefect deployment {self._flow_name(ingestion_id)}/{deployment_name(ingestion_id, self.mode)}",
                               fix=f"deploy it first: cutover prefect deploy {ingestion_id} --mode {self.mode}")
            if dep["paused"] and not force:
                raise GateFailed(f"Prefect deployment {self._flow_name(ingestion_id)}/{deployment_name(ingestion_id, self.mode)} is paused",
                                 fix="resume it first, or force the run (cutover prefect trigger --force)")
            fr = c.create_flow_run_from_deployment(dep["id"], parameters={"trigger": "manual"},
                                                   tags=["trigger:manual"])
            return str(fr.id)

    def cancel_running(self, ingestion_id: str) -> int:
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterId,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort
        from prefect.states import Cancelled, Cancelling

        n = 0
        with self.client() as c:
            dep = self._deployment(c, ingestion_id)
            if dep is None:
                return 0
            flt = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED])))
            runs = []
            offset = 0
            while True:
                page = c.read_flow_runs(flow_run_filter=flt,
                                        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep["id"]])),
                                        limit=PAGE, offset=offset, sort=FlowRunSort.ID_DESC)
                runs.extend(page)
                if len(page) < PAGE:
                    break
                offset += PAGE
            for fr in runs:
                held = fr.state_type in (StateType.RUNNING, StateType.PENDING)
                state = Cancelling(message="cancelled by cutover") if held else Cancelled(message="cancelled by cutover")
                res = c.set_flow_run_state(fr.id, state=state, force=True)
                if getattr(res, "status", None) is None or str(res.status.value).upper() == "ACCEPT":
                    n += 1
        return n

    def flow_run_state(self, flow_run_id: str) -> str | None:
        """The state type of a flow run (``COMPLETED``, ``CANCELLED``, ...), None when it does not exist.
        Used by ``cutover rollback --cancel-running`` to tell a dead run from a slow one."""
        from prefect.exceptions import ObjectNotFound

        with self.client() as c:
            try:
                fr = c.read_flow_run(flow_run_id)
            except ObjectNotFound:
                return None
        return fr.state.type.value if fr.state is not None else None

    # -- extras for the CLI ----------------------------------------------------------------
    def flow_runs(self, *, ingestion_id: str | None = None, limit: int = 50) -> list[Any]:
        """Recent flow runs of cutover deployments (newest first)."""
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
        from prefect.client.schemas.sorting import FlowRunSort

        tags = [TAG] + ([f"ingestion:{ingestion_id}"] if ingestion_id else [])
        with self.client() as c:
            return c.read_flow_runs(deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=tags)),
                                    limit=limit, sort=FlowRunSort.EXPECTED_START_TIME_DESC)


def read_orphan_runs(ws, *, since: datetime | None, ingestion_ids: list[str], api_url_: str | None = None,
                     limit: int = 1000) -> list[OrphanRun] | None:
    """Flow runs of cutover deployments that ended CRASHED or FAILED (since ``since``) and whose id
    no run record carries as ``external_id``: the flow died before it could write its record
    (`cutover.protocol.OrphanRun`). None when this workspace has no Prefect server to ask
    (PREFECT_API_URL unset and no local server running: nothing is started for this)."""
    from cutover.core.errors import CutoverError

    if api_url_ is None:
        try:
            api_url_ = api_url(ws.settings, start=False, echo=None)
        except CutoverError:
            return None
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterTags, FlowRunFilter,
                                                FlowRunFilterExpectedStartTime, FlowRunFilterState,
                                                FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    wanted = set(ingestion_ids)
    flt = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED, StateType.FAILED])))
    if since is not None:
        flt.expected_start_time = FlowRunFilterExpectedStartTime(after_=since)
    frs: list = []
    with PrefectAdapter(ws, api_url_, start=False) as ad, ad.client() as c:
        while len(frs) < limit:  # the API pages 200 at a time
            page = c.read_flow_runs(flow_run_filter=flt,
                                    deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[TAG])),
                                    limit=min(200, limit - len(frs)), offset=len(frs),
                                    sort=FlowRunSort.EXPECTED_START_TIME_DESC)
            frs += page
            if len(page) < 200:
                break
    out = []
    known: dict[str, set[str]] = {}
    for fr in frs:
        tags = {t.split(":", 1)[0]: t.split(":", 1)[1] for t in (fr.tags or []) if ":" in t}
        iid = tags.get("ingestion")
        if iid is None or iid not in wanted:
            continue
        if iid not in known:
            known[iid] = {r.external_id for r in ws.runs.list(ingestion_id=iid, orchestrator="prefect") if r.external_id}
        if str(fr.id) in known[iid]:
            continue  # it wrote its record: the runs check judges it from there
        msg = (fr.state.message or "").strip().splitlines()[0][:200] if fr.state and fr.state.message else ""
        at = fr.end_time or fr.start_time or fr.expected_start_time
        out.append(OrphanRun(ingestion_id=iid, orchestrator="prefect", side_run_id=str(fr.id),
                             status=fr.state_type.value if fr.state_type else str(fr.state_name), at=at,
                             mode=tags.get("mode", "shadow"),
                             detail=f"flow run {fr.name} ({fr.id}) {fr.state_name}"
                                    + (f": {redact_text(msg)}" if msg else "")))
    return out
