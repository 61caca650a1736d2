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
  exponent ``e >= 0`` that fits (a negative exponent would floor-shift the summed input and lose
  more than it gains). Dense/Sparse receive ``2 m`` with ``weight_exp = e - 1``: Lava's
  bit-accurate models keep only even mixed-sign weights (8 bits including the sign over a 9-bit
  range) and the shift undoes the factor exactly. Conv receives ``m`` with ``weight_exp = e``
  (the im2col fixed model applies it as Dense does);
* bias ``b G`` as a 13-bit signed mantissa and a per-neuron exponent ``>= 0``;
* the readout (no threshold) gets a power-of-two gain and the logits are ``v_out / G``;
* an analog input is sent as ``round(x 2**q)`` graded spikes, ``q`` chosen so that the first
  synapses' weights keep their 8 bits.

Rounding happens only in weights, bias and the input; thresholds, leaks, half LSBs and the
generate phase are exact, so the integer network differs from the float one only through
quantised synaptic weights.

**A Loihi-2-like core budget** (:data:`LOIHI2_LIKE`). These are approximations from public
Loihi 2 descriptions (Intel's 2021 Loihi 2 brief and Lava documentation), used only to warn:
128 neuro-cores per chip; up to 8192 neurons per core; about 128 KiB of synaptic memory per
core, taken here as 65,536 synapses per core (8-bit weights plus index overhead; convolutional
and shared-weight encodings can store far more); fan-in and fan-out of one neuron up to 4096
(the axon tables of a core); 24-bit signed membrane; 8-bit signed weights with a 3-bit-style
shared exponent; 13-bit bias mantissa with an exponent of at most 7; 17-bit threshold
mantissa. A layer's core count is ``max(ceil(neurons / 8192), ceil(synapses / 65536))``.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from spikeconverter import coding
from spikeconverter.converters.counting import fan_in, fan_outs
from spikeconverter.converters.ir import Graph, Population, theta_tensor
from spikeconverter.converters.schedule import Schedule
from spikeconverter.converters.to_lava.plan import LavaPlan
from spikeconverter.plugin.kernels import SpikeTrain, spike_max_pool2d, start_generate

__all__ = ["LOIHI2_LIKE", "CoreBudget", "fixed_point_plan", "format_report", "membrane_peaks"]

V_BITS = 24
W_MAX = 127
BIAS_MANT_MAX = 2**12 - 1
INPUT_KEY = "__input__"


@dataclass(frozen=True)
class CoreBudget:
    """Limits of one neuromorphic core and chip (approximate; see the module docstring)."""

    cores: int = 128
    neurons_per_core: int = 8192
    synapses_per_core: int = 65_536
    max_fan_in: int = 4096
    max_fan_out: int = 4096
    membrane_bits: int = 24
    weight_bits: int = 8
    bias_mant_bits: int = 13
    bias_exp_max: int = 7
    vth_bits: int = 17


LOIHI2_LIKE = CoreBudget()


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
    peaks: dict[str, float] = {p.name: 0.0 for p in graph if p.kind in ("relu", "signed",
                                                                          "readout")}
    peaks[INPUT_KEY] = 0.0
    bias = {p.name: graph.population_bias(p.name) for p in graph
            if p.kind in ("relu", "signed", "readout")}
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


def _round_weights(w: Any, factor: float, exp: int) -> tuple[Any, float]:
    """``round(w * factor / 2**exp)`` clipped to 8 bits, and its relative RMS error.

    A sparse matrix stays sparse (only its stored entries are rounded; entries that round to
    zero are dropped), so memory follows the synapses, never ``n_out * n_in``.
    """
    values = w.data if sp.issparse(w) else np.asarray(w)
    target = values * factor / 2.0 ** exp
    m = np.clip(np.rint(target), -W_MAX - 1, W_MAX)
    nz = target != 0
    err = float(np.sqrt(np.mean((m - target)[nz] ** 2) / np.mean(target[nz] ** 2))) \
        if nz.any() else 0.0
    if sp.issparse(w):
        out = sp.csr_matrix((m, w.indices.copy(), w.indptr.copy()), shape=w.shape)
        out.eliminate_zeros()
        return out, err
    return m.astype(np.int32), err


def fixed_point_plan(plan: LavaPlan, graph: Graph, schedule: Schedule, peaks: dict[str, float],
                     margin: float = 0.5,
                     budget: CoreBudget = LOIHI2_LIKE) -> tuple[LavaPlan, dict[str, Any]]:
    """Turn a float plan into Loihi-style integers (module docstring); also the report.

    Returns
    -------
    (LavaPlan, dict)
        The fixed-point plan and the report: ``layers`` (per population: ``neurons``,
        ``synapses``, ``max_fan_in``, ``max_fan_out``, ``membrane_bits``, ``gain``, ``vth``,
        ``weight_exp``, ``weight_error``, ``bias_exp_max``, ``cores``, ``limits``,
        ``saturations`` after a fixed-point run), ``budget``, ``cores``, ``input_shift``.

    Raises
    ------
    ValueError
        Per-channel thresholds (one gain per population needs one threshold), or ``k != 2``.
    """
    if float(graph.k) != 2.0:
        raise ValueError(f"fixed point needs k = 2 (a left shift), the graph has k = {graph.k}")
    out = copy.deepcopy(plan)
    out.select_tag = "fixed_pt"
    budget_v = margin * 2.0 ** (V_BITS - 1)
    gains: dict[str, float] = {}
    layers: dict[str, dict[str, Any]] = {}
    for spec in out.populations.values():
        if spec.kind not in ("relu", "signed", "readout"):
            continue
        peak = float(peaks.get(spec.name, 0.0))
        if spec.kind == "readout":
            # largest power of two that fits the membrane and, if possible, the bias range
            limit = budget_v / peak if peak > 0 else 2.0 ** 16
            b_max = float(np.max(np.abs(spec.bias))) if np.size(spec.bias) else 0.0
            bias_limit = BIAS_MANT_MAX * 2.0 ** budget.bias_exp_max / b_max if b_max else limit
            g = 2.0 ** math.floor(math.log2(max(min(limit, bias_limit), limit / 2**8)))
            layers[spec.name] = {"gain": g}
        else:
            theta = np.unique(np.asarray(spec.vth))
            if theta.size != 1:
                raise ValueError(f"population {spec.name!r} has per-channel thresholds; the "
                                 "fixed-point plan needs one threshold per population")
            theta = float(theta[0])
            peak = max(peak, 2 * theta)
            step = 2 ** max(0, spec.t_gen - 6) if out.rounding == "nearest" else 1
            vth = math.floor(budget_v * theta / (64 * peak) / step) * step
            if vth < 1:
                raise ValueError(f"population {spec.name!r}: no integer threshold fits a 24-bit "
                                 f"membrane at T={spec.t_gen} (peak {peak:g}, theta {theta:g})")
            g = 64.0 * vth / theta
            spec.vth = vth
            layers[spec.name] = {"gain": g, "vth": vth}
        gains[spec.name] = g
        b = np.asarray(spec.bias, dtype=np.float64) * g
        bexp = np.maximum(0, np.ceil(np.log2(np.maximum(np.abs(b), 1e-300) / BIAS_MANT_MAX)))
        bexp = np.where(np.abs(b) > BIAS_MANT_MAX, bexp, 0).astype(np.int64)
        spec.bias = np.rint(b / 2.0 ** bexp)
        spec.bias_exp = bexp
        layers[spec.name].update(membrane_bits=math.log2(peaks.get(spec.name, 0.0) * g)
                                 if peaks.get(spec.name, 0.0) > 0 else 0.0,
                                 bias_exp_max=int(bexp.max()) if bexp.size else 0,
                                 weight_exp={}, weight_error={})
    # analog input: one shift for all its synapses, the smallest they want (>= 0)
    input_edges = [s for s in out.synapses if s.source == out.input]
    analog = out.input_encoding == "analog"
    if analog and input_edges:
        shift = max(0, min(_exp_for(s.abs_max() * gains[s.target] / 64, W_MAX)
                           for s in input_edges))
        x_max = float(peaks.get(INPUT_KEY, 0.0))
        if x_max > 0:  # the graded input must fit 24 bits
            shift = min(shift, math.floor(math.log2((2.0 ** (V_BITS - 1) - 1) / x_max)))
        out.input_shift = int(shift)
    for syn in out.synapses:
        factor = gains[syn.target] / 64
        if analog and syn.source == out.input:
            factor /= 2.0 ** out.input_shift  # that part of the scale sits in the input
        exp = max(0, _exp_for(syn.abs_max() * factor, W_MAX))
        m, err = _round_weights(syn.weight, factor, exp)
        if syn.kind == "conv":
            syn.weight, syn.weight_exp = m, exp
        else:
            syn.weight, syn.weight_exp = 2 * m, exp - 1
        layers[syn.target]["weight_exp"][syn.source] = exp
        layers[syn.target]["weight_error"][syn.source] = err
    out.output_gain = gains[out.output]
    report = _connectivity_report(graph, layers, budget)
    report["input_shift"] = out.input_shift
    report["margin"] = margin
    return out, report


def _connectivity_report(graph: Graph, layers: dict[str, dict[str, Any]],
                         budget: CoreBudget) -> dict[str, Any]:
    fan_out = fan_outs(graph)
    total_cores = 0
    for pop in graph:
        if pop.name not in layers:
            continue
        into = fan_in(graph, pop.name)
        info = layers[pop.name]
        neurons = math.prod(pop.shape)
        synapses = int(into.sum())
        cores = max(math.ceil(neurons / budget.neurons_per_core),
                    math.ceil(synapses / budget.synapses_per_core), 1)
        total_cores += cores
        info.update(neurons=neurons, synapses=synapses, max_fan_in=int(into.max()),
                    max_fan_out=max((int(fan_out[e.source].max()) for e in pop.edges), default=0),
                    cores=cores, saturations=None)
        limits = []
        if info["max_fan_in"] > budget.max_fan_in:
            limits.append(f"fan-in {info['max_fan_in']} > {budget.max_fan_in}")
        if info["max_fan_out"] > budget.max_fan_out:
            limits.append(f"fan-out of its sources {info['max_fan_out']} > {budget.max_fan_out}")
        if info["bias_exp_max"] > budget.bias_exp_max:
            limits.append(f"bias exponent {info['bias_exp_max']} > {budget.bias_exp_max}")
        if info.get("vth", 0) >= 2 ** budget.vth_bits:
            limits.append(f"threshold mantissa {info['vth']} >= 2**{budget.vth_bits}")
        if neurons > budget.neurons_per_core or synapses > budget.synapses_per_core:
            limits.append(f"needs {cores} cores ({neurons} neurons, {synapses} synapses)")
        info["limits"] = limits
    report = {"layers": layers, "budget": asdict(budget), "cores": total_cores}
    for name, info in layers.items():
        hard = [m for m in info["limits"] if not m.startswith("needs")]
        if hard:
            warnings.warn(f"layer {name!r} breaks a Loihi-2-like core limit: {'; '.join(hard)}",
                          stacklevel=3)
    if total_cores > budget.cores:
        warnings.warn(f"the network needs about {total_cores} cores, more than the "
                      f"{budget.cores} of one Loihi-2-like chip", stacklevel=3)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The per-layer report as a text table."""
    head = (f"{'layer':<14}{'neurons':>9}{'synapses':>11}{'fan-in':>8}{'fan-out':>9}"
            f"{'V bits':>8}{'w err':>8}{'w exp':>7}{'sat':>7}{'cores':>7}  limits")
    rows = [head, "-" * len(head)]
    for name, i in report["layers"].items():
        werr = max(i["weight_error"].values(), default=0.0)
        wexp = max(i["weight_exp"].values(), default=0)
        sat = "-" if i.get("saturations") is None else str(i["saturations"])
        rows.append(f"{name[:13]:<14}{i['neurons']:>9}{i['synapses']:>11}{i['max_fan_in']:>8}"
                    f"{i['max_fan_out']:>9}{i['membrane_bits']:>8.1f}{werr:>8.4f}{wexp:>7}"
                    f"{sat:>7}{i['cores']:>7}  {'; '.join(i['limits'])}")
    rows.append(f"total cores ~ {report['cores']} (budget {report['budget']['cores']}); input "
                f"sent as round(x * 2**{report['input_shift']})")
    return "\n".join(rows)
