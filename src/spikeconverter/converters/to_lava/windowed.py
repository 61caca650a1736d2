"""Which populations of a batched run accumulate once per window instead of once per step.

In its accumulate phase an iLIF membrane (``k = 2`` in fixed point) does ``V <- 2 V + x_t``, so
a window ends at ``V = sum_t 2**(t_acc - 1 - t) x_t`` plus the bias and half an LSB. Every
``x_t`` is a synapse's ``W s_t``: linear in the spikes, so the window's sum is ``W c`` with the
*spike code* ``c = sum_t 2**(t_acc - 1 - t) s_t`` of each input neuron. A *windowed* synapse
(:class:`~spikeconverter.processes.BatchConv` / :class:`~spikeconverter.processes.BatchDense`
with ``window=...``) keeps ``c <- 2 c + s_t`` per input neuron (a shift and an or on bytes),
applies ``W`` once, at the end of the window, and sends ``W c`` at the target's last
accumulate step; the target (:class:`~spikeconverter.processes.BatchILIF` with
``window_input=True``) reads its input only then. One product per window instead of one per
step; the same numbers where the arithmetic is exact, which this module decides from the plan
and the neurons check at run time:

* **fixed point, static** (per incoming synapse, else the target accumulates per step):
  the synapse's shift (:func:`~spikeconverter.converters.to_lava.plan.synapse_shift`: its
  weight exponent less the part its target applies; ``>= 0`` in a plan aligned to the
  synapses, the default) is ``>= 0``, or negative with every weight a multiple of ``2**-e`` (a
  negative exponent floor-shifts every step's sum, which is linear only then), or ``-1`` on a
  Conv of binary spikes: ``sum_t 2**k floor(y_t / 2) = (W c - P) / 2`` where the bits of ``P``
  are the parities ``y_t mod 2``, i.e. of the number of odd-weight inputs spiking at ``t``:
  bit for bit the XOR of those inputs' codes, for all steps at once; a Conv's per-step sum can
  never wrap to 24 bits (``max_row sum |w| * 2**e < 2**23``); the window's sum fits the
  32-bit message (``max_row sum |w| * (2**t_acc - 1) * 2**e < 2**31``); an analog input is
  one frame per window landing at the window's last step (then ``W c`` *is* the per-step
  product, wrap included), and is not mixed with spike trains into one target.
* **fixed point, at run time**: the per-step path clamps the 24-bit membrane after every
  step, the windowed one only at the end. With ``S`` the largest per-step input of a neuron
  (:func:`input_bound`), every partial sum before the last step is at most
  ``64 (|W c| / 2 + S) + |bias| / 2`` (the code's low bits add at most ``S`` per step), so when
  ``64 |W c| + 128 S + |bias_end| <= 2 (2**23 - 1)`` no step before the last can clamp and the
  windowed membrane equals the per-step one bit for bit, saturation counts included (a
  clamp at the last step is the same clamp in both). The neuron counts the neurons where the
  test fails in its Var ``unverified``; :func:`~spikeconverter.converters.to_lava.batched.
  iter_batched` reads it after every chunk and, if it is ever nonzero, re-simulates the run
  step by step (it has never happened on CIFAR-10: the test needs a membrane about 3.6 times
  the calibration peak; a static bound would refuse every ResNet-20 layer, whose worst case
  is 2.5 to 17 times the 24-bit range).
* **floating point**: no clamp, any ``k`` (the code is ``c <- k c + s_t`` in float64): every
  population accumulates per window. The sums are those of the per-step path in another
  order (a few ulp apart, as the unbatched graph of Lava's own synapses is), and per sample
  the same whatever the batch size.

Fixed-point neurons also *generate* from the window's code (``code_output``): for
``0 <= V < 2 vth`` the MSB-first train of the generate phase is the binary expansion of
``floor(V 2**(t_gen - 1) / vth)``, for ``V >= 2 vth`` all ones (signed trains: the same on
``|V|`` with the sign of ``V``), exactly, as long as the remainders ``< 2 vth`` fit the 24-bit
membrane (``vth << 6 <= 2**22``); the spikes are then bit planes of one integer per neuron
instead of a threshold, subtraction and shift per step.

What a user sees: the membrane ``v`` of a windowed population jumps to its window's end value
at the last accumulate step (no doubling step by step) and keeps it through the generate
phase. :meth:`~spikeconverter.converters.to_lava.network.LavaNetwork.processes` therefore
builds the per-step graph (membranes step by step, for probing); ``run`` uses the windowed one
and lists the choice per population in ``stats["accumulate"]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from spikeconverter.converters.schedule import Schedule
from spikeconverter.converters.to_lava.plan import LavaPlan, synapse_shift

__all__ = ["WindowPlan", "groups_fit", "input_bound", "row_abs_sum", "window_plan"]

#: Range of the 24-bit membrane and of a Conv's wrapped per-step sum.
V_MAX = 2**23 - 1
#: A window's sum travels as int32.
MESSAGE_MAX = 2**31 - 1
#: ``vth << 6`` at most this: the generate phase's remainders (< 2 vth) fit the membrane.
CODE_VTH_MAX = 2**22


@dataclass
class WindowPlan:
    """The windowed/per-step choice of a batched run.

    Attributes
    ----------
    accumulate : dict of str to str
        Population (iLIF or readout) -> ``"window"`` or ``"step: <reason>"``.
    windows : dict of (str, int) to dict
        ``(target, edge)`` -> the ``window`` parameter of that synapse (targets accumulating
        per window only).
    bound : dict of str to int
        Fixed point: the largest per-step input ``S`` of each windowed population (integer
        synaptic units, before the ``<< 6``), 0 for an analog input.
    prefix : dict of str to int
        1 when the population's input is spike trains, 0 when it is one analog frame
        (nothing arrives before the last step).
    code_output : dict of str to bool
        Fixed point: the population generates from its window's code.
    code_send : dict of str to bool
        Fixed point: the population sends its code once per window (every receiver takes it
        whole: ``window["code_in"]``).
    """

    accumulate: dict[str, str] = field(default_factory=dict)
    windows: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    bound: dict[str, int] = field(default_factory=dict)
    prefix: dict[str, int] = field(default_factory=dict)
    code_output: dict[str, bool] = field(default_factory=dict)
    code_send: dict[str, bool] = field(default_factory=dict)

    def windowed(self, name: str) -> bool:
        return self.accumulate.get(name) == "window"

    def report(self) -> dict[str, str]:
        """Population -> ``"window"`` / ``"step: reason"`` (plus ``", code output"``)."""
        return {n: m + (", code output" if self.code_output.get(n) else "")
                for n, m in self.accumulate.items()}


def row_abs_sum(syn: Any) -> int:
    """Largest ``sum |w|`` over the rows of a synapse's weights (a Conv: per output channel),
    as the model holds them (integer mantissas in fixed point)."""
    w = syn.weight
    if sp.issparse(w):
        if not w.nnz:
            return 0
        return int(np.ceil(float(abs(w).sum(axis=1).max())))
    w = np.abs(np.asarray(w, dtype=np.float64))
    if w.size == 0:
        return 0
    return int(np.ceil(float(w.reshape(w.shape[0], -1).sum(axis=1).max())))


def input_bound(plan: LavaPlan, syns: list[Any]) -> int:
    """The largest per-step input of a neuron from spike trains (``|s| <= 1``): the sum over
    its synapses of ``max_row sum |w| * 2**shift`` with each synapse's shift
    (:func:`~spikeconverter.converters.to_lava.plan.synapse_shift`; an upper bound, shifts
    taken as >= 0)."""
    return int(sum(row_abs_sum(s) << max(synapse_shift(plan, s), 0) for s in syns))


def groups_fit(plan: LavaPlan, high: Any, low: Any, window: dict[str, Any] | None) -> bool:
    """Whether the two synapse groups of one edge (fixed point's split weights) can be one
    batched Process whose message is the sum of both: always per step and for an analog
    window (two 24-bit sums); for a window of spike codes when that sum fits the 32-bit
    message, ``sum over groups of max_row sum |w| * 2**shift * (2**length - 1)``."""
    if high.kind != low.kind or high.source != low.source or high.delay != low.delay \
            or high.graded != low.graded or high.conv.get("groups", 1) != 1:
        return False
    if window is None or window["payload"] == "analog":
        return True
    return input_bound(plan, [high, low]) * (2 ** int(window["length"]) - 1) <= MESSAGE_MAX


def _payload(plan: LavaPlan, syn: Any) -> str:
    """``"analog"`` (graded input frames), ``"signed"`` (-1/0/+1) or ``"binary"`` (0/1)."""
    if syn.source == plan.input:
        return "analog" if plan.input_encoding == "analog" else "signed"
    return "signed" if plan.populations[syn.source].signed else "binary"


def _code_bits(length: int, payload: str) -> int:
    """Bits of the integer code of a train of ``length`` spikes (sign included)."""
    return length + (payload == "signed")


def _divides(syn: Any, m: int) -> bool:
    """Every weight of the synapse is a multiple of ``2**m``."""
    w = syn.weight.data if sp.issparse(syn.weight) else np.asarray(syn.weight)
    return not np.any(np.mod(w, 2**m))


def _fixed_synapse_reason(plan: LavaPlan, syn: Any, t_acc: int) -> str | None:
    """Why a fixed-point synapse cannot be summed per window, or None."""
    e = synapse_shift(plan, syn)
    payload = _payload(plan, syn)
    if payload == "analog":
        return None  # one frame: the windowed product is the per-step one
    parity = (e == -1 and payload == "binary" and syn.kind == "conv"
              and syn.conv.get("groups", 1) == 1 and t_acc <= 16)
    if e < 0 and not _divides(syn, -e) and not parity:
        return (f"edge {syn.edge} ({syn.source}) has weight exponent {e} < 0 (each step's "
                "sum is floor-shifted) and odd weights")
    s = row_abs_sum(syn) << max(e, 0)
    if syn.kind == "conv" and s >= 2**23:
        return f"edge {syn.edge} ({syn.source}): a step's sum may wrap to 24 bits"
    if s * (2**t_acc - 1) > MESSAGE_MAX:
        return f"edge {syn.edge} ({syn.source}): the window's sum may not fit 32 bits"
    return None


def window_plan(plan: LavaPlan, schedule: Schedule) -> WindowPlan:
    """Decide, per population, between windowed and per-step accumulation (module docstring).

    Parameters
    ----------
    plan : LavaPlan
        Float or fixed-point plan.
    schedule : Schedule
        Its Lava schedule.
    """
    fixed = plan.select_tag == "fixed_pt"
    out = WindowPlan()
    incoming: dict[str, list[Any]] = {}
    for syn in plan.synapses:
        incoming.setdefault(syn.target, []).append(syn)
    analog_frames = 1 if plan.input_encoding == "analog" else int(plan.input_T)
    for name, spec in plan.populations.items():
        if spec.kind in ("input", "maxpool"):
            continue
        syns = incoming.get(name, [])
        reason = _population_reason(plan, spec, syns, fixed, analog_frames)
        if spec.kind != "readout" and fixed:
            vth_eff = int(np.max(spec.vth)) << 6
            out.code_output[name] = vth_eff <= CODE_VTH_MAX and spec.t_gen <= 24
        if reason is not None:
            out.accumulate[name] = f"step: {reason}"
            continue
        out.accumulate[name] = "window"
        payloads = {_payload(plan, s) for s in syns}
        out.prefix[name] = 0 if payloads == {"analog"} else 1
        out.bound[name] = input_bound(plan, [s for s in syns
                                             if _payload(plan, s) != "analog"]) \
            if fixed else 0
        start = int(spec.offset) - 1  # the synapse sees step n's spikes, the target at n + 1
        for s in syns:
            payload = _payload(plan, s)
            out.windows[(s.target, s.edge)] = {
                "start": start, "length": int(spec.t_acc), "period": int(plan.period),
                "k": float(plan.k), "payload": payload,
                "bits": _code_bits(int(spec.t_acc), payload),
                "lead": _lead(s.delay, start, int(plan.period)),
            }
    if fixed and not plan.double_buffered:
        _plan_code_messages(plan, out)
    return out


def _lead(delay: int, start: int, period: int) -> int:
    """The delay in front of a windowed synapse that the synapse takes over (its input's
    window leading by it; see ``WindowedSynapse``): all of it when it is shorter than a
    period and window 0 starts after it, else none (a Delay Process stays)."""
    return int(delay) if 0 < delay <= min(start, period - 1) else 0


def _plan_code_messages(plan: LavaPlan, out: WindowPlan) -> None:
    """Mark the populations whose generate phase can travel as one code message: unsigned,
    generating from the code, ``t_gen <= 8``, and every receiver a windowed synapse of
    binary payload whose (delay-folded) window is exactly that generate phase."""
    receivers: dict[str, list[Any]] = {}
    for syn in plan.synapses:
        receivers.setdefault(syn.source, []).append(syn)
    pooled = {spec.pool["source"] for spec in plan.populations.values()
              if spec.kind == "maxpool"}
    for name, spec in plan.populations.items():
        syns = receivers.get(name, [])
        if not out.code_output.get(name) or spec.signed or spec.t_gen > 8 or name in pooled \
                or not syns:
            continue
        first = int(spec.offset) + int(spec.t_acc)  # the first generate step
        wins = [out.windows.get((s.target, s.edge)) for s in syns]
        if all(w is not None and w["payload"] == "binary" and w["length"] == spec.t_gen
               and w["lead"] == s.delay and w["start"] - w["lead"] == first
               for s, w in zip(syns, wins, strict=True)):
            out.code_send[name] = True
            for w in wins:
                w["code_in"] = True


def _population_reason(plan: LavaPlan, spec: Any, syns: list[Any], fixed: bool,
                       analog_frames: int) -> str | None:
    if spec.kind == "readout":
        return "the readout accumulates step by step"
    if not syns:
        return "no incoming synapse"
    if spec.offset < 1:
        return "its window starts at step 0"
    payloads = [_payload(plan, s) for s in syns]
    if "analog" in payloads:
        if len(set(payloads)) > 1:
            return "an analog input and spike trains into one population"
        last = int(spec.offset) + int(spec.t_acc) - 2  # the synapse's last code step
        if analog_frames != 1 or plan.input_delay != last:
            return "the analog input does not land at the window's last step"
    if not fixed:
        return None
    if not math.isclose(float(plan.k), 2.0):
        return "fixed point needs k = 2"
    for s in syns:
        why = _fixed_synapse_reason(plan, s, int(spec.t_acc))
        if why is not None:
            return why
    return None
