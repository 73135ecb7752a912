"""Discovery: the files of an ingestion's source that match its glob pattern.

Any fsspec URL works (``s3://``, ``gs://``, ``memory://`` ...); a plain path is
the local file system. The ledger key is the file's full path as a string:
absolute for local files, ``protocol://...`` otherwise.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cutover.core.errors import InputError
from cutover.core.redact import redact_text, redact_url


@dataclass(frozen=True)
class DiscoveredFile:
    path: str
    size: int | None
    etag: str | None
    mtime: float | None


def filesystem(source_uri: str, storage_options: dict[str, Any] | None = None):
    """(fs, root) for a source URI."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(source_uri, **(storage_options or {}))
    except (ValueError, ImportError) as e:
        raise InputError(f"cannot open source {redact_url(source_uri)} ({redact_text(str(e))})",
                         fix="check the URL and that the fsspec backend for it is installed") from None
    return fs, root


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def ledger_path(fs, path: str) -> str:
    return path if _is_local(fs) else fs.unstrip_protocol(path)


def _mtime(info: dict) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        v = info.get(key)
        if v is None:
            continue
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, datetime):
            return v.timestamp()
        try:
            return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return None


def discover(source_uri: str, pattern: str, storage_options: dict[str, Any] | None = None) -> list[DiscoveredFile]:
    fs, root = filesystem(source_uri, storage_options)
    if not fs.exists(root):
        raise InputError(f"source {redact_url(source_uri)} does not exist", fix="create it or fix the ingestion's source_uri")
    try:
        found = fs.glob(posixpath.join(root.rstrip("/"), pattern), detail=True)
    except OSError as e:
        raise InputError(f"cannot list source {redact_url(source_uri)} ({redact_text(str(e))})",
                         fix="check access rights and credentials") from None
    out = []
    for path, info in found.items():
        if info.get("type") == "directory":
            continue
        size = info.get("size")
        mtime = _mtime(info)
        etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
        if etag is None:
            etag = f"{size}-{mtime}"
        out.append(DiscoveredFile(path=ledger_path(fs, path), size=size, etag=str(etag).strip('"'), mtime=mtime))
    out.sort(key=lambda f: f.path)
    return out
