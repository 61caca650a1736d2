"""CPU ProcessModels of :class:`spikeconverter.processes.readout.process.Readout` (numpy only)."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikeconverter.processes.readout.process import Readout

__all__ = ["PyReadoutModelFloat", "PyReadoutModelBitAcc"]

_V_MIN = -(2**23)
_V_MAX = 2**23 - 1
_SHIFT = 6


class _ReadoutClock(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._k = float(proc_params["k"])
        self._t_acc = int(proc_params["t_acc"])
        self._period = int(proc_params["period"])
        self._offset = int(proc_params["offset"])
        self._silence = None

    def _tau(self) -> int:
        rel = self.time_step - 1 - self._offset
        return -1 if rel < 0 else rel % self._period

    def _send_silence(self) -> None:
        if self._silence is None:
            self._silence = np.zeros(self.v_out.shape, dtype=self._payload)
        self.v_out.send(self._silence)


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyReadoutModelFloat(_ReadoutClock):
    """Accumulate-only membrane in float64."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    v_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    _payload = np.float64
    v: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int32)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        tau = self._tau()
        if tau < 0 or tau >= self._t_acc:
            self._send_silence()
            return
        if tau == 0:
            self.v[:] = a_in
        else:
            self.v *= self._k
            self.v += a_in
        if tau == self._t_acc - 1:
            self.v += self.bias
            self.v_out.send(self.v.copy())
        else:
            self._send_silence()


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyReadoutModelBitAcc(_ReadoutClock):
    """Accumulate-only 24-bit integer membrane (conventions of the fixed-point iLIF)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=16)
    v_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    _payload = np.int32
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=3)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        if self._k != 2.0:
            raise ValueError(
                f"Readout: k={self._k} needs the floating_pt model; the fixed-point model "
                "implements only k=2 (a left shift)"
            )

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        tau = self._tau()
        if tau < 0 or tau >= self._t_acc:
            self._send_silence()
            return
        v = np.left_shift(a_in.astype(np.int64), _SHIFT)
        if tau > 0:
            v += np.left_shift(self.v.astype(np.int64), 1)
        if tau == self._t_acc - 1:
            exp = self.bias_exp.astype(np.int64)
            bias = self.bias.astype(np.int64)
            v += np.where(exp >= 0, bias << np.maximum(exp, 0), bias >> np.maximum(-exp, 0))
        over = (v > _V_MAX) | (v < _V_MIN)
        if over.any():
            self.saturations += over
            v = np.clip(v, _V_MIN, _V_MAX)
        self.v[:] = v
        if tau == self._t_acc - 1:
            self.v_out.send(self.v.astype(np.int32))
        else:
            self._send_silence()
