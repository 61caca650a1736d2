"""CPU ProcessModels of :class:`spikeconverter.processes.batchilif.process.BatchILIF`."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikeconverter.processes.batchilif.process import BatchILIF
from spikeconverter.processes.ilif.models import PyILIFModelBitAcc, PyILIFModelFloat
from spikeconverter.processes.loihi import V_MAX, V_MIN

__all__ = ["PyBatchILIFModelBitAcc", "PyBatchILIFModelFloat"]


@implements(proc=BatchILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyBatchILIFModelFloat(PyILIFModelFloat):
    """The float iLIF model (elementwise, so batched as it is); never saturates. Spikes go
    out as ``int8`` (exact for 0/1 and signed -1/0/+1): an eighth of float64's bytes through
    the channels."""

    implements_process = None  # re-bound to BatchILIF by @implements
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int8, precision=8)
    _payload = np.int8
    saturation_count: np.ndarray = LavaPyType(np.ndarray, np.int64)


@implements(proc=BatchILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyBatchILIFModelBitAcc(PyILIFModelBitAcc):
    """The fixed-point iLIF model, counting data-losing clamps in ``saturations`` and
    ``saturation_count`` (see :class:`~spikeconverter.processes.batchilif.process.BatchILIF`).
    Spikes go out as ``int8``."""

    implements_process = None  # re-bound to BatchILIF by @implements
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int8, precision=8)
    _payload = np.int8
    saturation_count: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def _clamp(self, v: np.ndarray) -> None:
        if v.size and (int(v.max()) > V_MAX or int(v.min()) < V_MIN):  # two cheap reductions
            if self._accumulating:  # set by the model for the phase this clamp is in
                over = (v > V_MAX) | (v < V_MIN)
                self.saturations += over
                self.saturation_count += int(over.sum())
            v = np.clip(v, V_MIN, V_MAX)
        self.v[:] = v
