"""CPU ProcessModels of :class:`spikeconverter.processes.batchilif.process.BatchILIF`."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
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
    """The float iLIF model (elementwise, so batched as it is); never saturates."""

    implements_process = None  # re-bound to BatchILIF by @implements
    saturation_count: np.ndarray = LavaPyType(np.ndarray, np.int64)


@implements(proc=BatchILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyBatchILIFModelBitAcc(PyILIFModelBitAcc):
    """The fixed-point iLIF model, counting data-losing clamps in ``saturations`` and
    ``saturation_count`` (see :class:`~spikeconverter.processes.batchilif.process.BatchILIF`)."""

    implements_process = None  # re-bound to BatchILIF by @implements
    saturation_count: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def _clamp(self, v: np.ndarray) -> None:
        if self._accumulating:  # set by the model for the phase this clamp is in
            over = (v > V_MAX) | (v < V_MIN)
            if over.any():
                self.saturations += over
                self.saturation_count += int(over.sum())
        self.v[:] = np.clip(v, V_MIN, V_MAX)
