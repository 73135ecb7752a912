"""Which Prefect API cutover talks to, resolved the way Prefect 3.8 resolves it (no ``import prefect``).

Prefect's order for a setting (``prefect/settings/base.py`` and ``sources.py``): the environment, then
the active profile. cutover's order for the API URL:

1. ``PREFECT_API_URL`` in the environment (set but empty means "no server", as for Prefect);
2. ``CUTOVER_PREFECT_API_URL`` / ``[prefect] api_url`` of the workspace's cutover.toml (a workspace
   pinned to a server);
3. ``PREFECT_API_URL`` of the active profile;
4. else cutover's embedded server (``cutover prefect up``).

The profile: the file is ``PREFECT_PROFILES_PATH``, else ``$PREFECT_HOME/profiles.toml``, else
``~/.prefect/profiles.toml`` (Prefect's ``_get_profiles_path``); the profile is ``PREFECT_PROFILE``,
else the file's ``active`` key. A profile that is named but missing, or a file that is not TOML, is
a configuration problem here (Prefect silently falls back to its default profile: a user who set
``PREFECT_PROFILE=prod`` would land on an empty local server without a word). The problem is kept
in :attr:`PrefectConnection.problem` and raised when the connection is used, so that commands that
never talk to Prefect still run.

The other connection settings are resolved one by one the same way (environment, then profile):
``PREFECT_API_KEY`` (sent as ``Authorization: Bearer``), ``PREFECT_API_AUTH_STRING`` (HTTP Basic,
wins over the key, as in Prefect's client), ``PREFECT_API_TLS_INSECURE_SKIP_VERIFY`` and
``PREFECT_API_SSL_CERT_FILE`` (default ``SSL_CERT_FILE``). Not read: a ``.env``, ``prefect.toml``
or ``pyproject.toml`` of the current directory (put those settings in a profile or the environment).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from cutover.core.errors import InputError
from cutover.core.redact import redact_url

EMBEDDED = "embedded"
_TRUE = {"1", "true", "yes", "on", "t", "y"}


@dataclass(frozen=True)
class PrefectConnection:
    """The Prefect API of this process: URL, credentials, TLS, and where each came from.

    ``repr`` never shows the key or the auth string."""

    url: str | None  # None: cutover's embedded server
    source: str  # "env PREFECT_API_URL" | "env CUTOVER_PREFECT_API_URL" | "<file>" | "profile 'x' in <file>" | "embedded"
    api_key: str | None = field(default=None, repr=False)
    auth_string: str | None = field(default=None, repr=False)
    tls_insecure_skip_verify: bool = False
    ssl_cert_file: str | None = None
    profile: str | None = None  # the active profile's name (None: no profiles file)
    profiles_file: str | None = None
    sources: dict[str, str] = field(default_factory=dict)  # setting -> where it came from
    problem: str | None = None  # a configuration problem, raised on use (check())
    fix: str | None = None

    @property
    def embedded(self) -> bool:
        return self.url is None

    @property
    def where(self) -> str:
        """``http://h:4200/api (from profile 'prod' in /x/profiles.toml)``, the key never shown."""
        return f"{redact_url(self.url) if self.url else 'the embedded server'} (from {self.source})"

    def check(self) -> None:
        """Raise the configuration problem, if any (exit 2)."""
        if self.problem:
            raise InputError(self.problem, fix=self.fix)

    def public(self) -> dict[str, Any]:
        """What `cutover config show` prints: no secret, only whether one is set and from where."""
        return {
            "api_url": redact_url(self.url) if self.url else None,
            "api_url_source": self.source,
            "profile": self.profile,
            "profiles_file": self.profiles_file,
            "api_key": "set" if self.api_key else None,
            "api_key_source": self.sources.get("PREFECT_API_KEY"),
            "auth_string": "set" if self.auth_string else None,
            "tls_insecure_skip_verify": self.tls_insecure_skip_verify,
            "ssl_cert_file": self.ssl_cert_file,
            "ssl_cert_file_source": self.sources.get("PREFECT_API_SSL_CERT_FILE",
                                                     "env SSL_CERT_FILE" if self.ssl_cert_file else None),
            "problem": f"{self.problem}: {self.fix}" if self.problem and self.fix else self.problem,
        }


def profiles_path(env: Mapping[str, str]) -> Path | None:
    """The profiles file Prefect reads (None: none, Prefect's packaged default applies)."""
    if env.get("PREFECT_PROFILES_PATH"):
        return Path(env["PREFECT_PROFILES_PATH"]).expanduser()
    if env.get("PREFECT_HOME"):
        return Path(env["PREFECT_HOME"]).expanduser() / "profiles.toml"
    default = Path(env.get("HOME") or Path.home()).expanduser() / ".prefect" / "profiles.toml"
    return default if default.exists() else None


def _read_profile(env: Mapping[str, str]) -> tuple[dict[str, Any], str | None, str | None, str | None, str | None]:
    """(settings of the active profile, its name, the file, problem, fix)."""
    path = profiles_path(env)
    if path is None or not path.exists():
        if env.get("PREFECT_PROFILE"):
            where = path or "~/.prefect/profiles.toml"
            return {}, None, str(where), (f"PREFECT_PROFILE={env['PREFECT_PROFILE']!r} but there is no profiles "
                                          f"file {where}"), "create the profile (prefect profile create) or unset PREFECT_PROFILE"
        return {}, None, str(path) if path else None, None, None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        return {}, None, str(path), f"the Prefect profiles file {path} cannot be read ({e})", \
            "fix the file (prefect profile ls shows what Prefect makes of it)"
    name = env.get("PREFECT_PROFILE") or data.get("active")
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict):
        return {}, None, str(path), f"{path}: [profiles] is not a table", "fix the file"
    if not name:
        return {}, None, str(path), None, None
    prof = profiles.get(name)
    if not isinstance(prof, dict):
        via = "PREFECT_PROFILE" if env.get("PREFECT_PROFILE") else "the file's active key"
        return {}, str(name), str(path), f"Prefect profile {name!r} (from {via}) is not in {path}", \
            f"use one of {', '.join(sorted(profiles)) or '(none)'} (prefect profile use NAME)"
    return {str(k).upper(): v for k, v in prof.items()}, str(name), str(path), None, None


def check_api_url(url: str, source: str) -> tuple[str | None, str | None]:
    """(problem, fix) when ``url`` is not an http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        if ok:
            parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    if ok:
        return None, None
    return (f"the Prefect API URL {redact_url(url)!r} (from {source}) is not an http(s) URL",
            "set it like http://HOST:4200/api (Prefect server) or https://api.prefect.cloud/api/accounts/…/workspaces/…")


def resolve(env: Mapping[str, str], *, workspace_url: str | None = None,
            workspace_source: str | None = None) -> PrefectConnection:
    """The connection for this environment; ``workspace_url``: cutover's own [prefect] api_url setting."""
    prof, name, pfile, problem, fix = _read_profile(env)
    profile_src = f"profile {name!r} in {pfile}"
    sources: dict[str, str] = {}

    def pick(key: str) -> Any:
        if key in env:
            sources[key] = f"env {key}"
            return env[key]
        if key in prof:
            sources[key] = profile_src
            return prof[key]
        return None

    if "PREFECT_API_URL" in env:
        url, source = env["PREFECT_API_URL"] or None, "env PREFECT_API_URL"
        if url is None:
            source = "embedded (PREFECT_API_URL is set and empty)"
    elif workspace_url:
        url, source = workspace_url, workspace_source or "cutover.toml"
    elif prof.get("PREFECT_API_URL"):
        url, source = str(prof["PREFECT_API_URL"]), profile_src
    else:
        url, source = None, EMBEDDED
    sources["PREFECT_API_URL"] = source
    key = pick("PREFECT_API_KEY")
    auth = pick("PREFECT_API_AUTH_STRING")
    insecure = pick("PREFECT_API_TLS_INSECURE_SKIP_VERIFY")
    cert = pick("PREFECT_API_SSL_CERT_FILE")
    if cert in (None, ""):
        cert = env.get("SSL_CERT_FILE") or None
    if url is not None and problem is None:
        problem, fix = check_api_url(url, source)
    if problem is None and cert and not Path(str(cert)).expanduser().is_file():
        problem = f"PREFECT_API_SSL_CERT_FILE {cert} (from {sources.get('PREFECT_API_SSL_CERT_FILE', 'env SSL_CERT_FILE')}) is not a file"
        fix = "point it at a PEM bundle of the CA that signed the server's certificate"
    return PrefectConnection(
        url=url, source=source, api_key=str(key) if key else None, auth_string=str(auth) if auth else None,
        tls_insecure_skip_verify=str(insecure).strip().lower() in _TRUE if insecure is not None else False,
        ssl_cert_file=str(Path(str(cert)).expanduser()) if cert else None, profile=name, profiles_file=pfile,
        sources=sources, problem=problem, fix=fix)


def connection_env(conn: PrefectConnection) -> dict[str, str]:
    """The PREFECT_* variables that make a Prefect process (a worker, the prefect CLI) use this
    connection whatever its PREFECT_HOME (secrets included: only for processes, never printed)."""
    out: dict[str, str] = {}
    if conn.url:
        out["PREFECT_API_URL"] = conn.url
    if conn.api_key:
        out["PREFECT_API_KEY"] = conn.api_key
    if conn.auth_string:
        out["PREFECT_API_AUTH_STRING"] = conn.auth_string
    if conn.tls_insecure_skip_verify:
        out["PREFECT_API_TLS_INSECURE_SKIP_VERIFY"] = "true"
    if conn.ssl_cert_file:
        out["PREFECT_API_SSL_CERT_FILE"] = conn.ssl_cert_file
    return out


def user_prefect_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) as the user set it: cutover's own PREFECT_HOME for its
    in-process client (``CUTOVER_SET_PREFECT_HOME``) is not the user's."""
    env = dict(os.environ if env is None else env)
    if env.get("CUTOVER_SET_PREFECT_HOME") and env.get("PREFECT_HOME") == env["CUTOVER_SET_PREFECT_HOME"]:
        env.pop("PREFECT_HOME")
    return env
