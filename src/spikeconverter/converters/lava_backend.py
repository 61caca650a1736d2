"""The Lava backend: ``convert(model, calibration, T, backend="lava")`` -> :class:`LavaNetwork`.

Importing this module registers the backend. The pieces live in
:mod:`spikeconverter.converters.to_lava`: ``timing`` (one period for all populations),
``synapses`` (edges as Conv/Dense/Sparse), ``plan`` and ``build`` (Lava processes),
``fixed_point`` (Loihi-style integers and the per-layer report) and ``network`` (running).
"""

from __future__ import annotations

from typing import Any

from spikeconverter.converters.api import register_backend
from spikeconverter.converters.ir import Graph
from spikeconverter.converters.to_lava.network import LavaNetwork
from spikeconverter.converters.to_lava.timing import lava_schedule

__all__ = ["LavaNetwork", "lava_schedule"]


def _lava(graph: Graph, *, calibration: Any = None, progress: bool = True,
          margin: float = 0.5, **_: Any) -> LavaNetwork:
    net = LavaNetwork(graph, margin=margin)
    if calibration is not None:
        net.calibrate_fixed_point(calibration, progress=progress)
    return net


register_backend("lava", _lava)
