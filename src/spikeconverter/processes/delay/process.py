"""A delay line for a vector of spikes (binary or graded), e.g. on a residual skip edge."""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import LogConfig
from lava.magma.core.process.variable import Var

from spikeconverter.processes.base import ShapedProcess, validate_int

__all__ = ["Delay"]


class Delay(ShapedProcess):
    """Sends on ``s_out`` at step ``n`` what arrived on ``a_in`` at step ``n - delay``.

    Zeros are sent for the first ``delay`` steps; ``delay = 0`` passes the input through in
    the same step. Like a neuron, the Delay adds no latency of its own, so a skip edge
    ``population -> Delay(d) -> Dense -> target`` arrives ``d + 1`` steps after the spike.
    Payloads pass unchanged (binary 0/1 or graded values such as signed -1/0/+1 trains).

    Why not Lava's ``DelayDense``/``DelaySparse``: their CPU models build a dense
    ``(n_out * (max_delay + 1), n_in)`` matrix every step (quadratic in the population size,
    linear in the delay) and the bit-accurate ones cap delays at 63 steps, less than two
    windows of 2 x 32 steps. This ring buffer costs ``O(n)`` per step and ``O(n * delay)``
    memory; put it in front of an ordinary Dense/Sparse/Conv synapse. The Var ``buffer``
    ``(max(delay, 1), *shape)`` holds the pending inputs: slot ``n mod delay`` the one of step
    ``n - delay``.

    Parameters
    ----------
    shape : tuple of int
        Shape of the vector delayed.
    delay : int
        Delay in steps, >= 0 (whole windows: a multiple of ``t_acc + t_gen`` on a skip edge).
    name : str, optional
        Name of the Process.
    log_config : LogConfig, optional
        Lava logging configuration.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        delay: int,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        delay = validate_int("Delay", "delay", delay, 0)
        super().__init__(shape=shape, delay=delay, name=name, log_config=log_config)
        shape = self.shape
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        # one slot per step of delay (at least one, so that delay = 0 needs no special Var),
        # slot first: a slot is one contiguous block, read and written once per step
        self.buffer = Var(shape=(max(delay, 1), *shape), init=np.zeros((max(delay, 1), *shape)))
