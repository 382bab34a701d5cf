"""Info pickles: a writer that any numpy can read, and a reader that runs no code.

Written pickles use protocol 4 and name only `numpy.ndarray`, `numpy.dtype` and builtins, so they
load under numpy 1.19 to 2.x and Python 3.7+ (numpy 2's own pickles name `numpy._core`, which
numpy 1.x cannot import). Read pickles may come from a download link: `load_pickle` admits only
numpy arrays, numpy scalars and plain containers, and refuses any other global with a clear error.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np

from occprep.errors import OccprepError
from occprep.fileio import atomic_write

PROTOCOL = 4

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("numpy", "bool_"),
    ("numpy", "int64"),
    ("numpy", "float64"),
}


_EMPTY_ARRAY_ARGS = ((0,), np.dtype("b"))
"""`numpy.ndarray(*args)`: the empty array that `__setstate__` then fills."""


SCALAR_TYPES = {np.bool_: bool, np.int64: int, np.float64: float}
"""The numpy scalar types an info may hold (mmdet3d 1.x writes them), and the Python type of their value."""


def array_state(array: np.ndarray) -> tuple:
    """`array.__reduce__()`'s state, (1, shape, dtype, Fortran order?, data), built directly (three times
    faster per array, which counts at millions of small arrays per pickle). `flags.fnc` is Fortran- and not
    C-contiguous, numpy's own test, in one look-up of the flags; `tobytes()` without an order argument is
    `tobytes("A")` for any other array, in half the time."""
    fortran = array.flags.fnc
    return 1, array.shape, array.dtype, fortran, array.tobytes("F") if fortran else array.tobytes()


class _PortablePickler(pickle.Pickler):
    """Pickles arrays as `numpy.ndarray` + `__setstate__`, the form every numpy version reads, and
    numpy scalars as a call of their type (`numpy.int64(5)`); numpy's own forms name `numpy._core`
    under numpy 2. `numpy.bool_` is named so (numpy 2 calls it `numpy.bool`, which numpy 1.24-1.26 lack)."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is np.ndarray:
            if obj.dtype.hasobject:
                raise TypeError("object arrays cannot be written portably")
            return np.ndarray, _EMPTY_ARRAY_ARGS, array_state(obj)
        if obj is np.bool_:
            return "bool_"
        if type(obj) in SCALAR_TYPES:
            return type(obj), (SCALAR_TYPES[type(obj)](obj),)
        if isinstance(obj, np.generic):
            raise TypeError(f"numpy scalar {obj!r} must be converted to a Python number first")
        return NotImplemented


def dumps(obj: Any) -> bytes:
    """Serialise `obj` (dicts, lists, str, int, float, bool, None and numeric/str ndarrays)."""
    buffer = io.BytesIO()
    _PortablePickler(buffer, protocol=PROTOCOL).dump(obj)
    return buffer.getvalue()


def write_pickle(obj: Any, handle: IO[bytes]) -> None:
    """Stream `obj` into an open binary file (see `dumps`)."""
    _PortablePickler(handle, protocol=PROTOCOL).dump(obj)


def dump_pickle(obj: Any, path: Path) -> None:
    """Write `obj` to `path` atomically, streaming rather than building the bytes (see `dumps`)."""
    with atomic_write(path) as handle:
        write_pickle(obj, handle)


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            __import__(module)
            return super().find_class(module, name)
        raise OccprepError(
            f"{self._path}: refused to load: the pickle imports {module}.{name}, and only numpy "
            "arrays and builtins are allowed (a pickle that imports code can run it); "
            "regenerate it with occprep or inspect its source"
        )


def load_pickle(path: Path) -> Any:
    """Load a pickle that may come from anywhere, admitting only numpy arrays and builtins."""
    path = Path(path)
    if path.name.endswith(".index.json"):
        raise OccprepError(f"{path}: the index of a create-infos --sharded-output, not a pickle; only occprep inspect "
                           "reads an index: give one of the pickles it lists (<file stem>/part-NNNNN.pkl)")
    try:
        with open(path, "rb") as handle:
            return _SafeUnpickler(handle, path).load()
    except FileNotFoundError:
        raise OccprepError(f"{path}: file not found") from None
    except OccprepError:
        raise
    except Exception as exc:  # truncated or non-pickle data raise many different types
        raise OccprepError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
