"""A converted network whose weights, biases and thresholds are trainable ``nn.Parameter`` s.

:class:`TrainableSpikingNetwork` is the Norse backend's :class:`SpikingNetwork` (same graph,
same schedule, same simulation code) with three changes:

* each op's ``weight`` and ``bias`` and each ``relu``/``signed`` population's threshold are
  parameters (:meth:`TrainableSpikingNetwork.project_` keeps thresholds positive and under
  ReLU6 caps after each optimiser step); the backend's derived
  tensors -- synapse scales ``theta_src / k**(t_acc - 1)``, folded population biases -- are
  recomputed from them on every call, so gradients reach the graph's own parameters;
* in grad mode each generate window has the gradient of the plugin's
  :func:`~spikeconverter.plugin.ilif_step` (Norse surrogate gradients) stepped on the membrane
  divided by its threshold, with ``v_th = 1``. For ``k = 2`` the forward value is the
  backend's exact code and :func:`spikeconverter.plugin.surrogate.window_code` attaches that
  gradient in one backward pass (:meth:`TrainableSpikingNetwork.coded_window`; the same
  gradients in float64, about 1.4x faster a step on the CIFAR ResNet-20, and the float32
  forward is the network's own, bit for bit); other ``k`` step the neuron
  (:meth:`TrainableSpikingNetwork.stepped_window`);
* in grad mode max pooling of a coded train is the max of its float codes (gradient to the
  winning input); of stepped frames it routes gradients like a per-step max pool (the spikes
  are still the exact candidate-mask ones).

Outside grad mode (``torch.no_grad()``, evaluation) the forward pass is the backend's exact
fused simulation, spike for spike; in grad mode too for ``k = 2``.
:meth:`TrainableSpikingNetwork.sync_to_graph` writes the
parameters back into ``graph`` (numpy, dtypes kept), so the graph stays exportable to every
backend (Lava included) with the same schedule.

Why the surrogate behaves well here. With the membrane in threshold units, ``x_j = V_j/theta``,
the decoded output of a window is ``theta * sum_j z_j k**-j`` and its derivative with respect
to the accumulated membrane telescopes to ``1 - prod_j (1 - g_j)``, ``g_j`` the surrogate
derivative of step ``j``. With Norse's ``"triangle"`` surrogate at ``alpha = 1``
(``g = max(0, 1 - |x - 1|)``) every factor lies in ``[0, 1]``: the gradient lies in ``[0, 1]``,
is close to 1 inside the code range ``[0, 2 theta)`` and exactly 0 below it (the ReLU; with
rounding to nearest, below minus half an LSB) and at or above ``2 theta`` (the clip) -- a
smoothed straight-through estimator of the quantised ReLU that the spikes compute, and it
stays so at any threshold scale because the membrane is normalised.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from spikeconverter import coding
from spikeconverter.converters.ir import (
    NEURON_KINDS,
    Graph,
    Population,
    apply_op,
    theta_tensor,
)
from spikeconverter.converters.norse_backend import SpikingNetwork, tensor_key
from spikeconverter.converters.schedule import Schedule
from spikeconverter.options import SURROGATES
from spikeconverter.plugin import ILIF, ILIFParameters
from spikeconverter.plugin.kernels import SpikeTrain, start_generate
from spikeconverter.plugin.surrogate import window_code

__all__ = ["SURROGATES", "TrainableSpikingNetwork"]


class TrainableSpikingNetwork(SpikingNetwork):
    """A :class:`SpikingNetwork` with the graph's parameters as ``nn.Parameter`` s.

    Parameters
    ----------
    graph : Graph
        Calibrated graph; it is updated in place by :meth:`sync_to_graph` only.
    schedule : Schedule, optional
        Timing (kept unchanged by training); computed as the backend does when omitted.
    surrogate : str
        Norse surrogate-gradient method of the spike threshold (one of ``SURROGATES``).
    alpha : float
        Its parameter (for ``"triangle"`` the slope; 1 gives the gradient described in the
        module docstring).
    train_thresholds : bool
        Make the thresholds trainable (else they are fixed buffers).
    dtype : torch.dtype
        Simulation precision.

    Attributes
    ----------
    threshold_caps : dict of str to float
        Upper limit of each trained threshold, enforced by :meth:`project_`: for ReLU6
        populations :func:`spikeconverter.coding.threshold_for_peak` of the clip (``clip / 2``
        for k = 2).
    """

    differentiable = True

    def __init__(self, graph: Graph, schedule: Schedule | None = None, *,
                 surrogate: str = "triangle", alpha: float = 1.0,
                 train_thresholds: bool = True, dtype: torch.dtype = torch.float32):
        if surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
        super().__init__(graph, schedule, mode="fused", dtype=dtype)
        self.surrogate, self.alpha = surrogate, float(alpha)
        self.train_thresholds = bool(train_thresholds)
        self.threshold_caps: dict[str, float] = {}
        #: populations whose decoded values a grad-mode forward keeps in ``values``
        self.record_values: frozenset[str] = frozenset()
        self.values: dict[str, torch.Tensor] = {}
        self._theta_floor: dict[str, float] = {}
        # signed trains reach max pooling as frames (the code max is for non-negative ones)
        self._pooled_signed = {p.edges[0].source for p in graph if p.kind == "maxpool"
                               and graph[p.edges[0].source].kind == "signed"}
        for pop in graph:
            if pop.kind not in NEURON_KINDS:
                continue
            theta = getattr(self, tensor_key("theta", pop.name))
            theta.requires_grad_(self.train_thresholds)
            # floor: thresholds must stay > 0; a 1000-fold shrink is far outside training
            self._theta_floor[pop.name] = float(np.min(np.asarray(pop.theta))) * 1e-3
            if pop.clip is not None:
                self.threshold_caps[pop.name] = float(
                    coding.threshold_for_peak(float(pop.clip), float(graph.k)))

    def init_tensors(self, dtype: torch.dtype) -> None:
        """Weights, op biases and ``relu``/``signed`` thresholds as parameters; the input's
        threshold as a buffer. Synapse scales and folded biases are derived on every call."""
        def param(*parts, value: torch.Tensor) -> None:
            self.register_parameter(tensor_key(*parts), nn.Parameter(value.to(dtype)))

        for pop in self.graph:
            for i, e in enumerate(pop.edges):
                for j, op in enumerate(e.ops):
                    if op.weight is not None:
                        param("w", pop.name, i, j, value=torch.as_tensor(op.weight))
                    if op.bias is not None:
                        param("b", pop.name, i, j, value=torch.as_tensor(np.asarray(op.bias)))
            if pop.kind in NEURON_KINDS:
                param("theta", pop.name,
                      value=torch.as_tensor(np.asarray(pop.theta, dtype=np.float64)))
            elif pop.kind != "maxpool" and pop.theta is not None:  # max pooling: its source's
                self.register_buffer(tensor_key("theta", pop.name), theta_tensor(pop).to(dtype))

    # -- parameters and what the backend derives from them ------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.parameters())).dtype

    def theta(self, name: str) -> torch.Tensor:
        """Threshold of population ``name``, broadcastable to its values (no batch dim)."""
        pop = self.graph[name]
        if pop.kind == "maxpool":
            return self.theta(pop.edges[0].source)
        th = getattr(self, tensor_key("theta", name))
        if pop.kind in NEURON_KINDS and th.ndim == 1 and len(pop.shape) == 3:
            return th.reshape(-1, 1, 1)  # the buffers of other kinds are shaped already
        return th

    def population_bias(self, name: str) -> torch.Tensor:
        """The folded bias of population ``name`` (``pop.shape``), as
        :meth:`Graph.population_bias` computes it, from the bias parameters."""
        pop = self.graph[name]
        # in float64 like the backend's buffers, so that without grad the spikes are identical
        f64 = torch.float64
        total = torch.zeros(pop.shape, dtype=f64)
        for i, e in enumerate(pop.edges):
            if all(op.bias is None for op in e.ops):
                continue
            x = torch.zeros((1, *self.graph[e.source].shape), dtype=f64)
            for j, op in enumerate(e.ops):
                x = apply_op(op, x, with_bias=False,
                             weight=self.weight(pop.name, i, j).to(f64)
                             if op.weight is not None else None)
                if op.bias is not None:
                    b = getattr(self, tensor_key("b", pop.name, i, j)).to(f64)
                    x = x + (b.reshape(-1, 1, 1) if op.kind == "conv2d" else b)
            total = total + x[0]
        return total.to(self.dtype)

    def synapse_scale(self, name: str, i: int) -> torch.Tensor:
        """:func:`spikeconverter.coding.synapse_scale` of edge ``i``'s source threshold
        parameter (so gradients reach it)."""
        src = self.graph[name].edges[i].source
        return coding.synapse_scale(self.theta(src), self.schedule.t_acc[name],
                                    float(self.graph.k))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``{"weights": [...], "biases": [...], "thresholds": [...]}`` (for optimiser groups:
        weight decay belongs on the first two, not on thresholds)."""
        groups: dict[str, list[nn.Parameter]] = {"weights": [], "biases": [], "thresholds": []}
        for key, p in self.named_parameters():
            if key.startswith("_w_"):
                groups["weights"].append(p)
            elif key.startswith("_b_"):
                groups["biases"].append(p)
            elif p.requires_grad:
                groups["thresholds"].append(p)
        return groups

    @torch.no_grad()
    def project_(self) -> None:
        """Keep every trained threshold positive and at or below its cap (ReLU6: ``clip / 2``
        for k = 2)."""
        for name, floor in self._theta_floor.items():
            getattr(self, tensor_key("theta", name)).clamp_(min=floor,
                                                       max=self.threshold_caps.get(name))

    @torch.no_grad()
    def sync_to_graph(self, graph: Graph | None = None) -> Graph:
        """Write weights, biases and thresholds into ``graph`` (default: ``self.graph``).

        ``graph`` must have the structure of ``self.graph`` (e.g. the graph this network was
        built from, or a copy). Arrays keep their dtype and shape; scalar thresholds stay
        floats; max pooling populations take their source's threshold.
        """
        graph = self.graph if graph is None else graph
        for pop in self.graph:
            dst = graph[pop.name]
            for i in range(len(pop.edges)):
                for j, op in enumerate(dst.edges[i].ops):
                    for attr, part in (("weight", "w"), ("bias", "b")):
                        old = getattr(op, attr)
                        if old is not None:
                            new = getattr(self, tensor_key(part, pop.name, i, j)).detach().cpu()
                            setattr(op, attr, new.numpy().astype(old.dtype).reshape(old.shape))
            if pop.kind in NEURON_KINDS:
                th = getattr(self, tensor_key("theta", pop.name)).detach().double().cpu().numpy()
                dst.theta = (float(th) if np.ndim(dst.theta) == 0
                             else th.astype(np.asarray(dst.theta).dtype))
        for pop in graph:
            if pop.kind == "maxpool":
                dst_src = graph[pop.edges[0].source]
                pop.theta = (float(dst_src.theta) if np.ndim(dst_src.theta) == 0
                             else np.array(dst_src.theta, copy=True))
        return graph

    # -- differentiable simulation ------------------------------------------------------------

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The backend's forward; in grad mode also fills ``values`` with the decoded values
        (``(B, ...)``, differentiable) of the populations in ``record_values``."""
        self.values = {}
        return super().forward(images)

    def population_train(self, pop: Population, trains: dict[str, SpikeTrain]) -> SpikeTrain:
        """In grad mode the surrogate-gradient window (module docstring); else the backend's
        exact fused simulation."""
        if not torch.is_grad_enabled():
            return super().population_train(pop, trains)
        v = self.membrane(pop, trains)  # fused: differentiable in weights, trains, thresholds
        if float(self.graph.k) == 2.0 and pop.name not in self._pooled_signed:
            train = self.coded_window(pop, v)
        else:
            train = self.stepped_window(pop, v)
        if pop.name in self.record_values:
            self.values[pop.name] = train.value()
        return train

    def coded_window(self, pop: Population, v: torch.Tensor) -> SpikeTrain:
        """The backend's exact code of the window (the spikes the network emits, bit for bit)
        carrying :func:`spikeconverter.plugin.surrogate.window_code` 's gradient: the one
        :meth:`stepped_window` computes, at a fraction of its cost (``k = 2``)."""
        th = self.theta(pop.name)
        signed = pop.kind == "signed"
        t_gen = self.schedule.t_gen[pop.name]
        with torch.no_grad():
            hard = self.generate_train(pop, v.detach().clone())
        one = torch.ones((), dtype=v.dtype, device=v.device)
        u = start_generate(v / th, self.population_bias(pop.name) / th, one, t_gen,
                           float(self.graph.k), self.graph.rounding, signed)
        code = window_code(u, hard.code, t_gen, signed, self.surrogate, self.alpha)
        return SpikeTrain(th, t_gen, hard.start, code=code)

    def stepped_window(self, pop: Population, v: torch.Tensor) -> SpikeTrain:
        """The window stepped by the plugin's neuron with surrogate spikes (any ``k``)."""
        s = self.schedule
        t_gen = s.t_gen[pop.name]
        th = self.theta(pop.name)
        # one accumulate step (the whole accumulated membrane, bias and rounding at once) and
        # t_gen generate steps of the plugin's neuron, in threshold units (v_th = 1)
        unit = ILIFParameters(
            k=float(self.graph.k), v_th=torch.ones((), dtype=v.dtype), t_acc=1, t_gen=t_gen,
            bias=self.population_bias(pop.name) / th, rounding=self.graph.rounding,
            signed=pop.kind == "signed", method=self.surrogate, alpha=self.alpha,
        )
        z, _ = ILIF(unit)(torch.cat([(v / th).unsqueeze(0), v.new_zeros((t_gen, *v.shape))]))
        return SpikeTrain(th, t_gen, s.generate_start(pop.name), k=float(self.graph.k),
                          frames=z[1:])

    def max_pool(self, pop: Population, src: SpikeTrain) -> SpikeTrain:
        """The exact spikes; in grad mode with the gradient of a per-step max pool (a coded
        train's is the max of its float codes, differentiable already)."""
        hard = super().max_pool(pop, src)
        if src.code is not None:
            return hard
        frames = src.frames()
        if not (torch.is_grad_enabled() and frames.requires_grad):
            return hard
        a = pop.attrs
        T, B = frames.shape[:2]
        soft = F.max_pool2d(frames.reshape(T * B, *frames.shape[2:]), a["kernel_size"],
                            a["stride"], a["padding"], a.get("dilation", 1),
                            a.get("ceil_mode", False))
        soft = soft.reshape(T, B, *soft.shape[1:])
        return SpikeTrain(hard.theta, hard.T, hard.start, k=hard.k,
                          frames=hard.frames() + (soft - soft.detach()))
