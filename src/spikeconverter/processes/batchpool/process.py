"""Exact max pooling of MSB-first trains, with a leading batch axis."""

from __future__ import annotations

from typing import Any

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import LogConfig

from spikeconverter.processes.base import BatchedProcess, validate_int, validate_shape
from spikeconverter.processes.maxpool.process import SpikingMaxPool

__all__ = ["BatchMaxPool"]


class BatchMaxPool(BatchedProcess):
    """:class:`spikeconverter.processes.SpikingMaxPool` for ``B`` samples side by side.

    Same rule per sample (candidate masks, no latency); ports ``s_in`` ``(B, W, H, C)`` and
    ``s_out`` ``(B, W', H', C)``. The parameters are validated by building the per-sample
    :class:`~spikeconverter.processes.SpikingMaxPool` description.

    Parameters
    ----------
    shape : tuple of int
        Per-sample input shape ``(W, H, C)``.
    batch : int
        Samples side by side, >= 1.
    kernel_size, stride, padding, t_gen, period, offset
        As :class:`~spikeconverter.processes.SpikingMaxPool`.
    name : str, optional
    log_config : LogConfig, optional
    """

    def __init__(self, *, shape: tuple[int, int, int], batch: int, kernel_size: Any,
                 stride: Any = None, padding: Any = 0, t_gen: int = 16,
                 period: int | None = None, offset: int = 0, name: str | None = None,
                 log_config: LogConfig | None = None) -> None:
        batch = validate_int("BatchMaxPool", "batch", batch, 1)
        shape = validate_shape("BatchMaxPool", shape)
        one = SpikingMaxPool(shape=shape, kernel_size=kernel_size, stride=stride,
                             padding=padding, t_gen=t_gen, period=period, offset=offset)
        params = {k: one.proc_params[k] for k in ("shape", "out_shape", "kernel_size", "stride",
                                                  "padding", "t_gen", "period", "offset")}
        super().__init__(batch=batch, name=name, log_config=log_config, **params)
        self.s_in = InPort(shape=(batch, *shape))
        self.s_out = OutPort(shape=(batch, *params["out_shape"]))

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """Per-sample output shape ``(W', H', C)``."""
        return self.proc_params["out_shape"]


