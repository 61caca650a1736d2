"""What the Processes share: argument checks, a validated shape, a safe ``__del__``, and the
ports and Vars of a windowed membrane (Lava's idiom: ``lava.proc.lif.process.AbstractLIF``).

Every check raises ValueError naming the Process and the culprit argument. Kept outside the
Process folders, which Lava scans for ProcessModels; nothing here is a concrete Process, so
Lava never scans this folder.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

from spikeconverter.coding import ROUNDING_MODES

__all__ = [
    "A_IN_SHIFT_MAX",
    "AbstractMembrane",
    "BatchedProcess",
    "ShapedProcess",
    "broadcast_array",
    "broadcast_integers",
    "deprecated_bias",
    "validate_bool",
    "validate_int",
    "validate_k",
    "validate_rounding",
    "validate_shape",
    "validate_window",
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


#: Loihi's MSB alignment of the synaptic input (Lava LIF's ``a_in << 6``): the largest
#: ``a_in_shift`` of a membrane (:data:`spikeconverter.processes.loihi.SHIFT`).
A_IN_SHIFT_MAX = 6

#: What a batched synapse's window sums (see :func:`validate_window`).
WINDOW_PAYLOADS = ("binary", "signed", "analog")


def validate_window(proc: str, window: Any) -> dict[str, Any] | None:
    """``None``, or the ``window`` of a batched synapse summing its input once per window.

    Keys: ``start`` (first step of window 0, ``n = time_step - 1``), ``length`` (steps summed,
    >= 1), ``period`` (steps between windows, >= ``length``), ``k`` (the code's base: the
    spike of step ``t`` weighs ``k**(length - 1 - t)``), ``payload`` (one of
    ``WINDOW_PAYLOADS``) and ``bits`` (of the integer code, >= ``length``). Optional:
    ``lead`` (the input's window starts that many steps before ``start``: a delay in front of
    the synapse, folded into it; ``0 <= lead <= min(start, period - 1)``, default 0) and
    ``code_in`` (binary payload of at most 8 steps only: the input arrives as one message per
    window, at its first step, holding the window's code instead of one spike vector per
    step; default False).
    """
    if window is None:
        return None
    if not isinstance(window, dict):
        raise ValueError(f"{proc}: window must be None or a dict, got {window!r}")
    keys = {"start", "length", "period", "k", "payload", "bits"}
    if not keys <= set(window) <= keys | {"lead", "code_in"}:
        raise ValueError(f"{proc}: window needs the keys {sorted(keys)} (and optionally "
                         f"'lead', 'code_in'), got {sorted(window)}")
    length = validate_int(proc, "window['length']", window["length"], 1)
    out = {"start": validate_int(proc, "window['start']", window["start"], 0),
           "length": length,
           "period": validate_int(proc, "window['period']", window["period"], length),
           "k": validate_k(proc, window["k"]),
           "bits": validate_int(proc, "window['bits']", window["bits"], length)}
    if window["payload"] not in WINDOW_PAYLOADS:
        raise ValueError(f"{proc}: window['payload'] must be one of {WINDOW_PAYLOADS}, got "
                         f"{window['payload']!r}")
    out["payload"] = window["payload"]
    lead = validate_int(proc, "window['lead']", window.get("lead", 0), 0)
    if lead > min(out["start"], out["period"] - 1):
        raise ValueError(f"{proc}: window['lead'] must be at most min(start, period - 1) = "
                         f"{min(out['start'], out['period'] - 1)}, got {lead}")
    out["lead"] = lead
    out["code_in"] = validate_bool(proc, "window['code_in']", window.get("code_in", False))
    if out["code_in"] and (out["payload"] != "binary" or length > 8 or out["k"] != 2.0):
        raise ValueError(f"{proc}: window['code_in'] needs a binary payload of at most 8 "
                         f"steps and k = 2, got {out['payload']!r}, length {length}, "
                         f"k = {out['k']}")
    return out


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
    clamp use (``v``, ``bias_mant``, ``bias_exp``, ``saturations``; Lava LIF's names);
    subclasses add their output port and own Vars. ``k``, ``t_acc`` and ``offset`` go to
    ``proc_params`` and are readable (not settable) as the attributes of the same names: they
    fix the window clock, which a model reads once when it is built.

    The chosen ProcessModel validates the Process itself: when Lava's compiler picks a model
    (any run configuration), a model with a ``validate_process(process)`` classmethod checks
    this Process's Var values, in the calling process, before anything runs (a model raising
    inside Lava's runtime would hang the run). The bit-accurate models use it to refuse
    non-integer ``vth``/``bias_mant`` mantissas, which Lava would otherwise silently truncate.

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
    bias_mant : float or array
        Added once per window at its last accumulate step; broadcastable to ``shape``
        (the fixed-point models: an integer mantissa, scaled by ``2**bias_exp``).
    bias_exp : int or array
        Exponent of the bias in the fixed-point models.
    bias_shift : int
        The bias enters ``bias_shift`` steps before the last accumulate step (at
        ``tau = t_acc - 1 - bias_shift``), so the window's doublings multiply it by
        ``k**bias_shift`` for free: a bias ``m * 2**(e + j)`` is carried exactly by an exponent
        ``e`` in range and ``bias_shift = j`` (the bias-shift trick). In ``[0, t_acc - 1]``.
    a_in_shift : int
        Fixed-point models: the summed input enters the membrane as ``a_in << a_in_shift``.
        Default 6, Lava LIF's MSB alignment; smaller when the synapses apply part of Loihi's
        ``2**(6 + weight_exp)`` themselves (see :class:`spikeconverter.processes.ILIF`). In
        ``[0, 6]``; the float models ignore it.
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
        bias_mant: Any,
        bias_exp: Any,
        bias_shift: int = 0,
        a_in_shift: int = A_IN_SHIFT_MAX,
        v: Any = 0.0,
        name: str | None = None,
        log_config: LogConfig | None = None,
        **proc_params: Any,
    ) -> None:
        proc = type(self).__name__
        a_in_shift = validate_int(proc, "a_in_shift", a_in_shift, 0)
        if a_in_shift > A_IN_SHIFT_MAX:
            raise ValueError(f"{proc}: a_in_shift must be in [0, {A_IN_SHIFT_MAX}] (Loihi's "
                             f"6-bit MSB alignment, or less of it), got {a_in_shift}")
        shape = validate_shape(proc, shape)
        k = validate_k(proc, k)
        t_acc = validate_int(proc, "t_acc", t_acc, 1)
        bias_shift = validate_int(proc, "bias_shift", bias_shift, 0)
        if bias_shift > t_acc - 1:
            raise ValueError(f"{proc}: bias_shift must be <= t_acc - 1 = {t_acc - 1} (the bias "
                             f"enters within the accumulate phase), got {bias_shift}")
        offset = validate_int(proc, "offset", offset, 0)
        bias_arr = broadcast_array(proc, "bias_mant", bias_mant, shape)
        exp_arr = broadcast_integers(proc, "bias_exp", bias_exp, shape)
        v_arr = broadcast_array(proc, "v", v, shape)
        super().__init__(
            shape=shape,
            k=k,
            t_acc=t_acc,
            offset=offset,
            bias_shift=bias_shift,
            a_in_shift=a_in_shift,
            name=name,
            log_config=log_config,
            **proc_params,
        )
        self.a_in = InPort(shape=shape)
        self.v = Var(shape=shape, init=v_arr)
        self.bias_mant = Var(shape=shape, init=bias_arr)
        self.bias_exp = Var(shape=shape, init=exp_arr)
        self.saturations = Var(shape=shape, init=np.zeros(shape, dtype=np.int64))

    def __getattr__(self, name: str) -> Any:
        # the deprecated alias ``bias`` of the Var ``bias_mant``; not a property, so that
        # Lava's scan of the Process's members (``dir``) does not trigger the warning
        if name == "bias":
            warnings.warn("the Var 'bias' is now 'bias_mant' (Lava LIF's name); 'bias' will "
                          "be removed", DeprecationWarning, stacklevel=2)
            return self.bias_mant
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def k(self) -> float:
        """Inverse leak (read-only)."""
        return self.proc_params["k"]

    @property
    def t_acc(self) -> int:
        """Steps of the accumulate phase (read-only)."""
        return self.proc_params["t_acc"]

    @property
    def bias_shift(self) -> int:
        """Steps before the last accumulate step at which the bias enters (read-only)."""
        return self.proc_params["bias_shift"]

    @property
    def offset(self) -> int:
        """Idle steps before the first window (read-only)."""
        return self.proc_params["offset"]

    @property
    def a_in_shift(self) -> int:
        """Left shift of the summed input in the fixed-point models (read-only)."""
        return self.proc_params["a_in_shift"]

    @property
    def model_class(self):
        """The ProcessModel Lava's compiler chose; validated against this Process on access.

        The compiler reads this property (in the calling process) before it builds the
        models, so a model's ``validate_process`` raises there, under any run configuration.
        """
        cls = self._model_class
        validate = getattr(cls, "validate_process", None)
        if validate is not None:
            validate(self)
        return cls


def deprecated_bias(proc: str, bias_mant: Any, bias: Any) -> Any:
    """``bias_mant``, or the deprecated keyword ``bias`` (with a DeprecationWarning).

    Raises
    ------
    ValueError
        Both were given.
    """
    if bias is None:
        return 0.0 if bias_mant is None else bias_mant
    if bias_mant is not None:
        raise ValueError(f"{proc}: give bias_mant only (bias is its deprecated old name)")
    warnings.warn(f"{proc}: the keyword 'bias' is now 'bias_mant' (Lava LIF's name); 'bias' "
                  "will be removed", DeprecationWarning, stacklevel=3)
    return bias
