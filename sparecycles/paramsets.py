"""Turning what ``submit(params=...)`` was given into parameter sets the queue can hold.

``params`` is a parameter file (a path: JSON, CSV or TOML grid, as on the
command line), a list of parameter sets, or a dict of axes for a grid (lists,
``range``\\ s and 1-d numpy arrays are axes; other values, and everything under
``"fixed"``, are the same in every set: the TOML grid's rules).

A set that is a dict of plain JSON values (str keys; numbers, strings,
true/false, None, lists, tuples, dicts) travels as JSON, so ``json.loads(sys.argv[1])``
works in the task; tuples arrive as lists. Any other set (a ``Fraction``, Brian
quantities, an object of the caller's own class, a set that is not a dict) is
pickled here with cloudpickle and reaches the task as ``params.pkl``; see
:mod:`trayapp.taskparams`. ``sparecycles.task_params()`` returns either kind.
"""

from __future__ import annotations

import math
import os
import pickle
from typing import Any, Iterable, Mapping, Union

import cloudpickle

from trayapp.errors import UserError
from trayapp.job.params import check_set_fits, expand_grid
from trayapp.taskparams import pickled_bytes, wrap_pickle

ParamsArgument = Union[str, "os.PathLike[str]", list, tuple, Mapping[str, Any], None]


def param_sets_from(params: ParamsArgument) -> tuple[str | os.PathLike | None, list[dict] | None]:
    """``(parameter file, None)`` or ``(None, sets as stored)`` or ``(None, None)`` for no parameters."""
    if params is None:
        return None, None
    if isinstance(params, (str, os.PathLike)):
        return params, None
    if isinstance(params, Mapping):
        sets = expand_grid({str(k): _axis(v) for k, v in params.items()}, "params (a grid)")
    elif isinstance(params, (list, tuple)) or _is_iterable_of_sets(params):
        sets = list(params)
    else:
        raise UserError(f"params is {type(params).__name__}, which SpareCycles cannot read as parameter sets",
                        "pass a list of parameter sets ([{'rate': 5}, {'rate': 10}]), a dict of axes for a grid "
                        "({'rate': [5, 10], 'g': [1, 2]}), or the path of a parameter file")
    return None, [encode_param_set(value, number) for number, value in enumerate(sets, 1)]


def _is_iterable_of_sets(value: object) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping))


def _axis(value: object) -> object:
    """A grid value as TOML would have it: ranges and 1-d arrays are axes (lists)."""
    if isinstance(value, range):
        return list(value)
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 1:
        return value.tolist()  # Python numbers: JSON, not pickled numpy scalars
    return value


def encode_param_set(value: object, number: int, *, always_pickle: bool = False,
                     what: str = "parameter set") -> dict:
    """The set as the queue stores it: itself if plain JSON, else a wrapped pickle.
    ``what`` names it in messages (``map`` sends items)."""
    if not always_pickle and is_plain_json_set(value):
        stored = _json_copy(value)
    else:
        try:
            data = cloudpickle.dumps(value)
        except Exception as exc:  # noqa: BLE001 - pickling raises whatever the object's code raises
            raise UserError(f"{what} #{number} ({_short(value)}) is neither JSON nor picklable: "
                            f"{type(exc).__name__}: {exc}",
                            "use plain values (numbers, strings, lists, dicts) or objects pickle can save; "
                            "open files, locks, sockets and generators cannot travel: create them inside "
                            "the task") from None
        stored = wrap_pickle(data)
    check_set_fits(stored, number, what)
    return stored


def decode_param_set(stored: object) -> object:
    """The set as the caller gave it. Unpickles only what this user's own process
    pickled at submit time (the queue's copy), never anything a host sent back."""
    data = pickled_bytes(stored)
    return stored if data is None else pickle.loads(data)


def is_plain_json_set(value: object) -> bool:
    return isinstance(value, dict) and _is_plain_json(value)


def _is_plain_json(value: object, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)  # JSON has no NaN or infinity
    if isinstance(value, (list, tuple)):
        return all(_is_plain_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain_json(v, depth + 1) for k, v in value.items())
    return False


def _json_copy(value: object) -> object:
    if isinstance(value, dict):
        return {k: _json_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_copy(v) for v in value]
    return value


def _short(value: object, width: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real problem
        text = f"a {type(value).__name__}"
    return text if len(text) <= width else text[: width - 1] + "…"
