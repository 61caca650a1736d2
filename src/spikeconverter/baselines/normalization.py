"""Data-based threshold normalisation for rate-coded conversion (Rueckauer et al. 2017).

A rate-coded IF neuron that receives the analog current ``u`` of its ANN unit every step fires at
rate ``u / lambda`` when its threshold is ``lambda`` and each of its spikes carries the value
``lambda`` downstream. Choosing ``lambda`` per layer as the largest activation seen on calibration
data (threshold balancing, Sengupta et al. 2019) keeps every rate in [0, 1]; the ``p``-th
percentile of the positive activations (Rueckauer's "robust normalisation") trades a little
clipping of outliers for faster, more precise rates. Scaling the weights by
``lambda_{l-1} / lambda_l`` with thresholds 1 is the same network; we keep the ANN's weights and
put ``lambda`` in the threshold and in the spike's payload, which is easier to read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from spikeconverter.converters.ir import Graph
from spikeconverter.data import iter_input_batches

NORMALIZATION_MODES = ("max", "percentile")

__all__ = ["NORMALIZATION_MODES", "rate_thresholds"]


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
    names = [p.name for p in graph if p.kind in ("relu", "signed")]
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
