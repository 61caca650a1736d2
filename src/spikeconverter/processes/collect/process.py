"""Output of a batched run: one vector per window handed to the host while the runtime runs."""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import LogConfig

from spikeconverter.processes.base import ShapedProcess, validate_int

__all__ = ["WindowCollector"]


class WindowCollector(ShapedProcess):
    """Forwards its input of step ``offset + w * period`` to the host, for ``w < windows``.

    Connect a :class:`~spikeconverter.processes.Readout`'s ``v_out`` with ``offset`` = the
    readout's ``offset + t_acc - 1``: the host then receives the logits of window ``w`` with
    :meth:`receive` (a Lava external pipe, as :class:`lava.proc.io.extractor.Extractor`, but
    only at those steps, so a blocking run never waits on a full pipe as long as ``buffer``
    covers the windows of one run call). Memory stays at ``buffer`` vectors.

    Parameters
    ----------
    shape : tuple of int
        Shape of the input (e.g. ``(B, classes)``).
    period, offset, windows : int
    buffer : int
        Windows the pipe holds, >= 1.
    name : str, optional
    log_config : LogConfig, optional
    """

    def __init__(self, *, shape: tuple[int, ...], period: int, offset: int, windows: int,
                 buffer: int = 8, name: str | None = None,
                 log_config: LogConfig | None = None) -> None:
        proc = "WindowCollector"
        super().__init__(shape=shape, period=validate_int(proc, "period", period, 1),
                         offset=validate_int(proc, "offset", offset, 0),
                         windows=validate_int(proc, "windows", windows, 1),
                         name=name, log_config=log_config)
        shape = self.shape
        self.a_in = InPort(shape=shape)
        self.pipe_out = OutPort(shape=shape)
        self.pipe_out.flag_external_pipe(buffer_size=validate_int(proc, "buffer", buffer, 1))

    def receive(self) -> np.ndarray:
        """The next window's vector (blocks until the runtime has produced it)."""
        port = getattr(self.pipe_out, "external_pipe_csp_recv_port", None)
        if port is None:
            raise RuntimeError("WindowCollector.receive needs a running Lava runtime")
        return np.array(port.recv(), copy=True)
