"""Loihi-style fixed point: 8-bit weights with a per-synapse-group exponent, 24-bit membranes.

Per population ``p`` the converter picks one **gain** ``G`` (integer membrane units per float
unit) from calibration data: ``M``, the largest ``|V|`` of its accumulate phase over the
calibration set (every partial sum, bias and half an LSB included; at least ``2 theta``), is
mapped to ``margin * 2**23``. Then, in the conventions of the fixed-point
:class:`spikeconverter.processes.ILIF` (input and threshold shifted left by 6):

* threshold mantissa ``vth = floor(margin 2**23 theta / (64 M))``, rounded down to a multiple of
  ``2**(t_gen - 6)`` so that nearest rounding's half LSB ``(vth << 6) >> t_gen`` is exact, and
  ``G = 64 vth / theta`` (so the threshold itself is exact);
* each incoming synapse group (one Conv/Dense/Sparse) with float weights ``W`` gets integer
  weights ``m = round(W G / 64 / 2**e)``, 8-bit signed (``|m| <= 127``), with the smallest
  exponent ``e`` in the format that fits, negative where the weights are small (e.g. the
  readout's average-pool + linear matrix: 4,096 tiny weights), so the mantissas keep their 8
  bits. As on Loihi, a mantissa enters the membrane as ``m * 2**(6 + e)`` (``alignment=
  "synapse"``, the default; exponents down to -6): the target neuron applies
  ``2**(6 + a_in_exp)``, ``a_in_exp`` its synapses' smallest exponent, each synapse the rest
  as a left shift, so nothing is floored. ``alignment="floor"`` keeps Lava's bit-accurate Dense
  convention instead (the synapse floor-shifts its *summed* input, less than one unit of
  ``a_in`` per step; bounded and reported as ``floor_error``). Mantissas that are all even
  move to the next exponent, so an exactly representable weight set stays exact. With
  ``split_weights`` (the default) a second synapse group on the same edge carries the first's
  rounding residual at a lower exponent: about 8 more bits of weight precision.
  Dense/Sparse receive ``2 m`` with ``weight_exp = e - 1``: Lava's
  bit-accurate models keep only even mixed-sign weights (8 bits including the sign over a 9-bit
  range) and the shift undoes the factor exactly. Conv receives ``m`` with ``weight_exp = e``
  (the im2col fixed model applies it as Dense does);
* bias ``b G`` as a 13-bit signed mantissa and a per-neuron exponent ``>= 0``;
* the readout (no threshold) gets the largest gain its membrane budget allows (a power of two
  under ``alignment="floor"``) and the logits are ``v_out / G``;
* an analog input is sent as ``round(x 2**q)`` graded spikes, ``q`` chosen so that the first
  synapses' weights keep their 8 bits at exponent -3 (split weights; -6 without, 0 under
  ``alignment="floor"``): the input takes the remaining resolution.

Rounding happens only in weights, bias, the input and (negative weight exponents) the summed
synaptic input; thresholds, leaks, half LSBs and the generate phase are exact.

**Limits by construction.** The planner never emits a value outside its format
(:func:`plan_violations` checks every one): a bias too large for the 13-bit mantissa and an
exponent of at most 7 enters ``j`` steps before the window's end (``bias_shift``), where the
accumulate phase's doublings multiply it by ``2**j`` exactly (the bias-shift trick, same spikes);
only if ``j`` would exceed ``t_acc - 1``, or a weight exponent 7, is the layer's whole scale
(threshold mantissa and gain) halved until they fit. Whatever still breaks a format is refused
with a ValueError naming the layer and the limit; ``allow_violations=True`` simulates it anyway
and lists it under ``violations`` in every report. The readout's gain is the largest that
fits, and its weights' quantisation error is reported (``readout_error``) and bounded
(``max_readout_error``). Core counts, fan-in/out and the chip figures come from
:mod:`spikeconverter.converters.hardware`, the one home of the Loihi 2 figures.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from spikeconverter import coding
from spikeconverter.converters.hardware import LOIHI2, Loihi2, core_mapping
from spikeconverter.converters.ir import NEURON_KINDS, Graph, Population, theta_tensor
from spikeconverter.converters.schedule import Schedule
from spikeconverter.converters.to_lava.plan import LavaPlan, synapse_groups, synapse_shift
from spikeconverter.plugin.kernels import SpikeTrain, spike_max_pool2d, start_generate

__all__ = ["ALIGNMENTS", "ALIGNED_EXP_MIN", "EQUALIZE", "LOIHI2_LIKE", "SPLIT_WEIGHTS",
           "CoreBudget",
           "WEIGHT_EXP_RANGE", "fixed_point_plan",
           "format_report", "membrane_peaks", "plan_violations"]

V_BITS = 24
W_MAX = 127
BIAS_MANT_MAX = 2**12 - 1
#: Exponent of the shared 8-bit weight mantissa (Loihi's synaptic weight exponent).
WEIGHT_EXP_RANGE = (-8, 7)
#: Loihi's MSB alignment: a weight mantissa enters the membrane times ``2**(SHIFT + exp)``.
SHIFT = 6
#: Lowest weight exponent of a plan aligned to the synapses: ``2**(6 + exp)`` is an integer,
#: so every weight is applied exactly (no summed input floored).
ALIGNED_EXP_MIN = -SHIFT
#: How a negative weight exponent is applied (``fixed_point_plan(alignment=)``): "synapse"
#: (Loihi's ``2**(6 + weight_exp)``, exact) or "floor" (Lava's bit-accurate Dense: the
#: summed input floor-shifted before the neuron's ``<< 6``; kept to compare).
ALIGNMENTS = ("synapse", "floor")
#: Default of ``fixed_point_plan(split_weights=)`` and ``LavaNetwork(split_weights=)``.
SPLIT_WEIGHTS = True
#: Default of ``fixed_point_plan(equalize=)``: 1 (off). Evening out weight rows lowered the
#: weight error but not the agreement with float on ResNet-20, T = 8: lower gains make the
#: floor-shifted sums of negative weight exponents cost more (measured, docs/loihi2.md).
EQUALIZE = 1.0
INPUT_KEY = "__input__"
#: Former names of the hardware figures (now :class:`spikeconverter.converters.hardware.Loihi2`).
CoreBudget = Loihi2
LOIHI2_LIKE = LOIHI2


# -- calibration: membrane peaks ----------------------------------------------------------------

def membrane_peaks(graph: Graph, schedule: Schedule, batches: Iterable[torch.Tensor],
                   progress: bool = True) -> dict[str, float]:
    """Largest ``|V|`` over every accumulate step of every population on the batches.

    Simulates the spiking network's accumulate phases exactly (in float64, from the MSB-first
    codes of each population) under the Lava ``schedule``: at accumulate step ``t`` a target
    holds ``k**(t - t_acc + 1) * sum_e W_e prefix_t(source_e)`` (plus bias and half an LSB at
    the last step), where ``prefix_t`` decodes the first ``t + 1`` spikes. Also returns the
    largest ``|input|`` under ``"__input__"``.
    """
    k = float(graph.k)
    peaks: dict[str, float] = {p.name: 0.0 for p in graph if p.kind in (*NEURON_KINDS, "readout")}
    peaks[INPUT_KEY] = 0.0
    bias = {p.name: graph.population_bias(p.name) for p in graph
            if p.kind in (*NEURON_KINDS, "readout")}
    with torch.no_grad():
        for x in tqdm(batches, desc="fixed-point calibration", disable=not progress,
                      leave=False):
            _peaks_batch(graph, schedule, x.double(), k, bias, peaks)
    return peaks


def _peaks_batch(graph: Graph, schedule: Schedule, x: torch.Tensor, k: float,
                 bias: dict[str, torch.Tensor], peaks: dict[str, float]) -> None:
    # spikes (T, B, ...) as int8 (codes are -1/0/1), theta; a population's code is dropped as
    # soon as its last consumer has used it, so memory follows the widest cut of the graph
    codes: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    users = {p.name: 0 for p in graph}
    for pop in graph:
        for e in pop.edges:
            users[e.source] += 1
    peaks[INPUT_KEY] = max(peaks[INPUT_KEY], float(x.abs().max()))
    for pop in graph:
        if pop.kind == "input":
            if pop.attrs.get("encoding", "analog") == "analog":
                codes[pop.name] = (x.unsqueeze(0), torch.ones((), dtype=x.dtype))
            else:
                th = theta_tensor(pop, x.dtype)
                codes[pop.name] = (_spikes(coding.encode(x, th, int(pop.T), k, graph.rounding,
                                                         True)), th)
            continue
        if pop.kind == "maxpool":
            s, th = codes[pop.edges[0].source]
            a = pop.attrs
            pooled = spike_max_pool2d(s.to(x.dtype), a["kernel_size"], a["stride"],
                                      a["padding"], a.get("dilation", 1),
                                      a.get("ceil_mode", False))
            codes[pop.name] = (_spikes(pooled) if s.dtype == torch.int8 else pooled, th)
        else:
            total = _accumulate_peaks(graph, schedule, pop, codes, x.dtype, k, bias, peaks)
            if pop.kind != "readout":
                u = total + bias[pop.name]
                th = theta_tensor(pop, x.dtype)
                codes[pop.name] = (_spikes(coding.encode(u, th, int(pop.T), k, graph.rounding,
                                                         pop.kind == "signed")), th)
        for e in pop.edges:
            users[e.source] -= 1
            if users[e.source] == 0:
                codes.pop(e.source, None)


def _spikes(s: torch.Tensor) -> torch.Tensor:
    """A spike train (values -1/0/1) stored in 1 byte per spike."""
    return s.to(torch.int8)


def _accumulate_peaks(graph: Graph, schedule: Schedule, pop: Population, codes, dtype,
                      k: float,
                      bias: dict[str, torch.Tensor], peaks: dict[str, float]) -> torch.Tensor:
    """Update ``peaks[pop]`` over its accumulate steps; return the summed input (no bias)."""
    t_acc = schedule.t_acc[pop.name]
    longest = max(codes[e.source][0].shape[0] for e in pop.edges)
    # after the longest train the sum only doubles: its peak is at the last step
    steps = sorted(set(range(min(longest, t_acc))) | {t_acc - 1})
    # the last step in ``dtype`` (its sum also feeds the next codes); the steps before it only
    # bound the peak: all of them in one float32 edge call (a batch of len(steps) * B), where
    # torch's convolutions are several times faster than in float64
    total = _edge_sums(graph, pop, codes, k, dtype, [t_acc - 1])[-1]
    peak = 0.0
    if len(steps) > 1:
        inner = _edge_sums(graph, pop, codes, k, torch.float32, steps[:-1])
        scale = torch.tensor([k ** (t - t_acc + 1) for t in steps[:-1]], dtype=inner.dtype)
        v = inner * scale.reshape(-1, *([1] * (inner.dim() - 1)))
        peak = max(float(v.max()), -float(v.min()))
    last = total
    if pop.kind == "readout":
        last = last + bias[pop.name]
    else:
        last = start_generate(last, bias[pop.name], theta_tensor(pop, dtype), int(pop.T), k,
                              graph.rounding, pop.kind == "signed")
    peak = max(peak, float(last.max()), -float(last.min()))
    peaks[pop.name] = max(peaks[pop.name], peak)
    return total


def _edge_sums(graph: Graph, pop: Population, codes, k: float, dtype: torch.dtype,
               steps: list[int]) -> torch.Tensor:
    """``sum_e W_e prefix_t(source_e)`` for every ``t`` in ``steps``: ``(len(steps), B, ...)``,
    each edge in one call on the stacked prefixes."""
    total = None
    for e in pop.edges:
        s, th = codes[e.source]
        prefixes = _prefixes(s, th.to(dtype), k, dtype, [min(t + 1, s.shape[0]) for t in steps])
        y = graph.edge_value(e, prefixes.flatten(0, 1), with_bias=False)
        y = y.reshape(len(steps), -1, *y.shape[1:])
        total = y if total is None else total + y
    return total


def _prefixes(s: torch.Tensor, theta: torch.Tensor, k: float, dtype: torch.dtype,
              counts: list[int]) -> torch.Tensor:
    """The decoded values of the first ``n`` spikes of the train ``s`` ``(T, B, ...)``, for
    each ``n`` in ``counts`` (increasing): ``(len(counts), B, ...)``. Running sums; the
    full train (``n = T``) is decoded by :class:`SpikeTrain`, as the simulation decodes it."""
    T = s.shape[0]
    full = [i for i, n in enumerate(counts) if n == T]
    value = SpikeTrain(theta, T, 0, k=k, frames=s.to(dtype)).value() if full else None
    if len(full) == len(counts):
        return value.expand(len(counts), *value.shape)
    frames = s[: max(n for n in counts if n < T)].to(dtype)  # only the spikes any prefix uses
    w = torch.tensor([k ** -j for j in range(frames.shape[0])], dtype=dtype)
    running = torch.cumsum(frames * w.reshape(-1, *([1] * (frames.dim() - 1))), dim=0)
    out = running[[min(n, frames.shape[0]) - 1 for n in counts]] * theta
    if full:
        out[full] = value
    return out



# -- the integer plan -----------------------------------------------------------------------------

def _exp_for(absmax: float, limit: float) -> int:
    """Smallest integer ``e`` with ``absmax / 2**e <= limit`` (may be negative)."""
    if absmax <= 0:
        return 0
    e = math.ceil(math.log2(absmax / limit))
    while absmax / 2.0 ** e > limit:
        e += 1
    return e


def _round_weights(w: Any, exp: int) -> tuple[Any, float]:
    """``round(w / 2**exp)`` clipped to 8 bits, and its relative RMS error.

    A sparse matrix stays sparse (only its stored entries are rounded; entries that round to
    zero are dropped), so memory follows the synapses, never ``n_out * n_in``.
    """
    values = w.data if sp.issparse(w) else np.asarray(w)
    target = values / 2.0 ** exp
    m = np.clip(np.rint(target), -W_MAX - 1, W_MAX)
    nz = target != 0
    err = float(np.sqrt(np.mean((m - target)[nz] ** 2) / np.mean(target[nz] ** 2))) \
        if nz.any() else 0.0
    if sp.issparse(w):
        out = sp.csr_matrix((m, w.indices.copy(), w.indptr.copy()), shape=w.shape)
        out.eliminate_zeros()
        return out, err
    return m.astype(np.int32), err


def _row_gain(syn: Any, gain: Any) -> np.ndarray:
    """The gain of each weight row: a scalar, or per output channel (conv: ``(O,)``) or per
    target neuron (Dense/Sparse rows, Lava flat order) for per-neuron thresholds."""
    g = np.asarray(gain, dtype=np.float64)
    if g.ndim == 0 or np.all(g == g.flat[0]):
        return np.asarray(float(g.flat[0]))
    if syn.kind != "conv":
        return g.reshape(-1)
    per = g.reshape(-1, g.shape[-1])  # Lava (W, H, C): one row per position
    if not np.all(per == per[0]):
        raise ValueError(f"layer {syn.target!r}: a convolution needs one gain per channel "
                         "(per-neuron thresholds must be per channel)")
    return per[0]


def _scaled_weight(syn: Any, factor: Any) -> Any:
    """``syn.weight`` times each row's ``factor`` (same structure: array, kernel or CSR)."""
    f, w = _row_gain(syn, factor), syn.weight
    if f.ndim == 0:
        return w * float(f)
    if sp.issparse(w):
        return sp.csr_matrix(sp.diags(f) @ w)
    return w * (f[:, None, None, None] if syn.kind == "conv" else f[:, None])


def _scaled_abs_max(syn: Any, factor: Any) -> float:
    """Largest ``|weight * factor|`` of a synapse group (rows scaled by their own factor)."""
    f = _row_gain(syn, factor)
    if f.ndim == 0:
        return syn.abs_max() * float(f)
    w = syn.weight
    if sp.issparse(w):
        rows = abs(w).max(axis=1).toarray().reshape(-1)
    else:
        rows = np.abs(np.asarray(w)).reshape(w.shape[0], -1).max(axis=1, initial=0.0)
    return float(np.max(rows * f, initial=0.0))


def _bias_format(b: np.ndarray, t_acc: int, hw: Loihi2) -> tuple[np.ndarray, np.ndarray, int,
                                                                     float] | None:
    """Integer bias ``b`` (membrane units) as mantissa, exponent in ``[0, bias_exp_max]`` and a
    bias shift in ``[0, t_acc - 1]`` (the bias-shift trick); with the largest absolute error
    in membrane units. None when no shift within the window suffices."""
    b_max = float(np.max(np.abs(b))) if b.size else 0.0
    need = max(0, _exp_for(b_max, BIAS_MANT_MAX))
    shift = max(0, need - hw.bias_exp_max)
    if shift > t_acc - 1:
        return None
    scaled = b / 2.0 ** shift
    exp = np.maximum(0, np.ceil(np.log2(np.maximum(np.abs(scaled), 1e-300) / BIAS_MANT_MAX)))
    exp = np.where(np.abs(scaled) > BIAS_MANT_MAX, exp, 0).astype(np.int64)
    mant = np.rint(scaled / 2.0 ** exp)
    over = np.abs(mant) > BIAS_MANT_MAX  # rounding up to 2**12: one more exponent step
    exp = np.where(over, exp + 1, exp)
    mant = np.rint(scaled / 2.0 ** exp)
    if exp.size and int(exp.max()) > hw.bias_exp_max:
        return None
    err = float(np.max(np.abs(mant * 2.0 ** (exp + shift) - b))) if b.size else 0.0
    return mant, exp, shift, err


def _weight_exp_bounds(kind: str, alignment: str = "synapse") -> tuple[int, int]:
    """Range of the exponent ``e`` of the 8-bit mantissa a synapse kind can take (Dense/Sparse
    get ``2 m`` with ``weight_exp = e - 1``). Aligned to the synapses, the lowest
    ``weight_exp`` is ``ALIGNED_EXP_MIN`` (``2**(6 + weight_exp)`` stays an integer)."""
    lo, hi = WEIGHT_EXP_RANGE
    if alignment == "synapse":
        lo = max(lo, ALIGNED_EXP_MIN)
    return (lo, hi) if kind == "conv" else (lo + 1, hi + 1)


def _synapses_fit(syns: list, gain: Any) -> bool:
    return all(_exp_for(_scaled_abs_max(s, gain) / 64, W_MAX) <= _weight_exp_bounds(s.kind)[1]
               for s in syns)


def _weight_exponent(syn: Any, factor: Any,
                     alignment: str = "synapse") -> tuple[Any, int, float]:
    """Mantissas, exponent and relative RMS error of ``syn.weight * factor``: the smallest
    exponent in the format whose mantissas fit 8 bits, negative where the weights are small
    (the synapse then floor-shifts its summed input); mantissas that are all even move to the
    next exponent (an exactly representable weight set keeps ``e >= 0`` and stays exact)."""
    scaled = _scaled_weight(syn, factor)
    lo, _ = _weight_exp_bounds(syn.kind, alignment)
    exp = max(lo, _exp_for(_scaled_abs_max(syn, factor), W_MAX))
    m, err = _round_weights(scaled, exp)
    m, exp = _canonical(m, exp)
    return m, exp, err


def _canonical(m: Any, exp: int) -> tuple[Any, int]:
    """Mantissas that are all even move to the next exponent while it is negative (the same
    values; no negative exponent where it buys no bits)."""
    while exp < 0:
        data = m.data if sp.issparse(m) else m
        if data.size and np.any(np.asarray(data) % 2):
            break
        m, exp = (m / 2 if sp.issparse(m) else m // 2), exp + 1
    return m, exp


def _choose_threshold(spec: Any, peak: float, budget_v: float, syns: list, t_acc: int,
                      rounding: str, hw: Loihi2,
                      equalize: float = 1.0) -> tuple[Any, Any, str | None]:
    """The largest threshold mantissas (so the finest membrane resolution) whose gains keep
    the membrane, the weight exponents and the bias (with its shift) in their formats; halving
    them moves the whole layer's scale (per-layer scale choice). Returns ``(vth, gain, why)``;
    ``why`` names the limit when none fits.

    With per-neuron (per-channel) thresholds ``theta_i`` each neuron gets its own mantissa
    ``vth_i = floor(budget theta_i / (64 M))`` (a multiple of the rounding step) and gain
    ``G_i = 64 vth_i / theta_i``: every threshold stays exact and every ``G_i <= budget / M``,
    so the layer's peak ``M`` bounds every membrane. A neuron whose threshold is too small for
    that resolution gets the smallest mantissa (its gain is then larger; a clamp of its
    membrane would be counted at run time). One threshold per layer gives scalars, unless
    ``equalize < 1`` lowers some channels' gains (``_row_equalizer``): the threshold
    mantissa is per neuron on Loihi, so a per-channel gain costs nothing but a ``vth`` array.
    """
    theta = np.asarray(spec.vth, dtype=np.float64)
    peak = max(peak, 2 * float(theta.max()))
    step = 2 ** max(0, spec.t_gen - 6) if rounding == "nearest" else 1
    top = (2 ** hw.vth_bits - 1) // step * step
    scale = budget_v * theta / (64 * peak) * _row_equalizer(spec, syns, equalize)
    vth = np.minimum(np.floor(scale / step) * step, top)
    why = (f"no integer threshold fits a {hw.membrane_bits}-bit membrane at T={spec.t_gen} "
           f"(peak {peak:g}, theta {float(theta.max()):g})")
    b = np.asarray(spec.bias, dtype=np.float64)
    while vth.max() >= step:
        vth = np.maximum(vth, step)
        g = 64.0 * vth / theta
        if not _synapses_fit(syns, g):
            why = f"weight exponent > {WEIGHT_EXP_RANGE[1]}"
        elif _bias_format(b * g, t_acc, hw) is None:
            why = (f"bias needs an exponent > {hw.bias_exp_max} even entering the "
                   f"maximum t_acc - 1 = {t_acc - 1} steps early")
        else:
            return _uniform(vth.astype(np.int64)), _uniform(g), None
        vth = (vth // 2) // step * step
    return 0, 0.0, why


def _row_equalizer(spec: Any, syns: list, equalize: float) -> np.ndarray:
    """Per-neuron factor ``f`` in ``[equalize, 1]`` on a population's gain (Lava shape, or 1.0)
    that evens out the weight rows of its largest synapse group: per-channel quantisation scales.

    A group shares one weight exponent, so a row (output channel) whose largest ``|w|`` is a
    fraction of the group's largest keeps only part of the 8 mantissa bits. Lowering the gain
    of the rows above ``equalize`` times the group's largest row to that level lowers the
    group's exponent by ``log2(1 / equalize)``: every row at or above that level then uses the
    full 8 bits, every row below gains ``log2(1 / equalize)`` bits. Gains only go down, so the
    layer's calibrated peak still bounds every membrane (and every threshold stays exact); the
    cost is membrane resolution, at most ``log2(1 / equalize)`` of its 24 bits.
    ``equalize = 1`` (or a population without a convolution / dense group) gives 1.0.
    """
    theta = np.asarray(spec.vth, dtype=np.float64)
    groups = [s for s in syns if s.kind in ("conv", "dense")]
    if equalize >= 1 or not groups or theta.ndim == 0:
        return np.asarray(1.0)
    syn = max(groups, key=lambda s: np.size(s.weight))
    w = np.abs(np.asarray(syn.weight, dtype=np.float64))
    rows = w.reshape(w.shape[0], -1).max(axis=1)  # per output channel (conv) / neuron (dense)
    if syn.kind == "conv":  # rows are scaled per channel by theta's gain: compare G * |w|
        rows = rows * theta.reshape(-1, theta.shape[-1])[0]
    else:
        rows = rows * theta.reshape(-1)
    level = equalize * float(rows.max(initial=0.0))
    factor = np.where(rows > level, level / np.maximum(rows, 1e-300), 1.0)
    if syn.kind == "conv":
        return np.broadcast_to(factor, theta.shape)
    return factor.reshape(theta.shape)


def _uniform(a: np.ndarray) -> Any:
    """A scalar when every entry is the same (one threshold per layer), else the array."""
    return a.flat[0].item() if a.size and np.all(a == a.flat[0]) else a


def _readout_gain(spec: Any, peak: float, budget_v: float, syns: list, t_acc: int,
                  hw: Loihi2, power_of_two: bool = True) -> float:
    """Largest gain that keeps the readout's membrane, weight exponents and bias (with the
    bias shift) in their formats: the finest logits and the smallest weight error. A power of
    two, or (``power_of_two=False``) the whole membrane budget, halved as long as something
    does not fit: the logits are ``v_out / G`` on the host, any ``G`` will do, and a larger one
    leaves the readout's weight mantissas more of their 8 bits."""
    limit = budget_v / peak if peak > 0 else 2.0 ** 16
    g = 2.0 ** math.floor(math.log2(limit)) if power_of_two else limit
    b = np.asarray(spec.bias, dtype=np.float64)
    while g > 2.0 ** -40 and (not _synapses_fit(syns, g)
                              or _bias_format(b * g, t_acc, hw) is None):
        g /= 2
    return g


def fixed_point_plan(plan: LavaPlan, graph: Graph, schedule: Schedule, peaks: dict[str, float],
                     margin: float = 0.5, budget: Loihi2 = LOIHI2, *,
                     allow_violations: bool = False,
                     max_readout_error: float = 0.05,
                     equalize: float = EQUALIZE,
                     alignment: str = "synapse",
                     split_weights: bool = SPLIT_WEIGHTS) -> tuple[LavaPlan, dict[str, Any]]:
    """Turn a float plan into Loihi-style integers (module docstring); also the report.

    Every value of the plan lies in its documented format (:func:`plan_violations`): 8-bit
    weight mantissas with exponents in ``WEIGHT_EXP_RANGE``, 13-bit bias mantissas with
    exponents in ``[0, bias_exp_max]`` and a bias shift within the accumulate phase, 17-bit
    thresholds, membranes sized to ``margin * 2**23``. The method's own freedom is used first
    (the bias-shift trick, then a smaller per-layer scale); what still cannot be met is refused.

    Parameters
    ----------
    allow_violations : bool
        Build the plan even when a limit is broken (marked in the report's ``violations``).
    max_readout_error : float
        Largest relative RMS quantisation error of the readout's weights, and largest bound
        of its floor-shift error (negative weight exponents) relative to its membrane peak.
    equalize : float
        In ``(0, 1]``: per-channel gains even out each iLIF layer's weight rows down to this
        fraction of its largest (``_row_equalizer``); 1 keeps one gain per threshold.
    alignment : {"synapse", "floor"}
        How a negative weight exponent is applied. ``"synapse"`` (default): as Loihi, every
        weight mantissa enters the membrane times ``2**(6 + weight_exp)``, exactly, with
        exponents down to ``ALIGNED_EXP_MIN`` (the target's ``a_in_exp`` and the synapses'
        shifts split it, :func:`~spikeconverter.converters.to_lava.plan.synapse_shift`).
        ``"floor"``: Lava's bit-accurate Dense convention, the summed input floor-shifted by
        a negative exponent before the neuron's ``<< 6`` (exponents down to -8).
    split_weights : bool
        Carry each edge's weights by two 8-bit synapse groups, the second holding the
        rounding residual of the first at a lower exponent (``SynapseSpec.part = 1``):
        about 8 more bits of weight precision for twice the synapses of that edge.

    Returns
    -------
    (LavaPlan, dict)
        The fixed-point plan and the report: ``layers`` (per population: ``neurons``,
        ``synapses``, ``max_fan_in``, ``max_fan_out``, ``membrane_bits``, ``gain``, ``vth``,
        ``weight_exp``, ``a_in_shift``, ``weight_error``, ``floor_error`` (bound of the
        membrane error from
        floor-shifted sums, in float units), ``bias_exp_max``, ``bias_shift``, ``bias_error``,
        ``cores``, ``limits``, ``saturations`` after a fixed-point run), ``budget``, ``cores``,
        ``input_shift``, ``readout_error``, ``readout_floor_error``, ``violations``,
        ``allow_violations``.

    Raises
    ------
    ValueError
        A value cannot be brought into its format (naming the layer and the limit), or
        ``k != 2``.
    """
    if float(graph.k) != 2.0:
        raise ValueError(f"fixed point needs k = 2 (a left shift), the graph has k = {graph.k}")
    if not 0 < equalize <= 1:
        raise ValueError(f"equalize must be in (0, 1], got {equalize!r}")
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    out = copy.deepcopy(plan)
    out.select_tag = "fixed_pt"
    budget_v = margin * 2.0 ** (V_BITS - 1)
    gains: dict[str, float] = {}
    layers: dict[str, dict[str, Any]] = {}
    violations: list[str] = []
    for spec in out.populations.values():
        if spec.kind not in (*NEURON_KINDS, "readout"):
            continue
        syns = [s for s in out.synapses if s.target == spec.name and s.source != out.input]
        peak = float(peaks.get(spec.name, 0.0))
        if spec.kind == "readout":
            g = _readout_gain(spec, peak, budget_v, syns, spec.t_acc, budget,
                              power_of_two=alignment != "synapse")
            layers[spec.name] = {"gain": g}
        else:
            vth, g, why = _choose_threshold(spec, peak, budget_v, syns, spec.t_acc,
                                            out.rounding, budget, equalize)
            if why is not None:
                violations.append(f"layer {spec.name!r}: {why}")
                theta = np.asarray(spec.vth, dtype=np.float64)
                vth = _uniform(np.maximum(1, np.floor(budget_v * theta / (64 * max(
                    peak, 1e-300)))).astype(np.int64))
                g = _uniform(64.0 * vth / theta)
            spec.vth = vth
            layers[spec.name] = {"gain": float(np.min(g)), "vth": int(np.max(vth))}
            if np.ndim(g):
                layers[spec.name].update(gain_max=float(np.max(g)), vth_min=int(np.min(vth)))
        gains[spec.name] = g
        _set_bias(spec, g, budget, layers[spec.name])
        layers[spec.name].update(membrane_bits=math.log2(peak * float(np.max(g)))
                                 if peak > 0 else 0.0,
                                 weight_exp={}, weight_error={}, floor_error=0.0)
    _set_input_shift(out, peaks, gains, _input_weight_exp(alignment, split_weights))
    _set_weights(out, gains, layers, alignment, split_weights)
    out.output_gain = gains[out.output]
    report = _connectivity_report(graph, layers, budget, synapse_groups(out))
    readout_error = max(layers[out.output]["weight_error"].values(), default=0.0)
    if readout_error > max_readout_error:
        violations.append(f"layer {out.output!r}: readout weight error {readout_error:.3g} > "
                          f"{max_readout_error:g}")
    floor_error = layers[out.output]["floor_error"] / max(
        float(peaks.get(out.output, 0.0)), 1e-300)
    if floor_error > max_readout_error:
        violations.append(f"layer {out.output!r}: readout floor-shift error {floor_error:.3g} "
                          f"of its peak > {max_readout_error:g}")
    violations += plan_violations(out, budget)
    report.update(input_shift=out.input_shift, margin=margin, readout_error=readout_error,
                  readout_floor_error=floor_error,
                  violations=sorted(set(violations)), allow_violations=bool(allow_violations))
    if report["violations"] and not allow_violations:
        raise ValueError("the fixed-point plan breaks Loihi 2 number formats: "
                         + "; ".join(report["violations"])
                         + " (pass allow_violations=True to simulate it anyway)")
    if report["violations"]:
        warnings.warn("simulating a fixed-point plan that breaks Loihi 2 number formats "
                      "(allow_violations=True): " + "; ".join(report["violations"]),
                      stacklevel=2)
    return out, report


def _set_bias(spec: Any, g: float, hw: Loihi2, info: dict[str, Any]) -> None:
    b = np.asarray(spec.bias, dtype=np.float64) * g
    fmt = _bias_format(b, spec.t_acc, hw)
    if fmt is None:  # a refused layer (with allow_violations: simulated, unbounded exponent)
        exp = np.maximum(0, np.ceil(np.log2(np.maximum(np.abs(b), 1e-300) / BIAS_MANT_MAX)))
        exp = np.where(np.abs(b) > BIAS_MANT_MAX, exp, 0).astype(np.int64)
        fmt = (np.rint(b / 2.0 ** exp), exp, 0, 0.0)
    spec.bias, spec.bias_exp, spec.bias_shift, err = fmt
    info.update(bias_exp_max=int(np.max(spec.bias_exp)) if np.size(spec.bias_exp) else 0,
                bias_shift=int(spec.bias_shift), bias_error=err)


def _input_weight_exp(alignment: str, split: bool) -> int:
    """The exponent an analog input's synapses aim at: 0 under the floor convention; aligned
    to the synapses, the lowest exact one (-6), the input taking the 6 bits of resolution
    instead; with split weights -3 (3 bits for the input, 3 for the weights' low group)."""
    if alignment != "synapse":
        return 0
    return ALIGNED_EXP_MIN // 2 if split else ALIGNED_EXP_MIN


def _set_input_shift(out: LavaPlan, peaks: dict[str, float], gains: dict[str, float],
                     weight_exp: int = 0) -> None:
    """Analog input: one shift for all its synapses, the smallest they want (>= 0), that
    puts their exponent at ``weight_exp`` (the rest of the scale sits in the input, sent as
    ``round(x * 2**shift)``: the finer, the less the input is rounded)."""
    input_edges = [s for s in out.synapses if s.source == out.input]
    if out.input_encoding != "analog" or not input_edges:
        return
    shift = max(0, min(_exp_for(_scaled_abs_max(s, gains[s.target]) / 64, W_MAX)
                       for s in input_edges) - weight_exp)
    x_max = float(peaks.get(INPUT_KEY, 0.0))
    if x_max > 0:  # the graded input must fit 24 bits
        shift = min(shift, math.floor(math.log2((2.0 ** (V_BITS - 1) - 1) / x_max)))
    out.input_shift = int(shift)


def _set_weights(out: LavaPlan, gains: dict[str, float],
                 layers: dict[str, dict[str, Any]], alignment: str = "synapse",
                 split: bool = False) -> None:
    analog = out.input_encoding == "analog"
    synapses = []
    for syn in out.synapses:
        factor = gains[syn.target] / 64
        if analog and syn.source == out.input:
            factor /= 2.0 ** out.input_shift  # that part of the scale sits in the input
        scaled = _scaled_weight(syn, factor)
        m, exp, err = _weight_exponent(syn, factor, alignment)
        low = _low_part(syn, scaled, m, exp, alignment) if split else None
        _set_mantissas(syn, m, exp)
        synapses.append(syn)
        if low is not None:
            synapses.append(copy.copy(syn))
            _set_mantissas(synapses[-1], low[0], low[1])
            synapses[-1].part, err = 1, low[2]
        layers[syn.target]["weight_exp"][syn.source] = exp
        layers[syn.target]["weight_error"][syn.source] = err
    out.synapses = synapses
    if alignment == "synapse":
        _align_to_synapses(out)
    for syn in out.synapses:
        shift = synapse_shift(out, syn)
        if shift < 0:  # the floored sum: < 1 unit of a_in (64 of V) per accumulate step
            spec = out.populations[syn.target]
            unit = 2.0 ** (SHIFT + spec.a_in_exp)
            layers[syn.target]["floor_error"] += (unit * (2.0 ** spec.t_acc - 1)
                                                  / float(np.min(gains[syn.target])))
    for name, info in layers.items():
        info["a_in_shift"] = SHIFT + out.populations[name].a_in_exp


def _set_mantissas(syn: Any, m: Any, exp: int) -> None:
    """Store 8-bit mantissas ``m`` with exponent ``exp`` (Dense/Sparse: ``2 m``, ``exp - 1``:
    Lava's bit-accurate models keep only even mixed-sign weights)."""
    if syn.kind == "conv":
        syn.weight, syn.weight_exp = m, exp
    else:
        syn.weight, syn.weight_exp = 2 * m, exp - 1


def _low_part(syn: Any, scaled: Any, m: Any, exp: int,
              alignment: str) -> tuple[Any, int, float] | None:
    """Split weights: the rounding residual ``scaled - m 2**exp`` as a second 8-bit synapse
    group on the same edge, at the smallest exponent that holds it (at most 8 below ``exp``,
    not below the format's lowest); with the relative RMS error of both parts together.
    None when the residual is zero or no lower exponent is available."""
    residual = scaled - m * 2.0 ** exp
    values = residual.data if sp.issparse(residual) else np.asarray(residual)
    r_max = float(np.max(np.abs(values), initial=0.0))
    lo, _ = _weight_exp_bounds(syn.kind, alignment)
    low_exp = max(lo, _exp_for(r_max, W_MAX))
    if r_max == 0 or low_exp >= exp:
        return None
    m2, _ = _round_weights(residual, low_exp)
    m2, low_exp = _canonical(m2, low_exp)
    if low_exp >= exp or not np.any(m2.data if sp.issparse(m2) else m2):
        return None
    total = m * 2.0 ** exp + m2 * 2.0 ** low_exp
    diff = (total - scaled)
    d = diff.data if sp.issparse(diff) else np.asarray(diff)
    ref = scaled.data if sp.issparse(scaled) else np.asarray(scaled)
    err = float(np.sqrt(np.sum(d ** 2) / max(np.sum(ref ** 2), 1e-300)))
    return m2, low_exp, err


def _align_to_synapses(out: LavaPlan) -> None:
    """Loihi's alignment: every weight enters the membrane as ``m * 2**(6 + weight_exp)``.
    Each target applies ``2**(6 + a_in_exp)`` with ``a_in_exp`` its synapses' smallest
    (negative) exponent, each synapse the rest, ``2**(weight_exp - a_in_exp)`` (a left
    shift): no summed input is floored, and the messages stay as small as they can."""
    lowest: dict[str, int] = {}
    for syn in out.synapses:
        lowest[syn.target] = min(lowest.get(syn.target, 0), int(syn.weight_exp))
    for name, e in lowest.items():
        out.populations[name].a_in_exp = max(e, -SHIFT)


def plan_violations(plan: LavaPlan, hw: Loihi2 = LOIHI2) -> list[str]:
    """Every value of a fixed-point plan outside its documented format, as messages naming the
    layer and the limit (empty when the plan is deployable)."""
    bad: list[str] = []
    lo, hi = WEIGHT_EXP_RANGE
    for syn in plan.synapses:
        # a sparse matrix's stored values only: its zeros are valid mantissas, and densifying
        # an identity shortcut between 16,384-neuron layers would take 2 GB
        w = syn.weight.data if sp.issparse(syn.weight) else np.asarray(syn.weight)
        m = w if syn.kind == "conv" else w / 2
        if not np.all(m == np.rint(m)) or (m.size and np.abs(m).max() > W_MAX + 1):
            bad.append(f"layer {syn.target!r}: weights from {syn.source!r} are not 8-bit "
                       "mantissas")
        if not lo <= syn.weight_exp <= hi:
            bad.append(f"layer {syn.target!r}: weight exponent {syn.weight_exp} from "
                       f"{syn.source!r} outside [{lo}, {hi}]")
    for spec in plan.populations.values():
        if spec.kind not in (*NEURON_KINDS, "readout"):
            continue
        bad += _population_violations(spec, hw)
    return bad


def _population_violations(spec: Any, hw: Loihi2) -> list[str]:
    bad = []
    mant, exp = np.asarray(spec.bias), np.asarray(spec.bias_exp)
    if np.any(mant != np.rint(mant)) or np.any(np.abs(mant) > BIAS_MANT_MAX + 1):
        bad.append(f"layer {spec.name!r}: bias mantissa outside {hw.bias_mant_bits} bits")
    if exp.size and (exp.min() < 0 or exp.max() > hw.bias_exp_max):
        bad.append(f"layer {spec.name!r}: bias exponent {int(exp.max())} outside "
                   f"[0, {hw.bias_exp_max}]")
    if not -SHIFT <= spec.a_in_exp <= 0:
        bad.append(f"layer {spec.name!r}: input alignment exponent {spec.a_in_exp} outside "
                   f"[{-SHIFT}, 0] (the neuron's share of 2**(6 + weight_exp))")
    if not 0 <= spec.bias_shift <= spec.t_acc - 1:
        bad.append(f"layer {spec.name!r}: bias shift {spec.bias_shift} outside "
                   f"[0, {spec.t_acc - 1}]")
    if spec.kind != "readout":
        vth = np.asarray(spec.vth)
        if np.any(vth != np.rint(vth)) or np.any(vth < 1) or np.any(vth >= 2 ** hw.vth_bits):
            bad.append(f"layer {spec.name!r}: threshold mantissa outside [1, "
                       f"2**{hw.vth_bits} - 1]")
    return bad


def _connectivity_report(graph: Graph, layers: dict[str, dict[str, Any]], hw: Loihi2,
                         groups: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Per layer: neurons, stored synapses, fan-in/out and cores from the core mapping
    (:func:`spikeconverter.converters.hardware.core_mapping`); warns on fan-in/out limits."""
    mapping = core_mapping(graph, hw, synapse_groups=groups)
    for name, info in layers.items():
        m = mapping["layers"][name]
        info.update(neurons=m["neurons"], synapses=m["stored_weights"],
                    connections=m["connections"], max_fan_in=m["max_fan_in"],
                    max_fan_out=m["max_fan_out"], cores=m["cores"], limits=list(m["limits"]),
                    saturations=None)
        if info["limits"]:
            warnings.warn(f"layer {name!r} breaks a Loihi 2 mapping limit: "
                          f"{'; '.join(info['limits'])}", stacklevel=3)
    totals = mapping["totals"]
    return {"layers": layers, "budget": asdict(hw), "cores": totals["cores"],
            "chips": totals["chips"], "fits": totals["fits"]}


def format_report(report: dict[str, Any]) -> str:
    """The per-layer report as a text table."""
    head = (f"{'layer':<14}{'neurons':>9}{'synapses':>11}{'fan-in':>8}{'fan-out':>9}"
            f"{'V bits':>8}{'w err':>8}{'w exp':>7}{'b exp':>7}{'b sh':>6}{'sat':>7}"
            f"{'cores':>7}  limits")
    rows = [head, "-" * len(head)]
    for name, i in report["layers"].items():
        werr = max(i["weight_error"].values(), default=0.0)
        wexp = max(i["weight_exp"].values(), default=0)
        sat = "-" if i.get("saturations") is None else str(i["saturations"])
        rows.append(f"{name[:13]:<14}{i['neurons']:>9}{i['synapses']:>11}{i['max_fan_in']:>8}"
                    f"{i['max_fan_out']:>9}{i['membrane_bits']:>8.1f}{werr:>8.4f}{wexp:>7}"
                    f"{i['bias_exp_max']:>7}{i['bias_shift']:>6}{sat:>7}{i['cores']:>7}  "
                    f"{'; '.join(i['limits'])}")
    rows.append(f"total cores ~ {report['cores']} ({report['chips']} chip(s) of "
                f"{report['budget']['cores_per_chip']} cores); input sent as "
                f"round(x * 2**{report['input_shift']}); readout weight error "
                f"{report['readout_error']:.4f}")
    if report.get("violations"):
        rows.append("LIMITS VIOLATED (allow_violations=True): " + "; ".join(report["violations"]))
    return "\n".join(rows)
