"""Export rate-coded baselines as NIR graphs (the neuromorphic intermediate representation).

NIR (https://neuroir.org) is how Norse, snnTorch, sinabs, Rockpool, lava-dl and SpiNNaker2
exchange networks. A hard-reset rate-coded baseline
(:class:`~spikeconverter.baselines.RateNetwork` with ``method="hard_reset"``) is a plain
integrate-and-fire network and maps onto standard NIR nodes one to one:

* the input population -> ``Input`` (the analog image, fed unchanged at every step);
* a ``"relu"`` population -> ``IF`` with ``r = 1``, ``v_reset = 0`` and the threshold
  ``lambda``; NIR fires at ``v > v_threshold`` while the baseline fires at ``V >= lambda``, so the
  threshold written is the float32 number just below ``lambda`` -- in float32 arithmetic the two
  rules then fire on exactly the same membranes;
* the edge ops -> ``Conv2d``, ``Affine`` (``Linear`` without a bias), ``SumPool2d`` and
  ``Flatten`` nodes. NIR spikes are 0/1 while the baseline's spikes carry ``lambda``: the source's
  ``lambda`` is folded into the next weights, and so is the ``1 / area`` of an average pooling
  (exported as a sum pooling); where no weighted op follows to take the factor (a pooling at
  the end of an edge) the scaling is written as a diagonal 1x1 ``Conv2d`` (or a diagonal
  ``Linear``), nodes every NIR importer knows;
* the readout -> ``Output``: the graph's output at each step is the readout's input current, and
  the baseline's logits after ``t`` steps are the sum of the first ``t`` outputs divided by ``t``.

Shapes follow NIR: no batch dimension (``Flatten`` starts at dimension 0). Norse 1.1's
:func:`norse.torch.from_nir` maps ``Flatten`` to ``torch.nn.Flatten`` with the same dimensions,
so it runs exported graphs on one unbatched sample at a time.

Not expressible in standard NIR, and refused with an error that says so: the iLIF networks
(:class:`~spikeconverter.converters.SpikingNetwork`, the Lava network; NIR has no neuron with an
accumulate and a generate phase), the soft-reset and threshold-shift baselines (NIR's ``IF``
resets to ``v_reset``), signed populations (NIR spikes are 0/1), max pooling (no NIR node),
and slicing/padding (the option-A shortcuts of the CIFAR ResNets). Residual adds are valid NIR,
but Norse 1.1's importer evaluates nodes depth-first, which feeds one branch of a join a step
late; until an importer runs them right they are refused too.

Examples
--------
>>> graph = capture(model, images[:2])                                  # doctest: +SKIP
>>> net = RateNetwork(graph, rate_thresholds(graph, images), "hard_reset")  # doctest: +SKIP
>>> nir.write("net.nir", to_nir(net))                                   # doctest: +SKIP
>>> module = norse.torch.from_nir(nir.read("net.nir"))                  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nir
import norse.torch.utils.export_nir as norse_export
import numpy as np
import torch

from spikeconverter.atomic import atomic_path
from spikeconverter.baselines import RateNetwork
from spikeconverter.converters.ir import Edge, Graph, Op, Population, apply_op
from spikeconverter.plugin.kernels import pair
from spikeconverter.plugin.module import ILIF, ILIFCell

__all__ = ["NO_ILIF_IN_NIR", "norse_to_nir", "to_nir", "write_nir"]

NO_ILIF_IN_NIR = (
    "NIR has no iLIF primitive (a neuron that accumulates for t_acc steps, then generates a "
    "binary code for t_gen steps, with an inverse leak), so an iLIF network cannot be written "
    "as a standard NIR graph; export a rate-coded baseline instead: "
    "to_nir(RateNetwork(graph, rate_thresholds(graph, data), 'hard_reset')), or on the command "
    "line 'spikeconverter export MODEL -w WEIGHTS -d DATA -o net.nir'"
)
"""The message that refuses an iLIF network (or a model holding an iLIF neuron) for NIR."""

_DTYPE = np.float32  # what NIR importers (Norse: .float()) and the baseline simulate in


def to_nir(net: RateNetwork) -> nir.NIRGraph:
    """A hard-reset rate-coded baseline as a standard NIR graph.

    Parameters
    ----------
    net : RateNetwork
        With ``method="hard_reset"``; see the module docstring for the mapping.

    Returns
    -------
    nir.NIRGraph
        Nodes ``input``, one ``IF`` per ``"relu"`` population (named like it), the op nodes of
        every edge (``<target>.in<i>.<j>``-like names with underscores) and ``output``.

    Raises
    ------
    TypeError
        ``net`` is not a :class:`RateNetwork` (an iLIF network gets :data:`NO_ILIF_IN_NIR`).
    ValueError
        The baseline uses something standard NIR cannot express; the message names it.
    """
    _check_exportable(net)
    g = net.graph
    b = _Builder()
    ids: dict[str, str] = {}
    for pop in g:
        # nodes in topological order (the incoming chains before the population): nirtorch
        # executes them in the order they are listed
        ids[pop.name] = b.reserve(_node_name(pop, g))
        for i, edge in enumerate(pop.edges):
            _add_edge(b, g, net, edge, f"{pop.name}_in{i}", ids[edge.source], ids[pop.name])
        b.nodes[ids[pop.name]] = _population_node(pop, net)
    return nir.NIRGraph(nodes=b.nodes, edges=b.edges)


def write_nir(net: RateNetwork, path: str | Path) -> Path:
    """Write :func:`to_nir` ``(net)`` to ``path`` (NIR's HDF5 format, ``nir.read`` reads it)."""
    graph = to_nir(net)
    path = Path(path)
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)
    return path


def norse_to_nir(module: torch.nn.Module, sample_data: torch.Tensor,
                 **kwargs: Any) -> nir.NIRGraph:
    """Norse's :func:`norse.torch.to_nir`, refusing what it would silently drop.

    Norse maps the modules it knows (``LIFCell``, ``IAFCell``, ``Conv2d``, ``Linear``, ...) to NIR
    nodes and writes ``None`` for any other module, so a model holding an
    :class:`~spikeconverter.plugin.ILIFCell` would export as a graph with a hole where the
    neurons were. This wrapper refuses such a model before exporting, with
    :data:`NO_ILIF_IN_NIR`, and checks the finished graph for any other ``None`` node.

    Parameters
    ----------
    module : torch.nn.Module
        A Norse model (its own training code, say).
    sample_data : torch.Tensor
        One input, as for :func:`norse.torch.to_nir`.
    **kwargs
        Passed to :func:`norse.torch.to_nir` (``model_name``, ``dt``).

    Returns
    -------
    nir.NIRGraph
        Norse's graph, unchanged.

    Raises
    ------
    TypeError
        ``module`` holds an iLIF neuron (``ILIFCell`` or ``ILIF``); the message names it.
    ValueError
        Norse had no NIR node for some module; the message names the nodes.
    """
    ilif = [name or type(module).__name__ for name, m in module.named_modules()
            if isinstance(m, (ILIF, ILIFCell))]
    if ilif:
        raise TypeError(f"module {ilif[0]!r} is an iLIF neuron: {NO_ILIF_IN_NIR}")
    graph = norse_export.to_nir(module, sample_data, **kwargs)
    missing = sorted(name for name, node in graph.nodes.items() if node is None)
    if missing:
        raise ValueError(
            f"Norse's to_nir has no NIR node for {missing}: NIR would get an empty node there; "
            "use modules Norse can export (LIFCell, LIFBoxCell, LIBoxCell, IAFCell, Conv2d, "
            "Linear) or map them with nirtorch.extract_nir_graph and your own model_map"
        )
    return graph


# --------------------------------------------------------------------------------------------


def _check_exportable(net: Any) -> None:
    if not isinstance(net, RateNetwork):
        if hasattr(net, "graph") and hasattr(net, "schedule"):
            raise TypeError(NO_ILIF_IN_NIR)
        raise TypeError(f"to_nir exports a spikeconverter.baselines.RateNetwork, got "
                        f"{type(net).__name__}")
    if net.method != "hard_reset":
        raise ValueError(
            f"the {net.method!r} baseline resets by subtraction, which NIR's IF node cannot "
            "express (it resets to v_reset); export RateNetwork(..., method='hard_reset')"
        )
    for pop in net.graph:
        if len(pop.edges) > 1:
            raise ValueError(
                f"population {pop.name!r} sums {len(pop.edges)} inputs (a residual add): valid "
                "in NIR, but Norse 1.1's from_nir runs NIR nodes depth-first and would feed one "
                "branch a step late, so export is limited to feed-forward chains"
            )
        if pop.kind in ("signed", "maxpool"):
            what = ("emits -1 spikes (a layer without a ReLU after it); NIR spikes are 0/1"
                    if pop.kind == "signed" else "is a max pooling; NIR has no max-pooling node")
            raise ValueError(f"population {pop.name!r} {what}: use a model with a ReLU after "
                             "every hidden layer and average pooling")


class _Builder:
    """Collects uniquely named nodes and the edges between them."""

    def __init__(self) -> None:
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self._reserved: set[str] = set()

    def reserve(self, name: str) -> str:
        """A unique node name (dots, which torch module names refuse, become underscores)."""
        name = name.replace(".", "_")
        while name in self.nodes or name in self._reserved:
            name += "_"
        self._reserved.add(name)
        return name

    def add(self, name: str, node: nir.NIRNode) -> str:
        name = self.reserve(name)
        self.nodes[name] = node
        return name


def _node_name(pop: Population, g: Graph) -> str:
    return {g.input: "input", g.output: "output"}.get(pop.name, pop.name)


def _population_node(pop: Population, net: RateNetwork) -> nir.NIRNode:
    shape = np.array(pop.shape)
    if pop.kind == "input":
        return nir.Input(input_type={"input": shape})
    if pop.kind == "readout":
        return nir.Output(output_type={"output": shape})
    lam = np.float32(net.thresholds[pop.name])
    # NIR fires at v > v_threshold, the baseline at V >= lambda: the float32 just below lambda
    # makes the first rule the second one in float32
    v_th = np.nextafter(lam, np.float32(-np.inf), dtype=_DTYPE)
    return nir.IF(r=np.ones(pop.shape, _DTYPE), v_threshold=np.full(pop.shape, v_th, _DTYPE),
                  v_reset=np.zeros(pop.shape, _DTYPE))


def _add_edge(b: _Builder, g: Graph, net: RateNetwork, edge: Edge, prefix: str, src: str,
              dst: str) -> None:
    """The edge's ops as a chain of nodes from ``src`` to ``dst``.

    ``scale`` is the factor the chain's input still has to be multiplied by: the source's
    ``lambda`` (its spikes are 0/1 in NIR), times ``1/area`` per average pooling passed. A
    weighted op absorbs it into its weights (``op(c*x) = (c*W) x + b``); what is left at the end
    becomes a scaling node.
    """
    source = g[edge.source]
    scale = np.float32(net.thresholds[source.name]) if source.kind == "relu" else np.float32(1)
    x = torch.zeros((1, *source.shape))
    last = src
    for j, op in enumerate(edge.ops):
        node, scale = _op_node(op, tuple(x.shape[1:]), scale, source.name)
        name = b.add(f"{prefix}_{j}_{op.kind}", node)
        b.edges.append((last, name))
        last = name
        x = apply_op(op, x)
    if scale != 1:
        name = b.add(f"{prefix}_scale", _scale_node(tuple(x.shape[1:]), scale))
        b.edges.append((last, name))
        last = name
    b.edges.append((last, dst))


def _op_node(op: Op, in_shape: tuple[int, ...], scale: np.float32,
             source: str) -> tuple[nir.NIRNode, np.float32]:
    """The NIR node of ``op`` on inputs of ``in_shape`` scaled by ``scale``, and the new scale."""
    a = op.attrs
    if op.kind in ("conv2d", "linear"):
        # float32 products, as the baseline computes W x (lambda z) with float32 tensors
        w = op.weight.astype(_DTYPE) * scale
        bias = None if op.bias is None else op.bias.astype(_DTYPE)
        if op.kind == "linear":
            return (nir.Linear(weight=w) if bias is None else nir.Affine(weight=w, bias=bias),
                    np.float32(1))
        return nir.Conv2d(
            input_shape=in_shape[1:], weight=w, stride=a.get("stride", 1),
            padding=a.get("padding", 0), dilation=a.get("dilation", 1),
            groups=a.get("groups", 1),
            bias=np.zeros(w.shape[0], _DTYPE) if bias is None else bias,
        ), np.float32(1)
    if op.kind == "avgpool2d":
        kernel = pair(a["kernel_size"])
        stride = pair(a.get("stride") or a["kernel_size"])
        if any(pair(a.get("padding", 0))) or a.get("ceil_mode", False):
            raise ValueError(f"average pooling {op.origin or '?'} after {source!r} pads or uses "
                             "ceil_mode; NIR's SumPool2d as Norse imports it has neither: use "
                             "padding=0, ceil_mode=False")
        node = nir.SumPool2d(kernel_size=np.array(kernel), stride=np.array(stride),
                             padding=np.zeros(2, dtype=int))
        return node, np.float32(scale / np.float32(kernel[0] * kernel[1]))
    if op.kind == "flatten":
        return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0,
                           end_dim=-1), scale
    raise ValueError(f"the {op.kind} op {op.origin or '?'} after {source!r} (an option-A "
                     "shortcut's subsampling or channel padding) has no NIR node; export a model "
                     "with identity or 1x1-convolution shortcuts")


def _scale_node(shape: tuple[int, ...], scale: np.float32) -> nir.NIRNode:
    """Multiply by ``scale``: a diagonal 1x1 convolution, or a diagonal linear map.

    A depthwise convolution would be smaller, but NIR 1.0's type inference takes a Conv2d's input
    channels from its weight without the groups and rejects it.
    """
    diag = np.diag(np.full(shape[0], scale, _DTYPE))
    if len(shape) == 3:
        return nir.Conv2d(input_shape=shape[1:], weight=diag[:, :, None, None], stride=1,
                          padding=0, dilation=1, groups=1, bias=np.zeros(shape[0], _DTYPE))
    if len(shape) == 1:
        return nir.Linear(weight=diag)
    raise ValueError(f"cannot write a scaling of values shaped {shape} in NIR")
