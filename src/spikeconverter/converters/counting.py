"""Connections and ANN operations of a graph, from the graph alone.

A spike of neuron ``i`` costs one synaptic operation (an accumulate) per synapse it drives. The
synapses are found by running the edge's ops with every nonzero weight replaced by 1 and average
pooling by a window sum (:func:`connection_op`): on all-ones input the output counts the synapses
into each neuron (fan-in); the gradient of its sum with respect to the input counts the synapses
leaving each neuron (fan-out). A spike entering a max-pooling window counts one operation per
window it belongs to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from spikeconverter.converters.ir import Edge, Graph, Op, apply_op

__all__ = ["ann_macs", "connection_op", "edge_connections", "edge_fan_out", "fan_in", "fan_out",
           "fan_outs"]


def connection_op(op: Op, x: torch.Tensor) -> torch.Tensor:
    """``op`` with 0/1 connections instead of weights, pooling as window sums, no bias."""
    if op.weight is not None:
        return apply_op(op, x, with_bias=False,
                        weight=torch.as_tensor(op.weight != 0, dtype=x.dtype, device=x.device))
    if op.kind == "avgpool2d":
        a = op.attrs
        return F.avg_pool2d(x, a["kernel_size"], a.get("stride"), a.get("padding", 0),
                            a.get("ceil_mode", False), a.get("count_include_pad", True),
                            divisor_override=1)
    return apply_op(op, x, with_bias=False)


def _edge_connections(edge: Edge, x: torch.Tensor) -> torch.Tensor:
    for op in edge.ops:
        x = connection_op(op, x)
    return x


def edge_connections(graph: Graph, target: str, i: int) -> int:
    """Synapses of edge ``i`` of population ``target`` (its one-to-one connections)."""
    e = graph[target].edges[i]
    with torch.no_grad():
        x = torch.ones((1, *graph[e.source].shape), dtype=torch.float64)
        return int(round(float(_edge_connections(e, x).sum())))


@torch.enable_grad()
def edge_fan_out(graph: Graph, target: str, i: int) -> torch.Tensor:
    """Synapses that each neuron of the source of edge ``i`` of ``target`` drives through that
    edge (float64, the source's shape; max pooling targets count once per window)."""
    pop = graph[target]
    e = pop.edges[i]
    x = torch.zeros((1, *graph[e.source].shape), dtype=torch.float64, requires_grad=True)
    out = _pool_windows(x, pop.attrs) if pop.kind == "maxpool" else _edge_connections(e, x)
    (grad,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
    return torch.zeros(x.shape[1:], dtype=torch.float64) if grad is None else grad[0].detach()


def fan_in(graph: Graph, name: str) -> torch.Tensor:
    """Synapses into each neuron of population ``name`` (float64, its ``shape``); a max pooling
    population counts its windows' inputs."""
    pop = graph[name]
    total = torch.zeros(pop.shape, dtype=torch.float64)
    with torch.no_grad():
        for e in pop.edges:
            x = torch.ones((1, *graph[e.source].shape), dtype=torch.float64)
            if pop.kind == "maxpool":
                cols = _pool_windows(x, pop.attrs)  # (1, C * kh * kw, windows)
                total = total + cols.reshape(pop.shape[0], -1, cols.shape[-1]).sum(1).reshape(
                    pop.shape)
            else:
                total = total + _edge_connections(e, x)[0]
    return total


def _pool_windows(x: torch.Tensor, a: dict) -> torch.Tensor:
    """The inputs of every max-pooling window, ``(1, C * kh * kw, windows)``."""
    return F.unfold(x, a["kernel_size"], a.get("dilation", 1), a.get("padding", 0), a["stride"])


@torch.enable_grad()  # counts synapses by autograd, also when called under no_grad
def fan_out(graph: Graph, name: str) -> torch.Tensor:
    """Synapses leaving each neuron of population ``name`` (float64, its ``shape``; zeros when
    nothing consumes it). Edges into max pooling count once per pooling window."""
    pop = graph[name]
    x = torch.zeros((1, *pop.shape), dtype=torch.float64, requires_grad=True)
    total = x.sum() * 0
    for target in graph:
        for e in target.edges:
            if e.source != name:
                continue
            if target.kind == "maxpool":
                total = total + _pool_windows(x, target.attrs).sum()
            else:
                total = total + _edge_connections(e, x).sum()
    (grad,) = torch.autograd.grad(total, x, allow_unused=True)
    return torch.zeros(pop.shape, dtype=torch.float64) if grad is None else grad[0].detach()


def fan_outs(graph: Graph) -> dict[str, torch.Tensor]:
    """:func:`fan_out` of every population."""
    return {p.name: fan_out(graph, p.name) for p in graph}


def ann_macs(graph: Graph, name: str) -> int:
    """Multiply-accumulates of population ``name``'s incoming conv and linear ops in the ANN,
    per sample."""
    macs = 0
    with torch.no_grad():
        for e in graph[name].edges:
            y = torch.zeros((1, *graph[e.source].shape), dtype=torch.float32)
            for op in e.ops:
                zeros = None if op.weight is None else torch.zeros(op.weight.shape)
                out = apply_op(op, y, with_bias=False, weight=zeros)
                if op.kind == "conv2d":
                    macs += out.numel() * math.prod(op.weight.shape[1:])
                elif op.kind == "linear":
                    macs += math.prod(op.weight.shape)
                y = out
    return int(macs)
