"""Network-wise threshold search: each population's threshold scale chosen by the network's output.

The layer-wise correction (:mod:`spikeconverter.converters.correction`) picks each threshold to
minimise the error of *its own* quantised output. At small ``T`` that is not what matters: an
error that a later layer amplifies costs more than one that it ignores, and a coarse code's
errors can cancel in the logits. This pass looks at the output instead: after the layer-wise
correction, it walks the spiking populations in topological order and multiplies each one's
threshold(s) (one factor for the whole population, per-channel thresholds keeping their ratios)
by the candidate of ``TUNE["factors"]`` (or 1) that minimises the KL divergence of the quantised
network's logits from the float ANN's on the calibration images (greedy coordinate descent, the
"network-wise" threshold search of SNN conversion and post-training quantisation). The
quantised values of the populations before the one being searched are kept, so each candidate
costs the forward pass of the populations after it only. No labels are used.

The result is an ordinary calibrated graph: only thresholds change, so the spiking network still
equals the quantised ANN exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from spikeconverter.converters.ir import Graph, Population

__all__ = ["TUNE", "tune_thresholds"]

#: Candidate factors on each population's threshold(s), coordinate sweeps over the network, and
#: the least relative decrease of the KL that a candidate must bring to be taken
#: (benchmarks/low_T_quick.py, ``--correction network``, measured these).
TUNE = {"factors": (0.8, 0.9, 1.1, 1.25), "sweeps": 1, "min_gain": 1e-3}


def tune_thresholds(graph: Graph, x: torch.Tensor, ann_logits: torch.Tensor | None = None, *,
                    factors: Any = None, sweeps: int | None = None,
                    progress: bool = False) -> dict[str, float]:
    """Scale each spiking population's threshold(s) to minimise the KL of the network's logits.

    Parameters
    ----------
    graph : Graph
        A calibrated (and usually corrected) graph; changed in place.
    x : torch.Tensor
        Calibration inputs ``(N, ...)``, all evaluated as one batch (in ``x``'s dtype/device).
    ann_logits : torch.Tensor, optional
        The ANN's logits on ``x``: the target. A correction that changed biases changes the
        graph's float forward pass too, so pass the logits computed before it; default: the
        graph's own float forward pass.
    factors : sequence of float, optional
        Candidate factors besides 1 (default ``TUNE["factors"]``).
    sweeps : int, optional
        Passes over the network (default ``TUNE["sweeps"]``).
    progress : bool
        Show a progress bar over populations.

    Returns
    -------
    dict
        ``kl_before`` and ``kl_after``: the mean KL of the quantised logits from the ANN's.

    Raises
    ------
    ValueError
        Empty ``x``, no factor, a factor that is not a positive finite number, bad ``sweeps``.
    """
    factors = tuple(TUNE["factors"] if factors is None else factors)
    sweeps = TUNE["sweeps"] if sweeps is None else sweeps
    if not factors or not all(isinstance(f, (int, float)) and np.isfinite(f) and f > 0
                              for f in factors):
        raise ValueError(f"factors must be positive finite numbers, got {factors!r}")
    if isinstance(sweeps, bool) or not isinstance(sweeps, int) or sweeps < 1:
        raise ValueError(f"sweeps must be an integer >= 1, got {sweeps!r}")
    if len(x) == 0:
        raise ValueError("tune_thresholds needs at least one calibration input")
    with torch.no_grad():
        if ann_logits is None:
            ann_logits = graph.forward(x, quantized=False)[graph.output]
        if ann_logits.shape[0] != x.shape[0]:
            raise ValueError(f"ann_logits has {ann_logits.shape[0]} rows for {x.shape[0]} inputs")
        target = F.log_softmax(ann_logits, 1)
        values = graph.forward(x, quantized=True)
        start = best = _kl(target, values[graph.output])
        order = list(graph)
        tunable = [i for i, p in enumerate(order) if _tunable(p)]
        for _ in range(sweeps):
            for i in tqdm(tunable, desc="network search", disable=not progress, leave=False):
                values, best = _coordinate(graph, order[i], i, values, target, best, factors)
    return {"kl_before": start, "kl_after": best}


def _tunable(pop: Population) -> bool:
    # inputs code the image (no search), max pooling shares its source's threshold
    return pop.spiking and pop.kind not in ("input", "maxpool")


def _coordinate(graph: Graph, pop: Population, index: int, values: dict, target: torch.Tensor,
                best: float, factors: tuple) -> tuple[dict, float]:
    """The best factor of one population's threshold(s); the values and KL it leaves."""
    theta0, keep = pop.theta, None
    for f in factors:
        _set_theta(graph, pop, _scaled(theta0, f))
        trial = graph.forward_from(dict(values), index)
        loss = _kl(target, trial[graph.output])
        if loss < best * (1.0 - TUNE["min_gain"]):
            best, keep, chosen = loss, trial, pop.theta
    _set_theta(graph, pop, theta0 if keep is None else chosen)
    return (values if keep is None else keep), best


def _scaled(theta: Any, f: float) -> Any:
    if np.ndim(theta) == 0:
        return float(theta) * f
    return np.asarray(theta, dtype=np.float64) * f


def _set_theta(graph: Graph, pop: Population, theta: Any) -> None:
    """Set ``pop``'s threshold and that of the max pooling populations fed by it."""
    pop.theta = theta
    for p in graph:
        if p.kind == "maxpool" and p.edges[0].source == pop.name:
            _set_theta(graph, p, theta)


def _kl(target: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean KL divergence of ``softmax(logits)`` from ``exp(target)`` (log-probabilities)."""
    return float(F.kl_div(F.log_softmax(logits, 1), target, log_target=True,
                          reduction="batchmean"))
