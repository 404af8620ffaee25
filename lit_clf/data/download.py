"""Find dataset files on disk, or download them once: checksummed, atomic, and safe to extract.

Every dataset lives under one data root (``data_root``): the ``data_dir`` option, else the
``LIT_CLF_DATA`` environment variable, else a per-user cache folder. Files the user put there are
used as they are; only what we download is checked against a pinned sha256.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

#: Environment variable naming the data root when no ``data_dir`` is given.
DATA_ENV = "LIT_CLF_DATA"

#: How a user points the code at a local copy; appended to every "not found" message.
LOCAL_COPY_HINT = (
    "to use a local copy, pass the data_dir option (e.g. --data.init_args.data_dir /path/to/data) "
    f"or set the {DATA_ENV} environment variable"
)

#: Seconds without data before a download gives up.
TIMEOUT_S = 60

#: Errors that mean a tar or gzip file is truncated or corrupt (not OSError at large: a full disk is not corruption).
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)

_NETWORK_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException)
_CHUNK = 1 << 20
# Python < 3.11.4 has no extraction filters; there we reject links ourselves (see _check_member).
_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")
_FILTER_ERRORS = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()


class DataNotFoundError(FileNotFoundError):
    """A dataset is neither on disk nor downloadable; the message says where we looked and what to do."""

    @classmethod
    def looked_for(cls, what: str, places: Iterable[str | os.PathLike], reason: str) -> DataNotFoundError:
        """Build the one-line error: what was looked for, every place looked, why we stopped, and the fix.

        Args:
            what: The data looked for, e.g. ``20 Newsgroups (bydate)``.
            places: Every path that was tried, in order.
            reason: Why nothing was downloaded instead, e.g. ``download=False``.
        """
        looked = ", ".join(str(place) for place in places)
        return cls(_one_line(f"{what} not found (looked for: {looked}); {reason}; {LOCAL_COPY_HINT}"))


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding every dataset: ``data_dir``, else ``$LIT_CLF_DATA``, else a user cache folder.

    Args:
        data_dir: Explicit data root (the DataModules' ``data_dir`` option); wins when given.

    Returns:
        The root path (not created here), e.g. ``~/.cache/lit_clf`` when nothing is set.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "lit_clf"


def download_file(url: str, dest: Path, sha256: str, *, opener: Callable[..., Any] = urllib.request.urlopen) -> Path:
    """Download ``url`` to ``dest``, verify its sha256, and move it into place atomically.

    The bytes stream into a temporary file beside ``dest`` and are renamed only once the checksum
    matches, so concurrent ranks never see a half-written file and a failure leaves nothing behind.

    Args:
        url: Where to download from (``http(s)://`` or ``file://``).
        dest: Final path of the file; its folder is created.
        sha256: Expected hex digest of the downloaded bytes.
        opener: Called as ``opener(url, timeout=...)``; returns a file-like response (tests swap it).

    Returns:
        ``dest``.

    Raises:
        DataNotFoundError: The download failed (network error, timeout, HTTP error, missing file).
        ValueError: The downloaded bytes do not match ``sha256``.
    """
    try:
        return _download(url, Path(dest), sha256, opener)
    except _NETWORK_ERRORS as err:
        raise DataNotFoundError(_one_line(f"could not download {url} ({_why(err)}); {LOCAL_COPY_HINT}")) from err


def refuse_wrong_kind(files: Iterable[Path] = (), folders: Iterable[Path] = ()) -> None:
    """A one-line error for a path that exists but is the wrong kind (a folder named like the data file, a file
    named like a data folder): it would otherwise be reported missing and downloaded over."""
    for path in files:
        if path.exists() and not path.is_file():
            raise ValueError(f"{path}: a folder where a data file belongs; move or delete it")
    for path in folders:
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path}: a file where a data folder belongs; move or delete it")


def check_gzip(path: Path) -> None:
    """Decompress a gzip file to its end (its CRC checked): tar reading stops silently at a damaged block, which
    would read as a missing split rather than a corrupt archive."""
    with path.open("rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            return
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass
    except ARCHIVE_ERRORS as err:
        raise corrupt_archive(path, err) from err


def fetch(url: str, dest: Path, sha256: str, *, what: str, places: Iterable[Path], download: bool) -> Path:
    """``download_file`` for a dataset that was not found: every failure names what was looked for and where.

    Args:
        url: Upstream URL of the dataset file.
        dest: Where to save it inside the data root.
        sha256: Expected hex digest of the download.
        what: The data looked for, for messages.
        places: Every path already tried, for messages.
        download: When false, fail at once instead of downloading.

    Returns:
        ``dest``, downloaded and verified.
    """
    places = list(places)
    if not download:
        raise DataNotFoundError.looked_for(what, places, "downloading is off (download=False)")
    try:
        return _download(url, Path(dest), sha256, urllib.request.urlopen)
    except _NETWORK_ERRORS as err:
        raise DataNotFoundError.looked_for(what, places, f"could not download {url} ({_why(err)})") from err


def _download(url: str, dest: Path, sha256: str, opener: Callable[..., Any]) -> Path:
    created = [folder for folder in [dest.parent, *dest.parent.parents] if not folder.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, opener(url, timeout=TIMEOUT_S) as response:
            got = _stream(response, out, desc=dest.name)
        if got != sha256.lower():
            raise ValueError(
                f"sha256 mismatch for {url}: expected {sha256}, got {got}; the download is incomplete or "
                f"changed upstream and was not saved; retry, or {LOCAL_COPY_HINT}"
            )
        os.replace(tmp, dest)
    except BaseException:  # nothing left behind: the partial file, then the folders made for it (a mistyped data_dir)
        tmp.unlink(missing_ok=True)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return dest


def _stream(response: Any, out: Any, desc: str) -> str:
    """Copy ``response`` to ``out`` with a progress bar; returns the sha256 of the bytes."""
    digest = hashlib.sha256()
    length = getattr(response, "headers", {}).get("Content-Length")
    total = int(length) if length and str(length).isdigit() else None
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"downloading {desc}") as bar:
        while chunk := response.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def extract_tar(archive: Path, dest: Path) -> None:
    """Extract a tar (optionally gzipped) into ``dest``, refusing members that would escape it.

    Members are unpacked into a staging folder inside ``dest`` and each top-level entry is then
    renamed into place, so a concurrent reader sees either nothing or a complete tree.

    Args:
        archive: The tar or tar.gz file.
        dest: Folder to extract into; created if missing. Existing top-level entries are kept.

    Raises:
        ValueError: A member has an absolute path, ``..``, or a link or device we refuse; or the
            archive is truncated or corrupt.
    """
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        check_gzip(archive)
        with tarfile.open(archive, "r:*") as tar:
            members = [_check_member(member, archive) for member in tar.getmembers()]
            if _HAS_DATA_FILTER:
                tar.extractall(staging, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.11.4 only
                tar.extractall(staging, members=members)
        for entry in staging.iterdir():
            _move_into(entry, dest / entry.name)
    except _FILTER_ERRORS as err:
        raise ValueError(_one_line(f"{archive}: refusing to extract an unsafe member ({err})")) from err
    except ARCHIVE_ERRORS as err:
        raise corrupt_archive(archive, err) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def corrupt_archive(path: Path, err: BaseException) -> ValueError:
    """The one-line error for a truncated or corrupt archive, suggesting a fresh download.

    Args:
        path: The archive that could not be read.
        err: The underlying tar, gzip or zlib error.
    """
    return ValueError(
        _one_line(f"{path} is truncated or corrupt ({_why(err)}); delete it to download it again, or replace it")
    )


def _check_member(member: tarfile.TarInfo, archive: Path) -> tarfile.TarInfo:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise ValueError(f"{archive}: refusing to extract member {member.name!r} (absolute path or '..')")
    # Without the data filter, a link could point anywhere; a dataset archive needs none.
    if not (member.isfile() or member.isdir()) and not _HAS_DATA_FILTER:  # pragma: no cover
        raise ValueError(f"{archive}: refusing to extract member {member.name!r} (not a file or folder)")
    return member


def _move_into(entry: Path, target: Path) -> None:
    try:
        os.replace(entry, target)
    except OSError:
        # Another process extracted the same tree first (a non-empty folder cannot be replaced): keep theirs.
        if not target.exists():
            raise


def _why(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())
