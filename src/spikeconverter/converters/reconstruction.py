"""Gradient reconstruction of a calibrated graph against its ANN: per population or per block.

The post-training correction (:mod:`spikeconverter.converters.correction`) walks the graph in
order, each population given the already corrected, *quantised* populations before it. This
module holds its gradient steps, which change the real weights, biases and thresholds so that
the quantised network's values match the ANN's on the calibration data, through a
straight-through quantiser (:func:`ste_quantize`):

* :func:`reconstruct_population`: one population's quantised output against the ANN's
  activation (the layer-wise weight calibration of Li et al. 2021, "A free lunch from ANN";
  AdaRound's objective with real weights).
* :class:`BlockFit`: a *block* of populations (:func:`blocks`: a residual block of a ResNet,
  one layer of a chain) trained together so that the block's quantised *output* matches the
  ANN's (BRECQ, Li et al. 2021, "Block reconstruction"): the errors of the block's inner
  populations are free to cancel in its output, which a layer-wise objective forbids. With
  ``drop > 0`` the inner quantised values are replaced at random by their unquantised ones
  during training (QDrop, Wei et al. 2022). The fit is kept only when it lowers the block's
  error on all the calibration data.

No labels are used. The weights stay real, so the spiking network still equals the corrected
quantised ANN exactly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from spikeconverter import coding
from spikeconverter.converters.ir import Edge, Graph, Op, Population, apply_op

__all__ = ["BLOCK", "NETWORK", "RECONSTRUCT", "BlockFit", "activation", "blocks",
           "network_fit", "op_bias",
           "per_channel", "reconstruct_population", "ste_quantize", "trainable"]

#: The layer-wise reconstruction's optimiser: Adam steps per population, minibatch of
#: calibration images, learning rates of the weights and bias and of the log threshold factor
#: (benchmarks/low_T.py measured these; ``correct(..., reconstruct_steps=)`` overrides steps).
RECONSTRUCT = {"steps": 100, "batch": 32, "lr": 1e-4, "theta_lr": 1e-2}

#: The block reconstruction's: Adam steps per block, minibatch, learning rates, and the QDrop
#: probability of keeping an inner population's unquantised value (benchmarks/low_T_quick.py;
#: QDrop's 0.5 lifted ResNet-32 T = 3 from 909 to 930 correct on draw 0, README).
#: ``cosine``: the learning rates decay to 0 over the steps (cosine annealing, as BRECQ's).
BLOCK = {"steps": 200, "batch": 32, "lr": 1e-4, "theta_lr": 1e-2, "drop": 0.5, "cosine": False}

#: The network-level step after the block reconstruction (:func:`network_fit`): every
#: population after the last input or max pooling trained at once so that the quantised
#: logits match the ANN's; ``steps`` 0 skips it.
#: ``loss``: ``"mse"`` of the logits or ``"kl"`` of their softmax (:meth:`BlockFit.loss`).
NETWORK = {"steps": 0, "batch": 32, "lr": 1e-5, "theta_lr": 1e-3, "drop": 0.0, "cosine": True,
           "loss": "mse"}


def activation(pop: Population, u: torch.Tensor) -> torch.Tensor:
    """The ANN's activation of ``pop`` for pre-activation ``u``."""
    if pop.kind == "signed":
        return u
    return torch.relu(u) if pop.clip is None else torch.clamp(u, 0.0, pop.clip)


def per_channel(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-channel (or scalar) tensor shaped to broadcast against a batch ``like``."""
    if c.ndim == 0:
        return c
    return c.reshape(-1, *([1] * (like.ndim - 2)))


def op_bias(op: Op) -> np.ndarray:
    """The bias of a ``conv2d``/``linear`` op (zeros when it has none), float64."""
    return np.zeros(op.weight.shape[0]) if op.bias is None else np.asarray(op.bias, np.float64)


def trainable(edge: Edge) -> bool:
    """Whether the edge ends in a ``conv2d`` or ``linear`` op (whose weight and bias train)."""
    return bool(edge.ops) and edge.ops[-1].kind in ("conv2d", "linear")


def ste_quantize(graph: Graph, pop: Population, u: torch.Tensor,
                 theta: torch.Tensor) -> torch.Tensor:
    """:func:`coding.quantize` in the forward pass; straight through in the backward pass.

    ``q = theta * code(c)`` with ``c = clip(u / theta, 0, top)``: the gradient in ``u`` is 1
    inside the code's range and 0 outside, the one in ``theta`` is ``code(c) - u / theta``
    inside and ``top`` above it (the step-size gradient of LSQ, Esser et al. 2020).
    """
    signed = pop.kind == "signed"
    th = per_channel(theta, u)
    x = (u.abs() if signed else u) / th
    top = coding.quantize(torch.tensor([np.finfo(np.float32).max], dtype=torch.float64), 1.0,
                          pop.T, graph.k, graph.rounding)
    c = x.clamp(0.0, float(top[0]))
    with torch.no_grad():
        code = coding.quantize(c, 1.0, pop.T, graph.k, graph.rounding, check_finite=False)
    q = th * (c + (code - c).detach())
    return q * torch.sign(u) if signed else q


def reconstruct_population(graph: Graph, pop: Population, quant: dict[str, torch.Tensor],
                           u: torch.Tensor, gen: torch.Generator, steps: int) -> bool:
    """Fit ``pop``'s weights, bias and threshold(s) to the ANN's output by gradient descent.

    The last op of every edge that ends in ``conv2d`` or ``linear`` is trained (Adam, minibatches
    of the calibration inputs, :func:`ste_quantize`) so that the population's *quantised*
    output from the already quantised sources ``quant`` matches the ANN's activation (from its
    pre-activation ``u``) in mean squared error; the threshold (per population or per channel)
    is trained with it, as a log factor on the calibrated one (never above it under a ReLU6
    clip). The readout fits its logits. Other edges (identity shortcuts) stay fixed. Returns
    False (and changes nothing) when no edge can be trained.
    """
    fit = [e for e in pop.edges if trainable(e)]
    if not fit:
        return False
    fixed = [e for e in pop.edges if all(e is not f for f in fit)]  # by identity
    rest = sum((graph.edge_value(e, quant[e.source]) for e in fixed), torch.zeros_like(u))
    feats = [_edge_inputs(e, quant[e.source]) for e in fit]
    like = {"dtype": u.dtype, "device": u.device}
    ws, bs = _weight_parameters(fit, like)
    spiking = pop.kind != "readout"
    target = activation(pop, u) if spiking else u
    theta0 = torch.as_tensor(np.asarray(pop.theta if spiking else 1.0, np.float64), **like)
    log_f = torch.nn.Parameter(torch.zeros_like(theta0))
    groups = [{"params": ws + bs, "lr": RECONSTRUCT["lr"]}]
    if spiking:
        groups.append({"params": [log_f], "lr": RECONSTRUCT["theta_lr"]})
    opt = torch.optim.Adam(groups)
    for _ in range(steps):
        idx = torch.randint(0, u.shape[0], (min(RECONSTRUCT["batch"], u.shape[0]),),
                            generator=gen).to(u.device)
        v = rest[idx]
        for e, x, w, b in zip(fit, feats, ws, bs, strict=True):
            v = v + _apply_weighted(e.ops[-1], x[idx], w, b)
        if spiking:
            v = ste_quantize(graph, pop, v, theta0 * log_f.exp())
        loss = (v - target[idx]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if pop.clip is not None:
            log_f.data.clamp_(max=0.0)
    _store_weights(fit, ws, bs)
    if spiking:
        _store_theta(pop, theta0, log_f)
    return True


def blocks(graph: Graph) -> list[list[Population]]:
    """The graph cut into blocks: each ends where one population is all that is still needed.

    Walking the populations in order, a block closes after population ``p`` when no population
    before it has consumers still to come (``p``'s output is the only live value): a residual
    block of a ResNet (its two convolutions, the shortcut joining the second), one layer of a
    chain.
    """
    remaining = {p.name: len(graph.consumers(p.name)) for p in graph}
    live: set[str] = set()
    out: list[list[Population]] = []
    cur: list[Population] = []
    for pop in graph:
        cur.append(pop)
        for src in dict.fromkeys(e.source for e in pop.edges):
            remaining[src] -= 1
            if remaining[src] == 0:
                live.discard(src)
        if remaining[pop.name]:
            live.add(pop.name)
        if live <= {pop.name}:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


class BlockFit:
    """Train one block's weights, biases and thresholds so its quantised output matches the ANN.

    Parameters
    ----------
    graph : Graph
        The calibrated graph the block belongs to.
    block : list of Population
        Populations in order (one of :func:`blocks`), no max pooling or input among them.
    quant : dict
        Quantised values ``(N, ...)`` of every population outside the block that it reads.
    target : torch.Tensor
        The ANN's values of the block's last population ``(N, ...)`` (its activation, or its
        logits for a readout).
    gen : torch.Generator
        Draws the minibatches (and the QDrop masks).
    settings : dict, optional
        The optimiser's ``batch``, ``lr``, ``theta_lr``, ``drop`` and ``cosine`` (default
        :data:`BLOCK`).
    """

    def __init__(self, graph: Graph, block: list[Population], quant: dict[str, torch.Tensor],
                 target: torch.Tensor, gen: torch.Generator, settings: dict | None = None):
        bad = [p.name for p in block if p.kind in ("input", "maxpool")]
        if bad:
            raise ValueError(f"block reconstruction cannot train populations {bad} "
                             "(inputs and max pooling have no weights of their own)")
        self.graph, self.block, self.quant, self.target, self.gen = (graph, block, quant,
                                                                     target, gen)
        self.names = {p.name for p in block}
        self.settings = BLOCK if settings is None else settings
        self._kl = self.settings.get("loss", "mse") == "kl"
        like = {"dtype": target.dtype, "device": target.device}
        self.edges = {(p.name, i): e for p in block for i, e in enumerate(p.edges)
                      if trainable(e)}
        ws, bs = _weight_parameters(list(self.edges.values()), like)
        self.params = dict(zip(self.edges, zip(ws, bs, strict=True), strict=True))
        self.theta = {p.name: torch.as_tensor(np.asarray(p.theta, np.float64), **like)
                      for p in block if p.spiking}
        self.log_f = {k: torch.nn.Parameter(torch.zeros_like(t)) for k, t in self.theta.items()}

    def forward(self, idx: torch.Tensor, drop: float = 0.0) -> torch.Tensor:
        """The block's output for calibration inputs ``idx`` (quantised; QDrop inside)."""
        vals: dict[str, torch.Tensor] = {}
        out = self.block[-1]
        for p in self.block:
            v = 0.0
            for i, e in enumerate(p.edges):
                x = vals[e.source] if e.source in self.names else self.quant[e.source][idx]
                if (p.name, i) in self.params:
                    w, b = self.params[(p.name, i)]
                    v = v + _apply_weighted(e.ops[-1], _edge_inputs(e, x), w, b)
                else:
                    v = v + self.graph.edge_value(e, x)
            if p.spiking:
                q = ste_quantize(self.graph, p, v, self.theta[p.name] * self.log_f[p.name].exp())
                if drop > 0 and p is not out:
                    keep = torch.rand(q.shape, generator=self.gen) < drop
                    q = torch.where(keep.to(q.device), activation(p, v), q)
                v = q
            vals[p.name] = v
        return vals[out.name]

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The fit's loss on a batch: mean squared error, or with ``settings["loss"]`` ``"kl"``
        the mean KL divergence of the softmax of ``out`` from that of ``target`` (logits: the
        prediction difference of PD-Quant, Liu et al. 2023)."""
        if self._kl:
            return F.kl_div(torch.log_softmax(out, 1), torch.log_softmax(target, 1),
                            log_target=True, reduction="batchmean")
        return (out - target).square().mean()

    def error(self, chunk: int = 64) -> float:
        """:meth:`loss` of the block's output over all the calibration inputs."""
        n = self.target.shape[0]
        total = 0.0
        with torch.no_grad():
            for i in range(0, n, chunk):
                t = self.target[i:i + chunk]
                out = self.forward(torch.arange(i, min(i + chunk, n)))
                total += float(self.loss(out, t)) * (t.shape[0] if self._kl else t.numel())
        return total / (n if self._kl else self.target.numel())

    def fit(self, steps: int) -> tuple[float, float]:
        """Train ``steps`` Adam steps; keep the result only if it lowers :meth:`error`.

        Writes the kept weights, biases and thresholds into the graph; returns the error
        before and after (the kept one).
        """
        before = self.error()
        saved = [t.detach().clone() for t in self._tensors()]
        opt = torch.optim.Adam(self._groups())
        sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if self.settings["cosine"]
                 else None)
        n = self.target.shape[0]
        with torch.enable_grad():
            for _ in range(steps):
                idx = torch.randint(0, n, (min(self.settings["batch"], n),), generator=self.gen)
                loss = self.loss(self.forward(idx, self.settings["drop"]), self.target[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                self._clip()
        after = self.error()
        if after > before:  # the fit overshot on the data it must fit: keep the start
            for t, s in zip(self._tensors(), saved, strict=True):
                t.data.copy_(s)
            after = before
        _store_weights(list(self.edges.values()), *self._weights())
        for p in self.block:
            if p.spiking:
                _store_theta(p, self.theta[p.name], self.log_f[p.name])
        return before, after

    def _weights(self) -> tuple[list, list]:
        return [w for w, _ in self.params.values()], [b for _, b in self.params.values()]

    def _tensors(self) -> list[torch.nn.Parameter]:
        ws, bs = self._weights()
        return ws + bs + list(self.log_f.values())

    def _groups(self) -> list[dict]:
        ws, bs = self._weights()
        groups = [{"params": ws + bs, "lr": self.settings["lr"]}]
        if self.log_f:
            groups.append({"params": list(self.log_f.values()), "lr": self.settings["theta_lr"]})
        return groups

    def _clip(self) -> None:
        for p in self.block:
            if p.spiking and p.clip is not None:  # ReLU6: never above the calibrated cap
                self.log_f[p.name].data.clamp_(max=0.0)


def network_fit(graph: Graph, x: torch.Tensor, ann_logits: torch.Tensor,
                gen: torch.Generator, steps: int) -> tuple[float, float]:
    """Train every population after the last input or max pooling against the ANN's logits.

    One :class:`BlockFit` (settings :data:`NETWORK`) over the graph's tail, whose quantised
    logits on the calibration inputs ``x`` must match ``ann_logits`` (the ANN's, computed
    before any correction changed the graph's biases): the errors the block-wise fits leave
    are free to cancel in the logits. Kept only where it lowers their error; returns the error
    before and after.
    """
    pops = list(graph)
    start = max(i for i, p in enumerate(pops) if p.kind in ("input", "maxpool")) + 1
    tail = pops[start:]
    names = {p.name for p in tail}
    with torch.no_grad():
        values = graph.forward(x, quantized=True)
    quant = {e.source: values[e.source] for p in tail for e in p.edges
             if e.source not in names}
    del values
    return BlockFit(graph, tail, quant, ann_logits, gen, NETWORK).fit(steps)


def _weight_parameters(fit: list[Edge], like: dict) -> tuple[list, list]:
    # copies: torch.as_tensor shares a float64 array's memory, and training must not write
    # into the graph before the fit is kept
    ws = [torch.nn.Parameter(torch.as_tensor(e.ops[-1].weight, **like).clone()) for e in fit]
    bs = [torch.nn.Parameter(torch.as_tensor(op_bias(e.ops[-1]), **like).clone()) for e in fit]
    return ws, bs


def _store_weights(fit: list[Edge], ws: list, bs: list) -> None:
    for e, w, b in zip(fit, ws, bs, strict=True):
        op = e.ops[-1]
        op.weight = w.detach().cpu().double().numpy().astype(op.weight.dtype)
        op.bias = b.detach().cpu().double().numpy().astype(op.weight.dtype)


def _store_theta(pop: Population, theta0: torch.Tensor, log_f: torch.Tensor) -> None:
    th = (theta0 * log_f.exp()).detach().cpu().double().numpy()
    pop.theta = th if th.ndim else float(th)


def _edge_inputs(edge: Edge, x: torch.Tensor) -> torch.Tensor:
    """The input of an edge's last op: its other ops applied to the source's values."""
    for op in edge.ops[:-1]:
        x = apply_op(op, x)
    return x


def _apply_weighted(op: Op, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A ``conv2d`` or ``linear`` op with trainable weight and bias."""
    if op.kind == "linear":
        return F.linear(x, w, b)
    a = op.attrs
    return F.conv2d(x, w, b, a.get("stride", 1), a.get("padding", 0), a.get("dilation", 1),
                    a.get("groups", 1))
