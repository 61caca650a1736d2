"""Calibration: per-population thresholds and window lengths from calibration data.

One pass of the captured ANN (:meth:`Graph.forward` with ``quantized=False``) over the
calibration batches collects, per spiking population, the exact maximum of its activation and a
bounded random sample of its values. The threshold then follows the chosen mode:

* ``"max"``: the top of the code range sits at ``headroom * max``:
  ``theta = coding.threshold_for_peak(headroom * max, k)``, ``headroom * max * (k - 1) / k``
  (``headroom * max / 2`` for the binary code, k = 2);
* ``"percentile"``: the same at ``headroom * P``, ``P`` the ``percentile`` of the positive
  activations (of ``|u|`` for signed populations), robust to outliers;
* ``"optimal"``: the threshold minimising the expected conversion error (paper Eq. 13) on the
  layer's sampled values, :func:`spikeconverter.coding.optimal_threshold`.

With ``granularity="channel"`` every mode is applied to each channel (dim 0 of the population's
shape) separately and ``theta`` is an array, one threshold per channel; a channel that never
activates gets 1.0. ReLU6 populations keep ``theta <= threshold_for_peak(clip, k)`` (``clip / 2``
for k = 2). Max pooling populations share their source's threshold and length. An analog input
gets ``T = 1, theta = 1`` (it delivers its value in one step); a spike-encoded input is
calibrated like a signed population.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from spikeconverter import coding
from spikeconverter.converters.ir import NEURON_KINDS, Graph
from spikeconverter.converters.validate import (
    check_batch,
    check_batch_size,
    check_T,
    check_T_per_layer,
)

__all__ = [
    "CALIBRATION_MODES",
    "INPUT_ENCODINGS",
    "OUTLIER_RATIO",
    "THRESHOLD_GRANULARITIES",
    "calibrate",
    "iter_batches",
]

CALIBRATION_MODES = ("max", "percentile", "optimal")
THRESHOLD_GRANULARITIES = ("layer", "channel")
INPUT_ENCODINGS = ("analog", "spikes")
#: A population whose largest activation exceeds the median of its per-sample maxima this many
#: times gets a warning: with ``theta = max / 2`` over 6 bits of its code serve a few samples.
OUTLIER_RATIO = 64.0


def _as_batch(item: Any) -> torch.Tensor:
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    if not isinstance(item, torch.Tensor):
        raise TypeError(
            f"calibration batches must be tensors or (inputs, labels) pairs, got "
            f"{type(item).__name__}"
        )
    return item


class _Batches:
    """Re-iterable view of an iterable of batches or (inputs, labels) pairs."""

    def __init__(self, data: Iterable):
        self.data = data

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (_as_batch(b) for b in self.data)


def iter_batches(
    calibration: Any, batch_size: int = 64
) -> tuple[torch.Tensor, Iterable[torch.Tensor], int | None]:
    """Normalise calibration data to batches.

    Parameters
    ----------
    calibration : torch.Tensor or iterable
        A tensor of inputs ``(N, ...)`` (split into batches of ``batch_size``), or an iterable
        of batches or ``(inputs, labels)`` pairs (a DataLoader).

    Returns
    -------
    (first batch, re-iterable of all batches, number of batches or None)

    Raises
    ------
    ValueError
        The data holds no samples, ``batch_size`` < 1, or the first batch holds NaN/inf
        (later batches are checked as they are read, by :func:`calibrate`).
    """
    batch_size = check_batch_size(batch_size)
    if isinstance(calibration, torch.Tensor):
        if calibration.ndim < 2 or calibration.shape[0] == 0:
            raise ValueError(
                f"calibration data is empty or has no batch dimension (shape "
                f"{tuple(calibration.shape)}); pass a tensor (N, ...) with N >= 1"
            )
        batches = list(torch.split(calibration, batch_size))
        check_batch(batches[0], "calibration batch 0")
        return batches[0], batches, len(batches)
    if not isinstance(calibration, Iterable):
        raise TypeError(
            f"calibration must be a tensor or an iterable of batches, got "
            f"{type(calibration).__name__}"
        )
    n = len(calibration) if hasattr(calibration, "__len__") else None
    it: Iterator = iter(calibration)
    try:
        first = _as_batch(next(it))
    except StopIteration:
        raise ValueError("calibration data is empty: need at least one batch") from None
    check_batch(first, "calibration batch 0")
    if iter(calibration) is calibration:  # a one-shot iterator: keep what was read
        all_batches: Iterable[torch.Tensor] = [first] + [_as_batch(b) for b in it]
        n = len(all_batches)
    else:
        all_batches = _Batches(calibration)
    return first, all_batches, n


class _Stats:
    """Running max and a bounded uniform sample of one population's values.

    With ``per_channel`` both are kept per channel (dim 1 of a batch): ``max`` is an array and
    :meth:`values` returns ``(C, n)``.
    """

    def __init__(self, signed: bool, capacity: int, rng: np.random.Generator,
                 per_channel: bool = False):
        self.signed, self.capacity, self.rng = signed, capacity, rng
        self.per_channel = per_channel
        self.max: float | np.ndarray = 0.0  # per channel with per_channel
        self.top = 0.0  # the largest value over the whole population
        self.max_batch = 0  # the calibration batch that holds ``top``
        self.sample_max: list[np.ndarray] = []  # each sample's maximum (for outliers)
        self.samples: list[np.ndarray] = []
        self.count = 0

    def update(self, v: torch.Tensor, batch: int) -> None:
        v = v.detach()
        a = v.abs() if self.signed else torch.clamp(v, min=0)
        per_sample = a.reshape(a.shape[0], -1).amax(1)
        self.sample_max.append(per_sample.double().cpu().numpy())
        top = float(per_sample.max())
        if not np.isfinite(top):
            raise ValueError(f"calibration batch {batch} gives non-finite values ({top}) in "
                             "this population: the model overflows on it")
        if top > self.top:
            self.top, self.max_batch = top, batch
        if self.per_channel:
            v = v.transpose(0, 1).reshape(v.shape[1], -1)  # (C, B * rest)
            a = a.transpose(0, 1).reshape(a.shape[1], -1)
            self.max = np.maximum(self.max, a.amax(1).double().cpu().numpy())
        else:
            self.max = max(self.max, top)
        flat = v if self.per_channel else v.reshape(-1)
        rows = v.shape[0] if self.per_channel else 1
        take = min(flat.shape[-1], max(self.capacity // (8 * rows), 1))
        idx = torch.from_numpy(self.rng.choice(flat.shape[-1], size=take, replace=False))
        self.samples.append(flat[..., idx.to(flat.device)].double().cpu().numpy())
        self.count += take

    def values(self) -> np.ndarray:
        x = np.concatenate(self.samples, axis=-1)
        per_row = self.capacity // (x.shape[0] if self.per_channel else 1)
        if x.shape[-1] > max(per_row, 1):
            idx = self.rng.choice(x.shape[-1], size=max(per_row, 1), replace=False)
            x = x[..., idx]
        return x


def _check_options(mode: str, input_encoding: str, percentile: float, headroom: float) -> None:
    if mode not in CALIBRATION_MODES:
        raise ValueError(f"calibration mode must be one of {CALIBRATION_MODES}, got {mode!r}")
    if input_encoding not in INPUT_ENCODINGS:
        raise ValueError(f"input_encoding must be one of {INPUT_ENCODINGS}, got "
                         f"{input_encoding!r}")
    if not (0 < percentile <= 100):
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    if not (isinstance(headroom, (int, float)) and headroom > 0 and np.isfinite(headroom)):
        raise ValueError(f"headroom must be a finite number > 0, got {headroom!r}")


def calibrate(
    graph: Graph,
    calibration: Any,
    T: int = 16,
    *,
    mode: str = "max",
    granularity: str = "layer",
    percentile: float = 99.99,
    headroom: float = 1.0,
    T_per_layer: dict[str, int] | None = None,
    input_encoding: str = "analog",
    rounding: str | None = None,
    k: float | None = None,
    batch_size: int = 64,
    max_samples: int = 100_000,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> Graph:
    """Fill in ``theta`` and ``T`` of every population of ``graph`` (in place; returns it).

    Parameters
    ----------
    graph : Graph
        A captured graph.
    calibration : torch.Tensor or iterable
        Inputs ``(N, ...)``, or an iterable of batches or ``(inputs, labels)`` pairs.
    T : int
        Spike-train length (generate window) of every population not in ``T_per_layer``.
    mode : {"max", "percentile", "optimal"}
        How thresholds are chosen (see the module docstring).
    granularity : {"layer", "channel"}
        One threshold per population, or one per channel (dim 0 of its shape).
    percentile : float
        Percentile (0, 100] for ``mode="percentile"``.
    headroom : float
        Factor > 0 on ``"max"``/``"percentile"`` thresholds (> 1 leaves room above the data).
    T_per_layer : dict of str to int, optional
        Per-population train lengths, by population name.
    input_encoding : {"analog", "spikes"}
        Feed the input as an analog current (one step) or as signed spike trains of length
        ``T_per_layer.get(input, T)``.
    rounding, k : optional
        Override the graph's rounding (``"floor"``/``"nearest"``) and inverse leak.
    batch_size : int
        Batch size when ``calibration`` is one tensor.
    max_samples : int
        Values kept per population for ``"percentile"``/``"optimal"``.
    dtype : torch.dtype
        Precision of the calibration pass.
    device : torch.device or str, optional
        Where the calibration pass runs (default: where the data is).
    progress : bool
        Show a tqdm progress bar.

    Raises
    ------
    ValueError
        Empty data, T < 1, unknown mode/encoding/population names, bad percentile/headroom.
    """
    T = check_T(T, dtype=torch.float64)  # backends refuse what their dtype cannot hold
    _check_options(mode, input_encoding, percentile, headroom)
    if granularity not in THRESHOLD_GRANULARITIES:
        raise ValueError(f"threshold granularity must be one of {THRESHOLD_GRANULARITIES}, got "
                         f"{granularity!r}")
    if rounding is not None:
        coding.validate_code_params(rounding=rounding)
        graph.rounding = rounding
    if k is not None:
        coding.validate_code_params(k=k)
        graph.k = float(k)
    graph.populations[graph.input].attrs["encoding"] = input_encoding
    lengths = check_T_per_layer(graph, T_per_layer, torch.float64)
    first, batches, n = iter_batches(calibration, batch_size)
    rng = np.random.default_rng(seed)
    stats = {
        p.name: _Stats(p.kind == "signed" or p.kind == "input", max_samples, rng,
                       per_channel=granularity == "channel" and p.kind != "input")
        for p in graph
        if p.kind in NEURON_KINDS or (p.kind == "input" and input_encoding == "spikes")
    }
    seen = 0
    with torch.no_grad():
        for i, x in enumerate(tqdm(batches, total=n, desc="calibrating", disable=not progress,
                                   leave=False)):
            check_batch(x, f"calibration batch {i}", tuple(first.shape[1:]))
            values = graph.forward(x.to(device=device, dtype=dtype), quantized=False)
            for name, s in stats.items():
                try:
                    s.update(values[name], i)
                except ValueError as e:
                    raise ValueError(f"population {name!r}: {e}") from None
            seen += x.shape[0]
    if seen == 0:
        raise ValueError("calibration data is empty: need at least one sample")

    for pop in graph:
        if pop.kind == "input":
            if input_encoding == "analog":
                pop.T, pop.theta = 1, 1.0
                continue
        elif pop.kind == "maxpool":
            src = graph[pop.edges[0].source]
            pop.T, pop.theta = src.T, src.theta
            continue
        elif pop.kind == "readout":
            pop.T, pop.theta = None, None
            continue
        pop.T = int(lengths.get(pop.name, T))
        pop.theta = _threshold(stats[pop.name], pop, mode, percentile, headroom, graph)
    graph.meta.update(calibration_mode=mode, threshold_granularity=granularity,
                      calibration_samples=seen,
                      input_encoding=input_encoding)
    return graph


def _warn_outlier(s: _Stats, name: str) -> None:
    """Warn when the maximum that sets theta is far above what a typical sample reaches."""
    typical = float(np.median(np.concatenate(s.sample_max)))
    if typical > 0 and s.top > OUTLIER_RATIO * typical:
        warnings.warn(
            f"calibration: population {name!r} has its maximum {s.top:.3g} (in calibration "
            f"batch {s.max_batch}) {s.top / typical:.3g} times above a typical sample's "
            f"{typical:.3g}: an outlier sets the threshold and most codes go unused; check "
            "that batch, or use calibration_mode='percentile'", RuntimeWarning, stacklevel=4)


def _threshold(s: _Stats, pop, mode: str, percentile: float, headroom: float,
               graph: Graph) -> float | np.ndarray:
    if mode == "max":
        _warn_outlier(s, pop.name)
    if not s.per_channel:
        return _one_threshold(s.max, s.values, pop, mode, percentile, headroom, graph)
    x = s.values() if mode != "max" else None
    return np.array([
        _one_threshold(float(m), lambda c=c: x[c], pop, mode, percentile, headroom, graph)
        for c, m in enumerate(s.max)
    ])


def _one_threshold(peak: float, values, pop, mode: str, percentile: float, headroom: float,
                   graph: Graph) -> float:
    """Threshold of one population or channel from its peak and its sampled ``values()``."""
    signed = pop.kind in ("signed", "input")
    k = graph.k
    if peak <= 0.0:
        theta = 1.0  # never active on the calibration data: any threshold is lossless
    elif mode == "max":
        theta = coding.threshold_for_peak(headroom * peak, k)
    elif mode == "percentile":
        x = values()
        x = np.abs(x) if signed else x[x > 0]
        top = headroom * float(np.percentile(x, percentile)) if x.size else peak
        theta = coding.threshold_for_peak(top, k)
    else:
        theta = coding.optimal_threshold(values(), pop.T, k, graph.rounding, signed)
    if pop.clip is not None:
        theta = min(theta, coding.threshold_for_peak(pop.clip, k))
    if not theta > 0:
        theta = coding.threshold_for_peak(peak, k)
    return float(theta)
