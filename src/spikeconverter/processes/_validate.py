"""Argument checks shared by the Process constructors (ValueError naming the culprit)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from spikeconverter.coding import ROUNDING_MODES


def validate_shape(proc: str, shape: Any) -> tuple[int, ...]:
    """A non-empty tuple of positive ints."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        out = tuple(shape)
    except TypeError:
        out = None
    if (
        not out
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in out)
        or not all(s >= 1 for s in out)
    ):
        raise ValueError(f"{proc}: shape must be a non-empty tuple of positive ints, got {shape!r}")
    return tuple(int(s) for s in out)


def validate_int(proc: str, name: str, value: Any, minimum: int) -> int:
    """An int (not bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{proc}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def validate_k(proc: str, k: Any) -> float:
    """Inverse leak in (1, 2]."""
    ok = isinstance(k, (int, float, np.floating, np.integer)) and not isinstance(k, bool)
    if not ok or not math.isfinite(k) or not 1.0 < k <= 2.0:
        raise ValueError(f"{proc}: k must be a number in (1, 2], got {k!r}")
    return float(k)


def validate_rounding(proc: str, rounding: Any) -> str:
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"{proc}: rounding must be one of {ROUNDING_MODES}, got {rounding!r}")
    return rounding


def validate_bool(proc: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{proc}: {name} must be True or False, got {value!r}")
    return bool(value)


def broadcast_array(
    proc: str, name: str, value: Any, shape: tuple[int, ...], positive: bool = False
) -> np.ndarray:
    """``value`` (scalar or array) broadcast to ``shape`` as a float64 copy, finite entries."""
    try:
        arr = np.asarray(value, dtype=np.float64)
        arr = np.broadcast_to(arr, shape).copy()
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{proc}: {name} must be a number or an array broadcastable to shape {shape}, "
            f"got {value!r}"
        ) from err
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{proc}: {name} must be finite, got {value!r}")
    if positive and not np.all(arr > 0):
        raise ValueError(f"{proc}: {name} must be > 0 everywhere, got {value!r}")
    return arr


def broadcast_integers(proc: str, name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Like :func:`broadcast_array`, for integer fields (exponents): an int32 copy."""
    arr = broadcast_array(proc, name, value, shape)
    if not np.array_equal(arr, np.round(arr)):
        raise ValueError(f"{proc}: {name} must hold integers, got {value!r}")
    return arr.astype(np.int32)
