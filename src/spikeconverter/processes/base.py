"""What the Processes share: argument checks, a validated shape, a safe ``__del__``, and the
ports and Vars of a windowed membrane (Lava's idiom: ``lava.proc.lif.process.AbstractLIF``).

Every check raises ValueError naming the Process and the culprit argument. Kept outside the
Process folders, which Lava scans for ProcessModels; nothing here is a concrete Process, so
Lava never scans this folder.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

from spikeconverter.coding import ROUNDING_MODES

__all__ = [
    "AbstractMembrane",
    "BatchedProcess",
    "ShapedProcess",
    "broadcast_array",
    "broadcast_integers",
    "validate_bool",
    "validate_int",
    "validate_k",
    "validate_rounding",
    "validate_shape",
]


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
    """One of :data:`spikeconverter.coding.ROUNDING_MODES`."""
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"{proc}: rounding must be one of {ROUNDING_MODES}, got {rounding!r}")
    return rounding


def validate_bool(proc: str, name: str, value: Any) -> bool:
    """A Python or numpy bool."""
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


class ShapedProcess(AbstractProcess):
    """Base of the Processes here: keyword-only, a validated ``shape``, a safe ``__del__``.

    Parameters
    ----------
    shape : tuple of int
        Shape of the Process (its input port's shape), checked by :func:`validate_shape`.
    name : str, optional
        Name of the Process.
    log_config : LogConfig, optional
        Lava logging configuration.
    **proc_params
        Further (already validated) parameters, stored in ``proc_params`` for the models.
    """

    def __init__(
        self,
        *,
        shape: Any,
        name: str | None = None,
        log_config: LogConfig | None = None,
        **proc_params: Any,
    ) -> None:
        shape = validate_shape(type(self).__name__, shape)
        super().__init__(shape=shape, name=name, log_config=log_config, **proc_params)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the Process (of its input port)."""
        return self.proc_params["shape"]

    def __del__(self) -> None:
        # a constructor that raised before AbstractProcess.__init__ leaves no runtime to stop
        if hasattr(self, "_runtime"):
            super().__del__()


class BatchedProcess(ShapedProcess):
    """Base of the batched Processes: ``batch`` samples side by side, each of ``shape``.

    ``shape`` is the per-sample shape (of the input port, without the batch axis), ``batch``
    the number of samples (>= 1); the ports carry ``(batch, *shape)``. Both go to
    ``proc_params`` for the models.

    Parameters
    ----------
    shape : tuple of int
        Per-sample shape of the input.
    batch : int
        Samples side by side, >= 1.
    name : str, optional
    log_config : LogConfig, optional
    **proc_params
        Further (already validated) parameters.
    """

    def __init__(self, *, shape: Any, batch: int, name: str | None = None,
                 log_config: LogConfig | None = None, **proc_params: Any) -> None:
        batch = validate_int(type(self).__name__, "batch", batch, 1)
        super().__init__(shape=shape, batch=batch, name=name, log_config=log_config,
                         **proc_params)

    @property
    def batch(self) -> int:
        """Samples side by side."""
        return self.proc_params["batch"]


class AbstractMembrane(ShapedProcess):
    """Shared part of the windowed membranes (ILIF, Readout): accumulate, bias, fixed point.

    Holds the input port ``a_in`` and the Vars that the models' accumulate step and 24-bit
    clamp use (``v``, ``bias``, ``bias_exp``, ``saturations``); subclasses add their output
    port and own Vars. ``k``, ``t_acc`` and ``offset`` go to ``proc_params``.

    Parameters
    ----------
    shape : tuple of int
        Shape of the population.
    k : float
        Inverse leak, in (1, 2].
    t_acc : int
        Steps of the accumulate phase, >= 1.
    offset : int
        Idle steps before the first window, >= 0.
    bias : float or array
        Added once per window at its last accumulate step; broadcastable to ``shape``.
    bias_exp : int or array
        Exponent of the bias in the fixed-point models.
    v : float or array
        Initial membrane.
    name : str, optional
        Name of the Process.
    log_config : LogConfig, optional
        Lava logging configuration.
    **proc_params
        Further (already validated) parameters of the subclass.
    """

    def __init__(
        self,
        *,
        shape: Any,
        k: float,
        t_acc: int,
        offset: int,
        bias: Any,
        bias_exp: Any,
        v: Any = 0.0,
        name: str | None = None,
        log_config: LogConfig | None = None,
        **proc_params: Any,
    ) -> None:
        proc = type(self).__name__
        shape = validate_shape(proc, shape)
        k = validate_k(proc, k)
        t_acc = validate_int(proc, "t_acc", t_acc, 1)
        offset = validate_int(proc, "offset", offset, 0)
        bias_arr = broadcast_array(proc, "bias", bias, shape)
        exp_arr = broadcast_integers(proc, "bias_exp", bias_exp, shape)
        v_arr = broadcast_array(proc, "v", v, shape)
        super().__init__(
            shape=shape,
            k=k,
            t_acc=t_acc,
            offset=offset,
            name=name,
            log_config=log_config,
            **proc_params,
        )
        self.a_in = InPort(shape=shape)
        self.v = Var(shape=shape, init=v_arr)
        self.bias = Var(shape=shape, init=bias_arr)
        self.bias_exp = Var(shape=shape, init=exp_arr)
        self.saturations = Var(shape=shape, init=np.zeros(shape, dtype=np.int64))
