"""CPU ProcessModels of :class:`spikeconverter.processes.ilif.process.ILIF` (numpy only)."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikeconverter.coding import rounding_offset, window_period
from spikeconverter.processes.ilif.process import ILIF
from spikeconverter.processes.loihi import (
    SHIFT,
    V_MAX,
    V_MIN,
    FixedPointMembrane,
    FloatMembrane,
    WindowClockModel,
    fixed_rounding_offset,
    receive,
)

__all__ = ["PyILIFModelFloat", "PyILIFModelBitAcc", "V_MAX", "V_MIN"]


class _ILIFClock(WindowClockModel):
    """Phase clock shared by both models: what step ``n = time_step - 1`` does.

    The models put each phase in one hook, ``_accumulate_phase(a_in, tau)`` and
    ``_generate_phase() -> spikes``, which work on the Var ``v``. With one bank ``run_spk``
    calls one of them per step. Double-buffered, it calls the generate hook on the bank of the
    generating window and the accumulate hook on the bank of the accumulating one, binding
    ``v`` to that bank's array for the call (``v1`` is bank 1): the hooks stay single-banked.
    ``_accumulating`` tells an overridden ``_clamp`` which phase it clamps in.
    """

    _accumulating = False

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._k = float(proc_params["k"])
        self._t_acc = int(proc_params["t_acc"])
        self._bias_step = self._t_acc - 1 - int(proc_params.get("bias_shift", 0))
        self._t_gen = int(proc_params["t_gen"])
        self._offset = int(proc_params["offset"])
        self._double = bool(proc_params.get("double_buffered", False))
        self._period = window_period(self._t_acc, self._t_gen, self._double)
        self._rounding = proc_params["rounding"]
        self._nearest = self._rounding == "nearest"
        self._signed = bool(proc_params["signed"])

    def run_spk(self) -> None:
        a_in = receive(self.a_in)
        if self._double:
            self._run_banks(a_in)
            return
        tau = self._tau()
        if 0 <= tau < self._t_acc:
            self._accumulating = True
            self._accumulate_phase(a_in, tau)
        if tau < self._t_acc:  # idle or accumulating
            self._send_silence(self.s_out)
            return
        self._accumulating = False
        self.s_out.send(self._generate_phase())

    def _bank_phases(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((bank, tau), (bank, tau))`` of the accumulating and of the generating window at
        this step; bank -1 where no window is in that phase."""
        rel = self.time_step - 1 - self._offset
        acc = gen = (-1, -1)
        if rel >= 0 and rel % self._period < self._t_acc:
            acc = ((rel // self._period) % 2, rel % self._period)
        g = rel - self._t_acc
        if g >= 0 and g % self._period < self._t_gen:
            gen = ((g // self._period) % 2, g % self._period)
        return acc, gen

    def _on_bank(self, bank: int, hook, *args):
        """``hook(*args)`` with the Var ``v`` bound to ``bank``'s array (restored after)."""
        if bank == 0:
            return hook(*args)
        self.v, self.v1 = self.v1, self.v
        try:
            return hook(*args)
        finally:
            self.v, self.v1 = self.v1, self.v

    def _run_banks(self, a_in: np.ndarray) -> None:
        (acc_bank, tau), (gen_bank, _) = self._bank_phases()
        for bank, arr in ((0, self.v), (1, self.v1)):
            if bank not in (acc_bank, gen_bank) and arr.any():
                arr[:] = 0  # an idle bank holds 0, as in the Norse neuron
        z = None
        if gen_bank >= 0:
            self._accumulating = False
            z = self._on_bank(gen_bank, self._generate_phase)
        if acc_bank >= 0:
            self._accumulating = True
            self._on_bank(acc_bank, self._accumulate_phase, a_in, tau)
        if z is None:
            self._send_silence(self.s_out)
        else:
            self.s_out.send(z)


@implements(proc=ILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyILIFModelFloat(FloatMembrane, _ILIFClock):
    """iLIF in float64, the numpy twin of :func:`spikeconverter.plugin.ilif_step`.

    Each step does a few whole-array numpy operations; phase decisions are scalar branches.
    """

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    _payload = np.float64
    v: np.ndarray = LavaPyType(np.ndarray, float)
    v1: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int32)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def _accumulate_phase(self, a_in: np.ndarray, tau: int) -> None:
        self._accumulate(a_in, tau)
        if tau == self._t_acc - 1:
            # same operations, in the same order, as the Norse step: bias, then half an LSB
            if self._nearest:
                half = rounding_offset(self.vth, self._t_gen, self._k, self._rounding)
                if self._signed:
                    half = half * np.sign(self.v)
                self.v += half

    def _generate_phase(self) -> np.ndarray:
        z = (self.v >= self.vth).astype(float)
        if self._signed:
            z -= self.v <= -self.vth
        self.v -= z * self.vth
        self.v *= self._k
        return z


@implements(proc=ILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyILIFModelBitAcc(FixedPointMembrane, _ILIFClock):
    """iLIF with Loihi-style integers (Lava LIF conventions; see :class:`ILIF`).

    * membrane ``v``: signed 24-bit, clamped to ``[-2**23, 2**23 - 1]`` after every update,
      each clamp counted per neuron in ``saturations``;
    * input: ``a_in << 6`` (MSB alignment, as Lava's ``PyLifModelBitAcc``);
    * threshold: ``vth << 6``, ``vth`` an unsigned 17-bit mantissa;
    * bias: ``bias_mant << bias_exp`` (right shift for negative exponents), added unshifted;
    * ``k = 2``: the inverse leak is a left shift by one.

    Threshold, bias and half LSB are derived from the Vars once and again after the host
    sets a Var (``on_var_update``), so ``Var.set`` between runs takes effect at the next
    step that uses them.
    """

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=16)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    _payload = np.int32
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v1: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=3)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._require_k2("ILIF")
        self._vth_eff = None
        self._half = None

    def _scale(self) -> None:
        """``vth << 6`` and half an LSB from the Var ``vth``, once until a Var is set."""
        if self._vth_eff is not None:
            return
        vth = self.vth.astype(np.int64)
        if np.any(vth <= 0) or np.any(vth >= 2**17):
            raise ValueError(
                f"ILIF: the fixed-point vth mantissa must lie in [1, 2**17 - 1], got {self.vth!r}"
            )
        self._vth_eff = (vth << SHIFT).astype(np.int32)  # below 2**23
        self._half = fixed_rounding_offset(self._vth_eff, self._t_gen, self._rounding).astype(
            np.int32)

    def on_var_update(self) -> None:
        self._vth_eff = self._half = None  # the threshold may have been set: rescale
        super().on_var_update()

    def _accumulate_phase(self, a_in: np.ndarray, tau: int) -> None:
        v = self._accumulate(a_in, tau)
        if tau == self._t_acc - 1:
            self._scale()
            if self._nearest:
                v += self._half * np.sign(v) if self._signed else self._half
        self._clamp(v)

    def _generate_phase(self) -> np.ndarray:
        if self._vth_eff is None:  # a run that starts in the middle of a generate phase
            self._scale()
        # int32 is exact: |v| < 2**23 and 0 < vth_eff < 2**23, so 2 * (v - z * vth_eff) < 2**25
        v = np.array(self.v, dtype=np.int32)
        up = v >= self._vth_eff
        np.subtract(v, self._vth_eff, out=v, where=up)
        z = up.view(np.int8)
        if self._signed:
            down = v <= -self._vth_eff
            np.add(v, self._vth_eff, out=v, where=down)
            z = z - down.view(np.int8)
        np.left_shift(v, 1, out=v)
        self._clamp(v)
        return z
