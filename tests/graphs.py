"""Small graph-IR networks built by hand, for tests that must not wait for the converter."""

from __future__ import annotations

import numpy as np
import torch

from spikeconverter.converters.ir import Edge, Graph, Op, Population


def _w(rng: np.random.Generator, *shape: int, scale: float) -> np.ndarray:
    return rng.normal(0.0, scale, size=shape)


def mlp_graph(seed: int = 0, n_in: int = 12, hidden: int = 16, n_out: int = 5) -> Graph:
    """input (n_in,) -> linear -> relu (hidden) -> linear -> readout (n_out)."""
    rng = np.random.default_rng(seed)
    pops = {
        "x": Population("x", "input", (n_in,), attrs={"encoding": "analog"}),
        "h": Population("h", "relu", (hidden,), edges=[Edge("x", [
            Op("linear", _w(rng, hidden, n_in, scale=1 / np.sqrt(n_in)),
               rng.uniform(0.0, 0.2, hidden))])]),
        "y": Population("y", "readout", (n_out,), edges=[Edge("h", [
            Op("linear", _w(rng, n_out, hidden, scale=1 / np.sqrt(hidden)),
               rng.uniform(-0.1, 0.1, n_out))])]),
    }
    return Graph(pops, "x", "y")


def conv_graph(seed: int = 0) -> Graph:
    """(2, 8, 8) -> conv3x3 relu -> maxpool 2 -> conv3x3 signed -> conv relu with a residual
    from the pool -> avgpool 4 + flatten + linear readout."""
    rng = np.random.default_rng(seed)
    c1 = Op("conv2d", _w(rng, 4, 2, 3, 3, scale=0.4), rng.uniform(0, 0.1, 4),
            {"stride": 1, "padding": 1})
    c2 = Op("conv2d", _w(rng, 4, 4, 3, 3, scale=0.25), None, {"stride": 1, "padding": 1})
    c3 = Op("conv2d", _w(rng, 4, 4, 3, 3, scale=0.25), rng.uniform(0, 0.1, 4),
            {"stride": 1, "padding": 1})
    pool = {"kernel_size": 2, "stride": 2, "padding": 0}
    pops = {
        "x": Population("x", "input", (2, 8, 8), attrs={"encoding": "analog"}),
        "c1": Population("c1", "relu", (4, 8, 8), edges=[Edge("x", [c1])]),
        "mp": Population("mp", "maxpool", (4, 4, 4), edges=[Edge("c1", [])], attrs=pool),
        "c2": Population("c2", "signed", (4, 4, 4), edges=[Edge("mp", [c2])]),
        "c3": Population("c3", "relu", (4, 4, 4),
                         edges=[Edge("c2", [c3]), Edge("mp", [])]),
        "y": Population("y", "readout", (3,), edges=[Edge("c3", [
            Op("avgpool2d", attrs={"kernel_size": 4, "stride": 4}),
            Op("flatten"),
            Op("linear", _w(rng, 3, 4, scale=0.5), rng.uniform(-0.1, 0.1, 3))])]),
    }
    return Graph(pops, "x", "y")


def inputs(graph: Graph, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *graph[graph.input].shape), generator=g, dtype=torch.float64)


def residual_graph(blocks: int = 4, channels: int = 4, size: int = 6, seed: int = 0) -> Graph:
    """(2, size, size) -> conv relu ``j0``, then ``blocks`` residual blocks
    ``j_b = relu(conv(relu(conv(j_{b-1}))) + j_{b-1})`` (identity skips, small biases), and a
    flatten + linear readout."""
    rng = np.random.default_rng(seed)

    def conv(c_in: int, scale: float) -> Op:
        return Op("conv2d", rng.normal(0.0, scale, (channels, c_in, 3, 3)),
                  rng.uniform(-0.05, 0.05, channels), {"stride": 1, "padding": 1})

    shape = (channels, size, size)
    pops = {"x": Population("x", "input", (2, size, size)),
            "j0": Population("j0", "relu", shape, edges=[Edge("x", [conv(2, 0.5)])])}
    for b in range(1, blocks + 1):
        pops[f"a{b}"] = Population(f"a{b}", "relu", shape,
                                   edges=[Edge(f"j{b - 1}", [conv(channels, 0.3)])])
        pops[f"j{b}"] = Population(f"j{b}", "relu", shape, edges=[
            Edge(f"a{b}", [conv(channels, 0.3)]), Edge(f"j{b - 1}", [])])
    pops["y"] = Population("y", "readout", (3,), edges=[Edge(f"j{blocks}", [
        Op("flatten"), Op("linear", rng.normal(0.0, 0.3, (3, channels * size * size)))])])
    return Graph(pops, "x", "y")
