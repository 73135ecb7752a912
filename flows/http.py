"""The connection to the Prefect 3 API: every cutover module that talks to the server goes through here.

- :func:`check_health`: ``GET <api>/health`` with urllib (no httpx, no prefect: ``cutover prefect
  status`` and the server start-up poll stay light);
- :func:`client` / :func:`open_client`: the Prefect client (sync) bound to one API URL, for the
  deployment, flow-run and work-pool calls (its retries are counted by :class:`RetryCounter`);
- :class:`PrefectHTTP`: a small REST client for the incident controls' mass operations.

The REST client
---------------

Why not the Prefect client: ``import prefect`` costs ~0.9 s and 80 MB (FACTS.md), and the
on-call engineer's ``cutover pause`` must have the fence up in well under 2 s including
process start. ``httpx`` (a Prefect dependency) with one keep-alive connection talks to the
same API the Prefect client wraps (a work pool pause = ``PATCH /work_pools/{name}
{"is_paused": true}``, ...). Deployments are paused and resumed with the server's dedicated
``POST /deployments/{id}/pause_deployment`` | ``resume_deployment`` routes, which cost the server
about half of the client's ``PATCH /deployments/{id} {"paused": ...}`` (see
:meth:`PrefectHTTP.set_deployment_paused`).

Authentication as the Prefect client does it from the environment: ``PREFECT_API_KEY``
(``Authorization: Bearer``) or ``PREFECT_API_AUTH_STRING`` (HTTP Basic).

Errors: an unreachable server, a timeout or 5xx/408/429 after the retries raise
:class:`cutover.protocol.OrchestratorError` with one redacted line; 404 raises
:class:`NotFoundHTTP`; other 4xx raise :class:`OrchestratorError` with the server's detail.
Writes are sequential: the server is the bottleneck (FACTS.md), and a SQLite-backed server
answers concurrent writes with 503.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

from cutover.protocol import OrchestratorError
from cutover.core.redact import redact_text, redact_url

PAGE = 200
RETRY_CODES = (408, 429, 502, 503, 504)
TIMEOUT = 30.0  # seconds per REST request
CONNECT_TIMEOUT = 5.0
RETRIES = 5  # REST retries of a timeout or a 408/429/5xx answer (the Prefect client has its own)
HEALTH_TIMEOUT = 2.0


# -- the API: health, the Prefect client ------------------------------------------------------


def check_health(url: str, timeout: float = HEALTH_TIMEOUT) -> tuple[bool, str]:
    """GET <api>/health: (ok, detail). Never raises."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout) as resp:  # noqa: S310 - http(s) URL from config
            body = resp.read(200).decode(errors="replace").strip()
            return (resp.status == 200 and body == "true"), f"HTTP {resp.status} {body}"
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return False, f"unreachable ({reason})"


@contextlib.contextmanager
def client(url: str) -> Iterator[Any]:
    """A sync Prefect client bound to ``url`` (PREFECT_API_URL set via temporary_settings)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        with get_client(sync_client=True) as c:
            yield c


class RetryCounter:
    """Counts the Prefect client's retried requests (503 from a busy SQLite server, ...).

    The client retries at most PREFECT_CLIENT_MAX_RETRIES times per request; it logs
    each retry at DEBUG on ``prefect.client``. We count those records without
    letting them through when DEBUG is not enabled.
    """

    def __init__(self) -> None:
        self.count = 0
        self.codes: dict[str, int] = {}

    def filter(self, record) -> bool:
        msg = record.getMessage() if hasattr(record, "getMessage") else str(record)
        if "retryable" in msg:
            self.count += 1
            code = "exception"
            if "status code" in msg:
                code = msg.split("status code", 1)[1].split(".", 1)[0].strip()
            self.codes[code] = self.codes.get(code, 0) + 1
        return record.levelno >= self._level_before if hasattr(self, "_level_before") else True

    @contextlib.contextmanager
    def watching(self) -> Iterator["RetryCounter"]:
        lg = logging.getLogger("prefect.client")
        self._level_before = lg.getEffectiveLevel()
        old_level = lg.level
        lg.setLevel(logging.DEBUG)
        lg.addFilter(self)
        try:
            yield self
        finally:
            lg.removeFilter(self)
            lg.setLevel(old_level)

    def summary(self) -> str:
        if not self.count:
            return ""
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.codes.items()))
        return f"{self.count} Prefect API request(s) were retried ({codes})"


def open_client(url: str):
    """A sync Prefect client bound to ``url``, already entered (the caller closes it with
    ``__exit__``): for an adapter that keeps one client across calls."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        c = get_client(sync_client=True)
    c.__enter__()
    return c


# -- the REST client --------------------------------------------------------------------------


class NotFoundHTTP(OrchestratorError):
    pass


def auth_headers() -> dict[str, str]:
    """The request headers, with the credentials the Prefect client would send."""
    h = {"Content-Type": "application/json"}
    key = os.environ.get("PREFECT_API_KEY")
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    if key:
        h["Authorization"] = f"Bearer {key}"
    elif auth:
        h["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    return h


class PrefectHTTP:
    def __init__(self, api_url: str, *, timeout: float = TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 retries: int = RETRIES):
        import httpx

        self.api_url = api_url.rstrip("/")
        self.retries = retries
        self.retried = 0
        self._http = httpx.Client(base_url=self.api_url + "/", headers=auth_headers(),
                                  timeout=httpx.Timeout(timeout, connect=connect_timeout))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "PrefectHTTP":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------
    def request(self, method: str, path: str, json: Any = None) -> Any:
        import httpx

        delay = 0.1  # SQLite-backed servers answer 503 while another writer holds the DB: retry soon
        for attempt in range(self.retries + 1):
            try:
                r = self._http.request(method, path.lstrip("/"), json=json)
            except httpx.ConnectError as e:  # refused / no route: the server is down, do not wait for it
                raise OrchestratorError(f"Prefect API at {redact_url(self.api_url)} is unreachable "
                                        f"({type(e).__name__}: {redact_text(str(e))[:200]})") from None
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as e:
                if attempt == self.retries:
                    raise OrchestratorError(f"Prefect API at {redact_url(self.api_url)} is unreachable "
                                            f"({type(e).__name__}: {redact_text(str(e))[:200]})") from None
                self.retried += 1
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
                continue
            if r.status_code in RETRY_CODES and attempt < self.retries:
                self.retried += 1
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
                continue
            if r.status_code == 404:
                raise NotFoundHTTP(f"{method} {path}: not found ({redact_text(r.text[:200])})")
            if r.status_code >= 400:
                detail = r.text[:300]
                kind = "failed" if r.status_code >= 500 or r.status_code in RETRY_CODES else "refused the call"
                raise OrchestratorError(f"Prefect API at {redact_url(self.api_url)} {kind}: {method} {path} -> "
                                        f"HTTP {r.status_code} {redact_text(detail)}")
            if r.status_code == 204 or not r.content:
                return None
            return r.json()
        raise AssertionError("unreachable")  # pragma: no cover

    def _pages(self, path: str, body: dict) -> Iterator[dict]:
        offset = 0
        while True:
            page = self.request("POST", path, {**body, "limit": PAGE, "offset": offset})
            yield from page
            if len(page) < PAGE:
                return
            offset += PAGE

    # -- reads ---------------------------------------------------------------------------
    def health(self) -> bool:
        return self.request("GET", "/health") is True

    def deployments(self, tags_all: list[str]) -> list[dict]:
        """Every deployment carrying all these tags, as plain JSON, in name order."""
        return list(self._pages("/deployments/filter", {"deployments": {"tags": {"all_": tags_all}},
                                                         "sort": "NAME_ASC"}))

    def work_pool(self, name: str) -> dict:
        return self.request("GET", f"/work_pools/{name}")

    def work_queues(self, pool: str) -> list[dict]:
        return list(self._pages(f"/work_pools/{pool}/queues/filter", {}))

    def scheduled_runs(self, *, pools: list[str], before: str) -> list[dict]:
        """Flow runs in a SCHEDULED-type state (Scheduled, Late, ...) of these work pools due before ``before``."""
        body = {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}},
                              "next_scheduled_start_time": {"before_": before}},
                "work_pools": {"name": {"any_": pools}}, "sort": "EXPECTED_START_TIME_DESC"}
        return list(self._pages("/flow_runs/filter", body))

    def flow_run(self, flow_run_id: str) -> dict:
        return self.request("GET", f"/flow_runs/{flow_run_id}")

    # -- writes --------------------------------------------------------------------------
    _pause_endpoints = True  # until the server says it has no such route

    def set_deployment_paused(self, deployment_id: str, paused: bool) -> None:
        """The server's own ``POST /deployments/{id}/pause_deployment`` | ``resume_deployment``
        (Prefect 3.x): the same flag as the client's ``PATCH {"paused": ...}``, and the pause deletes
        the deployment's auto-scheduled runs still waiting (Late ones included), but the server does
        about half the work of the generic PATCH (measured: 300 pauses 3.4 s vs 6.1 s on SQLite).
        Servers without those routes get the PATCH."""
        if self._pause_endpoints:
            verb = "pause_deployment" if paused else "resume_deployment"
            try:
                self.request("POST", f"/deployments/{deployment_id}/{verb}")
                return
            except NotFoundHTTP as e:
                if "deployment not found" in str(e).lower():
                    raise
                self._pause_endpoints = False  # no such route on this server
            except OrchestratorError as e:
                if "HTTP 405" not in str(e):
                    raise
                self._pause_endpoints = False
        self.request("PATCH", f"/deployments/{deployment_id}", {"paused": paused})

    def set_schedule_active(self, deployment_id: str, schedule_id: str, active: bool) -> None:
        self.request("PATCH", f"/deployments/{deployment_id}/schedules/{schedule_id}", {"active": active})

    def set_pool_paused(self, pool: str, paused: bool) -> None:
        self.request("PATCH", f"/work_pools/{pool}", {"is_paused": paused})

    def set_queue_paused(self, pool: str, queue: str, paused: bool) -> None:
        self.request("PATCH", f"/work_pools/{pool}/queues/{queue}", {"is_paused": paused})

    def cancel_flow_run(self, flow_run_id: str, message: str) -> str:
        """Force a (not yet started) flow run to Cancelled; returns the server's answer status."""
        res = self.request("POST", f"/flow_runs/{flow_run_id}/set_state",
                           {"state": {"type": "CANCELLED", "name": "Cancelled", "message": message}, "force": True})
        return str((res or {}).get("status", "ACCEPT"))
