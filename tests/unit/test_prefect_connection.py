"""Which Prefect API cutover selects, and how it talks to it: as Prefect 3.8 resolves it
(environment, then the active profile, else the embedded server). No server needed: the probe
and the worker check run against local sockets that refuse, hang or answer like a Prefect API."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cutover.core.config import load_settings
from cutover.core.errors import InputError
from cutover.core.prefectconn import connection_env, profiles_path, resolve
from tests.helpers import ROOT

KEY = "pnu_Zq9secretkeyvalue0000000000000000"


def _profiles(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    p = home / "profiles.toml"
    p.write_text(text)
    return p


TEAM = f"""
active = "team"

[profiles.team]
PREFECT_API_URL = "http://prefect.team.internal:4200/api"
PREFECT_API_KEY = "{KEY}"
PREFECT_API_TLS_INSECURE_SKIP_VERIFY = "true"

[profiles.local]
PREFECT_API_URL = "http://127.0.0.1:4200/api"

[profiles.ephemeral]
PREFECT_SERVER_EPHEMERAL_ENABLED = "true"
"""


def test_profile_of_prefect_home_is_used(tmp_path):
    f = _profiles(tmp_path / "ph", TEAM)
    c = resolve({"PREFECT_HOME": str(tmp_path / "ph"), "HOME": str(tmp_path)})
    assert (c.url, c.profile, c.profiles_file) == ("http://prefect.team.internal:4200/api", "team", str(f))
    assert c.source == f"profile 'team' in {f}"
    assert c.api_key == KEY and c.tls_insecure_skip_verify and c.problem is None
    assert KEY not in repr(c) and KEY not in json.dumps(c.public())
    assert c.public()["api_key"] == "set" and c.public()["api_key_source"] == c.source


def test_order_env_then_workspace_then_profile_then_embedded(tmp_path):
    _profiles(tmp_path / "ph", TEAM)
    base = {"PREFECT_HOME": str(tmp_path / "ph"), "HOME": str(tmp_path)}
    # PREFECT_PROFILE picks another profile of the file
    c = resolve({**base, "PREFECT_PROFILE": "local"})
    assert (c.url, c.profile, c.api_key) == ("http://127.0.0.1:4200/api", "local", None)
    # a profile without a URL (Prefect's ephemeral one): cutover's embedded server
    c = resolve({**base, "PREFECT_PROFILE": "ephemeral"})
    assert (c.url, c.source, c.embedded) == (None, "embedded", True)
    # the workspace's [prefect] api_url wins over the profile; the key still comes from the profile
    c = resolve(base, workspace_url="http://ws:4200/api", workspace_source="/w/cutover.toml")
    assert (c.url, c.source, c.api_key) == ("http://ws:4200/api", "/w/cutover.toml", KEY)
    # the environment wins over both, setting by setting (as pydantic-settings merges Prefect's sources)
    c = resolve({**base, "PREFECT_API_URL": "http://env:4200/api", "PREFECT_API_KEY": "k2"},
                workspace_url="http://ws:4200/api")
    assert (c.url, c.source, c.api_key, c.sources["PREFECT_API_KEY"]) == (
        "http://env:4200/api", "env PREFECT_API_URL", "k2", "env PREFECT_API_KEY")
    assert c.tls_insecure_skip_verify  # not in the environment: the profile's
    # set and empty: no server, as for Prefect
    assert resolve({**base, "PREFECT_API_URL": ""}).embedded
    # nothing anywhere: embedded
    c = resolve({"HOME": str(tmp_path / "nohome")})
    assert (c.url, c.source, c.profile, c.problem) == (None, "embedded", None, None)


def test_profiles_path_like_prefect(tmp_path):
    _profiles(tmp_path / ".prefect", 'active = "x"\n[profiles.x]\nPREFECT_API_URL = "http://h:1/api"\n')
    assert profiles_path({"HOME": str(tmp_path)}) == tmp_path / ".prefect" / "profiles.toml"  # ~/.prefect
    assert resolve({"HOME": str(tmp_path)}).url == "http://h:1/api"
    other = _profiles(tmp_path / "elsewhere", 'active = "y"\n[profiles.y]\nPREFECT_API_URL = "http://y:1/api"\n')
    env = {"HOME": str(tmp_path), "PREFECT_PROFILES_PATH": str(other), "PREFECT_HOME": str(tmp_path / "ph")}
    assert resolve(env).url == "http://y:1/api"  # PREFECT_PROFILES_PATH first
    assert profiles_path({"HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path / "ph")}) == tmp_path / "ph" / "profiles.toml"


@pytest.mark.parametrize("env_extra, text, needle", [
    ({"PREFECT_PROFILE": "prod"}, TEAM, "Prefect profile 'prod' (from PREFECT_PROFILE) is not in"),
    ({}, 'active = "gone"\n[profiles.x]\n', "Prefect profile 'gone' (from the file's active key)"),
    ({}, "active = [unclosed", "cannot be read"),
    ({"PREFECT_API_URL": "prefect.internal:4200"}, TEAM, "is not an http(s) URL"),
    ({"PREFECT_PROFILE": "local", "PREFECT_API_SSL_CERT_FILE": "/no/such/ca.pem"}, TEAM, "is not a file"),
])
def test_configuration_problems_are_kept_and_raised_on_use(tmp_path, env_extra, text, needle):
    _profiles(tmp_path / "ph", text)
    c = resolve({"PREFECT_HOME": str(tmp_path / "ph"), "HOME": str(tmp_path), **env_extra})
    assert needle in (c.problem or ""), c.problem
    with pytest.raises(InputError) as ei:
        c.check()
    assert ei.value.exit_code == 2 and ei.value.fix


def test_workspace_settings_carry_the_connection(tmp_path):
    _profiles(tmp_path / "ph", TEAM)
    s = load_settings({"CUTOVER_HOME": str(tmp_path / "ws"), "PREFECT_HOME": str(tmp_path / "ph"),
                       "HOME": str(tmp_path), "CUTOVER_PREFECT_START_TIMEOUT": "5m"})
    assert s.prefect_api_url == "http://prefect.team.internal:4200/api" and s.prefect.profile == "team"
    assert s.sources["prefect.api_url"].startswith("profile 'team'")
    assert s.prefect_start_timeout == 300.0
    d = s.public_dict()
    assert d["prefect"]["api_url_source"].startswith("profile 'team'") and KEY not in json.dumps(d)
    # cutover's own PREFECT_HOME for its in-process client is not the user's: the profile is still found
    s2 = load_settings({"CUTOVER_HOME": str(tmp_path / "ws"), "PREFECT_HOME": str(tmp_path / "ws" / "prefect"),
                        "CUTOVER_SET_PREFECT_HOME": str(tmp_path / "ws" / "prefect"), "HOME": str(tmp_path),
                        "PREFECT_PROFILES_PATH": str(tmp_path / "ph" / "profiles.toml")})
    assert s2.prefect.profile == "team"
    # a processes' environment carries the same connection
    assert connection_env(s.prefect) == {"PREFECT_API_URL": "http://prefect.team.internal:4200/api",
                                         "PREFECT_API_KEY": KEY, "PREFECT_API_TLS_INSECURE_SKIP_VERIFY": "true",
                                         **({"PREFECT_API_SSL_CERT_FILE": s.prefect.ssl_cert_file}
                                            if s.prefect.ssl_cert_file else {})}


def _cli_env(tmp_path: Path, **extra: str) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUTOVER_", "PREFECT_"))}
    env.update(CUTOVER_HOME=str(tmp_path / "ws"), HOME=str(tmp_path), PYTHONPATH=str(ROOT), **extra)
    return env


def test_config_show_says_which_server_and_never_the_key(tmp_path):
    f = _profiles(tmp_path / "ph", TEAM)
    env = _cli_env(tmp_path, PREFECT_HOME=str(tmp_path / "ph"))
    r = subprocess.run([sys.executable, "-m", "cutover", "config", "show"], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"Prefect API:     http://prefect.team.internal:4200/api [from profile 'team' in {f}]" in r.stdout
    assert "API key set" in r.stdout and "NOT verified" in r.stdout
    r = subprocess.run([sys.executable, "-m", "cutover", "config", "show", "--json"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    d = json.loads(r.stdout)["prefect"]
    assert (d["api_url"], d["profile"], d["api_key"]) == ("http://prefect.team.internal:4200/api", "team", "set")
    assert KEY not in r.stdout + r.stderr
    env["PREFECT_API_URL"] = "http://127.0.0.1:4300/api"
    r = subprocess.run([sys.executable, "-m", "cutover", "config", "show"], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert "http://127.0.0.1:4300/api [from env PREFECT_API_URL]" in r.stdout
    env.pop("PREFECT_API_URL")
    env.pop("PREFECT_HOME")
    r = subprocess.run([sys.executable, "-m", "cutover", "config", "show"], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert "Prefect API:     embedded local server" in r.stdout and "[from embedded]" in r.stdout


# -- the probe and the clients: one line, in seconds ------------------------------------------------


class _Prefectish(http.server.BaseHTTPRequestHandler):
    """Answers /api/health like Prefect and records the Authorization header it got."""

    seen: list = []
    workers: list = []
    pool: dict = {}

    def log_message(self, *a):  # quiet
        pass

    def _send(self, code: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        type(self).seen.append(self.headers.get("Authorization"))
        if self.path == "/api/health":
            self._send(200, True)
        elif self.path.startswith("/api/work_pools/"):
            self._send(200, type(self).pool) if type(self).pool else self._send(404, {"detail": "not found"})
        else:
            self._send(404, {"detail": "not found"})

    def do_POST(self):
        type(self).seen.append(self.headers.get("Authorization"))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/workers/filter"):
            self._send(200, type(self).workers)
        else:
            self._send(404, {"detail": "not found"})


@pytest.fixture
def fake_api():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Prefectish)
    _Prefectish.seen, _Prefectish.workers, _Prefectish.pool = [], [], {}
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/api"
    finally:
        srv.shutdown()
        srv.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probe_sends_the_key_as_prefect_does(fake_api):
    from flows.http import PrefectHTTP, probe

    conn = resolve({"PREFECT_API_URL": fake_api, "PREFECT_API_KEY": KEY, "HOME": "/nonexistent"})
    assert probe(conn) == fake_api
    with PrefectHTTP(conn) as h:
        assert h.health()
    assert _Prefectish.seen == [f"Bearer {KEY}"] * 2
    conn = resolve({"PREFECT_API_URL": fake_api, "PREFECT_API_KEY": KEY, "PREFECT_API_AUTH_STRING": "u:p",
                    "HOME": "/nonexistent"})
    with PrefectHTTP(conn) as h:
        h.health()
    assert _Prefectish.seen[-1] == "Basic dTpw"  # the auth string wins, as in Prefect's client


def test_probe_fails_in_one_line_within_seconds(tmp_path):
    from flows.http import PrefectUnavailable, probe

    url = f"http://127.0.0.1:{_closed_port()}/api"
    t0 = time.monotonic()
    with pytest.raises(PrefectUnavailable) as ei:
        probe(resolve({"PREFECT_API_URL": url, "HOME": str(tmp_path)}))
    assert time.monotonic() - t0 < 5
    msg = ei.value.one_line()
    assert "\n" not in msg and f"{url} (from env PREFECT_API_URL) is unreachable" in msg, msg

    # a server that accepts the connection and never answers: the probe's read timeout
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    try:
        url = f"http://127.0.0.1:{lst.getsockname()[1]}/api"
        t0 = time.monotonic()
        with pytest.raises(PrefectUnavailable, match="is unreachable"):
            probe(resolve({"PREFECT_API_URL": url, "HOME": str(tmp_path)}))
        assert time.monotonic() - t0 < 10
    finally:
        lst.close()


def test_not_a_prefect_api_is_a_configuration_problem(fake_api, tmp_path):
    from flows.http import probe

    with pytest.raises(InputError, match="does not answer as a Prefect API") as ei:
        probe(resolve({"PREFECT_API_URL": fake_api.removesuffix("/api") + "/nope", "HOME": str(tmp_path)}))
    assert ei.value.exit_code == 2


def test_worker_check_follows_prefects_online_rule(fake_api, tmp_path):
    from flows.http import PrefectUnavailable, require_worker, worker_online

    now = datetime.now(timezone.utc)
    # Prefect's rule when the server gives no status: heartbeat younger than interval x 3 (30 s default)
    assert worker_online({"last_heartbeat_time": (now - timedelta(seconds=80)).isoformat()}, now)
    assert not worker_online({"last_heartbeat_time": (now - timedelta(seconds=100)).isoformat()}, now)
    assert worker_online({"last_heartbeat_time": (now - timedelta(seconds=100)).isoformat(),
                          "heartbeat_interval_seconds": 40}, now)
    assert not worker_online({"status": "OFFLINE", "last_heartbeat_time": now.isoformat()}, now)

    conn = resolve({"PREFECT_API_URL": fake_api, "HOME": str(tmp_path)})
    with pytest.raises(PrefectUnavailable, match="work pool 'etl' does not exist"):
        require_worker(conn, "etl")
    _Prefectish.pool = {"name": "etl", "type": "process", "is_paused": False}
    _Prefectish.workers = [{"name": "w1", "status": "OFFLINE", "last_heartbeat_time": "2026-01-01T00:00:00Z"}]
    with pytest.raises(PrefectUnavailable) as ei:
        require_worker(conn, "etl")
    msg = ei.value.one_line()
    assert "no live worker polls work pool 'etl'" in msg and "prefect worker start --pool etl --type process" in msg
    _Prefectish.pool = {"name": "etl", "type": "process", "is_paused": True}
    with pytest.raises(PrefectUnavailable, match="is paused"):
        require_worker(conn, "etl")
    _Prefectish.pool = {"name": "etl", "type": "process", "is_paused": False}
    _Prefectish.workers.append({"name": "w2", "status": "ONLINE", "last_heartbeat_time": now.isoformat()})
    assert require_worker(conn, "etl")["online"] == 1


def test_server_start_wait_shows_progress_and_names_the_setting(tmp_path):
    from flows.http import PrefectUnavailable
    from flows.local import wait_healthy

    lines: list[str] = []
    url = f"http://127.0.0.1:{_closed_port()}/api"
    with pytest.raises(PrefectUnavailable) as ei:
        wait_healthy(url, timeout=1.5, echo=lines.append, every=0.4, log=tmp_path / "server.log")
    assert lines and all(f"waiting for the Prefect server at {url}" in x and "of 2s" in x for x in lines), lines
    assert "CUTOVER_PREFECT_START_TIMEOUT" in ei.value.one_line()
    assert ei.value.exit_code == 3  # the operation ran and failed part-way (an unreachable URL is 2)
