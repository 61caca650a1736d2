"""im2col-style ProcessModels for Lava's ``Conv`` Process: one matrix product per kernel tap.

Lava's own CPU models loop ``scipy.signal.convolve2d`` over every (output, input) channel pair;
these multiply, for each of the kh*kw kernel taps, a strided view of the padded input (no copy)
by that tap's (C_in, C_out) weight block and sum the products. Same semantics: a true
convolution over (W, H, C) (the kernel is flipped), one step of latency, float or
24-bit-clamped integer output.

They are not found by Lava's scan of ``lava/proc/conv``: select them through the run config,
``Loihi2SimCfg(exception_proc_model_map={Conv: PyConvModelIm2colFloat})``, or with
:func:`spikeconverter.processes.fastconv.config.fast_conv_run_config`.
"""

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv import utils
from lava.proc.conv.process import Conv


class AbstractPyConvIm2colModel(PyLoihiProcessModel):
    """Shared im2col machinery; subclasses fix the port types and the output precision."""

    s_in = None
    a_out = None
    a_buf = None
    weight = None

    kernel_size: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    stride: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    padding: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    dilation: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    groups: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    num_message_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)
    weight_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    num_weight_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)

    def __init__(self, proc_params=None) -> None:
        super().__init__(proc_params)
        self._plan = None

    def _make_plan(self) -> tuple:
        """Per kernel tap: the strided input slices and its weight block, computed once."""
        sw, sh = (int(v) for v in self.stride)
        dw, dh = (int(v) for v in self.dilation)
        groups = int(self.groups[0])
        c_out, kw, kh, c_grp = self.weight.shape
        w_out, h_out, _ = self.a_out.shape
        # Lava convolves: flip the kernel so that correlating with it matches
        flipped = self.weight[:, ::-1, ::-1, :].astype(np.float64)
        o_grp = c_out // groups
        taps = []
        for i in range(kw):
            for j in range(kh):
                index = (slice(i * dw, i * dw + sw * (w_out - 1) + 1, sw),
                         slice(j * dh, j * dh + sh * (h_out - 1) + 1, sh))
                # (G, Cg, Og): input channel block -> output channel block of each group
                block = flipped[:, i, j, :].reshape(groups, o_grp, c_grp).transpose(0, 2, 1)
                taps.append((index, block[0].copy() if groups == 1 else block.copy()))
        return groups, c_grp, taps

    def _conv(self, s_in: np.ndarray) -> np.ndarray:
        """im2col without the copy: one matrix product per kernel tap, summed."""
        if self._plan is None:
            self._plan = self._make_plan()
        groups, c_grp, taps = self._plan
        pw, ph = (int(v) for v in self.padding)
        x = np.pad(s_in.astype(np.float64), ((pw, pw), (ph, ph), (0, 0)))
        out = np.zeros(self.a_out.shape)
        for index, block in taps:
            slab = x[index]
            if groups == 1:
                out += slab @ block
            else:
                w_o, h_o = slab.shape[:2]
                part = np.einsum("whgc,gco->whgo", slab.reshape(w_o, h_o, groups, c_grp), block)
                out += part.reshape(w_o, h_o, -1)
        return out

    def run_spk(self) -> None:
        if self.a_buf is None:
            self.a_buf = np.zeros(self.a_out.shape)
        self.a_out.send(self.a_buf)  # last step's result: one step of latency, as Lava's Conv
        s_in = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s_in = s_in.astype(bool)
        self.a_buf = self.finish(self._conv(s_in))

    def finish(self, a: np.ndarray) -> np.ndarray:
        return a


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyConvModelIm2colFloat(AbstractPyConvIm2colModel):
    """Conv with float synapses, im2col implementation (equals ``PyConvModelFloat``)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    a_buf: np.ndarray = LavaPyType(np.ndarray, float)
    weight: np.ndarray = LavaPyType(np.ndarray, float)


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyConvModelIm2colFixed(AbstractPyConvIm2colModel):
    """Conv with integer synapses: 8-bit weights, ``weight_exp`` shift, 24-bit clamped output.

    Lava's own CPU ``PyConvModelFixed`` ignores ``weight_exp``; this model applies it the way
    Lava's bit-accurate Dense does (left shift, or arithmetic right shift when negative), so a
    per-layer exponent works. With ``weight_exp = 0`` both agree exactly. Products are formed
    in float64, exact for 8-bit weights, 24-bit inputs and fan-in below 2**21.
    """

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)

    def finish(self, a: np.ndarray) -> np.ndarray:
        a = np.rint(a).astype(np.int64)
        exp = int(self.weight_exp.item())
        a = np.left_shift(a, exp) if exp > 0 else np.right_shift(a, -exp)
        return utils.signed_clamp(a, bits=24).astype(np.int32)
