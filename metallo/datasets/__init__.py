"""Public example data sets: real EBSD maps, correlative image pairs and labelled micrographs.

The repository holds none of this data (several licences are GPL or unknown); it holds a
registry of each file's SHA-256, licence, citation and upstream address. A file is found

1. in the folder named by the environment variable ``METALLO_DATA`` (laid out as
   ``<data set>/<file>``, e.g. ``$METALLO_DATA/ebsd_ang/sdss_ferrite_austenite.ang``), or
2. in the user cache (``METALLO_CACHE``, default: the platform's cache folder), where it is
   downloaded with pooch from its upstream address on first use.

Either way its SHA-256 is checked, so a test or an example never runs on a different file.

Examples
--------
>>> import metallo as mt
>>> "ebsd_ang" in mt.datasets.list()
True
>>> mt.datasets.info("ebsd_osc").files[0].licence
'GPL-3.0-or-later'
"""

from __future__ import annotations

import builtins
import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from metallo.datasets._catalog import DATASETS, FILES
from metallo.errors import DataNotFoundError, FormatError, UnknownNameError

__all__ = ["DataFile", "Dataset", "cache_folder", "data_folder", "info", "list", "path"]

#: Environment variable naming a local folder that holds the data sets.
DATA_ENV = "METALLO_DATA"
#: Environment variable overriding the download cache folder.
CACHE_ENV = "METALLO_CACHE"


@dataclass(frozen=True)
class DataFile:
    """One registered file of a data set.

    Attributes
    ----------
    name : str
        Path inside the data set, e.g. ``"images/micrograph6.png"``.
    sha256 : str
        Hex SHA-256 of the file.
    url : str or None
        Upstream download address; ``None`` for files that exist only as local copies
        (converted upstream data).
    licence : str
        The file's licence as stated upstream.
    """

    name: str
    sha256: str
    url: str | None
    licence: str


@dataclass(frozen=True)
class Dataset:
    """A registered data set: what it is, where it comes from, how to cite it.

    Attributes
    ----------
    name : str
    title : str
    citation : str
        Plain-text reference (authors, title, year, DOI where one exists) and licence.
    upstream : str
        Repository and commit the files were taken from.
    files : tuple of DataFile
    """

    name: str
    title: str
    citation: str
    upstream: str
    files: tuple[DataFile, ...]

    @property
    def licences(self) -> builtins.list[str]:
        """The distinct licences of the data set's files."""
        return sorted({f.licence for f in self.files})


def list() -> builtins.list[str]:
    """Names of the registered data sets.

    Returns
    -------
    list of str

    Examples
    --------
    >>> import metallo as mt
    >>> mt.datasets.list()[:2]
    ['correlative_defdap_ni_ebsd_dic', 'correlative_ebsd_bse_coni']
    """
    return sorted(DATASETS)


def info(name: str) -> Dataset:
    """Title, citation, upstream address and files of one data set.

    Parameters
    ----------
    name : str
        A name from :func:`list`.

    Returns
    -------
    Dataset

    Examples
    --------
    >>> import metallo as mt
    >>> ds = mt.datasets.info("ebsd_ang")
    >>> [f.name for f in ds.files][:2]
    ['ebsdlib_Out_Of_Order_Ni.ang', 'mtex_3dData_S00.ANG']
    """
    if name not in DATASETS:
        raise UnknownNameError(f"unknown data set {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    title, citation, upstream = DATASETS[name]
    return Dataset(name=name, title=title, citation=citation, upstream=upstream,
                   files=tuple(DataFile(*entry) for entry in FILES[name]))


def data_folder() -> Path | None:
    """The local data folder named by ``METALLO_DATA``, or ``None`` when the variable is unset.

    Returns
    -------
    Path or None

    Examples
    --------
    >>> import metallo as mt
    >>> folder = mt.datasets.data_folder()   # None unless METALLO_DATA is set
    """
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_folder() -> Path:
    """The download cache: ``METALLO_CACHE``, else the platform's user cache for metallo.

    Returns
    -------
    Path

    Examples
    --------
    >>> import metallo as mt
    >>> isinstance(mt.datasets.cache_folder(), Path)
    True
    """
    value = os.environ.get(CACHE_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    import pooch

    return Path(pooch.os_cache("metallo"))


def path(name: str, *, folder: str | Path | None = None, download: bool = True) -> Path:
    """The local path of a data set or of one of its files, checked against its SHA-256.

    Parameters
    ----------
    name : str
        ``"<data set>"`` for the whole set (its folder is returned once every file is
        present) or ``"<data set>/<file>"``, e.g. ``"ebsd_ang/sdss_ferrite_austenite.ang"``.
    folder : path, optional
        Local data folder to look in first; default: ``METALLO_DATA``.
    download : bool
        Download files missing locally into the cache (needs a network connection).

    Returns
    -------
    Path

    Raises
    ------
    UnknownNameError
        The data set or file is not registered; the message lists the valid names.
    FormatError
        A local or downloaded file does not have the registered SHA-256.
    DataNotFoundError
        The file is not in the local folder and cannot be downloaded (offline, ``download=False``
        or no upstream address); the message names ``METALLO_DATA``.

    Examples
    --------
    >>> import metallo as mt
    >>> ang = mt.datasets.path("ebsd_ang/sdss_ferrite_austenite.ang")  # doctest: +SKIP
    >>> mt.datasets.path("ebsd_ang/duplex.ang")
    Traceback (most recent call last):
    ...
    metallo.errors.UnknownNameError: data set 'ebsd_ang' has no file 'duplex.ang'; its files: ...
    """
    set_name, _, file_name = name.strip("/").partition("/")
    dataset = info(set_name)
    if file_name:
        by_name = {f.name: f for f in dataset.files}
        if file_name not in by_name:
            raise UnknownNameError(f"data set {set_name!r} has no file {file_name!r}; its files: "
                                   f"{', '.join(sorted(by_name))}")
        wanted = [by_name[file_name]]
    else:
        wanted = builtins.list(dataset.files)
    local = Path(folder).expanduser() if folder is not None else data_folder()
    if local is not None and all((local / set_name / f.name).is_file() for f in wanted):
        for f in wanted:
            _check(local / set_name / f.name, f)
        return local / set_name / file_name if file_name else local / set_name
    cache = cache_folder()
    for f in wanted:
        _from_cache(cache, set_name, f, local=local, download=download)
    return cache / set_name / file_name if file_name else cache / set_name


@lru_cache(maxsize=512)
def _sha256(file: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(file: Path, entry: DataFile) -> None:
    stat = file.stat()
    actual = _sha256(str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    if actual != entry.sha256:
        raise FormatError(f"{file}: SHA-256 {actual} does not match the registered {entry.sha256}; "
                          "the file is not the registered copy (replace it)")


def _download(url: str, output_file: Any, pup: Any) -> None:
    """pooch downloader: plain HTTP(S) with a timeout (replaced in tests, which have no network)."""
    import pooch

    pooch.HTTPDownloader(timeout=60, progressbar=False)(url, output_file, pup)


def _missing(set_name: str, entry: DataFile, local: Path | None, why: str) -> DataNotFoundError:
    where = f"not in {DATA_ENV}={local}" if local is not None else f"{DATA_ENV} is not set"
    return DataNotFoundError(f"example data {set_name}/{entry.name} not found ({where}) and {why}; set "
                             f"{DATA_ENV} to a folder holding {set_name}/{entry.name}")


def _from_cache(cache: Path, set_name: str, entry: DataFile, *, local: Path | None, download: bool) -> None:
    target = cache / set_name / entry.name
    if target.is_file():
        _check(target, entry)
        return
    if entry.url is None:
        raise _missing(set_name, entry, local, "it has no registered download address (converted or unverified upstream name)")
    if not download:
        raise _missing(set_name, entry, local, "download=False")
    import pooch

    key = f"{set_name}/{entry.name}"
    pup = pooch.create(path=cache, base_url="", registry={key: f"sha256:{entry.sha256}"},
                       urls={key: entry.url})
    try:
        pup.fetch(key, downloader=_download)
    except ValueError as exc:  # pooch: the download's hash differs from the registry
        raise FormatError(f"{entry.url}: downloaded file does not match the registered SHA-256 ({exc})") from None
    except OSError as exc:  # requests' errors are OSErrors: offline, refused, 404
        raise _missing(set_name, entry, local, f"the download from {entry.url} failed ({exc})") from None
