"""The iLIF neuron as a Norse plugin: functional step and modules."""

from spikeconverter.plugin.functional import (
    ILIFParameters,
    ILIFState,
    detach_state,
    ilif_initial_state,
    ilif_step,
)
from spikeconverter.plugin.module import ILIF, ILIFCell

__all__ = [
    "ILIF",
    "ILIFCell",
    "ILIFParameters",
    "ILIFState",
    "detach_state",
    "ilif_initial_state",
    "ilif_step",
]
