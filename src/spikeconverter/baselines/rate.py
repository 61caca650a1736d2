"""Rate-coded IF conversion of the graph IR, simulated step by step with Norse's pieces.

The baselines SpikeConverter is compared against (paper Fig. 6 and 7). Every step:

* the input population sends its analog value (a constant current, no encoding);
* every edge applies its ops (:func:`~spikeconverter.converters.ir.apply_op`, bias included) to
  its source's output of this step;
* a ``"relu"`` population is a layer of integrate-and-fire neurons without leak,
  ``V <- V + I``, firing ``z = [V >= lambda]`` with a per-layer threshold ``lambda`` from
  :func:`~spikeconverter.baselines.normalization.rate_thresholds`; each spike carries ``lambda``;
* a ``"signed"`` population fires ``+1`` at ``V >= lambda`` and ``-1`` at ``V <= -lambda``;
* a ``"maxpool"`` population gates its source: in each window it passes on this step's spike of
  the unit that has fired most so far (Rueckauer et al. 2017, ties to the first unit); the count
  includes this step, so the output never fires more often than the window's busiest unit;
* the readout integrates its input current; the logits after ``t`` steps are ``V / t``.

The three methods differ only in the IF neuron (:data:`RATE_METHODS`):

``"hard_reset"``
    reset to zero after a spike (Sengupta et al. 2019, "Going deeper in SNNs"); the charge above
    threshold is lost, so rates fall short of ``u / lambda``.
``"soft_reset"``
    reset by subtraction, ``V <- V - z*lambda`` (Han et al. 2020, RMP-SNN): no charge is lost;
    after ``t`` steps the rate is ``floor(t*u/lambda)/t`` for a constant input.
``"threshold_shift"``
    reset by subtraction with Deng & Gu's (ICLR 2021) shift: their SNN adds ``lambda/(2T)`` to
    the membrane each step, a total charge of ``lambda/2`` by step ``T`` that turns the floor
    into rounding to nearest. We deliver that charge up front (fire at ``V >= lambda/2``, i.e. an
    initial membrane of ``lambda/2``; negative spikes at ``V <= -lambda/2``), which gives the same
    count at step ``T`` for a constant input without depending on ``T``, so one run serves every
    checkpoint (the form Bu et al. 2022 also use).

Memory is O(populations x batch x neurons) for any number of steps: the readout and spike
counts are recorded as the run passes each checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from norse.torch.functional.reset import reset_subtract, reset_value
from tqdm.auto import tqdm

from spikeconverter.baselines.counting import fanout
from spikeconverter.converters.ir import NEURON_KINDS, Graph, Op, apply_op

RATE_METHODS: dict[str, str] = {
    "hard_reset": "IF, reset to zero (Sengupta et al. 2019)",
    "soft_reset": "IF, reset by subtraction (RMP-SNN, Han et al. 2020)",
    "threshold_shift": "IF, reset by subtraction, threshold shifted by lambda/2 (Deng & Gu 2021)",
}
"""The rate-coded conversions, by name, with what each does."""
DEFAULT_STEPS = (32, 64, 128, 256, 512, 1024, 2048)
"""Time steps at which the baselines are read out by default."""
INPUT_ENCODINGS = ("current", "poisson")
"""How a rate-coded network receives its input (see :class:`RateNetwork`)."""

__all__ = ["DEFAULT_STEPS", "INPUT_ENCODINGS", "RATE_METHODS", "RateNetwork", "RateResult",
           "simulate_rate"]


@dataclass
class RateResult:
    """What a rate-coded run recorded at each checkpoint ``t`` in ``steps``.

    Attributes
    ----------
    method : str
        One of :data:`RATE_METHODS`.
    steps : list of int
        The checkpoints, ascending.
    logits : dict of int to torch.Tensor
        Readout ``V / t`` after ``t`` steps, ``(B, classes)``.
    spikes : dict of int to dict of str to float
        Spikes per population after ``t`` steps, summed over the batch (``|z|`` for signed).
    synops : dict of int to float
        Synaptic operations (spikes times their fan-out) after ``t`` steps, summed over the batch.
    batch : int
        Number of samples.
    raster : torch.Tensor or None
        ``(steps[-1], N)`` spikes (in {-1, 0, 1}) of the recorded population for sample 0,
        when asked for.
    neurons : dict of str to int
        Neurons per population (per sample).
    counts : dict of str to torch.Tensor
        Per-neuron spike counts ``(B, *shape)`` after ``steps[-1]`` steps, of the ``"relu"`` and
        ``"signed"`` populations, when asked for (``keep_counts``).
    """

    method: str
    steps: list[int]
    logits: dict[int, torch.Tensor]
    spikes: dict[int, dict[str, float]]
    synops: dict[int, float]
    batch: int
    raster: torch.Tensor | None = None
    neurons: dict[str, int] = field(default_factory=dict)
    counts: dict[str, torch.Tensor] = field(default_factory=dict)


def _check_steps(steps: Iterable[int]) -> list[int]:
    out = sorted({int(t) for t in steps})
    if not out or any(t < 1 for t in out) or any(
        isinstance(t, bool) or int(t) != t for t in steps
    ):
        raise ValueError(f"steps must be a non-empty collection of integers >= 1, got {steps!r}")
    return out


class RateNetwork:
    """A graph IR run as a rate-coded IF network.

    Parameters
    ----------
    graph : Graph
        The captured network (``theta``/``T`` of an iLIF calibration are ignored).
    thresholds : dict of str to float
        ``lambda`` of every ``"relu"`` and ``"signed"`` population (see
        :func:`~spikeconverter.baselines.normalization.rate_thresholds`).
    method : str
        One of :data:`RATE_METHODS`.
    dtype : torch.dtype
        Simulation precision (float32 is plenty: rates are averages).
    device : str or torch.device
        Where to simulate.
    encoding : {"current", "poisson"}
        How the input enters: ``"current"``, its analog value every step; ``"poisson"``
        (Sengupta et al. 2019), a Bernoulli spike per step and input value with probability
        ``|x| / m`` and payload ``sign(x) * m``, ``m`` the sample's largest ``|x|`` (the mean
        input is ``x``).
    seed : int
        Seed of the Poisson input; each :meth:`run` starts from it.
    """

    def __init__(
        self,
        graph: Graph,
        thresholds: dict[str, float],
        method: str = "soft_reset",
        dtype: torch.dtype = torch.float32,
        device: Any = "cpu",
        encoding: str = "current",
        seed: int = 0,
    ):
        if method not in RATE_METHODS:
            raise ValueError(f"method must be one of {sorted(RATE_METHODS)}, got {method!r}")
        if encoding not in INPUT_ENCODINGS:
            raise ValueError(f"encoding must be one of {INPUT_ENCODINGS}, got {encoding!r}")
        graph.validate()
        for pop in graph:
            if pop.kind in NEURON_KINDS:
                lam = thresholds.get(pop.name)
                if lam is None or not (float(lam) > 0 and torch.isfinite(torch.tensor(lam))):
                    raise ValueError(
                        f"thresholds must give a finite lambda > 0 for population {pop.name!r}, "
                        f"got {lam!r}"
                    )
            if pop.kind == "maxpool" and graph[pop.edges[0].source].kind == "signed":
                raise ValueError(
                    f"max pooling {pop.name!r} of the signed population {pop.edges[0].source!r} "
                    "has no rate-coded equivalent here (spike-count gating needs rates >= 0)"
                )
        self.graph = graph
        self.method = method
        self.dtype = dtype
        self.device = torch.device(device)
        self.thresholds = {k: float(v) for k, v in thresholds.items()}
        self.encoding = encoding
        self.seed = int(seed)
        # Parameters become tensors once, not at every one of the thousands of steps.
        self._edges = {
            pop.name: [(e.source, [self._to_torch(op) for op in e.ops]) for e in pop.edges]
            for pop in graph
        }
        self._fanout = {
            k: v.to(device=self.device, dtype=dtype)
            for k, v in fanout(graph).items()
            if graph[k].kind != "input"  # analog input: multiplications, not synaptic events
        }

    def _to_torch(self, op: Op) -> Op:
        def conv(a: Any) -> Any:
            if a is None:
                return None
            return torch.as_tensor(a, dtype=self.dtype, device=self.device)

        return dataclasses.replace(op, weight=conv(op.weight), bias=conv(op.bias))

    def _current(self, name: str, out: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for src, ops in self._edges[name]:
            x = out[src]
            for op in ops:
                x = apply_op(op, x)
            total = x if total is None else total + x
        return total

    @torch.no_grad()
    def run(
        self,
        x: torch.Tensor,
        steps: Sequence[int] = DEFAULT_STEPS,
        progress: bool = False,
        record: str | None = None,
        chunk: int | None = None,
        keep_counts: bool = False,
    ) -> RateResult:
        """Simulate ``max(steps)`` steps on a batch ``x`` and record each checkpoint.

        The steps run in blocks of ``chunk``: within a block, population after population (in
        topological order) receives its currents of all the block's steps in one batched call
        and integrates them step by step. Every step still sees the outputs of the same step of
        the populations before it, so this is the step-by-step network, only with larger
        convolutions.

        Parameters
        ----------
        x : torch.Tensor
            Inputs ``(B, *input.shape)``.
        steps : sequence of int
            Checkpoints at which the readout and counts are recorded.
        progress : bool
            Show a tqdm bar over the steps.
        record : str, optional
            Name of a spiking population whose spikes of sample 0 are kept as a raster.
        chunk : int, optional
            Steps per block (default: as many as keep one population's block near 64 MiB).
        keep_counts : bool
            Keep every neuron's spike count (signed: positive minus negative spikes) at the
            last checkpoint in ``RateResult.counts``.
        """
        g = self.graph
        steps = _check_steps(steps)
        inp = g[g.input]
        if tuple(x.shape[1:]) != tuple(inp.shape):
            raise ValueError(
                f"input shape {tuple(x.shape[1:])} does not match the network's input "
                f"{tuple(inp.shape)} (population {inp.name!r})"
            )
        if record is not None and (record not in g.populations or not g[record].spiking):
            raise ValueError(f"record must name a spiking population, got {record!r}")
        x = x.to(device=self.device, dtype=self.dtype)
        B = x.shape[0]
        chunk = self.block_length(B) if chunk is None else max(int(chunk), 1)
        v = {p.name: torch.zeros((B, *p.shape), dtype=self.dtype, device=self.device)
             for p in g if p.kind in (*NEURON_KINDS, "readout")}
        counts = {p.name: torch.zeros((B, *g[p.edges[0].source].shape), dtype=self.dtype,
                                      device=self.device)
                  for p in g
                  if p.kind == "maxpool" and g[p.edges[0].source].kind in NEURON_KINDS}
        spikes = {p.name: 0.0 for p in g if p.spiking or p.kind == "maxpool"}
        synops = 0.0
        res = RateResult(self.method, steps, {}, {}, {}, B,
                         neurons={p.name: int(torch.Size(p.shape).numel()) for p in g})
        raster = [] if record is not None else None
        last_use = self.last_use()
        encode = self.encoder(x)
        bar = tqdm(total=steps[-1], disable=not progress, leave=False, desc=f"{self.method}")
        t = 0
        for stop in steps:
            while t < stop:
                K = min(chunk, stop - t)
                out: dict[str, torch.Tensor] = {}
                for i, pop in enumerate(g):
                    name = pop.name
                    if pop.kind == "input":
                        out[name] = encode(K)
                    elif pop.kind == "readout":
                        current = self.block_current(name, out)
                        v[name] += current.sum(0) if current.shape[0] == K else current[0] * K
                    elif pop.kind == "maxpool":
                        out[name] = self.block_pool(pop, out, counts.get(name))
                    else:
                        z, v[name] = self.block_fire(pop, self.block_current(name, out),
                                                      v[name], K)
                        out[name] = z * self.thresholds[name]
                    if pop.kind in NEURON_KINDS or name in counts:
                        fired = (out[name] != 0).to(self.dtype)
                        spikes[name] += float(fired.sum())
                        if name in self._fanout:
                            synops += float((fired.sum(0) * self._fanout[name]).sum())
                        if keep_counts and pop.kind != "maxpool":
                            c = out[name].sum(0) / self.thresholds[name]
                            res.counts[name] = res.counts.get(name, 0) + c.cpu()
                        if raster is not None and name == record:
                            raster.append(torch.sign(out[name][:, 0]).reshape(K, -1).cpu())
                    for src in [s for s in out if last_use[s] == i]:
                        del out[src]  # no population after this one reads it
                t += K
                bar.update(K)
            res.logits[t] = (v[g.output] / t).cpu()
            res.spikes[t] = dict(spikes)
            res.synops[t] = synops
        bar.close()
        if raster is not None:
            res.raster = torch.cat(raster)
        return res

    def encoder(self, x: torch.Tensor):
        """``encode(K)``: the input's next ``K`` steps, ``(K, B, ...)`` (``(1, B, ...)`` for a
        constant current), from a generator seeded with ``seed``."""
        if self.encoding == "current":
            return lambda K: x.unsqueeze(0)
        gen = torch.Generator(device=self.device).manual_seed(self.seed)
        m = x.abs().flatten(1).amax(1).clamp_min(torch.finfo(x.dtype).tiny)
        m = m.view(-1, *([1] * (x.dim() - 1)))
        p, payload = x.abs() / m, torch.sign(x) * m

        def encode(K: int) -> torch.Tensor:
            u = torch.rand((K, *x.shape), generator=gen, dtype=x.dtype, device=x.device)
            return (u < p).to(x.dtype) * payload

        return encode

    def block_length(self, batch: int, budget: float = 64 * 2**20) -> int:
        """Steps per block so that the widest population's block is about ``budget`` bytes."""
        widest = max(int(torch.Size(p.shape).numel()) for p in self.graph)
        size = torch.empty((), dtype=self.dtype).element_size()
        return int(max(1, min(256, budget // (widest * batch * size))))

    def last_use(self) -> dict[str, int]:
        """Index (in topological order) of the last population that reads each population."""
        order = {p.name: i for i, p in enumerate(self.graph)}
        last = dict.fromkeys(order, -1)
        for pop in self.graph:
            for e in pop.edges:
                last[e.source] = max(last[e.source], order[pop.name])
        return {n: (i if i >= 0 else order[n]) for n, i in last.items()}

    def block_current(self, name: str, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Input current of ``name`` for a block: ``(K, B, *shape)`` from sources ``(K or 1, B,
        ...)`` (a leading 1 is a source constant over the block, as the analog input)."""
        total = None
        for src, ops in self._edges[name]:
            s = out[src]
            y = s.reshape(s.shape[0] * s.shape[1], *s.shape[2:])
            for op in ops:
                y = apply_op(op, y)
            y = y.reshape(s.shape[0], s.shape[1], *y.shape[1:])
            total = y if total is None else total + y
        return total

    def block_fire(self, pop, current: torch.Tensor, v: torch.Tensor,
                    K: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Integrate ``K`` steps of ``current`` (leading dim K, or 1 for a constant) from the
        membrane ``v``; the spikes ``(K, B, *shape)`` in {-1, 0, 1} and the new membrane."""
        reset = reset_value if self.method == "hard_reset" else reset_subtract
        zero = torch.zeros((), dtype=self.dtype, device=self.device)
        z_all = torch.empty((K, *v.shape), dtype=self.dtype, device=self.device)
        for k in range(K):
            z_all[k], v = self._fire(pop, v + current[k if current.shape[0] > 1 else 0],
                                     reset, zero)
        return z_all, v

    def _fire(self, pop, vm: torch.Tensor, reset, zero) -> tuple[torch.Tensor, torch.Tensor]:
        """Spikes ``z`` in {-1, 0, 1} of the charged membrane ``vm`` and the membrane after
        ``reset`` (the method's threshold: half of it for ``threshold_shift``)."""
        lam = self.thresholds[pop.name]
        fire = lam / 2 if self.method == "threshold_shift" else lam
        z = (vm >= fire).to(self.dtype)
        if pop.kind != "signed":
            return z, reset(z, vm, zero, lam)
        # norse's resets take z in {0, 1}: a negative spike resets the mirrored membrane like
        # a positive one.
        neg = (vm <= -fire).to(self.dtype)
        vm = torch.where(neg > 0, -reset(neg, -vm, zero, lam), reset(z, vm, zero, lam))
        return z - neg, vm

    def block_pool(self, pop, out: dict[str, torch.Tensor],
                    counts: torch.Tensor | None) -> torch.Tensor:
        """Max pooling of a block: an analog source pooled as values; a spiking one gated, step
        by step, by the running spike counts ``counts`` (updated in place)."""
        a = pop.attrs
        src = out[pop.edges[0].source]
        args = (a["kernel_size"], a["stride"], a["padding"], a.get("dilation", 1),
                a.get("ceil_mode", False))
        if counts is None:
            pooled = F.max_pool2d(src.reshape(-1, *src.shape[2:]), *args)
            return pooled.reshape(src.shape[0], src.shape[1], *pooled.shape[1:])
        gated = []
        for k in range(src.shape[0]):
            counts += (src[k] != 0).to(self.dtype)
            _, idx = F.max_pool2d(counts, *args, return_indices=True)
            gated.append(src[k].flatten(2).gather(2, idx.flatten(2)).view(idx.shape))
        return torch.stack(gated)

    def _step(self, pop, x, out, v, counts, reset, zero) -> bool:
        """Advance population ``pop`` by one step; False for the input and the readout."""
        name = pop.name
        if pop.kind == "input":
            out[name] = x
            return False
        if pop.kind == "readout":
            v[name] = v[name] + self._current(name, out)
            return False
        if pop.kind == "maxpool":
            out[name] = self._maxpool(pop, out, counts)
            return True
        z, v[name] = self._fire(pop, v[name] + self._current(name, out), reset, zero)
        out[name] = z * self.thresholds[name]
        if name in counts:
            counts[name] += z
        return True

    @torch.no_grad()
    def peak_current(self, x: torch.Tensor, name: str, steps: int) -> float:
        """Largest input current (``|I|`` for signed) that population ``name`` receives in one
        step, over ``steps`` steps of the batch ``x``: the quantity spike-norm balances.

        Only the populations before ``name`` are simulated (they need their thresholds in
        ``thresholds``; ``name`` and those after it do not).
        """
        g = self.graph
        if name not in g.populations or g[name].kind not in NEURON_KINDS:
            raise ValueError(f"name must be a relu or signed population, got {name!r}")
        x = x.to(device=self.device, dtype=self.dtype)
        reset = reset_value if self.method == "hard_reset" else reset_subtract
        zero = torch.zeros((), dtype=self.dtype, device=self.device)
        before = list(g.populations)[: list(g.populations).index(name)]
        v = {n: torch.zeros((x.shape[0], *g[n].shape), dtype=self.dtype, device=self.device)
             for n in before if g[n].kind in NEURON_KINDS}
        counts = {p.edges[0].source: torch.zeros_like(v[p.edges[0].source]) for p in g
                  if p.kind == "maxpool" and p.edges[0].source in v}
        out: dict[str, torch.Tensor] = {}
        peak = 0.0
        for _ in range(int(steps)):
            for n in before:
                self._step(g[n], x, out, v, counts, reset, zero)
            current = self._current(name, out)
            peak = max(peak, float(current.abs().max() if g[name].kind == "signed"
                                   else current.max()))
        return peak

    def _maxpool(self, pop, out, counts) -> torch.Tensor:
        a = pop.attrs
        src = pop.edges[0].source
        args = (a["kernel_size"], a["stride"], a["padding"], a.get("dilation", 1),
                a.get("ceil_mode", False))
        if src not in counts:  # an analog (input) source: pooling its value is exact
            return F.max_pool2d(out[src], *args)
        _, idx = F.max_pool2d(counts[src], *args, return_indices=True)
        s = out[src]
        gated = s.flatten(2).gather(2, idx.flatten(2))
        return gated.view(idx.shape)


def simulate_rate(
    graph: Graph,
    x: torch.Tensor,
    thresholds: dict[str, float],
    method: str = "soft_reset",
    steps: Sequence[int] = DEFAULT_STEPS,
    **kwargs: Any,
) -> RateResult:
    """One-call form of :class:`RateNetwork` ``(graph, thresholds, method).run(x, steps)``."""
    run_kw = {k: kwargs.pop(k) for k in ("progress", "record") if k in kwargs}
    return RateNetwork(graph, thresholds, method, **kwargs).run(x, steps, **run_kw)
