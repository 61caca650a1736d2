"""CPU ProcessModels of :class:`spikeconverter.processes.collect.process.WindowCollector`."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikeconverter.processes.collect.process import WindowCollector

__all__ = ["PyWindowCollectorModelBitAcc", "PyWindowCollectorModelFloat"]


class _Collector(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self._period, self._offset = int(p["period"]), int(p["offset"])
        self._windows = int(p["windows"])

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        rel = self.time_step - 1 - self._offset
        if rel >= 0 and rel % self._period == 0 and rel // self._period < self._windows:
            self.pipe_out.send(a_in)


@implements(proc=WindowCollector, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyWindowCollectorModelFloat(_Collector):
    """Float payloads."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    pipe_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=WindowCollector, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyWindowCollectorModelBitAcc(_Collector):
    """Integer payloads (a fixed-point readout's 24-bit membrane)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    pipe_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
