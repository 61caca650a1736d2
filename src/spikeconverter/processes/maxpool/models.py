"""CPU ProcessModels of :class:`spikeconverter.processes.maxpool.process.SpikingMaxPool`."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikeconverter.processes.loihi import WindowClockModel, candidate_mask_step
from spikeconverter.processes.maxpool.process import SpikingMaxPool, pool_indices

__all__ = ["PySpikingMaxPoolModelFloat", "PySpikingMaxPoolModelBitAcc"]


class _CandidateMaskPool(WindowClockModel):
    """Gathers every pooling window's taps with one fancy index, then applies the mask rule."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._idx = pool_indices(
            proc_params["shape"], proc_params["kernel_size"], proc_params["stride"],
            proc_params["padding"],
        )
        self._n_in = int(np.prod(proc_params["shape"]))
        self._out_shape = proc_params["out_shape"]
        self._t_gen = int(proc_params["t_gen"])
        self._period = int(proc_params["period"])
        self._offset = int(proc_params["offset"])
        self._x = np.zeros(self._n_in + 1, dtype=bool)  # last entry: the zero padding

    def run_spk(self) -> None:
        s_in = self.s_in.recv()
        tau = self._tau()
        if tau < 0 or tau >= self._t_gen:
            self._send_silence(self.s_out)
            return
        if tau == 0:
            self.candidates[:] = 1
        self._x[: self._n_in] = s_in.reshape(-1) > 0
        out = candidate_mask_step(self._x, self._idx, self.candidates)
        self.s_out.send(out.reshape(self._out_shape).astype(self._payload))


@implements(proc=SpikingMaxPool, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySpikingMaxPoolModelFloat(_CandidateMaskPool):
    """Float 0/1 payloads (as the float iLIF sends)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    _payload = np.float64
    candidates: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=1)


@implements(proc=SpikingMaxPool, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PySpikingMaxPoolModelBitAcc(_CandidateMaskPool):
    """Integer 0/1 payloads (as the fixed-point iLIF sends)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    _payload = np.int32
    candidates: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=1)
