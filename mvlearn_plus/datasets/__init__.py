"""Multi-view benchmark data sets and a loader for MATLAB ``.mat`` files.

* :func:`list_datasets` -- names of the shipped data sets and of the user's ``.mat`` files.
* :func:`load_dataset` -- one data set as a :class:`sklearn.utils.Bunch` of views and labels.
* :func:`load_mat` -- any multi-view ``.mat`` file (MATLAB v5 or v7.3), graphs included.
* :func:`load_npz` -- an attributed graph stored as CSR parts in an ``.npz`` file.
* :func:`get_data_home` -- the folder searched for user files (``$MVLEARN_PLUS_DATA``).

The shipped files and their dataset cards are in the top-level ``datasets/`` folder.
"""

from ._base import get_data_home, list_datasets, load_dataset
from ._graphs import load_npz
from ._mat import load_mat

__all__ = ["get_data_home", "list_datasets", "load_dataset", "load_mat", "load_npz"]
