"""Download-and-cache of published data files: the data home, pinned URLs, SHA-256 checks.

The project commits no data. Each file a loader reads is catalogued as a :class:`RemoteFile`:
where it goes in the *data home*, the URL of that exact file at a pinned commit of the
repository that published it, its size and its SHA-256. :func:`fetch` returns the cached copy
after checking its hash, or downloads it first, as scikit-learn's ``fetch_*`` functions and
PyTorch Geometric's ``Planetoid`` do.

The download itself is `pooch <https://www.fatiando.org/pooch>`_'s (used by SciPy's and
scikit-image's data modules): it streams to a temporary file in the target folder, checks the
hash, and only then renames the file into place, so an interrupted or corrupted download leaves
nothing behind; it retries transient network errors and shows a tqdm progress bar. What is ours
is only the data-home rule, the check of already cached files and the error messages.

This module exists twice, byte for byte: ``mvlearn_plus/datasets/_fetch.py`` and
``retrieval/data/_fetch.py``. The two import packages never import each other (the
architecture's first rule), and the mechanism is small enough that a copy is cheaper than a third
package; ``tests/test_fetch_copies.py`` fails as soon as the two differ.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "DATA_HOME_ENV",
    "ChecksumError",
    "DataNotFoundError",
    "RemoteFile",
    "clear_data_home",
    "fetch",
    "file_sha256",
    "get_data_home",
    "github_file",
    "is_cached",
]

DATA_HOME_ENV = "MVLEARN_PLUS_DATA"
DEFAULT_DATA_HOME = "~/mvlearn_plus_data"
# Transient network errors are retried this many times before the error reaches the user.
DOWNLOAD_RETRIES = 2


@dataclass(frozen=True)
class RemoteFile:
    """One published file, pinned by its URL and its SHA-256.

    Attributes
    ----------
    path : str
        Where the file lives inside the data home (``"clustering/3Sources.mat"``).
    url : str
        Download URL of that exact file (a pinned commit, never a branch).
    sha256 : str
        Hex SHA-256 of the file's bytes.
    size : int
        Size in bytes.
    origin : str
        Human-readable origin: ``"owner/repo@commit path/in/repo"``.
    """

    path: str
    url: str
    sha256: str
    size: int
    origin: str


def github_file(path: str, repo: str, commit: str, source_path: str, sha256: str,
                size: int) -> RemoteFile:
    """A :class:`RemoteFile` published in a GitHub repository at a pinned commit."""
    return RemoteFile(
        path=path,
        url=f"https://github.com/{repo}/raw/{commit}/{source_path}",
        sha256=sha256,
        size=size,
        origin=f"{repo}@{commit} {source_path}",
    )


class ChecksumError(ValueError):
    """A file's SHA-256 differs from the pinned one; the file is not used."""


class DataNotFoundError(FileNotFoundError):
    """A file is neither in the data home nor downloadable now."""


def get_data_home(data_home: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder where downloaded data files are cached.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        The folder. When omitted: the environment variable ``MVLEARN_PLUS_DATA``, else
        ``~/mvlearn_plus_data`` (as scikit-learn's ``get_data_home``).

    Returns
    -------
    pathlib.Path
        The folder, ``~`` expanded. It is created only when a file is downloaded into it.
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV) or DEFAULT_DATA_HOME
    return Path(data_home).expanduser()


def clear_data_home(data_home: str | os.PathLike[str] | None = None) -> None:
    """Delete the data home and everything in it (as scikit-learn's ``clear_data_home``).

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        The folder (default: :func:`get_data_home`'s rule).
    """
    home = get_data_home(data_home)
    if home.exists():
        shutil.rmtree(home)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_cached(remote: RemoteFile, data_home: str | os.PathLike[str] | None = None) -> bool:
    """Whether the file is in the data home (present; its hash is checked when it is read)."""
    return (get_data_home(data_home) / remote.path).is_file()


def _checked(path: Path, remote: RemoteFile, label: str) -> Path:
    actual = file_sha256(path)
    if actual != remote.sha256:
        raise ChecksumError(
            f"{label}: {path} has SHA-256 {actual}, but the published file has "
            f"{remote.sha256}; the file is not used. Delete it to download it again from "
            f"{remote.url}, or put that exact file there."
        )
    return path


def _downloader(progress: bool):
    """The function that writes a URL's bytes to a file (tests replace it: no network there)."""
    import pooch

    return pooch.HTTPDownloader(progressbar=progress)


def fetch(
    remote: RemoteFile,
    *,
    data_home: str | os.PathLike[str] | None = None,
    download_if_missing: bool = True,
    label: str | None = None,
    progress: bool = True,
) -> Path:
    """Path of a published file in the data home, downloaded first when it is missing.

    A cached file is used only if its SHA-256 is the pinned one; a downloaded file is moved
    into the data home only after the same check, so a corrupted or interrupted download
    leaves no file behind.

    Parameters
    ----------
    remote : RemoteFile
        The file.
    data_home : str or os.PathLike, optional
        See :func:`get_data_home`.
    download_if_missing : bool, default=True
        If False, a file missing from the data home raises instead of being downloaded.
    label : str, optional
        Name used in messages (the data set); the file's path by default.
    progress : bool, default=True
        Show a progress bar while downloading.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    DataNotFoundError
        If the file is missing and downloading is disabled or fails (the reason is named).
    ChecksumError
        If the cached or downloaded file's SHA-256 is not the pinned one (both are named).
    """
    home = get_data_home(data_home)
    target = home / remote.path
    label = label or remote.path
    if target.is_file():
        return _checked(target, remote, label)
    if not download_if_missing:
        raise _not_found(label, home, remote, "downloading is disabled (download_if_missing=False)")

    import pooch

    logger.info("%s: downloading %s (%.1f MB) into %s", label, remote.url, remote.size / 1e6,
                target.parent)
    store = pooch.create(path=home, base_url="", registry={remote.path: f"sha256:{remote.sha256}"},
                         urls={remote.path: remote.url}, retry_if_failed=DOWNLOAD_RETRIES)
    try:
        store.fetch(remote.path, downloader=_downloader(progress))
    except ValueError as exc:
        if "hash" not in str(exc).lower():
            raise
        raise ChecksumError(f"{label}: the file downloaded from {remote.url} is not the published "
                            f"one (pinned SHA-256 {remote.sha256}); it was not kept. {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - network, HTTP and disk errors all mean "not here"
        raise _not_found(label, home, remote, f"{type(exc).__name__}: {exc}") from exc
    return _checked(target, remote, label)


def _not_found(label: str, home: Path, remote: RemoteFile, reason: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"data set {label!r} is not in the data home {home} and could not be downloaded "
        f"({reason}): download {remote.url} yourself to {home / remote.path}, or set "
        f"{DATA_HOME_ENV} to a folder that holds {remote.path}."
    )
