"""The connection to the Prefect 3 API: every cutover module that talks to the server goes through here.

The connection (URL, credentials, TLS) is the one Prefect itself would use
(:mod:`cutover.core.prefectconn`: the environment, then the active profile, else the embedded
server); every client built here sends the same headers (``Authorization: Bearer <PREFECT_API_KEY>``
or HTTP Basic for ``PREFECT_API_AUTH_STRING``, as Prefect's client does), verifies TLS the same
way (``PREFECT_API_TLS_INSECURE_SKIP_VERIFY``, ``PREFECT_API_SSL_CERT_FILE``, else certifi) and
gives up connecting after :data:`CONNECT_TIMEOUT` seconds.

- :func:`probe`: one ``GET <api>/health`` (connect timeout 5 s, no retry) before a command's first
  call: a server that is down, a URL that is not a Prefect API, refused credentials or a TLS
  failure become ONE line naming the URL and where it came from (exit 3, or 2 for a configuration
  problem) in seconds, instead of the Prefect client's retries (a minute and a half measured);
- :func:`check_health`: the same request as ``(ok, detail)``, never raises (status displays);
- :func:`client` / :func:`open_client`: the Prefect client (sync) bound to one API URL, for the
  deployment, flow-run and work-pool calls (its retries are counted by :class:`RetryCounter`);
- :class:`PrefectHTTP`: a small REST client for the incident controls' mass operations;
- :func:`live_workers` / :func:`require_worker`: is a worker polling the pool (its heartbeat inside
  the window Prefect uses to call it ONLINE)?

Nothing here imports prefect at module level; ``httpx`` (a Prefect dependency, ~0.1 s) is imported
on first use.

The REST client
---------------

Why not the Prefect client: ``import prefect`` costs ~0.9 s and 80 MB (FACTS.md), and the
on-call engineer's ``cutover pause`` must have the fence up in well under 2 s including
process start. ``httpx`` with one keep-alive connection talks to the
same API the Prefect client wraps (a work pool pause = ``PATCH /work_pools/{name}
{"is_paused": true}``, ...). Deployments are paused and resumed with the server's dedicated
``POST /deployments/{id}/pause_deployment`` | ``resume_deployment`` routes, which cost the server
about half of the client's ``PATCH /deployments/{id} {"paused": ...}`` (see
:meth:`PrefectHTTP.set_deployment_paused`).

Errors: an unreachable server, a timeout or 5xx/408/429 after the retries raise
:class:`cutover.protocol.OrchestratorError` with one redacted line; 404 raises
:class:`NotFoundHTTP`; other 4xx raise :class:`OrchestratorError` with the server's detail.
Writes are sequential: the server is the bottleneck (FACTS.md), and a SQLite-backed server
answers concurrent writes with 503.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import time
from datetime import datetime, timezone
from typing import Any, Iterator

from cutover.core.errors import CutoverError, InputError
from cutover.core.prefectconn import PrefectConnection, resolve, user_prefect_env
from cutover.core.redact import redact_text, redact_url
from cutover.protocol import OrchestratorError

PAGE = 200
RETRY_CODES = (408, 429, 502, 503, 504)
TIMEOUT = 30.0  # seconds per REST request
CONNECT_TIMEOUT = 5.0  # seconds to open a connection, every client
REQUEST_TIMEOUT = 60.0  # the Prefect client's read/write timeout (PREFECT_API_REQUEST_TIMEOUT's default)
RETRIES = 5  # REST retries of a timeout or a 408/429/5xx answer (the Prefect client has its own)
HEALTH_TIMEOUT = 2.0
PROBE_TIMEOUT = 4.0  # read timeout of the probe: with the connect timeout, a dead server costs < 10 s


class PrefectUnavailable(CutoverError, OrchestratorError):
    """The Prefect API cannot be reached: exit 2, like any setting that points nowhere (the URL
    needs fixing before anything can be done; nothing was changed). An OrchestratorError too: the
    engine treats it like any side that does not answer (a pause or rollback goes on with the
    other sides and exits 3, partial)."""

    exit_code = 2


class PrefectStartFailed(PrefectUnavailable):
    """cutover started the embedded Prefect server (or its worker) and it did not come up: not
    healthy within the start timeout, or it exited. The input was valid and the operation ran
    and failed part-way (what it started is stopped again): exit 3, partial failure (DESIGN)."""

    exit_code = 3


# -- the connection ---------------------------------------------------------------------------


def connection_for(url: str | None = None, conn: PrefectConnection | None = None) -> PrefectConnection:
    """The connection of this process (environment, then profile: as the settings resolve it), on
    ``url`` when given (the embedded server's URL, a test server's)."""
    conn = conn or resolve(user_prefect_env())
    if url is None or url == conn.url:
        return conn
    return dataclasses.replace(conn, url=url, source=f"{conn.source}; URL given" if conn.url else "embedded server",
                               problem=None, fix=None)


def _conn(target: "str | PrefectConnection") -> PrefectConnection:
    return target if isinstance(target, PrefectConnection) else connection_for(target)


def auth_headers(conn: PrefectConnection | None = None) -> dict[str, str]:
    """The request headers, with the credentials Prefect's client would send (the auth string wins)."""
    conn = conn or connection_for()
    h = {"Content-Type": "application/json"}
    if conn.auth_string:
        h["Authorization"] = "Basic " + base64.b64encode(conn.auth_string.encode()).decode()
    elif conn.api_key:
        h["Authorization"] = f"Bearer {conn.api_key}"
    return h


def tls_verify(conn: PrefectConnection):
    """The SSL context Prefect's client builds: no verification when insecure, else the CA file
    (PREFECT_API_SSL_CERT_FILE, default SSL_CERT_FILE), else certifi's bundle."""
    import ssl

    if conn.tls_insecure_skip_verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    cafile = conn.ssl_cert_file
    if not cafile:
        import certifi

        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile)


def _httpx(conn: PrefectConnection, *, timeout: float, connect: float = CONNECT_TIMEOUT, base: bool = True):
    import httpx

    kw: dict[str, Any] = {"headers": auth_headers(conn), "timeout": httpx.Timeout(timeout, connect=min(connect, timeout))}
    if str(conn.url or "").startswith("https"):
        kw["verify"] = tls_verify(conn)
    if base:
        kw["base_url"] = str(conn.url).rstrip("/") + "/"
    return httpx.Client(**kw)


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return redact_text(f"{type(e).__name__}: {text}")[:200]


def health(conn: PrefectConnection, timeout: float = HEALTH_TIMEOUT) -> tuple[str, str]:
    """``GET <api>/health`` once: (verdict, detail); verdict ok | unreachable | timeout | auth | tls |
    not_prefect. Never raises."""
    import httpx

    try:
        with _httpx(conn, timeout=timeout, base=False) as h:
            r = h.get(str(conn.url).rstrip("/") + "/health")
    except httpx.ConnectTimeout:
        return "unreachable", f"no connection within {min(CONNECT_TIMEOUT, timeout):.0f}s"
    except httpx.TimeoutException:
        return "timeout", f"no answer within {timeout:.0f}s"
    except (httpx.HTTPError, OSError, ValueError) as e:
        text = str(e)
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
            return "tls", _reason(e)
        return "unreachable", _reason(e)
    body = r.text[:200].strip()
    if r.status_code in (401, 403):
        return "auth", f"HTTP {r.status_code}"
    if r.status_code == 200 and body == "true":
        return "ok", f"HTTP 200 {body}"
    return "not_prefect", f"HTTP {r.status_code} {redact_text(body[:80])}".strip()


def check_health(url: "str | PrefectConnection", timeout: float = HEALTH_TIMEOUT) -> tuple[bool, str]:
    """GET <api>/health: (ok, detail). Never raises."""
    verdict, detail = health(_conn(url), timeout)
    return verdict == "ok", detail if verdict != "unreachable" else f"unreachable ({detail})"


_PROBED: set[str] = set()  # URLs that answered in this process


def probe(target: "str | PrefectConnection", *, timeout: float = PROBE_TIMEOUT) -> str:
    """Check, once per process and URL, that the API answers as a Prefect API; returns the URL.

    One line on failure, naming the URL (redacted) and where it came from: InputError (exit 2) for a
    configuration problem (bad URL, not a Prefect API, refused credentials, TLS), PrefectUnavailable
    (exit 3) when the server does not answer."""
    conn = _conn(target)
    conn.check()
    if conn.url is None:
        raise PrefectUnavailable("no Prefect API selected", fix="run `cutover prefect up` or set PREFECT_API_URL")
    if conn.url in _PROBED:
        return conn.url
    verdict, detail = health(conn, timeout)
    where = conn.where
    if verdict == "ok":
        _PROBED.add(conn.url)
        return conn.url
    if verdict in ("unreachable", "timeout"):
        fix = ("start it (`cutover prefect up`)" if conn.embedded or conn.source.startswith("embedded")
               else "start the server or select another one: PREFECT_API_URL, PREFECT_PROFILE or the profile's "
                    "PREFECT_API_URL (`cutover config show` says which is used)")
        raise PrefectUnavailable(f"Prefect API {where} is unreachable ({detail})", fix=fix)
    if verdict == "auth":
        raise InputError(f"Prefect API {where} refused the credentials ({detail})",
                         fix="check PREFECT_API_KEY / PREFECT_API_AUTH_STRING (environment or profile)")
    if verdict == "tls":
        raise InputError(f"Prefect API {where}: TLS failed ({detail})",
                         fix="set PREFECT_API_SSL_CERT_FILE to the server's CA bundle "
                             "(or PREFECT_API_TLS_INSECURE_SKIP_VERIFY=true for a test server)")
    raise InputError(f"{where} does not answer as a Prefect API (GET /health -> {detail})",
                     fix="the URL must be the API root, like http://HOST:4200/api")


def _prefect_settings(conn: PrefectConnection) -> dict:
    from prefect.settings import (PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_SSL_CERT_FILE,
                                  PREFECT_API_TLS_INSECURE_SKIP_VERIFY, PREFECT_API_URL)

    return {PREFECT_API_URL: conn.url, PREFECT_API_KEY: conn.api_key, PREFECT_API_AUTH_STRING: conn.auth_string,
            PREFECT_API_TLS_INSECURE_SKIP_VERIFY: conn.tls_insecure_skip_verify,
            PREFECT_API_SSL_CERT_FILE: conn.ssl_cert_file}


def _httpx_settings() -> dict:
    import httpx

    return {"timeout": httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT)}


@contextlib.contextmanager
def settings_for(target: "str | PrefectConnection") -> Iterator[None]:
    """Prefect's in-process settings on this connection (URL, credentials, TLS), for code that calls
    Prefect functions which build their own client (a flow called in this process)."""
    from prefect.settings import temporary_settings

    with temporary_settings(updates=_prefect_settings(_conn(target))):
        yield


@contextlib.contextmanager
def client(url: "str | PrefectConnection") -> Iterator[Any]:
    """A sync Prefect client bound to ``url`` with this process's credentials and TLS settings, a
    5 s connect timeout (Prefect's default is the 60 s request timeout, per retry)."""
    from prefect.client.orchestration import get_client

    with settings_for(url):
        with get_client(httpx_settings=_httpx_settings(), sync_client=True) as c:
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


def open_client(url: "str | PrefectConnection"):
    """A sync Prefect client bound to ``url``, already entered (the caller closes it with
    ``__exit__``): for an adapter that keeps one client across calls."""
    from prefect.client.orchestration import get_client
    from prefect.settings import temporary_settings

    with temporary_settings(updates=_prefect_settings(_conn(url))):
        c = get_client(httpx_settings=_httpx_settings(), sync_client=True)
    c.__enter__()
    return c


# -- workers -----------------------------------------------------------------------------------

# Prefect's server calls a worker ONLINE while its last heartbeat is younger than its heartbeat
# interval (30 s when it did not say) times 3 (prefect/server/schemas/responses.py WorkerResponse,
# INACTIVITY_HEARTBEAT_MULTIPLE; the foreman service applies the same rule)
DEFAULT_HEARTBEAT_INTERVAL_S = 30
INACTIVITY_HEARTBEAT_MULTIPLE = 3
NO_WORKER_POOL_TYPES = ("prefect:managed",)  # and every "*:push" pool: Prefect runs those itself


def _parse_ts(s: str | None) -> datetime | None:
    if not s:
        return None
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def worker_online(w: dict, now: datetime | None = None) -> bool:
    """Prefect's rule: ONLINE when the server says so, else (older servers) a heartbeat inside
    interval x 3."""
    if w.get("status") in ("ONLINE", "OFFLINE"):
        return w["status"] == "ONLINE"
    hb = _parse_ts(w.get("last_heartbeat_time"))
    if hb is None:
        return False
    window = (w.get("heartbeat_interval_seconds") or DEFAULT_HEARTBEAT_INTERVAL_S) * INACTIVITY_HEARTBEAT_MULTIPLE
    return ((now or datetime.now(timezone.utc)) - hb).total_seconds() <= window


def worker_start_command(pool: str, pool_type: str | None = "process") -> str:
    t = f" --type {pool_type}" if pool_type else ""
    return f"prefect worker start --pool {pool}{t}"


def require_worker(target: "str | PrefectConnection", pool: str) -> dict:
    """Raise PrefectUnavailable (one line naming the pool and the command that starts a worker)
    unless the work pool exists, is not paused and has a live worker; returns the pool's summary."""
    conn = _conn(target)
    with PrefectHTTP(conn, timeout=10.0, retries=1) as http:
        try:
            wp = http.work_pool(pool)
        except NotFoundHTTP:
            raise PrefectUnavailable(f"work pool {pool!r} does not exist on {conn.where}",
                                     fix="deploy first (cutover prefect deploy / shadow start), then start a worker: "
                                         + worker_start_command(pool)) from None
        ptype = wp.get("type")
        if ptype in NO_WORKER_POOL_TYPES or str(ptype).endswith(":push"):
            return {"pool": pool, "type": ptype, "workers": 0, "online": 0, "paused": bool(wp.get("is_paused"))}
        if wp.get("is_paused"):
            raise PrefectUnavailable(f"work pool {pool!r} on {conn.where} is paused: no worker will pick up a run",
                                     fix=f"resume it (cutover resume, or prefect work-pool resume {pool})")
        workers = list(http.workers(pool))
    online = [w for w in workers if worker_online(w)]
    if not online:
        seen = max((w.get("last_heartbeat_time") or "" for w in workers), default="")
        last = f"; last heartbeat {seen[:19]}Z" if seen else ""
        raise PrefectUnavailable(f"no live worker polls work pool {pool!r} on {conn.where} "
                                 f"({len(workers)} worker(s) known, none ONLINE{last}): a flow run would wait forever",
                                 fix=("`cutover prefect up` starts the embedded server's worker"
                                      if conn.source == "embedded server" else
                                      f"start one where the flows can run: {worker_start_command(pool, ptype)}"))
    return {"pool": pool, "type": ptype, "workers": len(workers), "online": len(online),
            "paused": False, "names": sorted(str(w.get("name")) for w in online)}


# -- the REST client --------------------------------------------------------------------------


class NotFoundHTTP(OrchestratorError):
    pass


class PrefectHTTP:
    def __init__(self, api_url: "str | PrefectConnection", *, timeout: float = TIMEOUT,
                 connect_timeout: float = CONNECT_TIMEOUT, retries: int = RETRIES):
        conn = _conn(api_url)
        self.conn = conn
        self.api_url = str(conn.url).rstrip("/")
        self.retries = retries
        self.retried = 0
        self._http = _httpx(conn, timeout=timeout, connect=connect_timeout)

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
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:  # refused / no route: the server is down,
                # do not wait for it
                raise OrchestratorError(f"Prefect API {self.conn.where} is unreachable "
                                        f"({type(e).__name__}: {redact_text(str(e))[:200]})") from None
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as e:
                if attempt == self.retries:
                    raise OrchestratorError(f"Prefect API {self.conn.where} is unreachable "
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

    def workers(self, pool: str) -> Iterator[dict]:
        """The workers the server knows for this pool, with their ONLINE/OFFLINE status."""
        return self._pages(f"/work_pools/{pool}/workers/filter", {})

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
