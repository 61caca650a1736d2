"""The iLIF neuron as a Lava Process (dynamics in :mod:`spikeconverter.plugin.functional`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from lava.magma.core.process.ports.ports import OutPort
from lava.magma.core.process.process import LogConfig
from lava.magma.core.process.variable import Var

from spikeconverter.coding import window_period
from spikeconverter.processes.base import (
    A_IN_SHIFT_MAX,
    AbstractMembrane,
    broadcast_array,
    deprecated_bias,
    validate_bool,
    validate_int,
    validate_rounding,
    validate_shape,
)

__all__ = ["ILIF"]


class ILIF(AbstractMembrane):
    """Inverse-leaky integrate-and-fire population with temporal separation.

    Let ``n = time_step - 1`` count the steps of the run. Before ``offset`` the neurons are
    idle (``v = 0``, no spikes). After it, ``tau = (n - offset) mod (t_acc + t_gen)``:

    * ``tau < t_acc`` (accumulate): ``v <- a_in`` at ``tau = 0``, ``v <- k*v + a_in`` after,
      never firing; at ``tau = t_acc - 1`` the bias is added (and, for ``rounding="nearest"``,
      half an LSB, :func:`spikeconverter.coding.rounding_offset`, times ``sign(v)`` for signed
      trains);
    * ``tau >= t_acc`` (generate): ``a_in`` is ignored, ``s = [v >= vth]`` (signed: ``-1``
      where ``v <= -vth``) is sent on ``s_out`` in that same step, then ``v <- k*(v - s*vth)``.

    Double buffering (``double_buffered=True``): two membrane banks, the Vars ``v`` (bank 0)
    and ``v1`` (bank 1). Window ``w`` starts at ``offset + w * P`` with
    ``P = max(t_acc, t_gen)`` and uses bank ``w mod 2``: the population accumulates sample
    ``w + 1`` in one bank while it generates sample ``w`` from the other, each bank following the
    equations above, so a stream of samples fed every ``P`` steps gives, sample for sample, the
    spikes of the single-banked neuron fed every ``t_acc + t_gen`` steps. A bank that neither
    accumulates nor generates holds 0. Same as the Norse option of the same name
    (:mod:`spikeconverter.plugin.functional`).

    With ``k = 2`` a window turns the accumulated value into the MSB-first code of
    :func:`spikeconverter.coding.encode`; the models match the Norse
    :class:`spikeconverter.plugin.ILIF` spike for spike. A source connected straight to
    ``a_in`` delivers in the same step; a Dense/Sparse/Conv synapse in between adds one step.

    Models
    ------
    ``floating_pt`` (:class:`~spikeconverter.processes.ilif.models.PyILIFModelFloat`):
    float64, any ``k`` in (1, 2]; ``bias_exp`` is ignored (as in Lava's LIF).

    ``fixed_pt`` / ``bit_accurate_loihi``
    (:class:`~spikeconverter.processes.ilif.models.PyILIFModelBitAcc`): Lava's LIF
    conventions. ``vth`` is an unsigned 17-bit integer mantissa, the effective threshold is
    ``vth << 6``; the input is MSB-aligned the same way (``a_in << a_in_shift``, default
    6 as in Lava's LIF; Loihi scales a synapse's weights by ``2**(6 + weight_exp)``, so with a
    negative weight exponent the synapses may apply part of it themselves, exactly, and the
    neuron the rest: ``a_in_shift = 6 + e`` for synapses that shift by ``weight_exp - e``,
    see :mod:`spikeconverter.converters.to_lava.fixed_point`); the bias is
    ``bias_mant << bias_exp`` (``bias_mant`` a signed 13-bit mantissa, ``bias_exp`` may be
    negative for a right shift) and is *not* shifted. The model validates the Process itself
    when Lava compiles it, under any run configuration: a non-integer or out-of-range ``vth``
    or ``bias_mant`` raises ValueError naming the Var (Lava would silently truncate it). The
    membrane is an integer clamped to the 24-bit
    range ``[-2**23, 2**23 - 1]`` after every update; each clamp of a neuron adds one to its
    entry of the Var ``saturations``. ``k`` must be 2 (a left shift). Half an LSB for
    ``rounding="nearest"`` is ``(vth << 6) >> t_gen``
    (:func:`spikeconverter.processes.loihi.fixed_rounding_offset`): exact only when
    ``(vth << 6)`` is divisible by ``2**t_gen``, which a converter must choose.
    So with integer inputs, ``bias_fixed = 64 * bias_float`` and no saturation the fixed model
    holds ``64 *`` the float membrane and sends the same spikes as the float model given the
    same ``vth``.

    Spike payload: binary trains are sent as 0/1; signed trains as graded -1/0/+1. A
    Dense/Sparse/Conv receiving signed trains needs ``num_message_bits > 0``: with the default 0
    Lava casts the payload to bool and a -1 spike arrives as +1.

    Parameters
    ----------
    shape : tuple of int
        Shape of the population (e.g. ``(n,)`` or ``(W, H, C)`` behind a Lava Conv).
    vth : float or array
        Threshold, > 0; scalar or broadcastable to ``shape`` (e.g. one per channel ``(C,)``).
        In the fixed-point model the integer mantissa (effective threshold ``vth << 6``).
    k : float
        Inverse leak, in (1, 2]; the fixed-point model needs ``k = 2``.
    t_acc : int
        Steps of the accumulate phase (the length of the incoming trains), >= 1.
    t_gen : int
        Steps of the generate phase (the length of the outgoing train), >= 1.
    offset : int
        Idle steps before the first window, >= 0 (pipelining across layers).
    bias_mant : float or array
        Added once per window at the last accumulate step; scalar or broadcastable to ``shape``
        (Lava LIF's name; the Var is ``bias_mant``).
    bias_exp : int or array
        Exponent of the bias in the fixed-point model (ignored by the float model).
    bias_shift : int
        The bias enters at accumulate step ``t_acc - 1 - bias_shift`` and reaches the window's
        end multiplied by ``k**bias_shift`` (the bias-shift trick: a large fixed-point bias
        within the 3-bit exponent, exactly); in ``[0, t_acc - 1]``, default 0.
    a_in_shift : int
        Fixed-point model: the summed input enters as ``a_in << a_in_shift``; in ``[0, 6]``,
        default 6 (Lava LIF's alignment). Ignored by the float model.
    rounding : {"floor", "nearest"}
        ``"nearest"`` adds half an LSB before generating (unbiased quantisation).
    signed : bool
        Emit ``-1`` spikes for negative membranes (layers without a ReLU after them).
    double_buffered : bool
        Two membrane banks (period ``max(t_acc, t_gen)`` instead of ``t_acc + t_gen``); the
        Var ``v1`` holds the second bank (shape ``(1,)`` and unused when False).
    v : float or array
        Initial membrane (overwritten at the first accumulate step; kept for inspection).
    name : str, optional
        Name of the Process.
    log_config : LogConfig, optional
        Lava logging configuration.
    bias : float or array, optional
        Deprecated name of ``bias_mant`` (a DeprecationWarning; so is the attribute ``bias``).

    Attributes
    ----------
    k, t_acc, t_gen, offset, double_buffered, period : read-only
        The window parameters (``proc_params``); the models read them once when built.

    Examples
    --------
    >>> from lava.proc.io.source import RingBuffer
    >>> neurons = ILIF(shape=(4,), vth=1.0, t_acc=4, t_gen=4, rounding="nearest")
    >>> source = RingBuffer(data=np.random.rand(4, 16))
    >>> source.s_out.connect(neurons.a_in)
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        vth: Any = 1.0,
        k: float = 2.0,
        t_acc: int = 16,
        t_gen: int = 16,
        offset: int = 0,
        bias_mant: Any = None,
        bias_exp: Any = 0,
        bias_shift: int = 0,
        a_in_shift: int = A_IN_SHIFT_MAX,
        rounding: str = "floor",
        signed: bool = False,
        double_buffered: bool = False,
        v: Any = 0.0,
        name: str | None = None,
        log_config: LogConfig | None = None,
        bias: Any = None,
    ) -> None:
        proc = "ILIF"
        shape = validate_shape(proc, shape)
        vth_arr = broadcast_array(proc, "vth", vth, shape, positive=True)
        super().__init__(
            shape=shape,
            k=k,
            t_acc=t_acc,
            offset=offset,
            bias_mant=deprecated_bias(proc, bias_mant, bias),
            bias_exp=bias_exp,
            bias_shift=bias_shift,
            a_in_shift=a_in_shift,
            v=v,
            t_gen=validate_int(proc, "t_gen", t_gen, 1),
            rounding=validate_rounding(proc, rounding),
            signed=validate_bool(proc, "signed", signed),
            double_buffered=validate_bool(proc, "double_buffered", double_buffered),
            name=name,
            log_config=log_config,
        )
        self.s_out = OutPort(shape=shape)
        self.vth = Var(shape=shape, init=vth_arr)
        bank = shape if double_buffered else (1,)
        self.v1 = Var(shape=bank, init=np.zeros(bank))

    @property
    def t_gen(self) -> int:
        """Steps of the generate phase (read-only)."""
        return self.proc_params["t_gen"]

    @property
    def double_buffered(self) -> bool:
        """Two membrane banks (read-only)."""
        return self.proc_params["double_buffered"]

    @property
    def period(self) -> int:
        """Steps between window starts: :func:`spikeconverter.coding.window_period`."""
        return window_period(self.t_acc, self.t_gen, self.double_buffered)
