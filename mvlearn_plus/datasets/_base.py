"""Finding and loading the shipped data sets and the user's own ``.mat`` files.

Two places hold data:

* the *shipped* files, catalogued in :mod:`._registry`: the top-level ``datasets/`` folder of a
  source checkout, or ``mvlearn_plus/_datasets`` inside an installed wheel;
* the user's *data home*, a folder of ``*.mat`` files given by the ``data_home`` argument or
  the ``MVLEARN_PLUS_DATA`` environment variable. Each file there is a data set named after
  its stem.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import mvlearn_plus

from ._graphs import GRAPH_DATASETS, GraphDatasetInfo
from ._mat import load_mat
from ._registry import SHIPPED, DatasetInfo, normalise_name

if TYPE_CHECKING:
    from sklearn.utils import Bunch

logger = logging.getLogger(__name__)

__all__ = ["get_data_home", "list_datasets", "load_dataset"]

DATA_HOME_ENV = "MVLEARN_PLUS_DATA"

_ALIASES: dict[str, str] = {}
for _info in SHIPPED.values():
    for _alias in (_info.name, Path(_info.filename).stem, *_info.aliases):
        _ALIASES[normalise_name(_alias)] = _info.name
_GRAPH_ALIASES = {normalise_name(name): name for name in GRAPH_DATASETS}
_GRAPH_ALIASES[normalise_name("ACM3025")] = "acm"


def get_data_home(data_home: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the folder searched for the user's own ``.mat`` files.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        The folder. When omitted, the environment variable ``MVLEARN_PLUS_DATA`` is used.

    Returns
    -------
    pathlib.Path or None
        The folder (``~`` expanded; it is not required to exist), or None when neither the
        argument nor the environment variable is set.
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV) or None
    if data_home is None:
        return None
    return Path(data_home).expanduser()


def _package_dir() -> Path:
    return Path(mvlearn_plus.__file__).parent


def _shipped_roots() -> list[Path]:
    """Candidate locations of the shipped data, in the order they are searched."""
    package = _package_dir()
    # A source checkout keeps the data next to the package; a wheel carries it inside.
    return [package.parent / "datasets", package / "_datasets"]


def _shipped_root() -> Path | None:
    for root in _shipped_roots():
        # Requiring the 'clustering' sub-folder avoids mistaking an unrelated top-level
        # 'datasets' package in site-packages (e.g. Hugging Face's) for ours.
        if (root / "clustering").is_dir():
            return root
    return None


def _user_files(home: Path | None) -> dict[str, Path]:
    """Map the stem of every ``*.mat`` file in the data home to its path."""
    if home is None:
        return {}
    if not home.is_dir():
        logger.warning("Data home %s is not a folder; no user data sets are available.", home)
        return {}
    return {p.stem: p for p in sorted(home.glob("*.mat")) if p.is_file()}


def list_datasets(
    data_home: str | os.PathLike[str] | None = None, *, kind: str | None = None
) -> list[str]:
    """List the names accepted by :func:`load_dataset`.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        Folder of the user's own ``.mat`` files (default: ``$MVLEARN_PLUS_DATA``, else none).
    kind : {None, "features", "graph"}, default=None
        ``"features"``: the multi-view feature data sets (shipped and the user's ``.mat``
        files); ``"graph"``: the shipped graph data sets (ACM, Cora, Citeseer); None: both.

    Returns
    -------
    list of str
        Sorted names: the shipped data sets (lowercase keys such as ``"handwritten"``) and
        the stems of the ``*.mat`` files in the data home.
    """
    if kind not in (None, "features", "graph"):
        raise ValueError(f"kind must be None, 'features' or 'graph'; got {kind!r}.")
    names: set[str] = set()
    if kind in (None, "features"):
        names.update(SHIPPED)
        names.update(_user_files(get_data_home(data_home)))
    if kind in (None, "graph"):
        names.update(GRAPH_DATASETS)
    return sorted(names)


def _match_user_file(files: dict[str, Path], name: str) -> Path | None:
    if name in files:
        return files[name]
    wanted = normalise_name(name)
    matches = [path for stem, path in files.items() if normalise_name(stem) == wanted]
    return matches[0] if matches else None


def _missing_file_error(info: DatasetInfo, searched: list[Path]) -> FileNotFoundError:
    where = ", ".join(str(p) for p in searched)
    return FileNotFoundError(
        f"The file of data set {info.name!r} was not found; looked for: {where}. The shipped "
        f"files live in the top-level 'datasets/{info.filename}' of a source checkout (restore "
        f"it from version control) or in 'mvlearn_plus/_datasets/' of an installed wheel "
        f"(reinstall the package). Alternatively put {Path(info.filename).name!r} in a folder "
        f"and pass it as data_home= or set ${DATA_HOME_ENV}."
    )


def _load_shipped(info: DatasetInfo, home: Path | None) -> Bunch:
    root = _shipped_root()
    roots = [root] if root is not None else _shipped_roots()
    candidates = [r / info.filename for r in roots]
    if home is not None:
        # Lets an install without the data use copies the user downloaded separately.
        candidates += [home / Path(info.filename).name, home / info.filename]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise _missing_file_error(info, candidates)

    data = load_mat(path, name=info.name)
    dims = tuple(v.shape[1] for v in data.views)
    expected = (info.n_samples, info.n_features, info.n_classes)
    if (data.target.shape[0], dims, data.n_clusters) != expected:
        logger.warning(
            "%s does not match the catalogued %s (n=%d, dims=%s, %d classes): got n=%d, dims=%s, "
            "%d classes; is it a different version of the file?",
            path, info.name, info.n_samples, info.n_features, info.n_classes,
            data.target.shape[0], dims, data.n_clusters,
        )
    if info.view_names is not None and len(info.view_names) == len(data.views):
        data.view_names = list(info.view_names)
    data.kind = info.kind

    # The card stays with the shipped data even when the .mat came from the data home.
    cards = [r / info.card for r in roots]
    card = next((c for c in cards if c.is_file()), None)
    if card is not None:
        data.DESCR = card.read_text(encoding="utf-8")
    else:
        logger.info("No dataset card for %s; describing the file instead.", info.name)
        data.DESCR = f"{info.title}\n\n{data.DESCR}"
    return data


def _load_graph(info: GraphDatasetInfo) -> Bunch:
    from sklearn.utils import Bunch

    root = _shipped_root()
    roots = [root] if root is not None else _shipped_roots()
    found = next((r for r in roots if all((r / f).is_file() for f in info.files)), None)
    if found is None:
        missing = [str(roots[0] / f) for f in info.files if not (roots[0] / f).is_file()]
        raise FileNotFoundError(
            f"The files of graph data set {info.name!r} were not found: {', '.join(missing)}. "
            "They live in the top-level 'datasets/graph/' of a source checkout (restore it from "
            "version control) or in 'mvlearn_plus/_datasets/graph/' of an installed wheel "
            "(reinstall the package)."
        )
    features, graphs, target = info.reader(found)
    classes = int(np.unique(target).size)
    if (target.size, features.shape[1], classes) != (info.n_samples, info.n_features,
                                                     info.n_classes):
        logger.warning("%s does not match the catalogued sizes (n=%d, d=%d, %d classes).",
                       info.name, info.n_samples, info.n_features, info.n_classes)
    card = found / info.card
    return Bunch(
        data=features,
        graphs=graphs,
        graph_names=list(info.graph_names),
        target=target,
        n_clusters=classes,
        name=info.name,
        kind="graph",
        filename=str(found / info.files[0]),
        DESCR=card.read_text(encoding="utf-8") if card.is_file() else info.title,
    )


def load_dataset(name: str, *, data_home: str | os.PathLike[str] | None = None) -> Bunch:
    """Load a shipped multi-view data set, or a ``.mat`` file from the data home.

    The data are returned as stored: no scaling or other preprocessing (see
    :func:`mvlearn_plus.preprocessing.preprocess_views`), only float64 views and 0-based
    labels.

    Parameters
    ----------
    name : str
        A name from :func:`list_datasets`. Case and ``-``/``_`` are ignored, so
        ``"MNIST-USPS"`` finds ``"mnist_usps"``. Shipped names (the graph data sets included)
        take precedence over user files: load a user's ``cora.mat`` with :func:`load_mat`.
    data_home : str or os.PathLike, optional
        Folder of the user's own ``.mat`` files (default: ``$MVLEARN_PLUS_DATA``). A name found
        there is read with :func:`load_mat`.

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
        If the name is unknown (the message lists the available names).
    FileNotFoundError
        If a shipped data set's file is missing.

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
        return _load_graph(GRAPH_DATASETS[graph_key])
    key = _ALIASES.get(normalise_name(name))
    if key is not None:
        return _load_shipped(SHIPPED[key], home)

    files = _user_files(home)
    path = _match_user_file(files, name)
    if path is not None:
        return load_mat(path, name=path.stem)

    available = ", ".join(sorted(set(SHIPPED) | set(files) | set(GRAPH_DATASETS)))
    if home is not None:
        home_note = f"data home {str(home)!r}"
    else:
        home_note = f"no data home; pass data_home= or set ${DATA_HOME_ENV}"
    raise ValueError(f"Unknown data set {name!r} ({home_note}). Available: {available}.")
