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

ReLU6 populations keep ``theta <= threshold_for_peak(clip, k)`` (``clip / 2`` for k = 2). Max
pooling populations share their source's threshold and length. An analog input gets ``T = 1,
theta = 1`` (it delivers its value in one step); a spike-encoded input is calibrated like a
signed population.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from spikeconverter import coding
from spikeconverter.converters.ir import Graph

__all__ = ["CALIBRATION_MODES", "INPUT_ENCODINGS", "calibrate", "iter_batches"]

CALIBRATION_MODES = ("max", "percentile", "optimal")
INPUT_ENCODINGS = ("analog", "spikes")


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
        The data holds no samples.
    """
    if isinstance(calibration, torch.Tensor):
        if calibration.ndim < 2 or calibration.shape[0] == 0:
            raise ValueError(
                f"calibration data is empty or has no batch dimension (shape "
                f"{tuple(calibration.shape)}); pass a tensor (N, ...) with N >= 1"
            )
        batches = list(torch.split(calibration, batch_size))
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
    if first.ndim < 2 or first.shape[0] == 0:
        raise ValueError(f"calibration batch has shape {tuple(first.shape)}; need (B, ...)")
    if iter(calibration) is calibration:  # a one-shot iterator: keep what was read
        all_batches: Iterable[torch.Tensor] = [first] + [_as_batch(b) for b in it]
        n = len(all_batches)
    else:
        all_batches = _Batches(calibration)
    return first, all_batches, n


def check_T(T: Any, what: str = "T") -> int:
    """``T`` as an int; ValueError naming ``what`` unless it is an integer >= 1."""
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {T!r}")
    return int(T)


class _Stats:
    """Running max and a bounded uniform sample of one population's values."""

    def __init__(self, signed: bool, capacity: int, rng: np.random.Generator):
        self.signed, self.capacity, self.rng = signed, capacity, rng
        self.max = 0.0
        self.samples: list[np.ndarray] = []
        self.count = 0

    def update(self, v: torch.Tensor) -> None:
        a = v.detach().abs() if self.signed else torch.clamp(v.detach(), min=0)
        self.max = max(self.max, float(a.max()))
        flat = v.detach().reshape(-1)
        take = min(flat.numel(), max(self.capacity // 8, 1))
        idx = torch.from_numpy(self.rng.choice(flat.numel(), size=take, replace=False))
        self.samples.append(flat[idx].double().cpu().numpy())
        self.count += take

    def values(self) -> np.ndarray:
        x = np.concatenate(self.samples)
        if x.size > self.capacity:
            x = self.rng.choice(x, size=self.capacity, replace=False)
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
    T = check_T(T)
    _check_options(mode, input_encoding, percentile, headroom)
    if rounding is not None:
        coding.validate_code_params(rounding=rounding)
        graph.rounding = rounding
    if k is not None:
        coding.validate_code_params(k=k)
        graph.k = float(k)
    lengths = dict(T_per_layer or {})
    for name, t in lengths.items():
        if name not in graph.populations:
            raise ValueError(f"T_per_layer names {name!r}, which is not a population; "
                             f"populations: {', '.join(graph.populations)}")
        check_T(t, f"T_per_layer[{name!r}]")

    graph.populations[graph.input].attrs["encoding"] = input_encoding
    first, batches, n = iter_batches(calibration, batch_size)
    rng = np.random.default_rng(seed)
    stats = {
        p.name: _Stats(p.kind == "signed" or p.kind == "input", max_samples, rng)
        for p in graph
        if p.kind in ("relu", "signed") or (p.kind == "input" and input_encoding == "spikes")
    }
    seen = 0
    with torch.no_grad():
        for x in tqdm(batches, total=n, desc="calibrating", disable=not progress, leave=False):
            values = graph.forward(x.to(device=device, dtype=dtype), quantized=False)
            for name, s in stats.items():
                s.update(values[name])
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
    graph.meta.update(calibration_mode=mode, calibration_samples=seen,
                      input_encoding=input_encoding)
    return graph


def _threshold(s: _Stats, pop, mode: str, percentile: float, headroom: float,
               graph: Graph) -> float:
    signed = pop.kind in ("signed", "input")
    k = graph.k
    if s.max <= 0.0:
        theta = 1.0  # never active on the calibration data: any threshold is lossless
    elif mode == "max":
        theta = coding.threshold_for_peak(headroom * s.max, k)
    elif mode == "percentile":
        x = s.values()
        x = np.abs(x) if signed else x[x > 0]
        peak = headroom * float(np.percentile(x, percentile)) if x.size else s.max
        theta = coding.threshold_for_peak(peak, k)
    else:
        theta = coding.optimal_threshold(s.values(), pop.T, k, graph.rounding, signed)
    if pop.clip is not None:
        theta = min(theta, coding.threshold_for_peak(pop.clip, k))
    if not theta > 0:
        theta = coding.threshold_for_peak(s.max, k)
    return float(theta)
