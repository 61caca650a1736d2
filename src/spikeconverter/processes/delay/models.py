"""CPU ProcessModels of :class:`spikeconverter.processes.delay.process.Delay` (numpy only)."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikeconverter.processes.delay.process import Delay
from spikeconverter.processes.loihi import receive

__all__ = ["PyDelayModelFloat", "PyDelayModelBitAcc"]


class _RingBufferDelay(PyLoihiProcessModel):
    """Slot ``(n mod delay)`` holds the input of step ``n - delay`` until step ``n`` reads it."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._delay = int(proc_params["delay"])

    def run_spk(self) -> None:
        a_in = receive(self.a_in)
        if self._delay == 0:
            self.s_out.send(a_in)
            return
        slot = (self.time_step - 1) % self._delay
        self.s_out.send(self.buffer[slot])  # send copies it into the channel
        self.buffer[slot] = a_in


@implements(proc=Delay, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDelayModelFloat(_RingBufferDelay):
    """Float payloads (binary or graded spikes)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    buffer: np.ndarray = LavaPyType(np.ndarray, float)


@implements(proc=Delay, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyDelayModelBitAcc(_RingBufferDelay):
    """Integer payloads (binary or graded spikes, 24-bit like Loihi's graded messages)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    buffer: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
