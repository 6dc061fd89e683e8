"""Multi-view benchmark data sets, downloaded on first use, and a loader for MATLAB files.

* :func:`list_datasets` -- names of the catalogued data sets and of the user's ``.mat`` files,
  with ``details=True`` which are downloaded and how much the rest would take.
* :func:`load_dataset` -- one data set as a :class:`sklearn.utils.Bunch` of views and labels,
  downloaded into the data home first if needed (pinned URL, SHA-256 checked).
* :func:`load_mat` -- any multi-view ``.mat`` file (MATLAB v5 or v7.3), graphs included.
* :func:`load_npz` -- an attributed graph stored as CSR parts in an ``.npz`` file.
* :func:`get_data_home`, :func:`clear_data_home` -- the cache folder (``$MVLEARN_PLUS_DATA``,
  else ``~/mvlearn_plus_data``).

The project ships no data files, only the dataset cards (top-level ``datasets/`` folder).
"""

from ._base import list_datasets, load_dataset
from ._fetch import ChecksumError, DataNotFoundError, clear_data_home, get_data_home
from ._graphs import load_npz
from ._mat import load_mat

__all__ = [
    "ChecksumError",
    "DataNotFoundError",
    "clear_data_home",
    "get_data_home",
    "list_datasets",
    "load_dataset",
    "load_mat",
    "load_npz",
]
