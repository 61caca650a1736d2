"""iLIF neurons of ``B`` samples side by side, with one saturation counter for all of them."""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.variable import Var

from spikeconverter.processes.ilif.process import ILIF

__all__ = ["BatchILIF"]


class BatchILIF(ILIF):
    """:class:`spikeconverter.processes.ILIF` whose ``shape`` leads with a batch axis.

    The iLIF dynamics are elementwise, so a population of shape ``(B, *shape)`` is ``B``
    independent copies of a ``shape`` population (pass per-sample ``vth``/``bias`` arrays of
    ``shape``: they broadcast). What this subclass adds is the Var ``saturation_count``
    (shape ``(1,)``): the number of data-losing clamps of the fixed-point membrane (clamps in
    the accumulate phase; a clipped code in the generate phase doubles and clamps without
    changing a spike and is not counted), readable with one message where reading the
    per-neuron ``saturations`` of a large batch would cost one message per neuron.
    Its models are :mod:`spikeconverter.processes.batchilif.models`.

    Parameters
    ----------
    **kwargs
        As :class:`spikeconverter.processes.ILIF`.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.saturation_count = Var(shape=(1,), init=np.zeros(1, dtype=np.int64))
