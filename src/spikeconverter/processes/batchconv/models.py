"""CPU ProcessModels of :class:`spikeconverter.processes.batchconv.process.BatchConv`.

im2col into a preallocated patch matrix, then one matrix product per sample (float: the same
BLAS call whatever the batch size) or for the whole batch (fixed point: exact integers); per
step, or once per window on the window's spike codes (``window``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv import utils
from numpy.lib.stride_tricks import sliding_window_view

from spikeconverter.processes.batchconv.process import BatchConv
from spikeconverter.processes.loihi import WindowedSynapse, keep_heap, receive

__all__ = ["PATCH_BYTES", "PyBatchConvModelBitAcc", "PyBatchConvModelFloat"]

#: Bytes of the im2col buffer: the batch is gathered and multiplied a few samples at a time,
#: so the patches stay in the cache between their gathering and their product (and the
#: buffer does not grow with the batch).
PATCH_BYTES = 2**20


class _BatchConvModel(WindowedSynapse, PyLoihiProcessModel):
    """im2col: the padded input's patches gathered into a preallocated matrix, times the
    kernel as one ``(kw * kh * C_in, C_out)`` matrix (grouped convolutions: per kernel tap)."""

    _dtype = np.float64
    _fixed = False

    def __init__(self, proc_params):
        super().__init__(proc_params)
        keep_heap()
        p = proc_params
        self._batch = int(p["batch"])
        self._init_window(p.get("window"), (self._batch, *p["input_shape"]), self._fixed)
        self._graded = int(p["num_message_bits"]) > 0
        self._pad = tuple(int(v) for v in p["padding"])
        self._out_shape = (self._batch, *p["output_shape"])
        weight = np.asarray(p["weight"], dtype=np.float64)
        self._c_out = weight.shape[0]
        if p.get("low_weight") is not None:  # two groups: their outputs side by side
            weight = np.concatenate([weight, np.asarray(p["low_weight"], dtype=np.float64)])
        self._parts = weight.shape[0] // self._c_out
        self._prod_shape = (*self._out_shape[:-1], weight.shape[0])
        self._taps = self._make_taps(weight)
        self._buf = np.zeros(self._out_shape, dtype=self._payload)
        self._zero = np.zeros(self._out_shape, dtype=self._payload)
        self._im2col = int(p["groups"]) == 1
        if self._im2col:
            c_out, kw, kh, c_in = weight.shape
            flipped = weight[:, ::-1, ::-1, :]  # Lava convolves: correlate with the flipped kernel
            # rows in the patch order (tap i, tap j, channel), as _patches lays them out
            self._wmat = np.ascontiguousarray(
                flipped.transpose(1, 2, 3, 0).reshape(kw * kh * c_in, c_out), dtype=self._dtype)
            (pw, ph), (w_in, h_in, _) = self._pad, p["input_shape"]
            _, w_o, h_o, _ = self._out_shape
            # the patches of a few samples at a time: a buffer that stays in the cache
            row = w_o * h_o * kw * kh * c_in * np.dtype(self._dtype).itemsize
            self._sub = max(1, min(self._batch, PATCH_BYTES // max(row, 1)))
            self._xp = np.zeros((self._sub, w_in + 2 * pw, h_in + 2 * ph, c_in), self._dtype)
            self._cols = np.empty((self._sub, w_o, h_o, kw, kh, c_in), self._dtype)

    def _make_taps(self, weight: np.ndarray) -> list:
        p = self.proc_params
        sw, sh = p["stride"]
        dw, dh = p["dilation"]
        groups = int(p["groups"])
        c_out, kw, kh, c_grp = weight.shape
        w_out, h_out, _ = p["output_shape"]
        flipped = weight[:, ::-1, ::-1, :]  # Lava convolves: correlate with the flipped kernel
        o_grp = c_out // groups
        taps = []
        for i in range(kw):
            for j in range(kh):
                index = (slice(None), slice(i * dw, i * dw + sw * (w_out - 1) + 1, sw),
                         slice(j * dh, j * dh + sh * (h_out - 1) + 1, sh))
                block = flipped[:, i, j, :].reshape(groups, o_grp, c_grp).transpose(0, 2, 1)
                taps.append((index, np.ascontiguousarray(block, dtype=self._dtype)))
        return taps

    def run_spk(self) -> None:
        if self._window is not None:
            self._run_window()
            return
        self.a_out.send(self._buf)  # last step's result: one step of latency, as Lava's Conv
        s = receive(self.s_in)
        if not s.any():  # silent input: the sum is zero
            self._buf = self._zero
            return
        x = s if self._graded else s != 0
        self._buf = self._convolve(x, self.finish)

    def _convolve(self, x: np.ndarray,
                  post: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """The convolution of ``x``; ``post`` (elementwise, e.g. ``finish``) is applied to each
        sub-batch's product while it is in the cache (im2col) or to the whole result."""
        if self._im2col:
            return self._conv_im2col(x, post)
        y = self._conv(x)
        return y if post is None else post(y)

    def window_sum(self, code: np.ndarray) -> np.ndarray:
        """The convolution of a window's code (see ``WindowedSynapse``)."""
        return self._convolve(code, self.finish_window)

    def finish_window(self, a: np.ndarray) -> np.ndarray:
        return self._sum_parts(a)

    def _part(self, a: np.ndarray, i: int) -> np.ndarray:
        """Group ``i``'s outputs of a product over the groups side by side."""
        return a if self._parts == 1 else a[..., i * self._c_out:(i + 1) * self._c_out]

    def _sum_parts(self, a: np.ndarray) -> np.ndarray:
        if self._parts == 1:
            return a
        return self._part(a, 0) + self._part(a, 1)

    def _conv_im2col(self, x: np.ndarray,
                     post: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        out = None
        for lo in range(0, self._batch, self._sub):  # each sample's sums are its own
            part = x[lo:lo + self._sub]
            y = self.product(self._patches(part), self._wmat)
            y = y.reshape(len(part), *self._prod_shape[1:])
            if post is not None:  # elementwise: the same values as on the whole batch
                y = post(y)
            if out is None:
                out = np.empty((self._batch, *y.shape[1:]), dtype=y.dtype)
            out[lo:lo + len(part)] = y
        return out

    def _patches(self, x: np.ndarray) -> np.ndarray:
        """The im2col matrix ``(b, W'H', kw kh C_in)`` of ``x`` (``b`` samples, at most
        ``_sub``; a view of a reused buffer)."""
        p = self.proc_params
        (pw, ph), (sw, sh), (dw, dh) = self._pad, p["stride"], p["dilation"]
        b, w_in, h_in, _ = x.shape
        xp, cols = self._xp[:b], self._cols[:b]
        xp[:, pw:pw + w_in, ph:ph + h_in] = x  # the padding stays zero
        _, w_o, h_o, kw, kh, c_in = cols.shape
        span = (dw * (kw - 1) + 1, dh * (kh - 1) + 1)
        windows = sliding_window_view(xp, span, axis=(1, 2))  # (b, W, H, C, kw', kh')
        windows = windows[:, : sw * (w_o - 1) + 1: sw, : sh * (h_o - 1) + 1: sh, :, ::dw, ::dh]
        np.copyto(cols, windows.transpose(0, 1, 2, 4, 5, 3))
        return cols.reshape(b, w_o * h_o, kw * kh * c_in)

    def _conv(self, x: np.ndarray) -> np.ndarray:
        b = self._batch
        pw, ph = self._pad
        x = np.pad(x.astype(self._dtype), ((0, 0), (pw, pw), (ph, ph), (0, 0)))
        _, w_o, h_o, c_out = self._out_shape
        groups = int(self.proc_params["groups"])
        out = np.zeros((b, w_o * h_o, c_out), dtype=self._dtype)
        for index, block in self._taps:
            slab = x[index].reshape(b, w_o * h_o, groups, -1)  # a copy: the slab is strided
            part = np.einsum("bpgc,gco->bpgo", slab, block)
            out += part.reshape(b, w_o * h_o, c_out)
        return out.reshape(self._out_shape)

    def product(self, cols: np.ndarray, wmat: np.ndarray) -> np.ndarray:
        # a stack of (W'H', K) @ (K, O) products: one BLAS call per sample, the same call for
        # every batch size, so float sums come out bit-identical per sample
        return cols @ wmat

    def finish(self, a: np.ndarray) -> np.ndarray:
        return self._sum_parts(a)


@implements(proc=BatchConv, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyBatchConvModelFloat(_BatchConvModel):
    """Float64 Conv per sample."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    _payload = np.float64


@implements(proc=BatchConv, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyBatchConvModelBitAcc(_BatchConvModel):
    """Integer Conv: 8-bit weights, ``weight_exp`` shift, output wrapped to 24 bits
    (``lava.proc.conv.utils.signed_clamp``, as Lava's fixed-point Conv).

    Integer sums are exact in any order, so the whole batch is one matrix product per tap. They
    are formed in float32 when that is exact (every output's ``sum |w|`` times the largest
    input -- 1 for spikes, the largest code in a window -- below ``2**24``), else in float64
    (exact below ``2**53``). A window's sum of spike codes is not wrapped: the planner
    windows a Conv only where no step's sum could wrap
    (:mod:`spikeconverter.converters.to_lava.windowed`); an analog window (one frame) is
    the per-step product, wrapped as it.
    """

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    _payload = np.int32

    _fixed = True

    def __init__(self, proc_params):
        p = proc_params
        groups = [np.asarray(p["weight"], dtype=np.float64)]
        self._exps = [int(p["weight_exp"])]
        if p.get("low_weight") is not None:
            groups.append(np.asarray(p["low_weight"], dtype=np.float64))
            self._exps.append(int(p["low_weight_exp"]))
        fan_sum = max(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0.0)
                      for w in groups)
        window = p.get("window")
        if window is None:
            top = np.inf if int(p["num_message_bits"]) > 0 else 1.0
        else:
            top = np.inf if window["payload"] == "analog" else 2.0 ** window["length"] - 1
        self._dtype = np.float32 if fan_sum * top < 2**24 else np.float64
        super().__init__(proc_params)
        self._parity = [None] * len(groups)  # per group: odd-weight rows per output
        for i, (w, exp) in enumerate(zip(groups, self._exps, strict=True)):
            if window is not None and exp < 0 and np.any(np.mod(w, 2 ** -exp)):
                # (kw kh C_in, C_out), rows in the patch order
                odd = np.mod(self._part(self._wmat, i), 2) != 0
                self._parity[i] = [np.flatnonzero(odd[:, o]) for o in range(odd.shape[1])]
        if any(parity is not None for parity in self._parity):  # one padded code buffer
            self._xp_code = np.zeros((self._batch, *self._xp.shape[1:]), dtype=self._code.dtype)

    def _parity_code(self, code: np.ndarray, parity: list) -> np.ndarray:
        """``sum_t 2**(L-1-t) (y_t mod 2)`` with ``y_t`` step ``t``'s sum, from the window's
        code alone: ``y_t mod 2`` is the parity of the odd-weight inputs that spiked at ``t``,
        i.e. bit ``t`` of the XOR of their codes, so one XOR over each output's odd-weight
        patch entries gives every step's parity at once (``weight_exp = -1``, binary spikes,
        groups 1)."""
        p = self.proc_params
        (pw, ph), (sw, sh), (dw, dh) = self._pad, p["stride"], p["dilation"]
        xp = self._xp_code
        _, w_in, h_in, _ = code.shape
        xp[:, pw:pw + w_in, ph:ph + h_in] = code  # the padding stays zero
        _, w_o, h_o, kw, kh, c_in = self._cols.shape
        span = (dw * (kw - 1) + 1, dh * (kh - 1) + 1)
        win = sliding_window_view(xp, span, axis=(1, 2))  # (B, W, H, C, kw', kh')
        win = win[:, : sw * (w_o - 1) + 1: sw, : sh * (h_o - 1) + 1: sh, :, ::dw, ::dh]
        # (kw, kh, C, B, W', H'): one row of codes per patch entry, in the rows' order
        rows = np.ascontiguousarray(win.transpose(4, 5, 3, 0, 1, 2)).reshape(kw * kh * c_in, -1)
        # XOR is bytewise: eight codes per uint64 word where the row length allows
        wide = rows.view(np.uint64) if rows.nbytes % (8 * len(rows)) == 0 else rows
        out = np.zeros((len(parity), wide.shape[1]), dtype=wide.dtype)
        for o, sel in enumerate(parity):
            if sel.size:
                np.bitwise_xor.reduce(wide[sel], axis=0, out=out[o])
        return out.view(rows.dtype).T.reshape(self._out_shape).astype(np.int64)

    def product(self, cols: np.ndarray, wmat: np.ndarray) -> np.ndarray:
        n = cols.shape[0] * cols.shape[1]  # integer sums are exact in any order: one product
        return (cols.reshape(n, -1) @ wmat).reshape(cols.shape[0], cols.shape[1], -1)

    def finish(self, a: np.ndarray) -> np.ndarray:
        """Each group's sum shifted by its exponent and wrapped to 24 bits, the groups added
        (two 24-bit values: int32 is exact)."""
        out = self._finish_group(self._part(a, 0), self._exps[0])
        for i in range(1, self._parts):
            out += self._finish_group(self._part(a, i), self._exps[i])
        return out

    def _finish_group(self, a: np.ndarray, exp: int) -> np.ndarray:
        if self._dtype == np.float32 and 0 <= exp <= 7:
            # exact integers below 2**24, shifted by at most 7: int32 in place, no overflow;
            # then utils.signed_clamp's wrap to 24 bits, as two's-complement masking
            out = a.astype(np.int32)
            if exp:
                np.left_shift(out, exp, out=out)
            np.add(out, 2**23, out=out)
            np.bitwise_and(out, 2**24 - 1, out=out)
            return np.subtract(out, 2**23, out=out)
        a = np.rint(a).astype(np.int64)
        a = np.left_shift(a, exp) if exp > 0 else np.right_shift(a, -exp)
        return utils.signed_clamp(a, bits=24).astype(np.int32)

    def window_sum(self, code: np.ndarray) -> np.ndarray:
        """``W c`` of the window's code, shifted by the exponent (per group, then added)."""
        if self._w_payload == "analog":
            return self._convolve(code, self.finish)  # one frame: the per-step product, wrapped
        if any(parity is not None for parity in self._parity):  # needs the whole batch's code
            return self._window_groups(self._convolve(code), code)
        return self._convolve(code, self._window_groups)

    def _window_groups(self, y: np.ndarray, code: np.ndarray | None = None) -> np.ndarray:
        """The window sum from the product ``y`` over the groups side by side (``code``: the
        window's code, read only for the parity correction)."""
        if self._parts == 1:
            return self._window_group(y, code, 0)
        out = self._window_group(self._part(y, 0), code, 0).astype(np.int64)
        out += self._window_group(self._part(y, 1), code, 1)
        # the planner merges two groups only where their sum fits the int32 message
        return out.astype(np.int32)

    def _window_group(self, y: np.ndarray, code: np.ndarray, i: int) -> np.ndarray:
        """Group ``i``'s window sum from its product ``y`` (exact integers in float32/64 as
        chosen above); below ``2**31`` (the planner)."""
        exp, parity = self._exps[i], self._parity[i]
        if parity is not None:
            out = y.astype(np.int64)
            out -= self._parity_code(code, parity)
            np.right_shift(out, -exp, out=out)
            return out.astype(np.int32)
        if self._dtype == np.float32 and exp >= 0:
            # float32 was chosen because the sum is below 2**24; shifted, below 2**31 (the
            # planner): int32 throughout, no int64 temporaries
            out = y.astype(np.int32)
            if exp:
                np.left_shift(out, exp, out=out)
            return out
        out = y.astype(np.int64)
        if exp > 0:
            np.left_shift(out, exp, out=out)
        elif exp < 0:
            # each step's sum is floor-shifted: exact on the window's sum when 2**-exp divides
            # every weight (else exponent -1: sum_t 2**k floor(y_t / 2) = (W c - P) / 2, with
            # the parities P of _parity_code, above)
            np.right_shift(out, -exp, out=out)
        return out.astype(np.int32)
