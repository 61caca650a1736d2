"""Converters: torch/torchvision models -> graph IR -> calibration -> schedule -> backends.

The layers and the import rule are described in ``docs/architecture.md``. This package imports
the Norse backend (torch only); the Lava backend is imported when first asked for.

>>> net = convert(model, calibration_images, T=8)   # a SpikingNetwork (torch.nn.Module)
>>> logits = net(images); net.stats["latency_steps"]
"""

from spikeconverter.converters.api import (
    BACKENDS,
    convert,
    load,
    register_backend,
    resolve_backend,
)
from spikeconverter.converters.calibrate import CALIBRATION_MODES, calibrate
from spikeconverter.converters.capture import SUPPORTED_OPERATIONS, ConversionError, capture
from spikeconverter.converters.ir import Edge, Graph, Op, Population
from spikeconverter.converters.norse_backend import SpikingNetwork
from spikeconverter.converters.schedule import Schedule, compute_schedule
from spikeconverter.converters.serialize import save
from spikeconverter.plugin.kernels import spike_max_pool2d

__all__ = [
    "BACKENDS",
    "CALIBRATION_MODES",
    "ConversionError",
    "Edge",
    "Graph",
    "Op",
    "Population",
    "SUPPORTED_OPERATIONS",
    "Schedule",
    "SpikingNetwork",
    "calibrate",
    "capture",
    "compute_schedule",
    "convert",
    "load",
    "register_backend",
    "resolve_backend",
    "save",
    "spike_max_pool2d",
]
