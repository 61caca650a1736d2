"""CPU ProcessModels of :class:`spikeconverter.processes.batchconv.process.BatchConv`.

One matrix product per kernel tap and sample (im2col without building the patch matrix), as
:mod:`spikeconverter.processes.fastconv.models`, with a leading batch axis.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv import utils

from spikeconverter.processes.batchconv.process import BatchConv

__all__ = ["PyBatchConvModelBitAcc", "PyBatchConvModelFloat"]


class _BatchConvModel(PyLoihiProcessModel):
    """Per tap: a strided slab of the padded input times the tap's (C_in, C_out) block."""

    _dtype = np.float64

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self._batch = int(p["batch"])
        self._graded = int(p["num_message_bits"]) > 0
        self._pad = tuple(int(v) for v in p["padding"])
        self._out_shape = (self._batch, *p["output_shape"])
        self._taps = self._make_taps(np.asarray(p["weight"], dtype=np.float64))
        self._buf = np.zeros(self._out_shape, dtype=self._payload)
        self._zero = np.zeros(self._out_shape, dtype=self._payload)

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
        self.a_out.send(self._buf)  # last step's result: one step of latency, as Lava's Conv
        s = self.s_in.recv()
        if not s.any():  # silent input: the sum is zero
            self._buf = self._zero
            return
        x = s.astype(self._dtype) if self._graded else (s != 0).astype(self._dtype)
        self._buf = self.finish(self._conv(x))

    def _conv(self, x: np.ndarray) -> np.ndarray:
        b = self._batch
        pw, ph = self._pad
        x = np.pad(x, ((0, 0), (pw, pw), (ph, ph), (0, 0)))
        _, w_o, h_o, c_out = self._out_shape
        groups = int(self.proc_params["groups"])
        out = np.zeros((b, w_o * h_o, c_out), dtype=self._dtype)
        for index, block in self._taps:
            slab = x[index].reshape(b, w_o * h_o, -1)  # a copy: the slab is strided
            if groups == 1:
                out += self.product(slab, block[0])
            else:
                part = np.einsum("bpgc,gco->bpgo", slab.reshape(b, w_o * h_o, groups, -1), block)
                out += part.reshape(b, w_o * h_o, c_out)
        return out.reshape(self._out_shape)

    def product(self, slab: np.ndarray, block: np.ndarray) -> np.ndarray:
        # a stack of (W'H', C) @ (C, O) products: one BLAS call per sample, the same call for
        # every batch size, so float sums come out bit-identical per sample
        return slab @ block

    def finish(self, a: np.ndarray) -> np.ndarray:
        return a


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
    are formed in float32 when that is exact (binary input and every output's ``sum |w|``
    below ``2**24``), else in float64 (exact below ``2**53``).
    """

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    _payload = np.int32

    def __init__(self, proc_params):
        weight = np.asarray(proc_params["weight"], dtype=np.float64)
        fan_sum = np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1).max(initial=0.0)
        graded = int(proc_params["num_message_bits"]) > 0
        self._dtype = np.float32 if not graded and fan_sum < 2**24 else np.float64
        super().__init__(proc_params)

    def product(self, slab: np.ndarray, block: np.ndarray) -> np.ndarray:
        n = slab.shape[0] * slab.shape[1]
        return (slab.reshape(n, -1) @ block).reshape(slab.shape[0], slab.shape[1], -1)

    def finish(self, a: np.ndarray) -> np.ndarray:
        exp = int(self.proc_params["weight_exp"])
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
