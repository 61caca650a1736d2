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

``method="refit"`` replaces step 1 by a **least-squares refit** of the weights and bias of the
population's weighted edges (the last ``conv2d``/``linear`` op of each): the pre-activation from
the quantised inputs is fitted to the ANN's ``u`` over the calibration data, one ridge
regression per output channel pulled towards the ANN's weights, solved in closed form (the
layer-wise reconstruction of AdaQuant/BRECQ, exact here since the weights stay real; the
"weight calibration" of Li et al. 2021 without its training loop); step 2 follows. It needs
no more than the bias correction's data and is the closer fit to the ANN (higher agreement).

``method="reconstruct"`` follows step 1 by a **gradient reconstruction** of each population
(the layer-wise weight calibration of Li et al. 2021; AdaRound/BRECQ's objective with real
weights): its weights, bias and threshold(s) are trained with Adam on minibatches of the
calibration inputs to minimise the squared error of the population's *quantised* output (from the
already quantised populations before it) against the ANN's activation, through a
straight-through quantiser; step 2 follows. No labels; its cost is ``RECONSTRUCT["steps"]``
minibatch steps per population.

``method="network"`` runs steps 1 and 2, then a **network-wise threshold search**
(:func:`~spikeconverter.converters.network_search.tune_thresholds`): each population's
threshold(s) scaled by the factor that minimises the KL divergence of the quantised network's
*logits* from the ANN's on the calibration images, greedily in topological order. Its cost is a
few forward passes of the network per population (``TUNE``).

``method="block"`` runs steps 1 and 2, then trains each *block* of populations together (a
residual block; one layer of a chain): weights, biases and thresholds, so that the block's
quantised *output* matches the ANN's (BRECQ's block reconstruction with real weights; QDrop as
an option), keeping the result only where it lowers the block's error on the calibration data
(:class:`~spikeconverter.converters.reconstruction.BlockFit`). Its cost is ``BLOCK["steps"]``
minibatch steps per block. With ``NETWORK["steps"] > 0`` a network-level step follows: the
whole network trained at once so that its quantised *logits* match the ANN's
(:func:`~spikeconverter.converters.reconstruction.network_fit`), kept only where it lowers their
error.

The readout gets the bias correction (or the refit, or the reconstruction of its logits) only.
Max pooling populations keep sharing their source's threshold. The result is an ordinary
calibrated graph: every backend runs it unchanged, and the spiking network still equals the
(corrected) quantised ANN exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from spikeconverter import coding
from spikeconverter.converters.calibrate import iter_batches
from spikeconverter.converters.ir import Graph, Op, Population, apply_op
from spikeconverter.converters.network_search import TUNE, tune_thresholds
from spikeconverter.converters.reconstruction import (
    BLOCK,
    NETWORK,
    RECONSTRUCT,
    BlockFit,
    activation,
    blocks,
    network_fit,
    op_bias,
    per_channel,
    reconstruct_population,
    trainable,
)

__all__ = ["BLOCK", "BLOCK_T", "CHANNEL_T", "CORRECTIONS", "DRAW", "LOW_T", "NETWORK",
           "RECONSTRUCT", "TUNE", "WIDE_DRAW", "WIDE_DRAW_STEPS", "WIDE_DRAW_T",
           "calibration_draw", "chosen_settings", "correct", "default_settings", "spread",
           "spread_batches"]

CORRECTIONS = ("none", "bias", "threshold", "both", "refit", "reconstruct", "block", "network")

#: Up to this T, :func:`default_settings` adds both corrections to the thresholds.
LOW_T = 8
#: Up to this T, :func:`default_settings` takes one threshold per channel (else per layer).
CHANNEL_T = 3
#: From T = 2 up to this T, :func:`default_settings` takes the block reconstruction.
BLOCK_T = 3
#: The one T whose best setting depends on the number of calibration images.
WIDE_DRAW_T = 4
#: At T = ``WIDE_DRAW_T``, :func:`default_settings` takes the block reconstruction (per
#: channel, with ``WIDE_DRAW_STEPS`` Adam steps per block) when the calibration data hold at
#: least this many images (BRECQ's number); with fewer it fits its draw and per-layer
#: ``both`` is steadier.
WIDE_DRAW = 1024
#: The block reconstruction's steps per block at T = 4 on ``WIDE_DRAW`` images: three times
#: ``BLOCK["steps"]``, with which 1,024 images are under-fitted (ResNet-32 935 / 936, README).
WIDE_DRAW_STEPS = 600
#: Calibration images drawn when no count is named, at every T but ``WIDE_DRAW_T``
#: (:func:`calibration_draw`); the T = 2 and 3 defaults were measured on this many.
DRAW = 256

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
    max_images: int = 1024,
    search_images: int = 64,
    reconstruct_steps: int | None = None,
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
        Inputs ``(N, ...)``, or an iterable of batches or ``(inputs, labels)`` pairs; all of
        them, or ``max_images`` spread evenly over them when there are more (over the first
        ``8 * max_images`` of a longer iterable, read with at most ``2 * max_images`` of
        them held, :func:`spread_batches`; the inputs used are held in memory, with two
        copies of the activations of the populations still needed downstream).
    method : {"both", "network", "refit", "reconstruct", "block", "bias", "threshold", "none"}
        Which corrections to apply (see the module docstring): ``"both"`` is bias correction
        then threshold search, ``"network"`` is ``"both"`` then the network-wise search,
        ``"refit"`` least-squares refit then threshold search,
        ``"reconstruct"`` bias correction, then gradient reconstruction of weights, bias and
        threshold(s), then threshold search.
    batch_size : int
        Batch size when ``calibration`` is one tensor.
    max_images : int
        Cap on the calibration inputs used (spread evenly over them: a draw sorted by class,
        as an image folder's is, keeps every class).
    search_images : int
        The threshold search measures its error on ``search_images`` inputs spread evenly over
        them (each candidate costs a quantisation of the layer; the bias shift uses all of
        them).
    reconstruct_steps : int, optional
        Adam steps per population of ``"reconstruct"`` (default ``RECONSTRUCT["steps"]``); its
        cost is linear in them.
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
    if reconstruct_steps is None:
        reconstruct_steps = (BLOCK if method == "block" else RECONSTRUCT)["steps"]
    for name, n in (("max_images", max_images), ("search_images", search_images),
                    ("reconstruct_steps", reconstruct_steps)):
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
        # the search's target: the ANN's logits, before the bias correction changes them
        tail = method == "network" or (method == "block" and NETWORK["steps"] > 0)
        ann = graph.forward(x, quantized=False)[graph.output] if tail else None
        cls = _BlockPass if method == "block" else _Pass
        run = cls(graph, "both" if method == "network" else method, search_images,
                  reconstruct_steps)
        run.run(x, progress)
        if method == "network":
            tune_thresholds(graph, x, ann, progress=progress)
        elif tail:
            network_fit(graph, x, ann, run.gen, NETWORK["steps"])
    return graph


def default_settings(T: int, images: int | None = None) -> dict[str, Any]:
    """The best measured conversion settings for trains of length ``T``.

    Measured on the quantised ANN, which the spiking network equals exactly
    (``benchmarks/low_T_quick.py``, ``benchmarks/low_T.py``; README, "Low T without training:
    the measured table"): shared CIFAR-10 ResNet-20 / ResNet-32, 1,017 test images, seeded
    calibration draws 0 / 1 / 2 of the training images; ANN 932 / 944 correct. Correct counts
    (the images the correction used: calibration draw, threshold search):

    ====  ==========================  =========================  =========================
    T     layer + both                channel + both (256, 256)  channel + block, QDrop 0.5
          (256, 64; at T = 4 256)                                (256, 256; [1024, 256])
    ====  ==========================  =========================  =========================
    2     472 / 366 (draw 0)          606 630 636 / 527 523 540  855 838 839 / 829 821 825
                                                                 (search on 64)
    3     892-904 / 888-895           913 914 909 / 914 910 919  919 917 922 / 924 924 926
                                                                 [910 912 912 / 930 937 922]
                                                                 600 steps [1024, 256]:
                                                                 913 920 915 / 927 935 933
    4     929 933 925 / 938 943 946   927 925 934 / 943 930      934 933 935 / 938 937 941
                                                                 [935 932 933 / 940 935 936]
                                                                 600 steps [1024, 256]:
                                                                 929 927 928 / 941 941 941
    6     930-932 / 945-947
    8     930-934 / 945-947
    ====  ==========================  =========================  =========================

    Hence: at T = 2 and 3 (``CHANNEL_T``, ``BLOCK_T``) per-channel thresholds with the block
    reconstruction (``"block"``: BRECQ with QDrop, ``reconstruction.BLOCK``): at T = 2 it is
    200-300 images ahead of ``both`` on every draw; at T = 3, with 256 calibration images, it is
    ahead of ``both`` on every draw of both nets and meets the 2 pt goal (>= 912 / >= 924) on
    all of them (``both``: 2 of 6); 600 steps on 1,024 images is better on ResNet-32 and worse
    on ResNet-20, so T = 3 does not depend on the image count. At T = 4 with at least
    ``WIDE_DRAW`` (1,024) calibration images, per-channel thresholds with the block
    reconstruction at ``WIDE_DRAW_STEPS`` (600) steps per block: the only setting measured
    within the 0.5 pt goal (>= 927 / >= 939) on all six net-draw cells (ResNet-20 with no
    margin: 929 / 927 / 928); on a fourth draw, the CLI's, ResNet-20 925 / ResNet-32 942.
    With fewer images, and from T = 5 to ``LOW_T``, per-layer thresholds with ``both`` (search
    on all 256 images at T = 4): at T = 4 it meets the goal in 4 of 6 cells (the CLI's draw:
    930 / 932), as 200 block steps on 256 or 1,024 images do; on ResNet-32 draw 0 600 steps on
    256 images, cosine decay, a 10 times lower weight learning rate, per-layer thresholds,
    augmented copies of the draw and a network-level step (``NETWORK``) gave 933-936 (goal 939;
    README). Above ``LOW_T`` the plain per-layer ``max`` calibration, already lossless (T = 16:
    all 1,017 predictions agree). The block reconstruction costs 1.5-4 min per conversion on 256
    images (one CPU thread) and 4-13 min at T = 4 on 1,024, against about a minute for ``both``;
    pass ``correction="both"`` for speed.

    Parameters
    ----------
    T : int
        Length of the spike trains.
    images : int, optional
        How many calibration images there are (only ``WIDE_DRAW_T`` depends on it:
        ``WIDE_DRAW``).

    Returns
    -------
    dict
        ``calibration_mode``, ``threshold_granularity``, ``correction``, and the
        ``search_images`` and ``reconstruct_steps`` (None: :func:`correct` 's default) of
        :func:`correct`.
    """
    search = 256 if T in (3, 4) else 64  # the whole calibration draw where it measured best
    if T <= CHANNEL_T:
        return {"calibration_mode": "max", "threshold_granularity": "channel",
                "correction": "block" if 2 <= T <= BLOCK_T else "both", "search_images": search,
                "reconstruct_steps": None}
    if T == WIDE_DRAW_T and images is not None and images >= WIDE_DRAW:
        return {"calibration_mode": "max", "threshold_granularity": "channel",
                "correction": "block", "search_images": search,
                "reconstruct_steps": WIDE_DRAW_STEPS}
    if T <= LOW_T:
        return {"calibration_mode": "max", "threshold_granularity": "layer",
                "correction": "both", "search_images": search, "reconstruct_steps": None}
    return {"calibration_mode": "max", "threshold_granularity": "layer", "correction": "none",
            "search_images": 64, "reconstruct_steps": None}


def chosen_settings(T: int, images: int | None = None, *, calibration_mode: str | None = None,
                    threshold_granularity: str | None = None,
                    correction: str | None = None) -> dict[str, Any]:
    """:func:`default_settings` with the caller's choices in place of the defaults (None:
    the default); a ``correction`` other than the default runs with its own step count
    (``reconstruct_steps`` None). What :func:`~spikeconverter.converters.convert` runs, and
    what the CLI says it will run."""
    best = default_settings(T, images)
    method = correction or best["correction"]
    return {**best, "calibration_mode": calibration_mode or best["calibration_mode"],
            "threshold_granularity": threshold_granularity or best["threshold_granularity"],
            "correction": method,
            "reconstruct_steps": best["reconstruct_steps"] if method == best["correction"]
            else None}


def calibration_draw(T: int, *, threshold_granularity: str | None = None,
                     correction: str | None = None) -> int:
    """How many calibration images to draw for trains of length ``T`` when no count is named.

    ``WIDE_DRAW`` at ``WIDE_DRAW_T``, where :func:`default_settings` takes the block
    reconstruction only with that many (within the 0.5 pt goal on all six measured net-draw
    cells, against 4 of 6 with ``DRAW``), unless the caller names the threshold granularity or
    the correction: the wide draw serves the default setting only. ``DRAW`` at every other T,
    where more images did not help (T = 3 with 1,024 at 200 steps: 910-912 on ResNet-20
    against 917-922 with 256).

    Parameters
    ----------
    T : int
        Length of the spike trains the draw calibrates.
    threshold_granularity, correction : str, optional
        The caller's choices (None: the default's), as for :func:`chosen_settings`.

    Returns
    -------
    int
        The number of images.
    """
    named = threshold_granularity is not None or correction is not None
    return WIDE_DRAW if T == WIDE_DRAW_T and not named else DRAW


#: Reading stops after this many times ``max_images`` inputs (a whole data set passed as the
#: calibration data is not held in memory); ``max_images`` are then spread over those read.
_READ_FACTOR = 8


def _inputs(calibration: Any, batch_size: int, max_images: int) -> torch.Tensor:
    _, batches, _ = iter_batches(calibration, batch_size)
    limit = _READ_FACTOR * max_images
    if isinstance(batches, list):  # held already (a tensor, a one-shot iterator's batches)
        return spread(_first_rows(batches, limit), max_images)
    return spread_batches(batches, max_images, limit)


def _first_rows(batches: list[torch.Tensor], limit: int) -> torch.Tensor:
    out, n = [], 0
    for b in batches:
        out.append(b[: limit - n])
        n += out[-1].shape[0]
        if n >= limit:
            break
    return torch.cat(out)


def spread_batches(batches: Iterable[torch.Tensor], n: int, limit: int) -> torch.Tensor:
    """``n`` rows spread evenly over the first ``limit`` rows of ``batches``, holding at most
    ``2 * n`` rows (and one batch) at a time.

    While at most ``2 * n`` rows have been read this is :func:`spread` of all of them. Beyond
    that every other row held is dropped, and from then on only every ``stride``-th row read
    is kept (the stride doubles at each drop), so that ImageNet-sized inputs of a long
    data loader are not all held; :func:`spread` then picks ``n`` of the rows kept.
    """
    kept: list[torch.Tensor] = []
    held, read, stride = 0, 0, 1
    for batch in batches:
        batch = batch[: limit - read]
        # the rows whose index divides by stride, copied: a view would keep the whole batch
        kept.append(batch[(-read) % stride::stride].clone())
        held, read = held + kept[-1].shape[0], read + batch.shape[0]
        while held > 2 * n:
            kept, stride = [torch.cat(kept)[::2]], 2 * stride
            held = kept[0].shape[0]
        if read >= limit:
            break
    return spread(torch.cat(kept), n)


def spread(x: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` rows of ``x`` spread evenly over it (all of them when it has no more).

    Calibration draws are often sorted by class (an image folder's order): the first ``n``
    would hold a few classes only.
    """
    if x.shape[0] <= n:
        return x
    return x[torch.linspace(0, x.shape[0] - 1, n).round().long().to(x.device)]


class _Pass:
    """One sequential pass: the ANN's and the quantised network's values side by side."""

    def __init__(self, graph: Graph, method: str, search_images: int, steps: int):
        self.graph, self.method, self.search, self.steps = graph, method, search_images, steps
        self.ann: dict[str, torch.Tensor] = {}
        self.quant: dict[str, torch.Tensor] = {}
        self.remaining = {p.name: len(graph.consumers(p.name)) for p in graph}
        self.gen = torch.Generator().manual_seed(0)  # the reconstruction's minibatches
        self.block_errors: list = []  # (block output, error before, after)

    def run(self, x: torch.Tensor, progress: bool) -> None:
        for pop in tqdm(list(self.graph), desc="correcting", disable=not progress, leave=False):
            self._step(pop, x)
            self._release(pop)

    def _step(self, pop: Population, x: torch.Tensor) -> None:
        """Correct one population and store its ANN and quantised values."""
        if pop.kind == "input":
            self.ann[pop.name] = x
            self.quant[pop.name] = self._quantize(pop, x, pop.theta) if pop.spiking else x
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

    def _population(self, pop: Population) -> None:
        g = self.graph
        u = sum(g.edge_value(e, self.ann[e.source]) for e in pop.edges)
        u_q = sum(g.edge_value(e, self.quant[e.source]) for e in pop.edges)
        if self.method == "refit" and _refit(g, pop, self.quant, u):
            u_q = sum(g.edge_value(e, self.quant[e.source]) for e in pop.edges)
        elif self.method in ("bias", "both", "reconstruct", "block"):
            shift = _channel_mean(u - u_q)
            if _add_bias(pop, shift.double().cpu().numpy()):
                u_q = u_q + per_channel(shift, u_q)
        if self.method == "reconstruct" and self._reconstruct(pop, u):
            u_q = sum(g.edge_value(e, self.quant[e.source]) for e in pop.edges)
        if pop.kind == "readout":
            self.ann[pop.name], self.quant[pop.name] = u, u_q
            return
        target = activation(pop, u)
        if self.method in ("threshold", "both", "refit", "reconstruct", "block"):
            pop.theta = self._search(pop, spread(u_q, self.search), spread(target, self.search))
        self.ann[pop.name] = target
        self.quant[pop.name] = self._quantize(pop, u_q, pop.theta)

    def _reconstruct(self, pop: Population, u: torch.Tensor) -> bool:
        with torch.enable_grad():
            return reconstruct_population(self.graph, pop, self.quant, u, self.gen, self.steps)

    def _quantize(self, pop: Population, u: torch.Tensor, theta: Any,
                  check: bool = True) -> torch.Tensor:
        g = self.graph
        th = per_channel(torch.as_tensor(np.asarray(theta), dtype=u.dtype, device=u.device), u)
        return coding.quantize(u, th, pop.T, g.k, g.rounding, pop.kind != "relu",
                               check_finite=check)

    def _search(self, pop: Population, u_q: torch.Tensor, target: torch.Tensor) -> Any:
        """Threshold(s) minimising the squared error of the output, per channel if per channel."""
        if not bool(torch.isfinite(u_q).all()):
            raise ValueError(f"population {pop.name!r}: non-finite pre-activations (NaN or inf) "
                             "in the correction pass; check the calibration inputs")
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
            # u_q was checked once in _search: no re-check per candidate
            q = self._quantize(pop, u_q, theta0 * (f if per_channel else f[0]), check=False)
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


def _channel_mean(v: torch.Tensor) -> torch.Tensor:
    """Mean over everything but the channel (dim 1 of a batch ``(B, C, ...)``)."""
    return v.transpose(0, 1).reshape(v.shape[1], -1).mean(1)


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


# -- least-squares refit ("refit") ----------------------------------------------------------

#: Ridge strength of the refit, relative to the mean diagonal of the Gram matrix: pulls the
#: solution towards the ANN's weights where the calibration data leave it undetermined.
_RIDGE = 1e-3
_CHUNK = 32  # images per im2col block


def _refit(graph: Graph, pop: Population, quant: dict[str, torch.Tensor],
           u: torch.Tensor) -> bool:
    """Refit the weights and bias of ``pop``'s weighted edges by least squares.

    The last op of every edge that ends in a dense ``conv2d`` (groups 1) or ``linear`` op is
    refitted so that the population's pre-activation from the *quantised* sources matches the
    ANN's ``u``: ``min ||sum_e W_e' x_e + b' + rest - u||^2 + ridge ||W' - W||^2``, one linear
    least-squares problem per output channel, solved in closed form (the layer-wise
    reconstruction of post-training quantisation, exact here because the weights stay real).
    Edges without such an op (identity shortcuts) enter as fixed terms ``rest``. Returns False
    (and changes nothing) when no edge can be refitted.
    """
    fit = [e for e in pop.edges if e.ops and _refittable(e.ops[-1])]
    if not fit:
        return False
    fixed = [e for e in pop.edges if all(e is not f for f in fit)]  # by identity: edges may
    rest = sum((graph.edge_value(e, quant[e.source]) for e in fixed),  # compare equal
               torch.zeros_like(u))
    gram, cross = 0.0, 0.0
    for i in range(0, u.shape[0], _CHUNK):  # im2col of a whole batch would be large
        part = slice(i, i + _CHUNK)
        g, c = _normal_equations([_features(e, quant[e.source][part]) for e in fit],
                                 _rows((u - rest)[part]))
        gram, cross = gram + g, cross + c
    old = np.concatenate([_flat_weight(e.ops[-1]) for e in fit] + [np.zeros((1, u.shape[1]))])
    old[-1] = sum(op_bias(e.ops[-1]) for e in fit)
    ridge = _RIDGE * float(np.trace(gram)) / gram.shape[0]
    sol = np.linalg.solve(gram + ridge * np.eye(gram.shape[0]), cross + ridge * old)
    _store(fit, sol)
    return True


def _refittable(op: Op) -> bool:
    if op.kind == "linear":
        return True
    a = op.attrs
    return (op.kind == "conv2d" and a.get("groups", 1) == 1
            and not isinstance(a.get("padding", 0), str))


def _rows(v: torch.Tensor) -> torch.Tensor:
    """``(B, O, ...)`` -> ``(B * positions, O)``: one row per output position."""
    return v.reshape(v.shape[0], v.shape[1], -1).transpose(1, 2).reshape(-1, v.shape[1])


def _features(edge, x: torch.Tensor) -> torch.Tensor:
    """Inputs of the edge's last op, one row per output position (im2col for a conv)."""
    for op in edge.ops[:-1]:
        x = apply_op(op, x)
    op = edge.ops[-1]
    if op.kind == "linear":
        return x
    a = op.attrs
    cols = F.unfold(x, op.weight.shape[2:], dilation=a.get("dilation", 1),
                    padding=a.get("padding", 0), stride=a.get("stride", 1))
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _normal_equations(feats: list[torch.Tensor], target: torch.Tensor):
    """``X^T X`` and ``X^T y`` in float64, ``X`` the features plus a column of ones."""
    x = torch.cat([*feats, feats[0].new_ones((feats[0].shape[0], 1))], 1).double()
    y = target.double()
    return (x.T @ x).cpu().numpy(), (x.T @ y).cpu().numpy()


def _flat_weight(op: Op) -> np.ndarray:
    return np.asarray(op.weight, dtype=np.float64).reshape(op.weight.shape[0], -1).T


def _store(fit: list, sol: np.ndarray) -> None:
    """Write the solution back: each edge's weight, the whole bias on the first edge."""
    start = 0
    for i, e in enumerate(fit):
        op = e.ops[-1]
        n = int(np.prod(op.weight.shape[1:]))
        op.weight = sol[start:start + n].T.reshape(op.weight.shape).astype(op.weight.dtype)
        start += n
        if i == 0:
            others = sum((op_bias(f.ops[-1]) for f in fit[1:]), np.zeros(sol.shape[1]))
            op.bias = (sol[-1] - others).astype(op.weight.dtype)


class _BlockPass(_Pass):
    """The pass of "both", then each block reconstructed against the ANN (:class:`BlockFit`)."""

    def run(self, x: torch.Tensor, progress: bool) -> None:
        for block in tqdm(blocks(self.graph), desc="correcting", disable=not progress,
                          leave=False):
            for pop in block:
                self._step(pop, x)
            # blocks with an input or max pooling keep "both" (BlockFit trains neither)
            if all(p.kind not in ("input", "maxpool") for p in block) and any(
                    trainable(e) for p in block for e in p.edges):
                fit = BlockFit(self.graph, block, self.quant, self.ann[block[-1].name], self.gen)
                self.block_errors.append((pop.name, *fit.fit(self.steps)))
                self._requantize(block)
            for p in block:
                self._release(p)

    def _requantize(self, block: list[Population]) -> None:
        """The block's quantised values from its trained weights and thresholds."""
        for p in block:
            u_q = sum(self.graph.edge_value(e, self.quant[e.source]) for e in p.edges)
            self.quant[p.name] = u_q if p.kind == "readout" else self._quantize(p, u_q, p.theta)
