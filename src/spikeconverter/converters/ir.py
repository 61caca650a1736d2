"""The graph IR between capture and the backends: populations joined by affine edges.

A converted network is a DAG of **populations** (spiking neuron groups). Populations stand
where the ANN has a nonlinearity (ReLU/ReLU6 -> ``"relu"``, max pooling -> ``"maxpool"``), where
a weighted layer has no activation after it (``"signed"`` trains), at the input and at the
output (``"readout"``, accumulate only: its membrane is the logits). Everything linear between two
populations -- conv, linear, average pooling, flatten, strided slicing, channel padding -- is an
**edge**: an ordered list of :class:`Op` applied to the source's (decoded) value. A population
with several edges sums them (a residual add is a population with two edges).

Each op keeps the bias of the layer it came from (so fine-tuning and exporting see the source
model's parameters); :meth:`Graph.population_bias` folds the biases of all incoming edges into
one array per population, which a backend adds once per window. Parameters are numpy arrays so
that the IR is framework-neutral; :func:`apply_op` gives the torch meaning of each op, the one
every backend must reproduce.

The thresholds (``theta``) and window lengths (``T``) are filled in by calibration; offsets and
delays are the schedule's business and do not live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spikeconverter import coding

POPULATION_KINDS = ("input", "relu", "signed", "maxpool", "readout")
#: Populations of neurons of their own (a threshold and a bias each, a generate window):
#: max pooling repeats its source's spikes, the input encodes, the readout only accumulates.
NEURON_KINDS = ("relu", "signed")
OP_KINDS = ("conv2d", "linear", "avgpool2d", "flatten", "slice", "pad", "gather")
#: Ops that only move values (or insert zeros): composable into one ``"gather"``.
LAYOUT_KINDS = ("flatten", "slice", "pad", "gather")

__all__ = ["Edge", "Graph", "LAYOUT_KINDS", "NEURON_KINDS", "Op", "OP_KINDS", "POPULATION_KINDS",
           "Population", "apply_op", "theta_tensor"]


@dataclass
class Op:
    """One affine map on an edge.

    Attributes
    ----------
    kind : str
        One of ``OP_KINDS``:

        * ``"conv2d"``: ``weight`` (O, I/groups, kh, kw), attrs ``stride``, ``padding``,
          ``dilation``, ``groups`` (as in ``F.conv2d``);
        * ``"linear"``: ``weight`` (O, I);
        * ``"avgpool2d"``: attrs ``kernel_size``, ``stride``, ``padding``, ``ceil_mode``,
          ``count_include_pad`` (as in ``F.avg_pool2d``);
        * ``"flatten"``: per-sample flatten to one dimension;
        * ``"slice"``: attrs ``index``, a tuple of per-sample-dim ``(start, stop, step)``
          (``x[:, s0:e0:st0, s1:e1:st1, ...]``; ``None`` entries as in Python slices);
        * ``"pad"``: attrs ``pad`` as in ``F.pad`` (last dim first), constant 0;
        * ``"gather"``: attrs ``shape`` (the per-sample output shape) and ``index`` (one int per
          output value, in C order: the position of its source value in the flattened
          per-sample input, or -1 for a zero). Any op that only moves values -- reshape,
          transpose/permute, chunk/split, concatenation's placement, channel shuffle -- is one.
    weight, bias : numpy.ndarray or None
        Parameters (float64 or float32), ``None`` where the op has none.
    attrs : dict
        Static attributes (ints and tuples only, so the IR serialises).
    origin : str
        The fx node(s) this op came from, for error messages and reports.
    """

    kind: str
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    origin: str = ""

    def __post_init__(self) -> None:
        if self.kind not in OP_KINDS:
            raise ValueError(f"Op.kind must be one of {OP_KINDS}, got {self.kind!r}")


@dataclass
class Edge:
    """Synapses from population ``source``: ``ops`` applied in order to its value."""

    source: str
    ops: list[Op] = field(default_factory=list)


@dataclass
class Population:
    """A group of neurons with one threshold, window length and activation.

    Attributes
    ----------
    name : str
        Unique name (from the fx node it stands for).
    kind : str
        One of ``POPULATION_KINDS``.
    shape : tuple of int
        Per-sample shape of its values, e.g. ``(C, H, W)`` or ``(F,)``.
    edges : list of Edge
        Incoming synapses; empty for the input, exactly one for max pooling.
    theta : float or numpy.ndarray or None
        Threshold (scalar, or per channel broadcastable to ``shape``); ``None`` until calibrated.
        Unused by ``"readout"``; for ``"maxpool"`` it is the source's (codes pass unchanged).
    T : int or None
        Length of the spike train it generates (its generate window).
    clip : float or None
        Upper limit of the activation (6.0 for ReLU6); calibration keeps ``theta`` below it.
    attrs : dict
        Kind-specific attributes: max pooling's ``kernel_size``, ``stride``, ``padding``,
        ``dilation``, ``ceil_mode``; the input's ``encoding`` (``"analog"`` or ``"spikes"``).
    origin : str
        The fx node(s) it came from.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    edges: list[Edge] = field(default_factory=list)
    theta: float | np.ndarray | None = None
    T: int | None = None
    clip: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    origin: str = ""

    def __post_init__(self) -> None:
        if self.kind not in POPULATION_KINDS:
            raise ValueError(
                f"Population.kind must be one of {POPULATION_KINDS}, got {self.kind!r}"
            )

    @property
    def spiking(self) -> bool:
        """Whether it emits spike trains (everything but the input and the readout)."""
        return self.kind in (*NEURON_KINDS, "maxpool") or (
            self.kind == "input" and self.attrs.get("encoding") == "spikes"
        )


@dataclass
class Graph:
    """A converted network: populations in topological order.

    Attributes
    ----------
    populations : dict of str to Population
        Insertion order is a topological order (sources before targets).
    input : str
        Name of the input population.
    output : str
        Name of the readout population.
    rounding : str
        Rounding of every spiking population (``"floor"`` or ``"nearest"``).
    k : float
        Inverse leak of every population.
    meta : dict
        Free-form provenance (model class name, input shape, calibration mode, ...).
    """

    populations: dict[str, Population]
    input: str
    output: str
    rounding: str = "nearest"
    k: float = 2.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Population:
        return self.populations[name]

    def __iter__(self):
        return iter(self.populations.values())

    def consumers(self, name: str) -> list[str]:
        """Names of the populations with an edge from ``name``."""
        return [p.name for p in self if any(e.source == name for e in p.edges)]

    def validate(self) -> None:
        """Check the structure; raise ValueError naming the first problem."""
        seen: set[str] = set()
        for pop in self:
            for e in pop.edges:
                if e.source not in seen:
                    raise ValueError(
                        f"population {pop.name!r} has an edge from {e.source!r}, which is not an "
                        "earlier population (the IR must be in topological order)"
                    )
            if pop.kind == "input" and pop.edges:
                raise ValueError(f"input population {pop.name!r} must have no edges")
            if pop.kind == "maxpool" and len(pop.edges) != 1:
                raise ValueError(f"maxpool population {pop.name!r} needs exactly one edge")
            if pop.kind not in ("input",) and not pop.edges:
                raise ValueError(f"population {pop.name!r} has no incoming edges")
            for e in pop.edges:
                for op in e.ops:
                    for name in ("weight", "bias"):
                        arr = getattr(op, name)
                        if arr is not None and not np.all(np.isfinite(arr)):
                            raise ValueError(
                                f"{name} of {op.kind} op {op.origin or '?'} (edge "
                                f"{e.source!r} -> {pop.name!r}) contains NaN or inf"
                            )
            seen.add(pop.name)
        if self.input not in self.populations or self.output not in self.populations:
            raise ValueError("Graph.input and Graph.output must name populations")

    # ----------------------------------------------------------------------------------------
    # torch meaning of the graph: the reference that every backend is tested against

    def edge_value(self, edge: Edge, x: torch.Tensor, with_bias: bool = True) -> torch.Tensor:
        """Apply an edge's ops to a batch ``x`` of source values ``(B, *source.shape)``."""
        for op in edge.ops:
            x = apply_op(op, x, with_bias=with_bias)
        return x

    def population_bias(
        self, name: str, dtype: torch.dtype = torch.float64, device: Any = "cpu"
    ) -> torch.Tensor:
        """The bias of population ``name``: its edges summed on all-zero sources, ``shape``."""
        pop = self[name]
        total = torch.zeros((1, *pop.shape), dtype=dtype, device=device)
        for e in pop.edges:
            src = self[e.source]
            total = total + self.edge_value(
                e, torch.zeros((1, *src.shape), dtype=dtype, device=device)
            )
        return total[0]

    def forward(self, x: torch.Tensor, quantized: bool = True) -> dict[str, torch.Tensor]:
        """Evaluate every population on a batch (the ANN, or the quantised ANN).

        With ``quantized=False`` this is the captured ANN itself (ReLU, ReLU6 clip, max pool,
        identity for signed), and its readout must equal the source model's output. With
        ``quantized=True`` every spiking population applies :func:`coding.quantize` with its
        ``theta`` and ``T``: the values an exact spiking simulation decodes to.

        Returns
        -------
        dict of str to torch.Tensor
            Each population's value, ``(B, *shape)``.
        """
        return self.forward_from({}, 0, x, quantized)

    def forward_from(self, values: dict[str, torch.Tensor], start: int,
                     x: torch.Tensor | None = None,
                     quantized: bool = True) -> dict[str, torch.Tensor]:
        """:meth:`forward` resumed at the ``start``-th population (in topological order).

        ``values`` holds the values of the populations before ``start`` (those the rest needs);
        it is updated in place with the values of every population from ``start`` on and
        returned. A threshold search that changes one population re-evaluates only the
        populations after it this way. ``x`` is the input batch (needed when ``start`` is at or
        before the input population).
        """
        for pop in list(self)[start:]:
            values[pop.name] = self._value(pop, values, x, quantized)
        return values

    def _value(self, pop: Population, values: dict[str, torch.Tensor], x: torch.Tensor | None,
               quantized: bool) -> torch.Tensor:
        """One population's value from its sources' ``values`` (the body of :meth:`forward`)."""
        if pop.kind == "input":
            v = x
            if quantized and pop.attrs.get("encoding") == "spikes":
                v = coding.quantize(v, _theta(pop, v), pop.T, self.k, self.rounding, True)
            return v
        if pop.kind == "maxpool":
            a = pop.attrs
            return F.max_pool2d(
                values[pop.edges[0].source], a["kernel_size"], a["stride"], a["padding"],
                a.get("dilation", 1), a.get("ceil_mode", False),
            )
        u = sum(self.edge_value(e, values[e.source]) for e in pop.edges)
        if pop.kind == "readout":
            return u
        if not quantized:
            if pop.kind == "relu":
                u = torch.relu(u) if pop.clip is None else torch.clamp(u, 0.0, pop.clip)
            return u
        return coding.quantize(
            u, _theta(pop, u), pop.T, self.k, self.rounding, pop.kind == "signed"
        )


def theta_tensor(pop: Population, dtype: torch.dtype = torch.float64,
                 device: Any = None) -> torch.Tensor:
    """A population's threshold as a tensor broadcastable to its values (per-channel
    thresholds of ``(C, H, W)`` populations as ``(C, 1, 1)``).

    Raises
    ------
    ValueError
        The population has no threshold (not calibrated).
    """
    if pop.theta is None:
        raise ValueError(f"population {pop.name!r} is not calibrated (theta missing)")
    th = torch.as_tensor(np.asarray(pop.theta, dtype=np.float64)).to(dtype=dtype, device=device)
    if th.ndim == 1 and len(pop.shape) == 3:  # per channel
        th = th.reshape(-1, 1, 1)
    return th


def _theta(pop: Population, like: torch.Tensor) -> torch.Tensor:
    if pop.theta is None or pop.T is None:
        raise ValueError(f"population {pop.name!r} is not calibrated (theta/T missing)")
    return theta_tensor(pop, like.dtype, like.device)


def _param(arr: np.ndarray | None, like: torch.Tensor) -> torch.Tensor | None:
    if arr is None:
        return None
    return torch.as_tensor(arr, dtype=like.dtype, device=like.device)


def apply_op(op: Op, x: torch.Tensor, with_bias: bool = True,
             weight: torch.Tensor | None = None) -> torch.Tensor:
    """The torch meaning of ``op`` on a batch ``x`` (dim 0 is the batch).

    Parameters
    ----------
    op : Op
        The op.
    x : torch.Tensor
        Its input, ``(B, ...)``.
    with_bias : bool
        Add the op's bias (the backends add each population's folded bias once, elsewhere).
    weight : torch.Tensor, optional
        Use this weight instead of ``op.weight`` (a backend's converted or trainable copy, or
        0/1 connections for counting); dtype and device of ``x``.
    """
    a = op.attrs
    if op.kind in ("conv2d", "linear"):
        w = weight if weight is not None else _param(op.weight, x)
        bias = _param(op.bias, x) if with_bias else None
        if op.kind == "linear":
            return F.linear(x, w, bias)
        return F.conv2d(x, w, bias, a.get("stride", 1), a.get("padding", 0),
                        a.get("dilation", 1), a.get("groups", 1))
    if op.kind == "avgpool2d":
        return F.avg_pool2d(x, a["kernel_size"], a.get("stride"), a.get("padding", 0),
                            a.get("ceil_mode", False), a.get("count_include_pad", True))
    if op.kind == "flatten":
        return x.reshape(x.shape[0], -1)
    if op.kind == "slice":
        return x[(slice(None),) + tuple(slice(*t) for t in a["index"])]
    if op.kind == "pad":
        return F.pad(x, tuple(a["pad"]))
    if op.kind == "gather":
        flat = x.reshape(x.shape[0], -1)
        # index -1 picks the zero appended at the end
        flat = torch.cat([flat, flat.new_zeros((x.shape[0], 1))], dim=1)
        return flat[:, _gather_index(op, x.device)].reshape(x.shape[0], *a["shape"])
    raise ValueError(f"unknown op kind {op.kind!r}")


def _gather_index(op: Op, device: Any) -> torch.Tensor:
    """A gather op's index as a tensor, cached on the op (backends apply it every step)."""
    cached = op.__dict__.get("_index_tensor")
    if cached is None or cached.device != torch.device(device):
        cached = torch.as_tensor(op.attrs["index"], dtype=torch.long, device=device)
        op.__dict__["_index_tensor"] = cached
    return cached
