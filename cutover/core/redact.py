"""Keep secrets out of output, logs and reports.

Two kinds of secret: passwords inside URLs (``postgresql://u:pw@h/db``) and
values of mapping keys that look like credentials (``password``, ``token``,
``secret``, ``key`` ...). Everything that prints a URL or a config goes
through here.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

_SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|credential|private|api[_-]?key|access[_-]?key|"
    r"session[_-]?key|account[_-]?key|sas|auth)",
    re.IGNORECASE,
)
# user:password@ inside any URL-looking string, even embedded in a longer message
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]+)@")


def redact_url(url: str | None) -> str | None:
    """``postgresql://app:s3cret@db/x`` -> ``postgresql://app:***@db/x``."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.password is None:
        return redact_text(url)
    netloc = parts.netloc
    userinfo, _, hostport = netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostport}"))


def redact_text(text: str) -> str:
    """Mask URL passwords anywhere in free text (error messages, log lines)."""
    if not text:
        return text
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_mapping(value: Any) -> Any:
    """Deep copy of a mapping/list with secret-looking keys masked and URL passwords hidden."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and is_secret_key(k) and v not in (None, ""):
                out[k] = MASK
            else:
                out[k] = redact_mapping(v)
        return out
    if isinstance(value, (list, tuple)):
        return [redact_mapping(v) for v in value]
    if isinstance(value, str):
        return redact_url(value) if "://" in value else value
    return value
