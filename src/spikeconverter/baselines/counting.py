"""Counting synapses and ANN operations on the graph IR.

A spike of neuron ``i`` costs one synaptic operation (an accumulate) per synapse it drives. The
fan-out of ``i`` is found by pushing the edge's ops, with every nonzero weight replaced by 1 and
average pooling by a window sum, backwards with autograd: the gradient of the summed output with
respect to the input counts the synapses (the paths through the edge's ops) leaving each neuron.
A spike entering a max-pooling window counts one operation per window it belongs to, as the iLIF
converter counts it (:class:`~spikeconverter.converters.SpikingNetwork` stats), so the two are
compared on the same footing.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from spikeconverter.converters.ir import Edge, Graph, Op, apply_op

__all__ = ["ann_macs", "fanout"]


def _indicator(op: Op, x: torch.Tensor) -> torch.Tensor:
    """``op`` with 0/1 connections instead of weights (no bias)."""
    if op.kind in ("conv2d", "linear"):
        ind = dataclasses.replace(op, weight=(op.weight != 0).astype("float64"), bias=None)
        return apply_op(ind, x, with_bias=False)
    if op.kind == "avgpool2d":
        a = op.attrs
        return F.avg_pool2d(x, a["kernel_size"], a.get("stride"), a.get("padding", 0),
                            a.get("ceil_mode", False), a.get("count_include_pad", True),
                            divisor_override=1)
    return apply_op(op, x, with_bias=False)


def _edge_fanout(edge: Edge, shape: tuple[int, ...], pool: dict | None = None) -> torch.Tensor:
    x = torch.ones((1, *shape), dtype=torch.float64, requires_grad=True)
    if pool is not None:
        y = F.unfold(x, pool["kernel_size"], pool.get("dilation", 1), pool.get("padding", 0),
                     pool["stride"])
        (g,) = torch.autograd.grad(y.sum(), x)
        return g[0].detach()
    y = x
    for op in edge.ops:
        y = _indicator(op, y)
    if y is x:  # an edge without ops: one synapse per neuron
        return torch.ones(shape, dtype=torch.float64)
    (g,) = torch.autograd.grad(y.sum(), x)
    return g[0].detach()


def fanout(graph: Graph) -> dict[str, torch.Tensor]:
    """Synapses leaving each neuron of every population that has consumers.

    Edges into ``"maxpool"`` populations count once per pooling window.

    Returns
    -------
    dict of str to torch.Tensor
        Per source population, a float64 tensor of its ``shape``.
    """
    out: dict[str, torch.Tensor] = {}
    for pop in graph:
        for e in pop.edges:
            src = graph[e.source]
            f = _edge_fanout(e, src.shape, pop.attrs if pop.kind == "maxpool" else None)
            out[e.source] = out[e.source] + f if e.source in out else f
    return out


def ann_macs(graph: Graph) -> int:
    """Multiply-accumulates of one ANN inference (conv and linear ops, per sample)."""
    total = 0
    with torch.no_grad():
        values = {}
        for pop in graph:
            if pop.kind == "input":
                values[pop.name] = torch.zeros((1, *pop.shape), dtype=torch.float64)
                continue
            for e in pop.edges:
                x = values[e.source]
                for op in e.ops:
                    y = apply_op(op, x, with_bias=False)
                    if op.kind == "conv2d":
                        total += y.numel() * int(op.weight[0].size)
                    elif op.kind == "linear":
                        total += y.numel() * int(op.weight.shape[1])
                    x = y
            values[pop.name] = torch.zeros((1, *pop.shape), dtype=torch.float64)
    return int(total)
