"""Synapse and ANN-operation counts of a baseline network: the network core's counts.

The rate-coded baselines run on the same graph IR as the iLIF converter, so they count with
:mod:`spikeconverter.converters.counting` (one definition): a spike costs one synaptic operation
per synapse it drives, and a spike entering a max-pooling window one per window it belongs to.
"""

from __future__ import annotations

import torch

from spikeconverter.converters import counting
from spikeconverter.converters.ir import Graph

__all__ = ["ann_macs", "fanout"]


def fanout(graph: Graph) -> dict[str, torch.Tensor]:
    """Synapses leaving each neuron of every population that has consumers.

    Returns
    -------
    dict of str to torch.Tensor
        Per source population, a float64 tensor of its ``shape``.
    """
    sources = {e.source for pop in graph for e in pop.edges}
    return {name: counting.fan_out(graph, name) for name in graph.populations
            if name in sources}


def ann_macs(graph: Graph) -> int:
    """Multiply-accumulates of one ANN inference (conv and linear ops, per sample)."""
    return sum(counting.ann_macs(graph, pop.name) for pop in graph)
