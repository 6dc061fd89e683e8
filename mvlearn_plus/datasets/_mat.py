"""Reading multi-view data sets from MATLAB ``.mat`` files.

:func:`load_mat` turns the layouts that published multi-view ``.mat`` files actually use into
one canonical form: a list of ``(n, d_v)`` float64 views (dense arrays, or CSR matrices where
the file stores them sparse) and 0-based int64 labels.

Reading happens in two separate phases, so that a broken file and a file we merely do not
understand give different errors:

1. *decoding* (:func:`_read_variables`): MATLAB v4/v5/v7 files through :func:`scipy.io.loadmat`,
   v7.3 (HDF5) files through ``h5py``. Both produce the same neutral description of every
   variable (:class:`_Var`), with MATLAB's own orientation (h5py sees arrays transposed, so
   they are transposed back here). Any failure in this phase means the file is unreadable.
2. *interpretation* (:func:`_interpret`): find the label variable and the views, decide the
   orientation of each view from the number of labels, and convert the dtypes.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sklearn.utils import Bunch

logger = logging.getLogger(__name__)

__all__ = ["load_mat"]

# Variable names, in priority order, under which published files store the views and the
# labels. Matching is case-insensitive; an exact-case match wins over a case-folded one.
VIEW_VARIABLES: tuple[str, ...] = ("X", "fea", "data", "features", "feature", "views", "Xs")
LABEL_VARIABLES: tuple[str, ...] = (
    "Y",
    "y",
    "gt",
    "truth",
    "label",
    "labels",
    "gnd",
    "target",
    "targets",
    "gt_label",
    "true_label",
    "truelabel",
    "ground_truth",
    "groundtruth",
    "class",
    "classes",
)
# Views stored as separate variables: X1, X2, ..., x_1, view1, fea1, data1, ...
_NUMBERED_VIEW = re.compile(r"^(?:x|view|fea|data|features?)_?(\d+)$", re.IGNORECASE)
# Graph views (square n x n adjacency matrices): a cell array or a matrix under one of these
# names, or numbered variables adj1, A1, graph1, W1, net1, ...
GRAPH_VARIABLES: tuple[str, ...] = (
    "adj", "adjs", "adjacency", "graphs", "graph", "A", "W", "networks", "network", "net",
)
_NUMBERED_GRAPH = re.compile(r"^(?:adj|adjacency|a|graph|w|net|network)_?(\d+)$", re.IGNORECASE)

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 looks for its superblock at 0 and at every power of two from 512 on; MATLAB v7.3 files
# carry a 512-byte text header (the HDF5 "user block") in front of it.
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)

_MATLAB_NUMERIC_CLASSES = frozenset(
    {
        "double",
        "single",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "logical",
    }
)
# Nested cells refer back into '#refs#'; a malformed file could make them cyclic.
_MAX_DEPTH = 16

_LOOKING_FOR = (
    "views in a cell array (1xV or Vx1) named one of "
    + "/".join(VIEW_VARIABLES)
    + ", or in separate numbered variables (X1, X2, ..., also x1, view1, fea1, data1), "
    "or a single matrix named "
    + "/".join(VIEW_VARIABLES[:4])
    + "; and labels in a vector or one-hot matrix named one of "
    + "/".join(LABEL_VARIABLES[:7])
)


@dataclass
class _Var:
    """Neutral description of one MATLAB variable (or one element of a cell array).

    Attributes
    ----------
    name : str
        Display name; cell elements are named like MATLAB indexes them (``X{2}``).
    kind : {"numeric", "sparse", "cell", "char", "struct", "empty", "other"}
        What the variable is. Only ``numeric``, ``sparse`` and ``cell`` can hold data.
    value : object
        ``numeric``: ndarray in MATLAB orientation. ``sparse``: scipy sparse matrix.
        ``cell``: list of :class:`_Var` in MATLAB linear (column-major) order.
        ``char``: list of str. Otherwise ``None``.
    shape : tuple of int
        The MATLAB shape.
    type_name : str
        The element type as MATLAB or numpy names it (``uint8``, ``double``, ``struct``...).
    """

    name: str
    kind: str
    value: Any
    shape: tuple[int, ...]
    type_name: str

    def describe(self) -> str:
        """Return a one-line ``name (type shape)`` summary for messages."""
        dims = "x".join(str(s) for s in self.shape) if self.shape else "scalar"
        if self.kind == "cell":
            inner = sorted({item.kind for item in self.value})
            return f"{self.name} (cell {dims} of {'/'.join(inner) or 'nothing'})"
        if self.kind == "sparse":
            return f"{self.name} (sparse {self.type_name} {dims})"
        return f"{self.name} ({self.type_name} {dims})"


# --------------------------------------------------------------------------------------------
# Phase 1: decoding
# --------------------------------------------------------------------------------------------


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as fh:
        for offset in _HDF5_OFFSETS:
            fh.seek(offset)
            if fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                return True
    return False


def _read_variables(path: Path) -> tuple[dict[str, _Var], str]:
    """Decode every variable of a ``.mat`` file.

    Returns
    -------
    variables : dict of str to _Var
        In file order.
    fmt : str
        Human-readable format name, for the description.

    Raises
    ------
    ValueError
        When the file cannot be decoded (truncated, corrupt, not a MAT-file).
    """
    from scipy.io.matlab import MatReadError

    # Every exception type the decoders were seen to raise on truncated or garbled input;
    # anything else is a bug on our side and should surface as is.
    decode_errors: tuple[type[BaseException], ...] = (
        ValueError,
        TypeError,
        OSError,
        EOFError,
        IndexError,
        KeyError,
        RuntimeError,
        NotImplementedError,
        UnicodeDecodeError,
        AttributeError,
        OverflowError,
        MemoryError,
        zlib.error,
        struct.error,
        MatReadError,
    )
    try:
        if _is_hdf5(path):
            return _read_v73(path), "MATLAB v7.3 (HDF5) MAT-file"
        return _read_v5(path), "MATLAB v5 MAT-file"
    except decode_errors as exc:
        raise ValueError(
            f"Could not read {str(path)!r}: the file is corrupt, truncated or not a MATLAB "
            f".mat file ({type(exc).__name__}: {exc})."
        ) from exc


def _read_v5(path: Path) -> dict[str, _Var]:
    from scipy.io import loadmat

    with open(path, "rb") as fh:
        head = fh.read(20)
    if head.startswith(b"MATLAB 7.3"):
        # A v7.3 header without an HDF5 superblock behind it: the file was cut short.
        raise ValueError("MATLAB 7.3 header found but no HDF5 data follows")
    raw = loadmat(path, squeeze_me=False, chars_as_strings=True, mat_dtype=False)
    return {k: _from_v5(k, v) for k, v in raw.items() if not k.startswith("__")}


def _from_v5(name: str, value: Any, depth: int = 0) -> _Var:
    import scipy.sparse as sp

    if sp.issparse(value):
        return _Var(name, "sparse", value, tuple(value.shape), str(value.dtype))
    if not isinstance(value, np.ndarray):
        return _Var(name, "other", None, (), type(value).__name__)
    shape = tuple(value.shape)
    dtype = value.dtype
    if dtype.names is not None:
        return _Var(name, "struct", None, shape, "struct")
    if dtype == object:
        if depth >= _MAX_DEPTH:
            return _Var(name, "other", None, shape, "nested cell")
        items = [
            _from_v5(f"{name}{{{i + 1}}}", item, depth + 1)
            for i, item in enumerate(value.ravel(order="F"))
        ]
        return _Var(name, "cell", items, shape, "cell")
    if dtype.kind in "US":
        return _Var(name, "char", [str(s) for s in value.ravel(order="F")], shape, "char")
    if dtype.kind in "biuf":
        if value.size == 0:
            return _Var(name, "empty", None, shape, str(dtype))
        return _Var(name, "numeric", value, shape, str(dtype))
    return _Var(name, "other", None, shape, str(dtype))


def _read_v73(path: Path) -> dict[str, _Var]:
    # h5py is only needed for v7.3 files, and importing it is slow.
    import h5py

    out: dict[str, _Var] = {}
    with h5py.File(path, "r") as f:
        for key in f.keys():
            # '#refs#' holds the targets of cell references, '#subsystem#' MATLAB objects.
            if key.startswith("#"):
                continue
            out[key] = _from_h5(key, f[key], f, 0)
    return out


def _attr_str(obj: Any, key: str) -> str:
    value = obj.attrs.get(key)
    if value is None:
        return ""
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else b""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("ascii", errors="replace")
    return str(value)


def _from_h5(name: str, obj: Any, f: Any, depth: int) -> _Var:
    import h5py
    import scipy.sparse as sp

    cls = _attr_str(obj, "MATLAB_class")
    if isinstance(obj, h5py.Group):
        if "MATLAB_sparse" not in obj.attrs:
            return _Var(name, "struct", None, (), cls or "struct")
        n_rows = int(np.asarray(obj.attrs["MATLAB_sparse"]).ravel()[0])
        jc = np.asarray(obj["jc"][()]).ravel().astype(np.int64)
        # An all-zero sparse matrix is written without 'ir' and 'data'.
        ir = np.asarray(obj["ir"][()] if "ir" in obj else [], dtype=np.int64).ravel()
        data = np.asarray(obj["data"][()] if "data" in obj else np.zeros(0)).ravel()
        shape = (n_rows, jc.size - 1)
        if data.dtype.names is not None:
            return _Var(name, "other", None, shape, "complex sparse")
        matrix = sp.csc_matrix((data[: jc[-1]], ir[: jc[-1]], jc), shape=shape)
        return _Var(name, "sparse", matrix, shape, cls or str(data.dtype))

    if not isinstance(obj, h5py.Dataset):
        return _Var(name, "other", None, (), type(obj).__name__)
    # h5py reports MATLAB's column-major arrays with their dimensions reversed.
    shape = tuple(reversed(obj.shape))
    if obj.attrs.get("MATLAB_empty", 0):
        return _Var(name, "empty", None, (0,), cls or "empty")
    is_ref = h5py.check_dtype(ref=obj.dtype) is not None
    if is_ref:
        if cls not in ("", "cell") or depth >= _MAX_DEPTH:
            return _Var(name, "other", None, shape, cls or "references")
        refs = np.asarray(obj[()]).T
        items = []
        for i, ref in enumerate(refs.ravel(order="F")):
            label = f"{name}{{{i + 1}}}"
            if ref:
                items.append(_from_h5(label, f[ref], f, depth + 1))
            else:
                items.append(_Var(label, "empty", None, (0,), "empty"))
        return _Var(name, "cell", items, shape, "cell")
    if obj.dtype.names is not None:
        # Complex numbers are stored as a compound (real, imag) type.
        return _Var(name, "other", None, shape, f"complex {cls}".strip())
    if cls == "char":
        codes = np.atleast_2d(np.asarray(obj[()]).T)
        strings = ["".join(chr(int(c)) for c in row) for row in codes]
        return _Var(name, "char", strings, shape, "char")
    if cls in _MATLAB_NUMERIC_CLASSES or (not cls and obj.dtype.kind in "biuf"):
        value = np.asarray(obj[()]).T
        if cls == "logical":
            value = value.astype(bool)
        if value.size == 0:
            return _Var(name, "empty", None, shape, cls or str(obj.dtype))
        return _Var(name, "numeric", value, shape, cls or str(obj.dtype))
    return _Var(name, "other", None, shape, cls or str(obj.dtype))


# --------------------------------------------------------------------------------------------
# Phase 2: interpretation
# --------------------------------------------------------------------------------------------


def _ranked(variables: dict[str, _Var], names: tuple[str, ...]) -> list[_Var]:
    """Variables matching ``names``: exact-case matches first, then case-folded, by priority."""
    found: list[_Var] = []
    for wanted in names:
        if wanted in variables and variables[wanted] not in found:
            found.append(variables[wanted])
    folded = {k.lower(): k for k in variables}
    for wanted in names:
        key = folded.get(wanted.lower())
        if key is not None and variables[key] not in found:
            found.append(variables[key])
    return found


def _is_data(var: _Var) -> bool:
    """Whether a variable can be a view: a non-empty numeric or sparse matrix (or vector)."""
    if var.kind == "sparse":
        return var.value.shape[0] > 0 and var.value.shape[1] > 0
    return var.kind == "numeric" and var.value.ndim <= 2 and var.value.size > 0


def _one_hot_axis(arr: np.ndarray) -> int | None:
    """Return the class axis of a one-hot matrix (1: rows are samples), else None."""
    if arr.ndim != 2 or min(arr.shape) < 2 or not np.all(np.isfinite(arr)):
        return None
    if not np.all((arr == 0) | (arr == 1)):
        return None
    if np.all(arr.sum(axis=1) == 1):
        return 1
    if np.all(arr.sum(axis=0) == 1):
        return 0
    return None


def _labels_from(var: _Var) -> tuple[np.ndarray, str] | None:
    """Extract a 1-D label array from a variable, or None if it does not look like labels."""
    if var.kind == "sparse":
        var = _Var(var.name, "numeric", var.value.toarray(), var.shape, var.type_name)
    if var.kind == "numeric":
        arr = np.asarray(var.value)
        if arr.ndim <= 1 or (arr.ndim == 2 and 1 in arr.shape):
            if arr.ndim == 2 and arr.size > 1:
                orient = "row vector" if arr.shape[0] == 1 else "column vector"
            else:
                orient = "vector"
            return arr.ravel(), f"{var.describe()}, {orient}"
        axis = _one_hot_axis(arr)
        if axis is not None:
            layout = "samples x classes" if axis == 1 else "classes x samples"
            return np.argmax(arr, axis=axis), f"{var.describe()}, one-hot ({layout}), argmax taken"
        return None
    if var.kind == "char" and len(var.value) > 1:
        return np.asarray(var.value), f"{var.describe()}, text labels"
    if var.kind == "cell" and var.value:
        items = var.value
        if all(item.kind == "char" and len(item.value) == 1 for item in items):
            return np.asarray([item.value[0] for item in items]), f"{var.describe()}, text labels"
        if all(item.kind == "numeric" and item.value.size == 1 for item in items):
            values = np.asarray([item.value.ravel()[0] for item in items])
            return values, f"{var.describe()}, one label per cell"
        # Some files repeat the same label vector once per view.
        inner = [_labels_from(item) for item in items]
        vectors = [r[0] for r in inner if r is not None]
        if len(vectors) == len(items) and all(np.array_equal(v, vectors[0]) for v in vectors):
            return vectors[0], f"{var.describe()}, first of {len(items)} identical label vectors"
    return None


def _find_labels(variables: dict[str, _Var], path: Path) -> tuple[np.ndarray, _Var, str]:
    for var in _ranked(variables, LABEL_VARIABLES):
        found = _labels_from(var)
        if found is None:
            raise ValueError(
                f"{str(path)!r}: the label variable {var.describe()} is neither a vector nor a "
                f"one-hot matrix. Variables found: {_inventory(variables)}. Looking for: "
                f"{_LOOKING_FOR}."
            )
        return found[0], var, found[1]
    # No conventional label name: accept a lone numeric vector, as long as it is unambiguous.
    vectors = [
        v
        for v in variables.values()
        if v.kind == "numeric" and v.value.ndim == 2 and 1 in v.value.shape and v.value.size > 1
    ]
    if len(vectors) == 1:
        labels, how = _labels_from(vectors[0])  # type: ignore[misc]
        logger.info("%s: no conventional label name, using %s", path, vectors[0].describe())
        return labels, vectors[0], how + " (the only vector in the file)"
    raise ValueError(
        f"{str(path)!r}: no label variable found. Variables found: {_inventory(variables)}. "
        f"Looking for: {_LOOKING_FOR}."
    )


def _find_views(
    variables: dict[str, _Var], label_var: _Var, n: int
) -> tuple[list[_Var], str, list[str]]:
    """Return the view variables, a description of where they came from, and the names used."""

    def usable_cell(var: _Var) -> bool:
        return var.kind == "cell" and bool(var.value) and all(_is_data(item) for item in var.value)

    candidates = [v for v in variables.values() if v is not label_var]
    named = _ranked({v.name: v for v in candidates}, VIEW_VARIABLES)
    for var in named:
        if usable_cell(var):
            return list(var.value), f"cell array {var.describe()}", [var.name]

    numbered = []
    for var in candidates:
        match = _NUMBERED_VIEW.match(var.name)
        if match and _is_data(var):
            numbered.append((int(match.group(1)), var.name.lower(), var))
    if numbered:
        numbered.sort(key=lambda t: (t[0], t[1]))
        views = [t[2] for t in numbered]
        names = [v.name for v in views]
        return views, "separate variables " + ", ".join(names), names

    for var in named:
        if _is_data(var):
            return [var], f"single matrix {var.describe()}", [var.name]

    # Last resort: an unconventionally named cell whose every element fits the sample count.
    for var in candidates:
        if usable_cell(var) and all(n in item.value.shape for item in var.value):
            return list(var.value), f"cell array {var.describe()} (unconventional name)", [var.name]
    return [], "", []


def _is_adjacency(var: _Var, n: int) -> bool:
    return _is_data(var) and tuple(var.value.shape) == (n, n)


def _find_graphs(variables: dict[str, _Var], n: int) -> tuple[list[_Var], list[str]]:
    """Graph variables (square ``n x n``) by name; returns them and the variable names used."""
    for var in _ranked(variables, GRAPH_VARIABLES):
        if var.kind == "cell" and var.value and all(_is_adjacency(i, n) for i in var.value):
            return list(var.value), [var.name]
        if _is_adjacency(var, n):
            return [var], [var.name]
    numbered = sorted(
        (int(m.group(1)), name.lower(), var)
        for name, var in variables.items()
        if (m := _NUMBERED_GRAPH.match(name)) and _is_adjacency(var, n)
    )
    return [t[2] for t in numbered], [t[2].name for t in numbered]


def _orient(var: _Var, n: int, path: Path) -> tuple[Any, bool]:
    """Return the view as ``(n, d)`` and whether it had to be transposed."""
    value = var.value
    if value.ndim == 1:
        value = value.reshape(-1, 1)
    rows, cols = value.shape
    if rows == n:
        # Also the square case: with both dimensions equal to n the file is taken at its word.
        return value, False
    if cols == n:
        return value.T, True
    raise ValueError(
        f"{str(path)!r}: view {var.describe()} has no dimension equal to the number of labels "
        f"({n}), so it cannot be matched to the samples."
    )


def _as_float_view(value: Any) -> Any:
    import scipy.sparse as sp

    if sp.issparse(value):
        csr = sp.csr_matrix(value, dtype=np.float64)
        csr.sum_duplicates()
        csr.sort_indices()
        return csr
    return np.ascontiguousarray(value, dtype=np.float64)


def _encode_labels(raw: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if raw.dtype.kind in "fc" and not np.all(np.isfinite(raw)):
        raise ValueError(f"{str(path)!r}: the labels contain NaN or Inf.")
    classes, target = np.unique(raw, return_inverse=True)
    return target.astype(np.int64).ravel(), classes


def _inventory(variables: dict[str, _Var]) -> str:
    if not variables:
        return "none"
    return ", ".join(v.describe() for v in variables.values())


def _format_classes(classes: np.ndarray) -> str:
    shown = ", ".join(str(c.item() if hasattr(c, "item") else c) for c in classes[:8])
    return shown + (", ..." if classes.size > 8 else "")


def load_mat(path: str | os.PathLike[str], *, name: str | None = None) -> Bunch:
    """Load a multi-view data set from a MATLAB ``.mat`` file (v5 or v7.3).

    The layouts found in published multi-view files are recognised:

    * views in a cell array (``1xV`` or ``Vx1``) named ``X``, ``fea``, ``data``, ``features``
      (case-insensitive), in separate numbered variables (``X1``, ``X2``, ... or ``x1``,
      ``view1``, ``fea1``, ``data1``), or a single matrix under one of those names;
    * labels named ``Y``/``y``/``gt``/``truth``/``label``/``labels``/``gnd`` (and a few
      variants), as a row or column vector or a one-hot matrix (argmax is taken);
    * views stored ``d x n`` are transposed (decided from the number of labels; a view whose
      two dimensions both equal ``n`` is kept as stored);
    * sparse views stay sparse (CSR);
    * strings, cell arrays of strings, MATLAB structs and other non-numeric variables are
      ignored;
    * graph data: square ``n x n`` adjacency matrices in a cell array or a matrix named
      ``adj``/``adjs``/``adjacency``/``graphs``/``graph``/``A``/``W``/``networks`` (or numbered
      ``adj1``, ``A1``, ``graph1``, ...) beside the features and labels are returned as CSR
      matrices in ``graphs`` (and the features, when there is one feature matrix, in ``data``),
      ready for ``VariationalGraphGeneratorClustering().fit(data.data, graphs=data.graphs)``.

    No preprocessing is applied: values are as stored, only converted to float64.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.mat`` file.
    name : str, optional
        Name stored in the result; the file stem by default.

    Returns
    -------
    sklearn.utils.Bunch
        ``views`` (list of ``(n, d_v)`` float64 arrays or CSR matrices), ``target`` (int64,
        0-based contiguous, sorted unique stored values mapped to ``0..k-1``), ``view_names``
        (``view0``, ``view1``, ...), ``n_clusters`` (number of classes), ``kind``
        (``"text"`` when every view is non-negative and mostly zero, else ``"dense"``),
        ``name``, ``filename`` and ``DESCR`` (where the data came from and which variables
        were used). Graph files add ``graphs`` (list of CSR float64), ``graph_names`` and
        ``data``, and their ``kind`` is ``"graph"``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be decoded (corrupt, truncated), or holds no recognisable views or
        labels; the message lists the variables that were found.

    Examples
    --------
    >>> from mvlearn_plus.datasets import load_mat
    >>> data = load_mat("my_dataset.mat")  # doctest: +SKIP
    >>> [v.shape for v in data.views], data.n_clusters  # doctest: +SKIP
    ([(169, 3560), (169, 3631), (169, 3068)], 6)
    """
    from sklearn.utils import Bunch

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No such .mat file: {str(path)!r}.")
    variables, fmt = _read_variables(path)

    raw_labels, label_var, label_how = _find_labels(variables, path)
    n = raw_labels.shape[0]
    graph_vars, graph_names = _find_graphs(variables, n)
    feature_variables = {k: v for k, v in variables.items() if k not in graph_names}
    view_vars, views_how, used_names = _find_views(feature_variables, label_var, n)
    if not view_vars:
        raise ValueError(
            f"{str(path)!r}: no views found. Variables found: {_inventory(variables)}. "
            f"Looking for: {_LOOKING_FOR}."
        )

    views = []
    transposed = []
    for i, var in enumerate(view_vars):
        value, flipped = _orient(var, n, path)
        if flipped:
            transposed.append(i)
        views.append(_as_float_view(value))
    target, classes = _encode_labels(raw_labels, path)
    for i, view in enumerate(views):
        data = view.data if hasattr(view, "tocsr") else view
        if not np.all(np.isfinite(data)):
            logger.warning("%s: view %d contains NaN or Inf (kept as stored).", path, i)

    used = {label_var.name, *used_names, *graph_names}
    ignored = [v.describe() for k, v in variables.items() if k not in used]
    lines = [
        f"Multi-view data set loaded from {str(path)!r} ({fmt}).",
        "",
        f"Samples: {n}. Views: {len(views)}, from {views_how}.",
    ]
    for i, (var, view) in enumerate(zip(view_vars, views)):
        storage = "sparse CSR" if hasattr(view, "tocsr") else "dense"
        flip = ", transposed from d x n" if i in transposed else ""
        rows, cols = view.shape
        lines.append(f"  view{i}: {var.describe()} -> {rows} x {cols} {storage}{flip}")
    lines += [
        f"Labels: {label_how}; {classes.size} classes, stored values "
        f"{_format_classes(classes)} mapped to 0..{classes.size - 1}.",
        "Ignored variables: " + (", ".join(ignored) if ignored else "none") + ".",
        "Values are as stored (converted to float64); no preprocessing was applied.",
    ]
    bunch = Bunch(
        views=views,
        target=target,
        view_names=[f"view{i}" for i in range(len(views))],
        DESCR="\n".join(lines) + "\n",
        name=name if name is not None else path.stem,
        n_clusters=int(classes.size),
        kind=infer_kind(views),
        filename=str(path),
    )
    if graph_vars:
        graphs = []
        for var in graph_vars:
            graph = _as_float_view(var.value)
            graphs.append(graph if hasattr(graph, "tocsr") else _csr(graph))
        bunch.graphs = graphs
        bunch.graph_names = [var.name for var in graph_vars]
        bunch.data = views[0] if len(views) == 1 else views
        bunch.kind = "graph"
        bunch.DESCR += (f"Graphs: {len(graphs)} adjacency matrices "
                        f"({', '.join(v.describe() for v in graph_vars)}), returned as CSR in "
                        "'graphs'; the node features are in 'data'.\n")
    return bunch


def _csr(array: Any) -> Any:
    import scipy.sparse as sp

    return sp.csr_matrix(array)


def infer_kind(views: list[Any]) -> str:
    """``"text"`` when every view is count-like, else ``"dense"`` (spec section 0.2).

    The per-view rule is :func:`mvlearn_plus.preprocessing.infer_view_kind`.
    """
    from mvlearn_plus.preprocessing import infer_view_kind

    return "text" if all(infer_view_kind(v) == "text" for v in views) else "dense"
