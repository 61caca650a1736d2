"""CPU ProcessModels of :class:`spikeconverter.processes.batchpool.process.BatchMaxPool`."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikeconverter.processes.batchpool.process import BatchMaxPool
from spikeconverter.processes.loihi import WindowClockModel, candidate_mask_step, keep_heap, receive
from spikeconverter.processes.maxpool.process import pool_indices

__all__ = ["PyBatchMaxPoolModelBitAcc", "PyBatchMaxPoolModelFloat"]


class _BatchCandidateMaskPool(WindowClockModel):
    """Every sample's pooling taps gathered with one fancy index, then the mask rule."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        keep_heap()
        p = proc_params
        self._idx = pool_indices(p["shape"], p["kernel_size"], p["stride"], p["padding"])
        self._batch = int(p["batch"])
        self._n_in = int(np.prod(p["shape"]))
        self._out_shape = (self._batch, *p["out_shape"])
        self._t_gen = int(p["t_gen"])
        self._period = int(p["period"])
        self._offset = int(p["offset"])
        self._x = np.zeros((self._batch, self._n_in + 1), dtype=bool)  # last: the padding
        self._cand = np.ones((self._batch, *self._idx.shape), dtype=bool)

    def run_spk(self) -> None:
        s_in = receive(self.s_in)
        tau = self._tau()
        if tau < 0 or tau >= self._t_gen:
            self._send_silence(self.s_out)
            return
        if tau == 0:
            self._cand[:] = True
        self._x[:, : self._n_in] = s_in.reshape(self._batch, -1) > 0
        out = candidate_mask_step(self._x, self._idx, self._cand)
        self.s_out.send(out.reshape(self._out_shape))  # send casts into the channel


@implements(proc=BatchMaxPool, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyBatchMaxPoolModelFloat(_BatchCandidateMaskPool):
    """0/1 spikes in, ``int8`` 0/1 out (exact, and compact in the channel)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int8, precision=8)
    _payload = np.int8


@implements(proc=BatchMaxPool, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyBatchMaxPoolModelBitAcc(_BatchCandidateMaskPool):
    """0/1 spikes in, ``int8`` 0/1 out."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int8, precision=8)
    _payload = np.int8
