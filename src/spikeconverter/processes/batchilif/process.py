"""iLIF neurons of ``B`` samples side by side, with one saturation counter for all of them."""

from __future__ import annotations

from typing import Any

import numpy as np
from lava.magma.core.process.variable import Var

from spikeconverter.processes.base import validate_bool, validate_int
from spikeconverter.processes.ilif.process import ILIF

__all__ = ["BatchILIF"]


class BatchILIF(ILIF):
    """:class:`spikeconverter.processes.ILIF` whose ``shape`` leads with a batch axis.

    The iLIF dynamics are elementwise, so a population of shape ``(B, *shape)`` is ``B``
    independent copies of a ``shape`` population (pass per-sample ``vth``/``bias`` arrays of
    ``shape``: they broadcast). What this subclass adds is the Var ``saturation_count``
    (shape ``(1,)``): the number of data-losing clamps of the fixed-point membrane (clamps in
    the accumulate phase; a clipped code in the generate phase doubles and clamps without
    changing a spike and is not counted), readable with one message where reading the
    per-neuron ``saturations`` of a large batch would cost one message per neuron.
    Its models are :mod:`spikeconverter.processes.batchilif.models`.

    Two faster modes, same spikes (:mod:`spikeconverter.converters.to_lava.windowed` says
    where they are exact and a converter chooses them):

    * ``window_input=True``: the input arrives once per window, at the last accumulate step, as
      the window's weighted sum ``sum_t k**(t_acc - 1 - t) a_t`` (from windowed
      :class:`~spikeconverter.processes.BatchConv`/:class:`~spikeconverter.processes.BatchDense`
      synapses); ``a_in`` is read only then. The membrane takes that sum plus the bias (times
      ``k**bias_shift``) and half an LSB in one step: ``v`` jumps to its window's end value
      instead of doubling step by step. Fixed point: with ``input_bound`` the largest input of
      one step from spike trains and ``prefix_gain`` 1 (0 when the input is one analog frame
      at the last step), a neuron whose ``2**a * prefix_gain * |sum| + 2**(a + 1) *
      input_bound + |bias << bias_shift|`` (``a = a_in_shift``, 6 by default) exceeds
      ``2 * (2**23 - 1)`` might have clamped before the last
      step in the per-step model: it is counted in the Var ``unverified`` (shape ``(1,)``),
      and a run with a nonzero count must be repeated step by step.
    * ``code_output=True`` (fixed point): the generate phase sends the bits of the window's
      code ``min(floor(|V| 2**(t_gen - 1) / (vth << 6)), 2**t_gen - 1)`` (signed: times the
      sign of ``V``), which are the per-step spikes when ``vth << 6 <= 2**22``; ``v`` keeps its
      end-of-accumulate value through the generate phase.
    * ``code_send=True`` (with ``code_output``, unsigned, ``t_gen <= 8``, one bank): the
      generate phase is one message, at its first step, whose bytes are the code (as ``int8``),
      and nothing is sent at the other steps: every receiver must be a windowed synapse with
      ``window["code_in"]`` whose window is this generate phase.

    Parameters
    ----------
    window_input : bool
        Read the input once per window (above).
    input_bound : int
        Fixed point, ``window_input``: the largest per-step input from spike trains.
    prefix_gain : int
        1 for spike-train input, 0 for one analog frame at the last step.
    code_output : bool
        Fixed point: generate from the window's code.
    code_send : bool
        Send the code once per window (above).
    **kwargs
        As :class:`spikeconverter.processes.ILIF`.
    """

    def __init__(self, *, window_input: bool = False, input_bound: int = 0,
                 prefix_gain: int = 1, code_output: bool = False, code_send: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        proc = "BatchILIF"
        self.proc_params["window_input"] = validate_bool(proc, "window_input", window_input)
        self.proc_params["input_bound"] = validate_int(proc, "input_bound", input_bound, 0)
        gain = validate_int(proc, "prefix_gain", prefix_gain, 0)
        if gain > 1:
            raise ValueError(f"{proc}: prefix_gain must be 0 or 1, got {prefix_gain!r}")
        self.proc_params["prefix_gain"] = gain
        self.proc_params["code_output"] = validate_bool(proc, "code_output", code_output)
        code_send = validate_bool(proc, "code_send", code_send)
        if code_send and not (code_output and self.t_gen <= 8 and not self.proc_params["signed"]
                              and not self.double_buffered):
            raise ValueError(f"{proc}: code_send needs code_output, t_gen <= 8, unsigned spikes "
                             "and one bank")
        self.proc_params["code_send"] = code_send
        self.saturation_count = Var(shape=(1,), init=np.zeros(1, dtype=np.int64))
        self.unverified = Var(shape=(1,), init=np.zeros(1, dtype=np.int64))
