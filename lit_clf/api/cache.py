"""An on-disk cache of chat completions: a rerun costs nothing, and a run killed half-way resumes without repeating
paid calls.

One JSON file per request under ``<folder>/<key[:2]>/<key>.json``, where the key is the SHA-256 of the endpoint
(``base_url``), the model, the messages and the request parameters (temperature, token limit, response format...):
a second server serving a model of the same name never gets the first one's answers. Each entry also records the
model the server said it served; only complete answers are stored (an empty or malformed response never is). Each
file is written to a temporary name and renamed, so a killed run leaves whole entries only. The API key is never
part of an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ResponseCache", "request_key"]


def request_key(
    model: str, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any], endpoint: str | None = None
) -> str:
    """The cache key of one request: SHA-256 of its canonical JSON (the endpoint, model, messages, parameters)."""
    request = {"model": model, "messages": list(messages), "params": dict(params)}
    if endpoint is not None:
        request["endpoint"] = endpoint.rstrip("/")
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """Completions stored by :func:`request_key`.

    Args:
        folder: Where the entries live (created on the first write); ``~`` is expanded.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or None (also for an unreadable one, which the next write replaces)."""
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) and isinstance(entry.get("text"), str) else None

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        """Store ``entry`` atomically (a temporary file renamed over the entry)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(dict(entry), file, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
