"""An accumulate-only population: its membrane at the end of each window is the output."""

from __future__ import annotations

from typing import Any

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

from spikeconverter.processes._validate import (
    broadcast_array,
    broadcast_integers,
    validate_int,
    validate_k,
    validate_shape,
)

__all__ = ["Readout"]


class Readout(AbstractProcess):
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
    :class:`spikeconverter.processes.ILIF`: ``a_in << 6``, ``bias << bias_exp``, ``k = 2`` as
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
    bias : float or array
        Added once per window at its last accumulate step; scalar or broadcastable to ``shape``.
    bias_exp : int or array
        Exponent of the bias in the fixed-point model (ignored by the float model).
    name : str, optional
        Name of the Process.
    log_config : LogConfig, optional
        Lava logging configuration.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        k: float = 2.0,
        t_acc: int = 16,
        period: int | None = None,
        offset: int = 0,
        bias: Any = 0.0,
        bias_exp: Any = 0,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        proc = "Readout"
        shape = validate_shape(proc, shape)
        k = validate_k(proc, k)
        t_acc = validate_int(proc, "t_acc", t_acc, 1)
        period = 2 * t_acc if period is None else validate_int(proc, "period", period, t_acc)
        offset = validate_int(proc, "offset", offset, 0)
        bias_arr = broadcast_array(proc, "bias", bias, shape)
        exp_arr = broadcast_integers(proc, "bias_exp", bias_exp, shape)
        super().__init__(
            shape=shape,
            k=k,
            t_acc=t_acc,
            period=period,
            offset=offset,
            name=name,
            log_config=log_config,
        )
        self.a_in = InPort(shape=shape)
        self.v_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=np.zeros(shape))
        self.bias = Var(shape=shape, init=bias_arr)
        self.bias_exp = Var(shape=shape, init=exp_arr)
        self.saturations = Var(shape=shape, init=np.zeros(shape, dtype=np.int64))

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the population."""
        return self.proc_params["shape"]

    def __del__(self) -> None:
        # a constructor that raised before AbstractProcess.__init__ leaves no runtime to stop
        if hasattr(self, "_runtime"):
            super().__del__()
