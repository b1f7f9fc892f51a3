"""Loading a pickle that another PC made, as plain data only.

A pickle is a program: loading one calls whatever functions it names, so a
``value.pkl`` from a slave could run any code on the caller's PC (a hostile
lender rewrites the file; nothing in the results archive says which task made
it). :func:`load_plain` builds numbers, strings, bytes, containers, NumPy
arrays, scalars and dtypes, and Brian quantities, and refuses every other name
a pickle asks for, before anything is called. A slave can still return a wrong
value, never code.

The allowed names are the ones these types' own pickles use (NumPy 1 and 2,
protocols 2 to 5); each builds data from data and calls nothing it was given.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import sys
from typing import Any

_NUMPY_CORES = ("numpy.core", "numpy._core")  # NumPy 2 renamed numpy.core; pickles name either

ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("builtins", name) for name in ("complex", "set", "frozenset", "bytearray", "slice", "range")
} | {
    ("_codecs", "encode"),  # protocol 2 spells bytes as a latin-1 string and this call
    ("collections", "OrderedDict"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"), ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    *((f"{core}.multiarray", name) for core in _NUMPY_CORES for name in ("_reconstruct", "scalar")),
    *((f"{core}.numeric", "_frombuffer") for core in _NUMPY_CORES),
    ("numpy.ma.core", "MaskedArray"), ("numpy.ma.core", "_mareconstruct"),
    *(("brian2.units.fundamentalunits", name)
      for name in ("Quantity", "Unit", "Dimension", "get_or_create_dimension", "quantity_with_dimensions")),
})


class NotPlainData(pickle.UnpicklingError):
    """The pickle asks for ``name``, which is not one of the plain-data types."""

    def __init__(self, name: str):
        super().__init__(f"it asks for {name}, which is not plain data")
        self.name = name


# The dtype flags that say "this item holds Python objects": NumPy takes them from a
# pickle's state as they are, so a dtype with an object field can claim to hold none
# and turn the array's raw bytes into object pointers (a crash, or worse, on first
# read). Bit 0x80 (an aligned struct) is the one flag a dtype's fields do not decide.
_OBJECT_FLAGS = 0x7F


class _PlainUnpickler(pickle._Unpickler):
    """The pure-Python unpickler, whose BUILD step can be checked: the C one cannot be."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if _python3_name(module, name) not in ALLOWED:
            raise NotPlainData(f"{module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise NotPlainData("a persistent object")

    def _load_build(self) -> None:
        pickle._Unpickler.load_build(self)
        numpy = sys.modules.get("numpy")
        built = self.stack[-1]
        if numpy is not None and isinstance(built, numpy.dtype) and not _flags_match_fields(numpy, built):
            raise NotPlainData("a NumPy dtype whose flags do not match its fields (a forged pickle)")

    dispatch[pickle.BUILD[0]] = _load_build


def _flags_match_fields(numpy, dtype) -> bool:
    """Whether ``dtype`` says it holds objects exactly when its fields do, as a
    dtype made from the same description would (checked before any array uses it)."""
    try:
        same = numpy.dtype(dtype.descr) if dtype.fields is not None else numpy.dtype(dtype.str)
    except (TypeError, ValueError):
        return False
    return (int(dtype.flags) & _OBJECT_FLAGS) == (int(same.flags) & _OBJECT_FLAGS)


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """Protocol 2 pickles use Python 2's names (``__builtin__.xrange``); the
    unpickler maps them as it loads, and so does the check."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def load_plain(data: bytes) -> Any:
    """The value pickled in ``data``, built from plain data only; raises
    :class:`NotPlainData` naming the first other thing it asks for, before calling it."""
    return _PlainUnpickler(io.BytesIO(data)).load()
