"""Input of a batched run: windows of frames sent from the host while the runtime runs."""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import LogConfig

from spikeconverter.processes.base import BatchedProcess, validate_int, validate_shape

__all__ = ["BatchFeed"]


class BatchFeed(BatchedProcess):
    """Sends ``frames`` steps of input per window for ``B`` samples side by side.

    Window ``w`` (``0 <= w < windows``) starts at step ``delay + w * period`` (steps counted
    from 0): its frames ``(frames, B, *shape)`` go out on ``s_out`` one per step, then zeros
    until the next window; after the last window only zeros. The first ``len(prefill)``
    windows are given at construction; the others come from the host through a Lava external
    pipe (as :class:`lava.proc.io.injector.Injector`): call :meth:`send` once per window, in
    order, while the runtime is paused, at most ``buffer`` windows ahead of the run. Memory is
    bounded by ``buffer`` windows whatever the number of samples.

    Parameters
    ----------
    shape : tuple of int
        Per-sample frame shape (Lava layout).
    batch : int
        Samples side by side, >= 1.
    frames : int
        Steps of input per window (1 for an analog input, T for a spike train), >= 1.
    period : int
        Steps from one window to the next, >= ``frames``.
    delay : int
        First step of window 0, >= 0.
    windows : int
        Number of windows carrying data, >= 1.
    prefill : numpy.ndarray, optional
        The first windows ``(k, frames, B, *shape)``, ``k <= windows``.
    buffer : int
        Windows the pipe holds, >= 1.
    name : str, optional
    log_config : LogConfig, optional
    """

    def __init__(self, *, shape: tuple[int, ...], batch: int, frames: int, period: int,
                 delay: int, windows: int, prefill: np.ndarray | None = None, buffer: int = 8,
                 name: str | None = None, log_config: LogConfig | None = None) -> None:
        proc = "BatchFeed"
        shape = validate_shape(proc, shape)
        batch = validate_int(proc, "batch", batch, 1)
        frames = validate_int(proc, "frames", frames, 1)
        period = validate_int(proc, "period", period, frames)
        windows = validate_int(proc, "windows", windows, 1)
        window_shape = (frames, batch, *shape)
        pre = np.zeros((0, *window_shape)) if prefill is None else np.asarray(prefill)
        if pre.shape[1:] != window_shape or len(pre) > windows:
            raise ValueError(f"{proc}: prefill must be (k <= {windows}, {window_shape}), got "
                             f"{pre.shape}")
        super().__init__(shape=shape, batch=batch, frames=frames, period=period,
                         delay=validate_int(proc, "delay", delay, 0), windows=windows,
                         prefill=pre, name=name, log_config=log_config)
        self.pipe_in = InPort(shape=window_shape)
        self.pipe_in.flag_external_pipe(buffer_size=validate_int(proc, "buffer", buffer, 1))
        self.s_out = OutPort(shape=(batch, *shape))

    def send(self, window: np.ndarray) -> None:
        """Queue the next window ``(frames, B, *shape)`` (the runtime must exist)."""
        port = getattr(self.pipe_in, "external_pipe_csp_send_port", None)
        if port is None:
            raise RuntimeError("BatchFeed.send needs a running Lava runtime: run the graph "
                               "first (its first windows come from prefill)")
        port.send(np.asarray(window, dtype=np.float64))
