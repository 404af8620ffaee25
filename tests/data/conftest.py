"""Every data test runs with the network switched off: downloads are simulated with file:// URLs of archives the
tests write (``write_tar``)."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import urllib.request
from collections.abc import Iterable, Mapping
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


def _write_tar(
    path: Path, files: Mapping[str, bytes], dirs: Iterable[str] = (), symlinks: Mapping[str, str] | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


@pytest.fixture
def write_tar():
    """``write_tar(path, files, dirs=(), symlinks=None)``: a tar.gz at ``path`` (its folder made) holding a folder
    entry per name in ``dirs``, then ``files`` (member name -> bytes), then ``symlinks`` (name -> target)."""
    return _write_tar
