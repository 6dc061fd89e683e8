"""Finding, downloading and loading the catalogued data sets and the user's own ``.mat`` files.

Everything lives in the *data home* (:func:`get_data_home`: the ``data_home`` argument, else
``$MVLEARN_PLUS_DATA``, else ``~/mvlearn_plus_data``):

* the catalogued files (:mod:`._registry`, :mod:`._graphs`), in the layout ``clustering/``,
  ``graph/``, downloaded on first use from the repositories that published them and checked
  against their SHA-256 (:mod:`._fetch`);
* the user's own ``*.mat`` files at the top of the data home, each a data set named after its
  stem.

The dataset cards (``datasets/*/<name>.md`` of a source checkout, ``mvlearn_plus/_datasets`` in
an installed wheel) are the only data-set files the project itself carries.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import mvlearn_plus

from ._fetch import DATA_HOME_ENV, RemoteFile, fetch, get_data_home, is_cached
from ._graphs import GRAPH_DATASETS, GraphDatasetInfo
from ._mat import load_mat
from ._registry import SHIPPED, DatasetInfo, normalise_name

if TYPE_CHECKING:
    from sklearn.utils import Bunch

logger = logging.getLogger(__name__)

__all__ = ["get_data_home", "list_datasets", "load_dataset"]

_ALIASES: dict[str, str] = {}
for _info in SHIPPED.values():
    for _alias in (_info.name, Path(_info.filename).stem, *_info.aliases):
        _ALIASES[normalise_name(_alias)] = _info.name
_GRAPH_ALIASES = {normalise_name(name): name for name in GRAPH_DATASETS}
_GRAPH_ALIASES[normalise_name("ACM3025")] = "acm"


def _card_roots() -> list[Path]:
    """Where the dataset cards are: a source checkout's ``datasets/``, a wheel's ``_datasets``."""
    package = Path(mvlearn_plus.__file__).parent
    return [package.parent / "datasets", package / "_datasets"]


def _read_card(relative: str) -> str | None:
    # Requiring the card itself (not just a 'datasets' folder) avoids mistaking an unrelated
    # top-level 'datasets' package in site-packages (e.g. Hugging Face's) for ours.
    card = next((root / relative for root in _card_roots() if (root / relative).is_file()), None)
    return card.read_text(encoding="utf-8") if card is not None else None


def _user_files(home: Path) -> dict[str, Path]:
    """Map the stem of every ``*.mat`` file at the top of the data home to its path."""
    if not home.is_dir():
        return {}
    return {p.stem: p for p in sorted(home.glob("*.mat")) if p.is_file()}


def _files_of(name: str) -> tuple[RemoteFile, ...]:
    if name in GRAPH_DATASETS:
        return tuple(GRAPH_DATASETS[name].files)
    return (SHIPPED[name].remote,)


def list_datasets(
    data_home: str | os.PathLike[str] | None = None,
    *,
    kind: str | None = None,
    details: bool = False,
) -> list[str] | list[dict[str, Any]]:
    """List the names accepted by :func:`load_dataset`, and which are already downloaded.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        The data home (default: ``$MVLEARN_PLUS_DATA``, else ``~/mvlearn_plus_data``).
    kind : {None, "features", "graph"}, default=None
        ``"features"``: the multi-view feature data sets (catalogued and the user's ``.mat``
        files); ``"graph"``: the graph data sets (ACM, Cora, Citeseer); None: both.
    details : bool, default=False
        Return one dict per data set instead of its name: ``name``, ``kind``
        (``"features"``, ``"graph"`` or ``"user"``), ``cached`` (every file is in the data
        home), ``size`` (bytes of its files), ``download_size`` (bytes still to download;
        0 when cached) and ``source`` (where the files come from, or the user's file).

    Returns
    -------
    list of str or list of dict
        Sorted by name: the catalogued data sets (lowercase keys such as ``"handwritten"``)
        and the stems of the ``*.mat`` files at the top of the data home.

    Examples
    --------
    >>> from mvlearn_plus.datasets import list_datasets
    >>> rows = list_datasets(details=True)
    >>> missing = sum(row["download_size"] for row in rows)   # bytes a full download takes
    """
    if kind not in (None, "features", "graph"):
        raise ValueError(f"kind must be None, 'features' or 'graph'; got {kind!r}.")
    home = get_data_home(data_home)
    catalogued: dict[str, str] = {}
    if kind in (None, "features"):
        catalogued.update(dict.fromkeys(SHIPPED, "features"))
    if kind in (None, "graph"):
        catalogued.update(dict.fromkeys(GRAPH_DATASETS, "graph"))
    users = _user_files(home) if kind in (None, "features") else {}
    if not details:
        return sorted(set(catalogued) | set(users))

    rows: dict[str, dict[str, Any]] = {}
    for stem, path in users.items():
        size = path.stat().st_size
        rows[stem] = {"name": stem, "kind": "user", "cached": True, "size": size,
                      "download_size": 0, "source": str(path)}
    for name, group in catalogued.items():
        files = _files_of(name)
        missing = [f for f in files if not is_cached(f, home)]
        origins = sorted({f.origin.rsplit(" ", 1)[0] for f in files})
        rows[name] = {"name": name, "kind": group, "cached": not missing,
                      "size": sum(f.size for f in files),
                      "download_size": sum(f.size for f in missing),
                      "source": ", ".join(origins)}
    return [rows[name] for name in sorted(rows)]


def _fetch_all(name: str, home: Path, download_if_missing: bool) -> list[Path]:
    return [fetch(f, data_home=home, download_if_missing=download_if_missing, label=name)
            for f in _files_of(name)]


def _match_user_file(files: dict[str, Path], name: str) -> Path | None:
    if name in files:
        return files[name]
    wanted = normalise_name(name)
    matches = [path for stem, path in files.items() if normalise_name(stem) == wanted]
    return matches[0] if matches else None


def _load_catalogued(info: DatasetInfo, home: Path, download_if_missing: bool) -> Bunch:
    (path,) = _fetch_all(info.name, home, download_if_missing)
    data = load_mat(path, name=info.name)
    dims = tuple(v.shape[1] for v in data.views)
    expected = (info.n_samples, info.n_features, info.n_classes)
    if (data.target.shape[0], dims, data.n_clusters) != expected:
        # Unreachable for a file that passed its SHA-256 check, unless the catalogue is wrong.
        logger.warning(
            "%s does not match the catalogued %s (n=%d, dims=%s, %d classes): got n=%d, dims=%s, "
            "%d classes.",
            path, info.name, info.n_samples, info.n_features, info.n_classes,
            data.target.shape[0], dims, data.n_clusters,
        )
    if info.view_names is not None and len(info.view_names) == len(data.views):
        data.view_names = list(info.view_names)
    data.kind = info.kind
    card = _read_card(info.card)
    if card is not None:
        data.DESCR = card
    else:
        logger.info("No dataset card for %s; describing the file instead.", info.name)
        data.DESCR = f"{info.title}\n\n{data.DESCR}"
    return data


def _load_graph(info: GraphDatasetInfo, home: Path, download_if_missing: bool) -> Bunch:
    from sklearn.utils import Bunch

    paths = _fetch_all(info.name, home, download_if_missing)
    features, graphs, target = info.reader(home)
    classes = int(np.unique(target).size)
    if (target.size, features.shape[1], classes) != (info.n_samples, info.n_features,
                                                     info.n_classes):
        logger.warning("%s does not match the catalogued sizes (n=%d, d=%d, %d classes).",
                       info.name, info.n_samples, info.n_features, info.n_classes)
    return Bunch(
        data=features,
        graphs=graphs,
        graph_names=list(info.graph_names),
        target=target,
        n_clusters=classes,
        name=info.name,
        kind="graph",
        filename=str(paths[0]),
        DESCR=_read_card(info.card) or info.title,
    )


def load_dataset(
    name: str,
    *,
    data_home: str | os.PathLike[str] | None = None,
    download_if_missing: bool = True,
) -> Bunch:
    """Load a catalogued multi-view data set (downloaded on first use), or a user's ``.mat`` file.

    A catalogued data set is read from the data home; when its file is missing it is
    downloaded from the repository that published it (pinned commit, see its dataset card) and
    kept there. A file whose SHA-256 differs from the published one is refused, never used.
    The data are returned as stored: no scaling or other preprocessing (see
    :func:`mvlearn_plus.preprocessing.preprocess_views`), only float64 views and 0-based
    labels.

    Parameters
    ----------
    name : str
        A name from :func:`list_datasets`. Case and ``-``/``_`` are ignored, so
        ``"MNIST-USPS"`` finds ``"mnist_usps"``. Catalogued names (the graph data sets
        included) take precedence over user files: load a user's ``cora.mat`` with
        :func:`load_mat`.
    data_home : str or os.PathLike, optional
        The data home (default: ``$MVLEARN_PLUS_DATA``, else ``~/mvlearn_plus_data``). A
        ``.mat`` file at its top is a data set named after its stem, read with
        :func:`load_mat`.
    download_if_missing : bool, default=True
        If False, a catalogued data set that is not in the data home raises instead of being
        downloaded.

    Returns
    -------
    sklearn.utils.Bunch
        Feature data sets: ``views`` (list of ``(n, d_v)`` float64 arrays, or CSR matrices for
        sparse files), ``target`` (int64, 0-based), ``view_names``, ``n_clusters``, ``kind``
        (``"text"`` or ``"dense"``, spec section 0.2), ``name``, ``filename`` and ``DESCR``
        (the dataset card). Graph data sets (``"acm"``, ``"cora"``, ``"citeseer"``; ``kind`` is
        ``"graph"``): ``data`` (node features, CSR float64), ``graphs`` (list of ``(n, n)``
        CSR adjacency matrices), ``graph_names``, ``target``, ``n_clusters``, ``name``,
        ``filename`` and ``DESCR``. Cora and Citeseer carry two graph views: the citation graph
        and a sparse personalised-PageRank graph built from it
        (:func:`mvlearn_plus.graphs.personalized_pagerank`, alpha 0.2, top 32 per node).

    Raises
    ------
    ValueError
        If the name is unknown (the message lists the available names), or if a cached or
        downloaded file's SHA-256 is not the published one (:class:`ChecksumError`; both
        hashes are named and the file is not used).
    FileNotFoundError
        If a catalogued data set is not in the data home and could not be downloaded
        (:class:`DataNotFoundError`; the message gives the reason, the URL and the folder to
        put the file in).

    Examples
    --------
    >>> from mvlearn_plus.datasets import load_dataset
    >>> data = load_dataset("handwritten")
    >>> data.view_names
    ['fac', 'fou', 'kar', 'mor', 'pix', 'zer']
    >>> [v.shape[1] for v in data.views], data.n_clusters
    ([216, 76, 64, 6, 240, 47], 10)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}.")
    home = get_data_home(data_home)
    graph_key = _GRAPH_ALIASES.get(normalise_name(name))
    if graph_key is not None:
        return _load_graph(GRAPH_DATASETS[graph_key], home, download_if_missing)
    key = _ALIASES.get(normalise_name(name))
    if key is not None:
        return _load_catalogued(SHIPPED[key], home, download_if_missing)

    files = _user_files(home)
    path = _match_user_file(files, name)
    if path is not None:
        return load_mat(path, name=path.stem)

    available = ", ".join(sorted(set(SHIPPED) | set(files) | set(GRAPH_DATASETS)))
    raise ValueError(f"Unknown data set {name!r} (data home {str(home)!r}; change it with "
                     f"data_home= or ${DATA_HOME_ENV}). Available: {available}.")
