"""download.py: data root resolution, checksummed atomic downloads over file:// URLs, safe extraction."""

from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import pytest

from lit_clf.data.download import DataNotFoundError, data_root, download_file, extract_tar, fetch

PAYLOAD = b"hello dataset\n" * 1000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "upstream" / "payload.bin"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_CLF_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_root(str(tmp_path / "explicit")) == tmp_path / "explicit"
    assert data_root(None) == tmp_path / "env"
    monkeypatch.delenv("LIT_CLF_DATA")
    assert data_root() == tmp_path / "xdg" / "lit_clf"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".cache" / "lit_clf"


def test_download_file_good_checksum(tmp_path, source):
    dest = tmp_path / "root" / "sub" / "payload.bin"
    assert download_file(source.as_uri(), dest, sha(PAYLOAD)) == dest
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["payload.bin"]  # no temp file left


def test_download_file_bad_checksum_leaves_nothing(tmp_path, source):
    dest = tmp_path / "root" / "payload.bin"
    url = source.as_uri()
    with pytest.raises(
        ValueError, match=rf"sha256 mismatch for {url}: expected {'0' * 64}, got {sha(PAYLOAD)};"
    ) as info:
        download_file(url, dest, "0" * 64)
    assert "\n" not in str(info.value)
    assert not dest.parent.exists()  # not even the folder the download created


def test_download_file_network_error_is_one_line(tmp_path):
    calls = []

    def offline(url, timeout=None):
        calls.append((url, timeout))
        raise urllib.error.URLError("[Errno -3] Temporary failure\nin name resolution")

    url = "https://example.invalid/data.tar.gz"
    with pytest.raises(DataNotFoundError, match=r"could not download https://example\.invalid/data\.tar\.gz") as info:
        download_file(url, tmp_path / "data.tar.gz", "0" * 64, opener=offline)
    message = str(info.value)
    assert "\n" not in message and "Temporary failure in name resolution" in message
    assert "--data.init_args.data_dir" in message and "LIT_CLF_DATA" in message
    assert calls == [(url, 60)]
    assert list(tmp_path.iterdir()) == []


def test_download_file_timeout_and_missing_file(tmp_path):
    def slow(url, timeout=None):
        raise TimeoutError("timed out")

    with pytest.raises(DataNotFoundError, match=r"\(timed out\)"):
        download_file("https://example.invalid/x", tmp_path / "x", "0" * 64, opener=slow)
    with pytest.raises(DataNotFoundError, match=r"could not download file://"):
        download_file((tmp_path / "missing.bin").as_uri(), tmp_path / "x", "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_network_guard_blocks_real_urls(tmp_path, no_network):
    with pytest.raises(DataNotFoundError, match="network disabled in tests"):
        download_file("http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz", tmp_path / "x", "0" * 64)
    assert no_network
    no_network.clear()


def test_fetch_names_every_place(tmp_path, source):
    places = [tmp_path / "a.jsonl", tmp_path / "b.tar.gz"]
    with pytest.raises(
        DataNotFoundError, match=r"^Toy not found \(looked for: .*a\.jsonl, .*b\.tar\.gz\); downloading is off"
    ):
        fetch(source.as_uri(), tmp_path / "b.tar.gz", sha(PAYLOAD), what="Toy", places=places, download=False)
    missing = (tmp_path / "nope").as_uri()
    with pytest.raises(DataNotFoundError, match=rf"b\.tar\.gz\); could not download {missing} \(.*\); to use a local"):
        fetch(missing, tmp_path / "b.tar.gz", sha(PAYLOAD), what="Toy", places=places, download=True)
    assert fetch(source.as_uri(), tmp_path / "b.tar.gz", sha(PAYLOAD), what="Toy", places=places, download=True)
    assert (tmp_path / "b.tar.gz").read_bytes() == PAYLOAD


def test_extract_tar(tmp_path, write_tar):
    archive = write_tar(tmp_path / "a.tar.gz", {"top/data/x.txt": b"x", "top/y.txt": b"y"})
    extract_tar(archive, tmp_path / "out")
    assert (tmp_path / "out" / "top" / "data" / "x.txt").read_bytes() == b"x"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["top"]  # staging folder removed


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil.txt", "top/../../evil.txt"])
def test_extract_tar_rejects_escaping_members(tmp_path, name, write_tar):
    archive = write_tar(tmp_path / "a.tar.gz", {"top/ok.txt": b"ok", name: b"evil"})
    with pytest.raises(ValueError, match=r"refusing to extract member .*evil\.txt.* \(absolute path or '\.\.'\)"):
        extract_tar(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_extract_tar_rejects_link_out_of_tree(tmp_path, write_tar):
    archive = write_tar(tmp_path / "a.tar.gz", {}, symlinks={"top/link": "/etc/passwd"})
    with pytest.raises(ValueError, match="refusing to extract"):
        extract_tar(archive, tmp_path / "out")


def test_extract_tar_truncated(tmp_path, write_tar):
    archive = write_tar(tmp_path / "a.tar.gz", {f"top/{i}.bin": bytes(range(256)) * 64 * (i + 1) for i in range(4)})
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"a\.tar\.gz is truncated or corrupt \(.*\); delete it to download it again"):
        extract_tar(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
