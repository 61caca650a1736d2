"""Post-training correction of a calibrated graph against its ANN, layer by layer.

Calibration picks each threshold from the ANN's own activations, as if every layer received
the ANN's exact inputs. In the spiking network a layer receives the *quantised* outputs of the
layers before it, so at small ``T`` the errors pile up with depth. The converter knows the exact
quantised network it simulates (:meth:`Graph.forward` with ``quantized=True``), so it can
correct the network against it on the calibration data, one population at a time in
topological order, each time given the already corrected, quantised populations before it
(the sequential scheme of post-training quantisation):

1. **Bias correction** (Nagel et al. 2019, "Data-free quantization", empirical form; the
   bias correction of Li et al. 2021, "A free lunch from ANN"): the population's pre-activation
   computed from quantised inputs, ``u_q``, is shifted per channel by the mean of ``u - u_q``
   over the calibration data (``u`` is the ANN's pre-activation), so that quantisation does not
   move the mean of any channel. The shift is added to the bias of the population's synapses.
2. **Threshold search** (the layer-wise reconstruction of AdaRound/BRECQ reduced to the one
   free parameter of a code, its threshold): ``theta`` (per population or per channel, as
   calibrated) is chosen on a grid around the calibrated value to minimise the mean squared
   error between the population's quantised output ``quantize(u_q)`` and the ANN's activation
   ``relu(u)``; the error of each channel depends only on its own threshold, so per-channel
   thresholds are found by one search for all channels.

The readout gets the bias correction only. Max pooling populations keep sharing their source's
threshold. The result is an ordinary calibrated graph: every backend runs it unchanged, and the
spiking network still equals the (corrected) quantised ANN exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from spikeconverter import coding
from spikeconverter.converters.calibrate import iter_batches
from spikeconverter.converters.ir import Graph, Op, Population

__all__ = ["CORRECTIONS", "LOW_T", "correct", "default_settings"]

CORRECTIONS = ("none", "bias", "threshold", "both")

#: Up to this T, :func:`default_settings` adds both corrections to the per-layer thresholds.
LOW_T = 8

# Threshold candidates, as factors on the calibrated threshold: a coarse grid, then a finer one
# around each channel's best factor.
_COARSE = np.linspace(0.2, 1.2, 21)
_FINE_STEPS = 7


def correct(
    graph: Graph,
    calibration: Any,
    *,
    method: str = "both",
    batch_size: int = 64,
    max_images: int = 512,
    search_images: int = 64,
    dtype: torch.dtype = torch.float32,
    device: Any = "cpu",
    progress: bool = False,
) -> Graph:
    """Correct the biases and thresholds of a calibrated ``graph`` (in place; returns it).

    Parameters
    ----------
    graph : Graph
        A calibrated graph (every spiking population has ``theta`` and ``T``).
    calibration : torch.Tensor or iterable
        Inputs ``(N, ...)``, or an iterable of batches or ``(inputs, labels)`` pairs; the
        first ``max_images`` are used (they are held in memory, with two copies of the
        activations of the populations still needed downstream).
    method : {"both", "bias", "threshold", "none"}
        Which corrections to apply (see the module docstring).
    batch_size : int
        Batch size when ``calibration`` is one tensor.
    max_images : int
        Cap on the calibration inputs used.
    search_images : int
        The threshold search measures its error on the first ``search_images`` inputs (each
        candidate costs a quantisation of the layer; the bias shift uses all of them).
    dtype : torch.dtype
        Precision of the correction pass.
    device : str or torch.device
        Where to run it.
    progress : bool
        Show a progress bar over populations.

    Raises
    ------
    ValueError
        Unknown method, uncalibrated graph, empty data, bad ``max_images``.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction method must be one of {CORRECTIONS}, got {method!r}")
    for name, n in (("max_images", max_images), ("search_images", search_images)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    for pop in graph:
        if pop.spiking and (pop.theta is None or pop.T is None):
            raise ValueError(f"population {pop.name!r} is not calibrated (theta/T missing); "
                             "run calibrate() first")
    graph.meta["correction"] = method
    if method == "none":
        return graph
    x = _inputs(calibration, batch_size, max_images).to(device=device, dtype=dtype)
    with torch.no_grad():
        _Pass(graph, method, search_images).run(x, progress)
    return graph


def default_settings(T: int) -> dict[str, str]:
    """The best measured conversion settings for trains of length ``T``.

    Measured with ``benchmarks/low_T.py`` on the shared CIFAR-10 ResNet-20 (1,017 test images,
    256 calibration images, draw 0; ANN 932 correct): at T = 4, layer thresholds give 878
    correct, per-channel 922, layer + correction 929, per-channel + correction 935 (T = 3:
    671 / 843 / 904 / 920). The default keeps one threshold per layer with the correction: it
    is within 0.3 pt of the ANN at T = 4, and every converted network then also runs in the
    Lava backend's fixed point, which needs one threshold per population; per-channel
    thresholds (``threshold_granularity="channel"``) gain more at T = 3 but run in Norse and
    Lava float only. Above ``LOW_T`` the plain per-layer ``max`` calibration is already
    lossless (T = 16: all 1,017 predictions agree) and stays the default.

    Returns
    -------
    dict
        ``calibration_mode``, ``threshold_granularity`` and ``correction``.
    """
    if T <= LOW_T:
        return {"calibration_mode": "max", "threshold_granularity": "layer",
                "correction": "both"}
    return {"calibration_mode": "max", "threshold_granularity": "layer", "correction": "none"}


def _inputs(calibration: Any, batch_size: int, max_images: int) -> torch.Tensor:
    _, batches, _ = iter_batches(calibration, batch_size)
    out, n = [], 0
    for b in batches:
        out.append(b[: max_images - n])
        n += out[-1].shape[0]
        if n >= max_images:
            break
    return torch.cat(out)


class _Pass:
    """One sequential pass: the ANN's and the quantised network's values side by side."""

    def __init__(self, graph: Graph, method: str, search_images: int):
        self.graph, self.method, self.search = graph, method, search_images
        self.ann: dict[str, torch.Tensor] = {}
        self.quant: dict[str, torch.Tensor] = {}
        self.remaining = {p.name: len(graph.consumers(p.name)) for p in graph}

    def run(self, x: torch.Tensor, progress: bool) -> None:
        for pop in tqdm(list(self.graph), desc="correcting", disable=not progress, leave=False):
            if pop.kind == "input":
                self.ann[pop.name] = x
                self.quant[pop.name] = (self._quantize(pop, x, pop.theta)
                                        if pop.spiking else x)
            elif pop.kind == "maxpool":
                a = pop.attrs
                pool = (a["kernel_size"], a["stride"], a["padding"], a.get("dilation", 1),
                        a.get("ceil_mode", False))
                src = pop.edges[0].source
                pop.theta = self.graph[src].theta  # its codes are its source's: same theta
                self.ann[pop.name] = F.max_pool2d(self.ann[src], *pool)
                self.quant[pop.name] = F.max_pool2d(self.quant[src], *pool)
            else:
                self._population(pop)
            self._release(pop)

    def _population(self, pop: Population) -> None:
        g = self.graph
        u = sum(g.edge_value(e, self.ann[e.source]) for e in pop.edges)
        u_q = sum(g.edge_value(e, self.quant[e.source]) for e in pop.edges)
        if self.method in ("bias", "both"):
            shift = _channel_mean(u - u_q)
            if _add_bias(pop, shift.double().cpu().numpy()):
                u_q = u_q + _per_channel(shift, u_q)
        if pop.kind == "readout":
            self.ann[pop.name], self.quant[pop.name] = u, u_q
            return
        target = _activation(pop, u)
        if self.method in ("threshold", "both"):
            n = self.search
            pop.theta = self._search(pop, u_q[:n], target[:n])
        self.ann[pop.name] = target
        self.quant[pop.name] = self._quantize(pop, u_q, pop.theta)

    def _quantize(self, pop: Population, u: torch.Tensor, theta: Any) -> torch.Tensor:
        g = self.graph
        th = _per_channel(torch.as_tensor(np.asarray(theta), dtype=u.dtype, device=u.device), u)
        return coding.quantize(u, th, pop.T, g.k, g.rounding, pop.kind != "relu")

    def _search(self, pop: Population, u_q: torch.Tensor, target: torch.Tensor) -> Any:
        """Threshold(s) minimising the squared error of the output, per channel if per channel."""
        theta0 = np.asarray(pop.theta, dtype=np.float64)
        per_channel = theta0.ndim == 1
        hi = 1.0 if pop.clip is not None else None  # ReLU6: never above the calibrated cap
        best = self._best_factor(pop, u_q, target, theta0, _grid(_COARSE, hi), per_channel)
        step = _COARSE[1] - _COARSE[0]
        fine = best[None, :] + np.linspace(-step, step, _FINE_STEPS)[:, None]
        fine = np.clip(fine, _COARSE[0] / 2, hi if hi is not None else np.inf)
        best = self._best_factor(pop, u_q, target, theta0, fine, per_channel)
        theta = theta0 * best
        return theta if per_channel else float(theta[0])

    def _best_factor(self, pop: Population, u_q: torch.Tensor, target: torch.Tensor,
                     theta0: np.ndarray, factors: np.ndarray, per_channel: bool) -> np.ndarray:
        """The factor of ``factors`` (candidates, channels or 1) with the least squared error."""
        errors = []
        for f in factors:
            q = self._quantize(pop, u_q, theta0 * (f if per_channel else f[0]))
            e = (q - target).square()
            errors.append(_channel_mean(e) if per_channel else e.mean().reshape(1))
        errors = torch.stack(errors).double().cpu().numpy()  # (candidates, channels or 1)
        pick = errors.argmin(0)
        return factors[pick, np.arange(factors.shape[1])]

    def _release(self, pop: Population) -> None:
        # once per source: ``remaining`` counts consuming populations, and a population may
        # have several edges from one source (``a + 0.5 * a``, a concatenation with itself)
        for src in dict.fromkeys(e.source for e in pop.edges):
            self.remaining[src] -= 1
            if self.remaining[src] == 0:
                self.ann.pop(src, None)
                self.quant.pop(src, None)


def _grid(factors: np.ndarray, hi: float | None) -> np.ndarray:
    f = factors if hi is None else factors[factors <= hi]
    return f[:, None]


def _activation(pop: Population, u: torch.Tensor) -> torch.Tensor:
    """The ANN's activation of ``pop`` for pre-activation ``u``."""
    if pop.kind == "signed":
        return u
    return torch.relu(u) if pop.clip is None else torch.clamp(u, 0.0, pop.clip)


def _channel_mean(v: torch.Tensor) -> torch.Tensor:
    """Mean over everything but the channel (dim 1 of a batch ``(B, C, ...)``)."""
    return v.transpose(0, 1).reshape(v.shape[1], -1).mean(1)


def _per_channel(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-channel (or scalar) tensor shaped to broadcast against a batch ``like``."""
    if c.ndim == 0:
        return c
    return c.reshape(-1, *([1] * (like.ndim - 2)))


def _add_bias(pop: Population, shift: np.ndarray) -> bool:
    """Add ``shift`` (per channel) to the bias of an edge whose last op is conv or linear.

    Such an op's bias reaches every neuron of its output channel unchanged, so adding the shift
    there moves the population's pre-activation by exactly ``shift``. Returns False (and changes
    nothing) when no edge ends in one.
    """
    for e in pop.edges:
        op: Op | None = e.ops[-1] if e.ops else None
        if op is not None and op.kind in ("conv2d", "linear") and op.weight.shape[0] == len(shift):
            old = op.bias if op.bias is not None else np.zeros(op.weight.shape[0])
            op.bias = (np.asarray(old, dtype=np.float64) + shift).astype(op.weight.dtype)
            return True
    return False
