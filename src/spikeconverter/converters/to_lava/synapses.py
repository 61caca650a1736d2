"""Edges of the graph IR as Lava synapses (float weights, before any fixed-point rounding).

Every edge becomes exactly one synapse process whose output is the edge's value (without bias)
on the source's decoded train, scaled by :func:`spikeconverter.coding.synapse_scale`
(``theta_source / k**(t_acc - 1)``, with the Lava schedule's ``t_acc``):

* a lone ``conv2d`` on a ``(C, H, W)`` source -> ``lava.proc.conv.Conv``: Lava convolves over
  ``(W, H, C)``, so the torch kernel ``(O, I/g, kh, kw)`` becomes ``(O, kw, kh, I/g)``, flipped in
  both spatial axes (a convolution undoes the flip: the result is torch's cross-correlation);
* a lone ``linear`` on a 1-D source -> ``lava.proc.dense.Dense``;
* any other chain (average pooling, flatten, slicing, channel padding, identity, possibly with a
  conv or linear) -> one matrix, found by applying the edge's ops to one-hot inputs in chunks,
  emitted as ``Dense`` when at least a quarter of it is nonzero and ``lava.proc.sparse.Sparse``
  otherwise. Rows and columns follow Lava's flattening order of ``(W, H, C)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from spikeconverter import coding
from spikeconverter.converters.ir import Edge, Graph, Population, theta_tensor
from spikeconverter.converters.schedule import Schedule
from spikeconverter.converters.to_lava.layout import flat_perm, lava_shape
from spikeconverter.plugin.kernels import pair

__all__ = ["SynapseSpec", "edge_synapse", "source_scale"]

#: Matrices with at least this fraction of nonzeros are emitted as Dense, others as Sparse.
DENSE_FRACTION = 0.25
#: Entries of the dense block built per chunk of one-hot inputs (memory bound).
_CHUNK_ENTRIES = 4_000_000


@dataclass
class SynapseSpec:
    """One synapse process to build.

    Attributes
    ----------
    kind : {"conv", "dense", "sparse"}
    target, edge : str, int
        The population and the index of its edge this synapse realises.
    source : str
        Source population.
    weight : numpy.ndarray or scipy.sparse.csr_matrix
        ``conv``: Lava kernel ``(O, kw, kh, I/g)``; ``dense``/``sparse``: ``(n_out, n_in)`` in
        Lava flattening order. Float, already scaled by :func:`source_scale`.
    conv : dict
        ``conv`` only: ``input_shape`` (W, H, C), ``padding``, ``stride``, ``dilation``,
        ``groups``, all in Lava's (W, H) order.
    in_shape, out_shape : tuple of int
        Lava shapes of the source and target populations.
    graded : bool
        The source sends graded payloads (analog input, signed trains): the synapse needs
        ``num_message_bits > 0``.
    delay : int
        Steps of delay in front of the synapse (from the schedule).
    weight_exp : int
        Fixed point: the exponent of the weight mantissas (Loihi's ``weight_exp``).
    part : int
        0 for the edge's synapse; 1 for a second synapse group on the same edge that carries
        the low-order mantissas of split weights (fixed point, ``split_weights``).
    """

    kind: str
    target: str
    edge: int
    source: str
    weight: Any
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    graded: bool
    delay: int
    conv: dict[str, Any] = field(default_factory=dict)
    weight_exp: int = 0
    part: int = 0

    def abs_max(self) -> float:
        w = self.weight
        if sp.issparse(w):
            return float(abs(w).max()) if w.nnz else 0.0
        return float(np.max(np.abs(w))) if w.size else 0.0


def source_scale(graph: Graph, schedule: Schedule, target: Population, edge: Edge,
                 landing: int = 0) -> np.ndarray:
    """The synapse scale :func:`spikeconverter.coding.synapse_scale` with the Lava schedule's
    ``t_acc`` shortened by ``landing``, ``theta_source / k**(t_acc - 1 - landing)``,
    broadcastable to the source's torch shape (scalar or per channel ``(C, 1, 1)``).

    ``landing`` is the accumulate step at which the train's first spike arrives (0 for every
    edge but the analog input's, which arrives at the window's last step, see
    :func:`input_landing`)."""
    theta = theta_tensor(graph[edge.source]).numpy()
    return coding.synapse_scale(theta, schedule.t_acc[target.name] - landing, float(graph.k))


def input_landing(graph: Graph, schedule: Schedule) -> int:
    """Steps by which the input is sent late so that it lands at the end of its targets'
    (stretched) accumulate windows: no doubling of the membrane afterwards, so no precision is
    lost in fixed point. 0 when the input's targets disagree."""
    t_in = schedule.t_gen[graph.input]
    slack = {schedule.t_acc[c] - t_in for c in graph.consumers(graph.input)
             if graph[c].kind != "maxpool"}
    return slack.pop() if len(slack) == 1 else 0


def _graded(src: Population) -> bool:
    return src.kind in ("input", "signed")


def edge_synapse(graph: Graph, schedule: Schedule, target: Population, i: int) -> SynapseSpec:
    """The synapse realising edge ``i`` of ``target`` (see the module docstring)."""
    edge = target.edges[i]
    src = graph[edge.source]
    landing = input_landing(graph, schedule) if edge.source == graph.input else 0
    scale = source_scale(graph, schedule, target, edge, landing)
    common = dict(target=target.name, edge=i, source=src.name, in_shape=lava_shape(src.shape),
                  out_shape=lava_shape(target.shape), graded=_graded(src),
                  delay=int(schedule.delay[(target.name, i)]))
    ops = edge.ops
    if len(ops) == 1 and ops[0].kind == "conv2d" and len(src.shape) == 3:
        return SynapseSpec(kind="conv", weight=_conv_kernel(ops[0], scale, src.shape[0]),
                           conv=_conv_attrs(ops[0].attrs, src.shape), **common)
    if len(ops) == 1 and ops[0].kind == "linear" and len(src.shape) == 1:
        w = np.asarray(ops[0].weight, dtype=np.float64) * np.broadcast_to(
            np.asarray(scale, dtype=np.float64).reshape(-1), (src.shape[0],))[None, :]
        return SynapseSpec(kind="dense", weight=w, **common)
    m = composed_matrix(graph, edge, scale)
    if m.nnz >= DENSE_FRACTION * m.shape[0] * m.shape[1]:
        return SynapseSpec(kind="dense", weight=m.toarray(), **common)
    return SynapseSpec(kind="sparse", weight=m, **common)


def _conv_kernel(op, scale: np.ndarray, c_in: int) -> np.ndarray:
    w = np.asarray(op.weight, dtype=np.float64)  # (O, I/g, kh, kw)
    groups = int(op.attrs.get("groups", 1))
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64).reshape(-1), (c_in,))
    o, ig = w.shape[:2]
    # input channel of (output o, kernel channel j): group(o) * I/g + j
    chan = (np.arange(o)[:, None] // (o // groups)) * ig + np.arange(ig)[None, :]
    w = w * s[chan][:, :, None, None]
    return np.ascontiguousarray(w.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])


def _conv_attrs(a: dict[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
    if isinstance(a.get("padding", 0), str):
        raise ValueError(f"conv padding {a['padding']!r} is not supported by the Lava backend; "
                         "use explicit integer padding")
    ph, pw = pair(a.get("padding", 0))
    sh, sw = pair(a.get("stride", 1))
    dh, dw = pair(a.get("dilation", 1))
    return {"input_shape": lava_shape(shape), "padding": (pw, ph), "stride": (sw, sh),
            "dilation": (dw, dh), "groups": int(a.get("groups", 1))}


def composed_matrix(graph: Graph, edge: Edge, scale: np.ndarray) -> sp.csr_matrix:
    """The edge's linear map (no bias) times ``scale`` as a sparse matrix in Lava order.

    Built by pushing chunks of one-hot source vectors through :meth:`Graph.edge_value`
    (float64), so it is exactly the map the IR defines, whatever the chain of ops. An edge of
    pure selections (identity, slicing, zero padding, flattening: every output copies at most
    one input) is found from one probe instead, in time and memory linear in the neurons.
    """
    selection = _selection_matrix(graph, edge, scale)
    if selection is not None:
        return selection
    src_shape = tuple(graph[edge.source].shape)
    n_in = math.prod(src_shape)
    scale_flat = np.broadcast_to(np.asarray(scale, dtype=np.float64), src_shape).reshape(-1).copy()
    with torch.no_grad():
        probe = graph.edge_value(edge, torch.zeros((1, *src_shape), dtype=torch.float64),
                                 with_bias=False)
    out_shape = tuple(probe.shape[1:])
    n_out = math.prod(out_shape)
    chunk = max(1, min(n_in, _CHUNK_ENTRIES // max(n_out, 1)))
    rows, cols, vals = [], [], []
    perm_out = flat_perm(out_shape)  # lava row j <- torch row perm_out[j]
    inv_out = np.empty_like(perm_out)
    inv_out[perm_out] = np.arange(n_out)
    inv_in = np.empty(n_in, dtype=np.int64)
    inv_in[flat_perm(src_shape)] = np.arange(n_in)
    with torch.no_grad():
        for start in range(0, n_in, chunk):
            stop = min(n_in, start + chunk)
            eye = torch.zeros((stop - start, n_in), dtype=torch.float64)
            idx = torch.arange(start, stop)
            eye[torch.arange(stop - start), idx] = torch.from_numpy(scale_flat[start:stop])
            y = graph.edge_value(edge, eye.reshape(-1, *src_shape), with_bias=False)
            y = y.reshape(stop - start, n_out).numpy()
            r, c = np.nonzero(y)  # r: input (torch index - start), c: output (torch index)
            rows.append(inv_out[c])
            cols.append(inv_in[r + start])
            vals.append(y[r, c])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n_out, n_in))


#: Ops that only move values (each output is one input or zero).
_SELECTION_OPS = ("flatten", "slice", "pad")


def _selection_matrix(graph: Graph, edge: Edge, scale: np.ndarray) -> sp.csr_matrix | None:
    """The map of an edge of selection ops, from probes numbering the inputs; ``None`` when
    the edge has other ops or the probes show it is not a pure selection."""
    if any(op.kind not in _SELECTION_OPS for op in edge.ops):
        return None
    src_shape = tuple(graph[edge.source].shape)
    n_in = math.prod(src_shape)
    with torch.no_grad():
        number = torch.arange(1, n_in + 1, dtype=torch.float64).reshape(1, *src_shape)
        y = graph.edge_value(edge, number, with_bias=False)[0]
        ones = graph.edge_value(edge, torch.ones_like(number), with_bias=False)[0]
    out_shape = tuple(y.shape)
    y, ones = y.reshape(-1).numpy(), ones.reshape(-1).numpy()
    if not np.array_equal(ones, (y != 0).astype(np.float64)):
        return None  # e.g. a padding with a nonzero value: not a linear selection
    rows_t = np.nonzero(y)[0]  # torch flat output index
    cols_t = y[rows_t].astype(np.int64) - 1  # torch flat input index
    inv_out = np.empty(len(y), dtype=np.int64)
    inv_out[flat_perm(out_shape)] = np.arange(len(y))
    inv_in = np.empty(n_in, dtype=np.int64)
    inv_in[flat_perm(src_shape)] = np.arange(n_in)
    scale_flat = np.broadcast_to(np.asarray(scale, dtype=np.float64), src_shape).reshape(-1)
    vals = scale_flat[cols_t]
    keep = vals != 0
    return sp.csr_matrix((vals[keep], (inv_out[rows_t[keep]], inv_in[cols_t[keep]])),
                         shape=(len(y), n_in))
