"""Keep secrets out of output, logs and reports.

Three nets, applied by :func:`redact_text` to every line cutover prints or logs:

1. **passwords inside URLs**, parsed the way the drivers do. SQLAlchemy's ``make_url`` takes
   everything between ``user:`` and an ``@`` as the password, raw ``# / : ? &`` and spaces
   included (``urllib`` would cut it at ``#`` or ``/``); with a raw ``@`` in the password the
   driver gets part of the password as the host. So the userinfo ends at the LAST ``@`` that is
   followed by a host, and everything between ``user:`` and it is masked:
   ``postgresql://app:p@ss#w/rd@db:5432/x`` -> ``postgresql://app:***@db:5432/x``.
2. **every secret value seen**: settings, definitions and side configs register the secrets
   they hold (URL passwords, credential mappings, values of secret-named keys and env vars) with
   :func:`register_secret`; every registered value — raw, percent-encoded and ``+``-encoded — is
   replaced by the mask wherever it appears, so a driver's error message that quotes the bare
   password, or a password with spaces that no URL pattern can delimit, is still hidden.
3. **values of mapping keys that look like credentials** (``password``, ``token``, ``secret``,
   ``key`` ...), masked by :func:`redact_mapping` (and registered).
"""

from __future__ import annotations

import html
import json
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
# Registered secrets shorter than this are not replaced in free text (a 2-letter password would
# mask every word holding those letters); URL passwords of any length are still masked by net 1.
MIN_SECRET_LEN = 4

_SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|credential|private|api[_-]?key|access[_-]?key|"
    r"session[_-]?key|account[_-]?key|sas|auth)",
    re.IGNORECASE,
)
# scheme://user: -- where a URL with a password starts (the password's end is found by _userinfo_end)
_URL_START = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s\"'<>]*):")
# what follows the userinfo's '@': a host (name, IPv4 or [IPv6]) and an optional port, then the end
# of the authority
_HOST_AFTER = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_\-.%]+)(?::[^/?#\s\"'<>),;@]*)?(?=[/?#\s\"'<>),;]|$)")
_MAX_USERINFO = 512

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern | None = None


# -- the registry of secret values ---------------------------------------------------------

def register_secret(value: Any) -> None:
    """Remember ``value`` as a secret: :func:`redact_text` masks it (and its URL-encoded forms)
    wherever it appears from now on, in this process."""
    global _pattern
    if not isinstance(value, str):
        return
    # as written in a URL (percent- and +-encoded), in HTML/XML text and in a JSON string
    forms = {value, quote(value, safe=""), quote_plus(value, safe=""), html.escape(value, quote=True),
             html.escape(value, quote=False), json.dumps(value)[1:-1]}
    forms = {f for f in forms if len(f) >= MIN_SECRET_LEN and f != MASK}
    if not forms - _secrets:
        return
    with _lock:
        _secrets.update(forms)
        _pattern = None


def known_secrets() -> int:
    """How many secret forms are registered (for tests and `config show`)."""
    return len(_secrets)


def forget_secrets() -> None:
    """Empty the registry (tests)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def _mask_known(text: str) -> str:
    global _pattern
    if not _secrets:
        return text
    pat = _pattern
    if pat is None:
        with _lock:
            # longest first, so a secret that contains another is masked whole
            pat = _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))
    return pat.sub(MASK, text)


# -- URLs ----------------------------------------------------------------------------------

def _userinfo_end(text: str, start: int, *, whole: bool = False) -> int | None:
    """Index of the '@' that ends the userinfo of a URL whose password starts at ``start``: the
    last '@' followed by a host. ``whole``: ``text`` is one URL (a setting), so the last such '@'
    anywhere in it. In free text the last one within the same word is taken first (no reach
    across words), else the last one on the same line before the next URL (a raw space in a
    password)."""
    if whole:
        stops = [len(text)]
    else:
        line_end = text.find("\n", start)
        limit = min(len(text) if line_end < 0 else line_end, start + _MAX_USERINFO)
        nxt = text.find("://", start, limit)
        if nxt >= 0:
            limit = nxt
        token_end = start
        while token_end < limit and not text[token_end].isspace():
            token_end += 1
        stops = [token_end, limit]
    for stop in stops:
        best = None
        at = text.find("@", start, stop)
        while at >= 0:
            if _HOST_AFTER.match(text, at + 1):
                best = at
            at = text.find("@", at + 1, stop)
        if best is not None:
            return best
    return None


def split_userinfo(url: str) -> tuple[str, str | None, str | None, str] | None:
    """``scheme://user:password@rest`` -> (``scheme://``, user, password, rest) parsed like the
    drivers (see the module doc); None when ``url`` carries no ``user:password@``."""
    m = _URL_START.match(url)
    if not m:
        return None
    end = _userinfo_end(url, m.end(), whole=True)
    if end is None:
        return None
    return m["scheme"], m["user"], url[m.end():end], url[end + 1:]


def url_password(url: str | None) -> str | None:
    """The password a driver would read from ``url`` (percent-decoded), or None."""
    parts = split_userinfo(url or "")
    if not parts or not parts[2]:
        return None
    return unquote(parts[2])


def redact_url(url: str | None) -> str | None:
    """``postgresql://app:s3cret@db/x`` -> ``postgresql://app:***@db/x`` (the password is also
    registered, so it is masked wherever else it shows up)."""
    if not url:
        return url
    parts = split_userinfo(url)
    if parts is not None:
        scheme, user, pw, rest = parts
        if pw:
            register_secret(pw)
            register_secret(url_password(url))
        return redact_text(f"{scheme}{user}:{MASK}@{rest}")
    return redact_text(url)


def _mask_urls(text: str) -> str:
    out, pos = [], 0
    for m in _URL_START.finditer(text):
        if m.start() < pos:
            continue
        end = _userinfo_end(text, m.end())
        if end is None:
            continue
        out.append(text[pos:m.end()])
        out.append(MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def redact_text(text: str) -> str:
    """Mask URL passwords and every registered secret anywhere in free text (messages, log lines,
    JSON, reports)."""
    if not text or not isinstance(text, str):
        return text
    return _mask_urls(_mask_known(text)) if ("://" in text or _secrets) else text


# -- mappings ------------------------------------------------------------------------------

def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def register_mapping_secrets(value: Any) -> None:
    """Register the secret values of a mapping (credentials, catalog properties): the values of
    secret-named keys, and every string value when ``value`` is a credentials mapping."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and is_secret_key(k) and isinstance(v, str):
                register_secret(v)
            else:
                register_mapping_secrets(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            register_mapping_secrets(v)
    elif isinstance(value, str) and "://" in value:
        redact_url(value)


def redact_mapping(value: Any) -> Any:
    """Deep copy of a mapping/list with secret-looking keys masked and URL passwords hidden."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and is_secret_key(k) and v not in (None, ""):
                register_mapping_secrets({k: v})
                out[k] = MASK
            else:
                out[k] = redact_mapping(v)
        return out
    if isinstance(value, (list, tuple)):
        return [redact_mapping(v) for v in value]
    if isinstance(value, str):
        return redact_url(value) if "://" in value else redact_text(value)
    return value
