"""CPU ProcessModels of :class:`spikeconverter.processes.readout.process.Readout` (numpy only)."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikeconverter.processes.loihi import FixedPointMembrane, FloatMembrane, WindowClockModel
from spikeconverter.processes.readout.process import Readout

__all__ = ["PyReadoutModelFloat", "PyReadoutModelBitAcc"]



class _ReadoutClock(WindowClockModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._k = float(proc_params["k"])
        self._t_acc = int(proc_params["t_acc"])
        self._bias_step = self._t_acc - 1 - int(proc_params.get("bias_shift", 0))
        self._period = int(proc_params["period"])
        self._offset = int(proc_params["offset"])


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyReadoutModelFloat(FloatMembrane, _ReadoutClock):
    """Accumulate-only membrane in float64."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    v_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    _payload = np.float64
    v: np.ndarray = LavaPyType(np.ndarray, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int32)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        tau = self._tau()
        if tau < 0 or tau >= self._t_acc:
            self._send_silence(self.v_out)
            return
        self._accumulate(a_in, tau)
        if tau == self._t_acc - 1:
            self.v_out.send(self.v.copy())
        else:
            self._send_silence(self.v_out)


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyReadoutModelBitAcc(FixedPointMembrane, _ReadoutClock):
    """Accumulate-only 24-bit integer membrane (conventions of the fixed-point iLIF)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=16)
    v_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    _payload = np.int32
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=3)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._require_k2("Readout")

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        tau = self._tau()
        if tau < 0 or tau >= self._t_acc:
            self._send_silence(self.v_out)
            return
        self._clamp(self._accumulate(a_in, tau))
        if tau == self._t_acc - 1:
            self.v_out.send(self.v.astype(np.int32))
        else:
            self._send_silence(self.v_out)
