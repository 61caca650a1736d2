"""CPU ProcessModels of :class:`spikeconverter.processes.feed.process.BatchFeed`."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikeconverter.processes.feed.process import BatchFeed

__all__ = ["PyBatchFeedModelBitAcc", "PyBatchFeedModelFloat"]


class _WindowFeed(PyLoihiProcessModel):
    """At each window's first step, takes its frames (prefill, then the pipe)."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self._frames, self._period = int(p["frames"]), int(p["period"])
        self._delay, self._windows = int(p["delay"]), int(p["windows"])
        self._prefill = p["prefill"]
        self._window = None
        self._zero = np.zeros((int(p["batch"]), *p["shape"]), dtype=self._payload)

    def run_spk(self) -> None:
        rel = self.time_step - 1 - self._delay
        w, tau = divmod(rel, self._period)
        if rel < 0 or w >= self._windows or tau >= self._frames:
            self.s_out.send(self._zero)
            return
        if tau == 0:
            window = self._prefill[w] if w < len(self._prefill) else self.pipe_in.recv()
            self._window = np.asarray(window).astype(self._payload)
        self.s_out.send(self._window[tau])


@implements(proc=BatchFeed, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyBatchFeedModelFloat(_WindowFeed):
    """Float payloads."""

    pipe_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    _payload = np.float64


@implements(proc=BatchFeed, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyBatchFeedModelBitAcc(_WindowFeed):
    """Integer (graded, up to 24-bit) payloads; windows must hold integers."""

    pipe_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    _payload = np.int32
