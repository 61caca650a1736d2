"""CPU ProcessModels of :class:`spikeconverter.processes.batchilif.process.BatchILIF`.

The per-step dynamics are the iLIF models' (elementwise, so batched as they are). The two
faster modes of :class:`~spikeconverter.processes.batchilif.process.BatchILIF`
(``window_input``, ``code_output``) replace the per-step accumulate and generate hooks; the
window clock, the banks and the clamp stay the iLIF models'.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikeconverter.coding import rounding_offset
from spikeconverter.processes.batchilif.process import BatchILIF
from spikeconverter.processes.ilif.models import PyILIFModelBitAcc, PyILIFModelFloat
from spikeconverter.processes.loihi import (
    V_MAX,
    V_MIN,
    keep_heap,
    receive,
    receive_parts,
    receive_sum,
)

__all__ = ["CHUNK_ELEMENTS", "PyBatchILIFModelBitAcc", "PyBatchILIFModelFloat", "batch_slices"]

#: Neurons per slice of the batch axis at a window's end (fixed point): each slice's membrane
#: update and code pass over arrays of about half a megabyte (int64), which stay in the cache
#: from one pass to the next, whatever the batch size. Elementwise, so every slice computes
#: what the whole batch would.
CHUNK_ELEMENTS = 2**16


class _FastModes:
    """``run_spk`` of the batched models: the per-step one unless ``window_input`` or
    ``code_output`` is set; then the input is read only when the membrane needs it and the
    generate phase may send the bits of the window's code."""

    _code_output_supported = False
    _wide = np.float64
    _chunked = False  # whole arrays at a window's end (float); slices of the batch (fixed)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        keep_heap()
        p = proc_params
        self._window_in = bool(p.get("window_input", False))
        self._code_out = bool(p.get("code_output", False)) and self._code_output_supported
        self._code_send = self._code_out and bool(p.get("code_send", False))
        self._bound = int(p.get("input_bound", 0))
        self._gain = int(p.get("prefix_gain", 1))
        self._shift_b = int(p.get("bias_shift", 0))
        self._fast = self._window_in or self._code_out
        self._codes: list = [None, None]  # per bank: the generate phase's spikes
        self._slices: list | None = None  # set at the first window's end (the Vars exist)

    def run_spk(self) -> None:
        if not self._fast:
            super().run_spk()
            return
        a_in = None if self._window_in else receive(self.a_in)
        if self._double:
            self._run_banks_fast(a_in)
            return
        tau = self._tau()
        if 0 <= tau < self._t_acc:
            self._accumulating = True
            self._accumulate_fast(a_in, tau, 0)
        if tau < self._t_acc:  # idle or accumulating
            if not self._code_send:
                self._send_silence(self.s_out)
            return
        self._accumulating = False
        if not self._code_send:
            self.s_out.send(self._generate_fast(0, tau - self._t_acc))
        elif tau == self._t_acc:  # the whole generate phase in one message: the code's bytes
            self.s_out.send(self._generate_fast(0, -1))

    def _run_banks_fast(self, a_in) -> None:
        # as _run_banks, without zeroing idle banks: no fast hook reads a bank before it
        # writes it (the windowed membrane is overwritten, the code replaces the generate)
        (acc_bank, tau), (gen_bank, gen_tau) = self._bank_phases()
        z = None
        if gen_bank >= 0:
            self._accumulating = False
            z = self._generate_fast(gen_bank, gen_tau)
        if acc_bank >= 0:
            self._accumulating = True
            self._on_bank(acc_bank, self._accumulate_fast, a_in, tau, acc_bank)
        if z is None:
            self._send_silence(self.s_out)
        else:
            self.s_out.send(z)

    def _accumulate_fast(self, a_in, tau: int, bank: int) -> None:
        if not self._window_in:
            self._accumulate_phase(a_in, tau)
        elif tau == self._t_acc - 1:
            self._window_end(bank)
            return
        else:
            return
        if self._code_out and tau == self._t_acc - 1:
            self._codes[bank] = self._make_code(self.v)

    def _window_end(self, bank: int) -> None:
        """The window's membrane from the summed input (and its code), a slice of the batch
        at a time (``_slices``)."""
        if self._slices is None:
            self._slices = batch_slices(self.v.shape) if self._chunked else [slice(None)]
        if len(self._slices) == 1:
            self._accumulate_window(receive_sum(self.a_in, self._wide))
            if self._code_out:
                self._codes[bank] = self._make_code(self.v)
            return
        msgs = receive_parts(self.a_in)
        codes = None
        for sl in self._slices:
            total = msgs[0][sl].astype(self._wide)
            for m in msgs[1:]:
                total += m[sl]
            self._accumulate_window(total, sl)
            if self._code_out:
                part = self._make_code(self.v[sl], sl)
                codes = codes or _full_like(part, len(self.v))
                _put(codes, part, sl)
        if self._code_out:
            self._codes[bank] = codes

    def _generate_fast(self, bank: int, tau: int) -> np.ndarray:
        if not self._code_out:
            return self._on_bank(bank, self._generate_phase)
        if self._codes[bank] is None:  # a run that starts in the middle of a generate phase
            self._codes[bank] = self._on_bank(bank, lambda: self._make_code(self.v))
        return self._code_spikes(self._codes[bank], tau)


@implements(proc=BatchILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyBatchILIFModelFloat(_FastModes, PyILIFModelFloat):
    """The float iLIF model (elementwise, so batched as it is); never saturates. Spikes go
    out as ``int8`` (exact for 0/1 and signed -1/0/+1): an eighth of float64's bytes through
    the channels. Windowed input: ``v = sum + bias * k**bias_shift`` (+ half an LSB)."""

    implements_process = None  # re-bound to BatchILIF by @implements
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int8, precision=8)
    _payload = np.int8
    saturation_count: np.ndarray = LavaPyType(np.ndarray, np.int64)
    unverified: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def _accumulate_window(self, total: np.ndarray) -> None:
        self.v[:] = total
        bias = self.bias_mant
        for _ in range(self._shift_b):  # as the per-step model doubles it (k times) after entry
            bias = bias * self._k
        self.v += bias
        if self._nearest:  # as PyILIFModelFloat._accumulate_phase
            half = rounding_offset(self.vth, self._t_gen, self._k, self._rounding)
            if self._signed:
                half = half * np.sign(self.v)
            self.v += half


@implements(proc=BatchILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyBatchILIFModelBitAcc(_FastModes, PyILIFModelBitAcc):
    """The fixed-point iLIF model, counting data-losing clamps in ``saturations`` and
    ``saturation_count`` (see :class:`~spikeconverter.processes.batchilif.process.BatchILIF`).
    Spikes go out as ``int8``. Windowed input and code output as described there; a windowed
    neuron that cannot prove it never clamped before its window's last step is counted in
    ``unverified``."""

    implements_process = None  # re-bound to BatchILIF by @implements
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int8, precision=8)
    _payload = np.int8
    saturation_count: np.ndarray = LavaPyType(np.ndarray, np.int64)
    unverified: np.ndarray = LavaPyType(np.ndarray, np.int64)
    _code_output_supported = True
    _wide = np.int64
    _chunked = True

    def _clamp(self, v: np.ndarray, sl: slice = slice(None)) -> None:
        if v.size and (int(v.max()) > V_MAX or int(v.min()) < V_MIN):  # two cheap reductions
            if self._accumulating:  # set by the model for the phase this clamp is in
                over = (v > V_MAX) | (v < V_MIN)
                self.saturations[sl] += over
                self.saturation_count += int(over.sum())
            v = np.clip(v, V_MIN, V_MAX)
        self.v[sl] = v

    def _accumulate_window(self, total: np.ndarray, sl: slice = slice(None)) -> None:
        """``v = (sum << a) + (bias << bias_shift)`` (+ half an LSB), clamped, with
        ``a = a_in_shift`` (6 by default): the per-step membrane when nothing clamped before
        the last step, which is checked here. ``total`` is the batch's slice ``sl``."""
        self._scale()
        a = self._a_in_shift
        bias, b_top, bias32 = self._window_bias()
        bias = _rows(bias, sl)
        bias32 = None if bias32 is None else _rows(bias32, sl)
        top = max(int(total.max(initial=0)), -int(total.min(initial=0)))
        if self._gain * (top << a) + (self._bound << (a + 1)) + b_top > 2 * V_MAX:
            # some neuron may fail: test each (2**a |sum| + 2**(a+1) S + |bias| <= 2 V_MAX)
            slack = 2 * V_MAX - (self._bound << (a + 1)) - np.abs(bias)
            over = np.left_shift(np.abs(total), a) * self._gain > slack
            bad = int(np.count_nonzero(np.broadcast_to(over, total.shape)))
            if bad:
                self.unverified += bad
        # int32 when |sum| < 2**24 and |bias| < 2**29: |v| < 2**30 + 2**29 + 2**23
        small = top < 2**24 and bias32 is not None
        v = np.left_shift(total.astype(np.int32) if small else total, a)
        v += bias32 if small else bias
        if self._nearest:
            half = _rows(self._half, sl)
            v += half * np.sign(v) if self._signed else half
        self._clamp(v, sl)

    def _scale(self) -> None:
        """As the iLIF model's; the batch's thresholds kept once when every sample has the
        same (``_one_row``)."""
        if self._vth_eff is None:
            super()._scale()
            self._vth_eff, self._half = _one_row(self._vth_eff), _one_row(self._half)

    def _bias_term(self) -> np.ndarray:
        if self._bias_cache is None:
            self._bias_cache = _one_row(super()._bias_term())
        return self._bias_cache

    _wbias: tuple | None = None

    def _window_bias(self) -> tuple:
        """``(bias, top, bias32)``: ``bias << bias_shift`` (int64), its largest magnitude and
        the same as int32 (None when ``top >= 2**29``); kept until a Var is set."""
        if self._wbias is None:
            bias = self._bias_term()
            if self._shift_b:
                bias = np.left_shift(bias, self._shift_b)
            b_top = int(np.abs(bias).max(initial=0))
            self._wbias = (bias, b_top, bias.astype(np.int32) if b_top < 2**29 else None)
        return self._wbias

    _code_div: np.ndarray | None = None

    def on_var_update(self) -> None:
        self._wbias = self._code_div = None
        super().on_var_update()

    def _make_code(self, v: np.ndarray, sl: slice = slice(None)) -> tuple:
        """The generate phase's spikes from the membrane ``v`` (the batch's slice ``sl``) at
        the window's end:
        ``(planes, None, None)`` with ``planes[t]`` the spikes of generate step ``t``
        (``t_gen <= 8``: one unpack), else ``(None, code, sign)``."""
        if self._vth_eff is None:
            self._scale()
        t = self._t_gen
        v = np.asarray(v)
        mag = np.abs(v) if self._signed else np.maximum(v, 0)
        # floor(|v| 2**(t-1) / vth) in float64: the quotient is correctly rounded, and a
        # non-integer quotient below 2**t is at least 1 / vth > 2**-23 from the next integer,
        # far more than its rounding error (< 2**(t - 53)); exact for t <= 24. Divided by
        # vth / 2**(t-1) instead (one pass less): scaling by a power of two is exact, so the
        # two quotients are the same real number, rounded the same
        if self._code_div is None:
            self._code_div = self._vth_eff.astype(np.float64) / 2.0 ** (t - 1)
        code = mag.astype(np.float64)
        code /= _rows(self._code_div, sl)
        np.floor(code, out=code)
        np.minimum(code, 2**t - 1, out=code)
        code = code.astype(np.uint8 if t <= 8 else np.int64)
        sign = np.sign(v).astype(np.int8) if self._signed else None
        if self._code_send:  # unsigned, t <= 8: sent as it is
            return None, code, None
        if t <= 8:
            planes = np.unpackbits(code.astype(np.uint8)[None], axis=0)[8 - t:]
            planes = planes.view(np.int8)
            if sign is not None:
                planes *= sign
            return planes, None, None
        return None, code, sign

    def _code_spikes(self, state: tuple, tau: int) -> np.ndarray:
        """The spikes of generate step ``tau``; ``tau = -1``: the code itself as int8 bytes
        (``code_send``)."""
        planes, code, sign = state
        if tau < 0:
            return code.view(np.int8)
        if planes is not None:
            return planes[tau]
        z = ((code >> (self._t_gen - 1 - tau)) & 1).astype(np.int8)
        return z * sign if sign is not None else z


def _full_like(part: tuple, batch: int) -> tuple:
    """Empty arrays for the whole batch shaped as ``_make_code``'s result for a slice (the
    planes' batch axis is their second)."""
    out = []
    for i, a in enumerate(part):
        if a is None:
            out.append(None)
            continue
        axis = 1 if i == 0 else 0
        shape = list(a.shape)
        shape[axis] = batch
        out.append(np.empty(shape, dtype=a.dtype))
    return tuple(out)


def _put(full: tuple, part: tuple, sl: slice) -> None:
    """Copy a slice's ``_make_code`` result into the whole batch's arrays."""
    for i, (dst, src) in enumerate(zip(full, part, strict=True)):
        if dst is not None:
            dst[(slice(None), sl) if i == 0 else sl] = src


def batch_slices(shape: tuple) -> list:
    """Slices of the batch axis (the first of ``shape``) of about ``CHUNK_ELEMENTS`` neurons."""
    batch = int(shape[0]) if shape else 1
    rows = max(1, CHUNK_ELEMENTS // max(int(np.prod(shape[1:], dtype=np.int64)), 1))
    return [slice(lo, lo + rows) for lo in range(0, batch, rows)]


def _one_row(a: np.ndarray) -> np.ndarray:
    """``a``'s first sample (batch axis kept, length 1) when every sample holds the same values,
    else ``a``: parameters derived from the Vars (thresholds, biases) are kept once and
    broadcast, not once per sample (memory and passes that grew with the batch)."""
    if a.ndim and a.shape[0] > 1 and bool((a == a[:1]).all()):
        return a[:1].copy()
    return a


def _rows(a: np.ndarray, sl: slice) -> np.ndarray:
    """The batch slice ``sl`` of ``a``, or ``a`` itself where it holds one sample for all."""
    return a if a.shape[0] == 1 else a[sl]
