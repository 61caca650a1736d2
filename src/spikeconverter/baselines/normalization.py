"""Data-based threshold normalisation for rate-coded conversion (Rueckauer et al. 2017).

A rate-coded IF neuron that receives the analog current ``u`` of its ANN unit every step fires at
rate ``u / lambda`` when its threshold is ``lambda`` and each of its spikes carries the value
``lambda`` downstream. Choosing ``lambda`` per layer as the largest activation seen on calibration
data (threshold balancing, Sengupta et al. 2019) keeps every rate in [0, 1]; the ``p``-th
percentile of the positive activations (Rueckauer's "robust normalisation") trades a little
clipping of outliers for faster, more precise rates. Scaling the weights by
``lambda_{l-1} / lambda_l`` with thresholds 1 is the same network; we keep the ANN's weights and
put ``lambda`` in the threshold and in the spike's payload, which is easier to read.

:func:`spike_norm_thresholds` is Sengupta et al.'s (2019) own procedure ("spike-norm",
their Algorithm 1): the thresholds are balanced in the *spiking* network, layer by layer, each
set to the largest input current its neurons receive in any one step while the layers before it
already run with their balanced thresholds. A rate-coded IF neuron then never receives more
than one threshold's worth of charge per step, which is what makes the hard reset work: the ANN
maximum of ``rate_thresholds`` lets the per-step current exceed the threshold, and a hard reset
throws that excess away, layer after layer.

Where the paper's assumptions hold it reproduces the paper's order of magnitude: on a ResNet
built as theirs (:class:`~spikeconverter.models.PaperResNet`: no BatchNorm, no biases, average
pooling; ``benchmarks/hard_reset_paper_net.py``, figures in the README) the hard-reset SNN
follows its own ANN (CIFAR-10, 64 test images: 26-27 correct against 27, agreement 60/64 from
512 steps), as the paper's -1.6 pt. On the shared BN-folded CIFAR-10 ResNet-20 (option-A
shortcuts, ``benchmarks/hard_reset_resnet20.py``) it stays at chance up to 2048 steps. Measured
by layer there (rates against the ANN's ``a / lambda``): the correlation falls from 0.99 at the
first layer to 0.15 at the last, the thresholds grow along the residual chain (a skip spike
alone delivers the previous join's threshold) to 27x the ANN's maximum, and the last layers
fire at rates near 1e-4; with every bias scaled to zero (a diagnosis: that ANN is itself broken)
the last layer keeps a correlation of 0.72. The biases the paper's recipe excludes are the
leading suspect, not a proven cause.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from spikeconverter.baselines.rate import RATE_METHODS, RateNetwork
from spikeconverter.converters.ir import LAYOUT_KINDS, NEURON_KINDS, Graph
from spikeconverter.data import iter_input_batches

NORMALIZATION_MODES = ("max", "percentile")
JUNCTION_RULES = ("identity", "max")
"""How spike-norm sets the threshold of a residual join (see :func:`spike_norm_thresholds`)."""

__all__ = ["JUNCTION_RULES", "NORMALIZATION_MODES", "rate_thresholds", "spike_norm_thresholds"]


def rate_thresholds(
    graph: Graph,
    calibration: Any,
    mode: str = "percentile",
    percentile: float = 99.99,
    batch_size: int = 64,
    max_samples: int = 1_000_000,
    seed: int = 0,
    device: Any = "cpu",
) -> dict[str, float]:
    """Per-layer thresholds ``lambda`` of every ``"relu"`` and ``"signed"`` population.

    Parameters
    ----------
    graph : Graph
        The captured network (its own ``theta``, if calibrated for iLIF, is not used).
    calibration : torch.Tensor or iterable
        Inputs ``(N, C, H, W)``, or an iterable of batches or ``(x, y)`` pairs.
    mode : {"max", "percentile"}
        ``"max"``: the largest activation (``|u|`` for signed layers); ``"percentile"``: the
        ``percentile``-th percentile of the non-zero activations.
    percentile : float
        In (0, 100]; used by ``mode="percentile"``.
    batch_size : int
        Batch size when ``calibration`` is one tensor.
    max_samples : int
        Cap on the activations kept per layer for the percentile (seeded subsampling).
    seed : int
        Seed of that subsampling.
    device : str or torch.device
        Where to evaluate the graph.

    Returns
    -------
    dict of str to float
        ``lambda`` per population name; at most the population's ``clip`` (ReLU6), and 1.0 for a
        layer that never activates on the calibration data.
    """
    if mode not in NORMALIZATION_MODES:
        raise ValueError(f"mode must be one of {NORMALIZATION_MODES}, got {mode!r}")
    if not (isinstance(percentile, (int, float)) and 0.0 < percentile <= 100.0):
        raise ValueError(f"percentile must be a number in (0, 100], got {percentile!r}")
    graph.validate()
    names = [p.name for p in graph if p.kind in NEURON_KINDS]
    maxima = dict.fromkeys(names, 0.0)
    kept: dict[str, list[np.ndarray]] = {n: [] for n in names}
    gen = torch.Generator().manual_seed(seed)
    seen = 0
    per_batch = None
    with torch.no_grad():
        for x in iter_input_batches(calibration, batch_size):
            x = x.to(device=device, dtype=torch.float64)
            values = graph.forward(x, quantized=False)
            seen += x.shape[0]
            for n in names:
                v = values[n].abs() if graph[n].kind == "signed" else values[n]
                maxima[n] = max(maxima[n], float(v.max()))
                if mode == "percentile":
                    pos = v[v > 0].cpu()
                    # Keep a bounded, seeded subsample per batch so memory stays flat for big
                    # calibration sets; the percentile of a uniform subsample is unbiased.
                    per_batch = per_batch or max(max_samples // 16, 1)
                    if pos.numel() > per_batch:
                        pos = pos[torch.randperm(pos.numel(), generator=gen)[:per_batch]]
                    kept[n].append(pos.numpy())
    if seen == 0:
        raise ValueError("calibration is empty: need at least one input to normalise thresholds")
    out: dict[str, float] = {}
    for n in names:
        lam = maxima[n]
        if mode == "percentile":
            vals = np.concatenate(kept[n]) if kept[n] else np.zeros(0)
            if vals.size > max_samples:
                vals = np.random.default_rng(seed).choice(vals, size=max_samples, replace=False)
            lam = float(np.percentile(vals, percentile)) if vals.size else 0.0
        clip = graph[n].clip
        if clip is not None:
            lam = min(lam, float(clip))
        out[n] = lam if lam > 0.0 else 1.0
    return out


def _identity_source(graph: Graph, pop) -> str | None:
    """The spiking source of ``pop``'s identity edge (no weights: a residual skip, option A's
    subsample-and-pad included), or None."""
    for e in pop.edges:
        if graph[e.source].kind in NEURON_KINDS and all(
                op.kind in LAYOUT_KINDS for op in e.ops):
            return e.source
    return None


def spike_norm_thresholds(
    graph: Graph,
    calibration: Any,
    steps: int = 256,
    method: str = "hard_reset",
    batch_size: int = 64,
    dtype: torch.dtype = torch.float32,
    device: Any = "cpu",
    progress: bool = False,
    encoding: str = "current",
    seed: int = 0,
    junctions: str = "max",
) -> dict[str, float]:
    """Sengupta et al.'s spike-norm: per-layer thresholds balanced in the spiking network.

    For each ``"relu"``/``"signed"`` population in topological order, the network of the
    populations before it runs for ``steps`` steps on the calibration inputs (the same analog
    input currents as at inference), with the thresholds found so far, and the population's
    threshold becomes the largest input current any of its neurons receives in one step.

    Parameters
    ----------
    graph : Graph
        The captured network.
    calibration : torch.Tensor or iterable
        Inputs ``(N, C, H, W)`` or an iterable of batches or ``(x, y)`` pairs (a few dozen
        images suffice: the cost is that of ``steps`` steps times half the depth).
    steps : int
        Steps simulated per layer (Sengupta et al. balance over the whole simulation).
    method : str
        The neuron of the layers already balanced, one of :data:`RATE_METHODS`.
    batch_size : int
        Batch size when ``calibration`` is one tensor.
    dtype, device
        Simulation precision and device.
    progress : bool
        Print nothing; show a tqdm bar over the layers.
    encoding : {"current", "poisson"}
        The input as :class:`~spikeconverter.baselines.RateNetwork` receives it (Sengupta et
        al. balance with the Poisson input they test with).
    seed : int
        Seed of the Poisson input.
    junctions : {"max", "identity"}
        A residual join (a population with a weightless edge from a spiking one: an identity
        skip, or option A's subsample-and-pad): ``"max"``, balanced like any layer (the
        paper's Algorithm 1 as written); ``"identity"``, the skip source's threshold, so that
        each skip spike alone fills the join's threshold (the reading of the paper's
        equal-threshold rule for the layers that meet at a junction, where its spikes are
        binary with unit weight).

    Returns
    -------
    dict of str to float
        ``lambda`` per population name (1.0 for a layer that never receives positive current).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if method not in RATE_METHODS:
        raise ValueError(f"method must be one of {sorted(RATE_METHODS)}, got {method!r}")
    if junctions not in JUNCTION_RULES:
        raise ValueError(f"junctions must be one of {JUNCTION_RULES}, got {junctions!r}")
    graph.validate()
    batches = [b.to(device=device, dtype=dtype)
               for b in iter_input_batches(calibration, batch_size) if b.shape[0] > 0]
    if not batches:
        raise ValueError("calibration is empty: need at least one input to balance thresholds")
    names = [p.name for p in graph if p.kind in NEURON_KINDS]
    net = RateNetwork(graph, dict.fromkeys(names, 1.0), method, dtype=dtype, device=device,
                      encoding=encoding, seed=seed)
    run = _LayerByLayer(net, batches, steps)
    last_use = net.last_use()
    order = list(graph)
    for i, pop in enumerate(tqdm(order, desc="spike-norm", disable=not progress, leave=False)):
        needed = any(graph[c].kind != "readout" for c in graph.consumers(pop.name))
        if pop.kind == "input":
            run.encode(pop.name)
        elif pop.kind in NEURON_KINDS:
            lam = run.peak(pop)
            if pop.clip is not None and lam > 0:
                lam = min(lam, float(pop.clip))
            skip = _identity_source(graph, pop)
            if junctions == "identity" and skip is not None:
                lam = net.thresholds[skip]
            net.thresholds[pop.name] = lam if lam > 0.0 else 1.0
            if needed:
                run.fire(pop)
        elif pop.kind == "maxpool" and needed:
            run.pool(pop)
        run.free([s for s in run.trains if last_use[s] <= i])
    return {n: net.thresholds[n] for n in names}


class _LayerByLayer:
    """Spike trains of a network run population after population over all ``steps``: each
    population's trains (per batch, int8 spikes and their payload, or the analog values of the
    input) are kept until the last population that reads them is done."""

    def __init__(self, net: RateNetwork, batches: list[torch.Tensor], steps: int):
        self.net, self.batches, self.steps = net, batches, steps
        self.chunk = net.block_length(max(b.shape[0] for b in batches))
        self.trains: dict[str, list[torch.Tensor]] = {}
        self.scale: dict[str, float] = {}
        self.analog: set[str] = set()

    def _block(self, src: str, b: int, t0: int, t1: int) -> torch.Tensor:
        z = self.trains[src][b]
        return (z if z.shape[0] == 1 else z[t0:t1]).to(self.net.dtype) * self.scale[src]

    def _blocks(self, pop, b: int):
        for t0 in range(0, self.steps, self.chunk):
            t1 = min(t0 + self.chunk, self.steps)
            yield t1 - t0, {e.source: self._block(e.source, b, t0, t1) for e in pop.edges}

    def encode(self, name: str) -> None:
        """The input's trains: one per batch, read by every consumer and by both passes."""
        K = self.steps if self.net.encoding == "poisson" else 1
        self.trains[name] = [self.net.encoder(x)(K) for x in self.batches]
        self.scale[name] = 1.0
        self.analog.add(name)

    def peak(self, pop) -> float:
        """Largest one-step input current of ``pop`` (``|I|`` for signed)."""
        peak = 0.0
        for b in range(len(self.batches)):
            for _, srcs in self._blocks(pop, b):
                current = self.net.block_current(pop.name, srcs)
                peak = max(peak, float(current.abs().max() if pop.kind == "signed"
                                       else current.max()))
        return peak

    def fire(self, pop) -> None:
        """Simulate ``pop`` with its threshold (in ``net.thresholds``) and keep its trains."""
        name, net = pop.name, self.net
        self.trains[name], self.scale[name] = [], net.thresholds[name]
        for b, x in enumerate(self.batches):
            v = torch.zeros((x.shape[0], *pop.shape), dtype=net.dtype, device=net.device)
            zs = []
            for K, srcs in self._blocks(pop, b):
                z, v = net.block_fire(pop, net.block_current(name, srcs), v, K)
                zs.append(z.to(torch.int8))
            self.trains[name].append(torch.cat(zs))

    def pool(self, pop) -> None:
        """Max pooling's trains: gated spikes of a spiking source, pooled values of the input."""
        name, net, src = pop.name, self.net, pop.edges[0].source
        spiking = net.graph[src].kind in NEURON_KINDS
        self.trains[name], self.scale[name] = [], self.scale.get(src, 1.0)
        if src in self.analog:
            self.analog.add(name)
        for b, x in enumerate(self.batches):
            counts = (torch.zeros((x.shape[0], *net.graph[src].shape), dtype=net.dtype,
                                  device=net.device) if spiking else None)
            zs = []
            for _, srcs in self._blocks(pop, b):
                out = net.block_pool(pop, srcs, counts)
                if name in self.analog:
                    zs.append(out)
                    if out.shape[0] == 1:
                        break  # a constant current: one step stands for all
                else:
                    zs.append(torch.sign(out).to(torch.int8))
            self.trains[name].append(torch.cat(zs))

    def free(self, names: list[str]) -> None:
        for n in names:
            del self.trains[n]
