"""A fixed-point iLIF model whose saturation counter counts only harmful clamps.

:class:`spikeconverter.processes.ilif.models.PyILIFModelBitAcc` counts every clamp of the
24-bit membrane. In the generate phase a membrane outside ``[0, 2 vth)`` (a clipped code:
``V >= 2 vth`` gives all ones, ``V < 0`` gives none) doubles every step and is clamped, which
changes no spike as long as ``vth << 6 <= 2**22``; counting those clamps would flag every ReLU
layer. This subclass clamps the same way but counts only accumulate-phase clamps, the ones that
lose data. It is selected through the run config (``exception_proc_model_map``), never found by
Lava's folder scan.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikeconverter.processes.ilif.models import V_MAX, V_MIN, PyILIFModelBitAcc
from spikeconverter.processes.ilif.process import ILIF

__all__ = ["PyILIFModelBitAccDataLoss"]


@implements(proc=ILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyILIFModelBitAccDataLoss(PyILIFModelBitAcc):
    """:class:`PyILIFModelBitAcc`, counting in ``saturations`` only accumulate-phase clamps."""

    def _clamp(self, v: np.ndarray) -> None:
        if self._accumulating:  # set by the model for the phase this clamp is in
            super()._clamp(v)
        else:
            self.v[:] = np.clip(v, V_MIN, V_MAX)
