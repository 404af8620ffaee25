"""Every data test runs with the network switched off: downloads are simulated with file:// URLs."""

from __future__ import annotations

import hashlib
import socket
import urllib.request
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any socket use; yields the attempts (a test that provokes one clears them)."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield attempts
    assert not attempts, "a test tried to use the network"


@pytest.fixture
def serve_upstream(monkeypatch):
    """Point a reader module's upstream URL (and sha256) at a local archive; returns the URLs opened."""
    opened: list[str] = []
    real_urlopen = urllib.request.urlopen

    def recording_urlopen(url, *args, **kwargs):
        opened.append(url)
        return real_urlopen(url, *args, **kwargs)

    def serve(module, url_attr: str, sha_attr: str, archive: Path) -> list[str]:
        monkeypatch.setattr(module, url_attr, archive.as_uri())
        monkeypatch.setattr(module, sha_attr, hashlib.sha256(archive.read_bytes()).hexdigest())
        monkeypatch.setattr(urllib.request, "urlopen", recording_urlopen)
        return opened

    return serve
