"""An accumulate-only population: its membrane at the end of each window is the output."""

from __future__ import annotations

from typing import Any

from lava.magma.core.process.ports.ports import OutPort
from lava.magma.core.process.process import LogConfig

from spikeconverter.processes.base import (
    A_IN_SHIFT_MAX,
    AbstractMembrane,
    deprecated_bias,
    validate_int,
)

__all__ = ["Readout"]


class Readout(AbstractMembrane):
    """Last layer of a converted network: accumulates MSB-first trains, never fires.

    With ``n = time_step - 1`` and ``tau = (n - offset) mod period`` (idle before ``offset``):
    ``v <- a_in`` at ``tau = 0``, ``v <- k*v + a_in`` for ``0 < tau < t_acc``, the bias added
    at ``tau = t_acc - 1``; for ``t_acc <= tau < period`` the input is ignored and ``v`` holds
    its value. At ``tau = t_acc - 1`` (the end of each window's accumulation) ``v`` is sent,
    graded, on ``v_out``; every other step sends zeros. A sink
    :class:`lava.proc.io.sink.RingBuffer` on ``v_out`` thus collects the logits of every
    window (one sample per window when samples are streamed back to back with ``period`` equal
    to the ``t_acc + t_gen`` of the layers before); the Var ``v`` holds the last ones.

    The ``fixed_pt`` / ``bit_accurate_loihi`` model follows the conventions of
    :class:`spikeconverter.processes.ILIF`: ``a_in << a_in_shift`` (default 6),
    ``bias_mant << bias_exp``, ``k = 2`` as
    a left shift, the membrane clamped to ``[-2**23, 2**23 - 1]`` with every clamp counted in
    ``saturations``; ``v_out`` then carries ``64 *`` the float model's value.

    Parameters
    ----------
    shape : tuple of int
        Shape of the population (e.g. ``(classes,)``).
    k : float
        Inverse leak, in (1, 2]; the fixed-point model needs ``k = 2``.
    t_acc : int
        Steps of accumulation per window (the length of the incoming trains), >= 1.
    period : int, optional
        Steps from one window to the next, >= ``t_acc``; default ``2 * t_acc`` (the period of
        iLIF layers with ``t_gen = t_acc``).
    offset : int
        Idle steps before the first window, >= 0.
    bias_mant : float or array
        Added once per window at its last accumulate step; scalar or broadcastable to ``shape``
        (Lava LIF's name; the Var is ``bias_mant``).
    bias_exp : int or array
        Exponent of the bias in the fixed-point model (ignored by the float model).
    bias_shift : int
        The bias enters at accumulate step ``t_acc - 1 - bias_shift`` and reaches the window's
        end multiplied by ``k**bias_shift`` (the bias-shift trick: a large fixed-point bias
        within the 3-bit exponent, exactly); in ``[0, t_acc - 1]``, default 0.
    a_in_shift : int
        Fixed-point model: the summed input enters as ``a_in << a_in_shift``; in ``[0, 6]``,
        default 6 (as :class:`spikeconverter.processes.ILIF`).
    name : str, optional
        Name of the Process.
    log_config : LogConfig, optional
        Lava logging configuration.
    bias : float or array, optional
        Deprecated name of ``bias_mant`` (a DeprecationWarning).
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        k: float = 2.0,
        t_acc: int = 16,
        period: int | None = None,
        offset: int = 0,
        bias_mant: Any = None,
        bias_exp: Any = 0,
        bias_shift: int = 0,
        a_in_shift: int = A_IN_SHIFT_MAX,
        name: str | None = None,
        log_config: LogConfig | None = None,
        bias: Any = None,
    ) -> None:
        proc = "Readout"
        # the default period needs a valid t_acc (checked again, idempotently, by the base)
        t_acc = validate_int(proc, "t_acc", t_acc, 1)
        period = 2 * t_acc if period is None else validate_int(proc, "period", period, t_acc)
        super().__init__(
            shape=shape,
            k=k,
            t_acc=t_acc,
            offset=offset,
            bias_mant=deprecated_bias(proc, bias_mant, bias),
            bias_exp=bias_exp,
            bias_shift=bias_shift,
            a_in_shift=a_in_shift,
            period=period,
            name=name,
            log_config=log_config,
        )
        self.v_out = OutPort(shape=self.shape)
