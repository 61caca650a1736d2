"""CPU ProcessModels of :class:`spikeconverter.processes.batchdense.process.BatchDense`."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

from spikeconverter.processes.batchdense.process import BatchDense
from spikeconverter.processes.loihi import WindowedSynapse, keep_heap, receive

__all__ = ["PyBatchDenseModelBitAcc", "PyBatchDenseModelFloat", "gather_rows"]


def gather_rows(w: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray] | None:
    """``(column, weight)`` per row of a CSR matrix with at most one nonzero per row (rows
    without one read column 0 with weight 0), or ``None`` for any other matrix."""
    counts = np.diff(w.indptr)
    if counts.max(initial=0) > 1:
        return None
    cols = np.zeros(w.shape[0], dtype=np.intp)
    weights = np.zeros(w.shape[0], dtype=np.float64)
    rows = np.flatnonzero(counts)
    cols[rows] = w.indices[w.indptr[rows]]
    weights[rows] = w.data[w.indptr[rows]]
    return cols, weights


def _stack(groups: list) -> Any:
    """The groups' matrices one above the other (their outputs side by side)."""
    if len(groups) == 1:
        return groups[0]
    if any(sp.issparse(w) for w in groups):
        return sp.vstack([sp.csr_matrix(w) for w in groups], format="csr")
    return np.vstack(groups)


class _BatchMatrixModel(WindowedSynapse, PyLoihiProcessModel):
    """Sends last step's result, then computes this step's ``W @ s_in[b]`` for every ``b``
    (windowed: ``W @ c[b]`` of the window's code, once per window)."""

    _fixed = False

    def __init__(self, proc_params):
        super().__init__(proc_params)
        keep_heap()
        self._batch = int(proc_params["batch"])
        self._n_in = int(np.prod(proc_params["in_shape"]))
        self._init_window(proc_params.get("window"), (self._batch, self._n_in), self._fixed)
        self._out_shape = (self._batch, *proc_params["out_shape"])
        self._graded = int(proc_params["num_message_bits"]) > 0
        groups = [proc_params["weights"]]
        if proc_params.get("low_weights") is not None:
            groups.append(proc_params["low_weights"])
        self._n_out = int(np.prod(proc_params["out_shape"]))
        self._parts = len(groups)
        self._w = _stack([self.prepare(w) for w in groups])  # each group prepared alone
        self._sparse = sp.issparse(self._w)
        self._wt = None if self._sparse else np.ascontiguousarray(self._w.T, dtype=np.float64)
        self._gather = gather_rows(self._w) if self._sparse else None
        self._buf = np.zeros(self._out_shape, dtype=self._payload)
        self._zero = np.zeros(self._out_shape, dtype=self._payload)

    def prepare(self, w):
        return w.astype(np.float64)

    def run_spk(self) -> None:
        if self._window is not None:
            self._run_window()
            return
        self.a_out.send(self._buf)  # last step's result: one step of latency
        s = receive(self.s_in).reshape(self._batch, self._n_in)
        if not s.any():  # silent input (a source in its accumulate phase): nothing to add
            self._buf = self._zero
            return
        if self._gather is not None:
            # at most one synapse per output (identity and option-A shortcuts, subsampling)
            self._buf = self.gathered(s).reshape(self._out_shape)
            return
        x = s.astype(np.float64) if self._graded else (s != 0).astype(np.float64)
        self._buf = self.finish(self._product(x)).reshape(self._out_shape)

    def window_sum(self, code: np.ndarray) -> np.ndarray:
        """``W @ c[b]`` of a window's code ``c`` ``(B, n_in)`` (see ``WindowedSynapse``)."""
        if self._gather is not None:
            return self.gathered_code(code).reshape(self._out_shape)
        return self.finish(self._product(code.astype(np.float64))).reshape(self._out_shape)

    def _product(self, x: np.ndarray) -> np.ndarray:
        if self._sparse:
            # CSR times a (n_in, B) block: each row's nonzeros are summed in their stored order
            # whatever B, so every sample gets the bits it would get alone
            y = np.asarray(self._w @ np.ascontiguousarray(x.T)).T
        else:
            # one (1, n_in) @ (n_in, n_out) product per sample: the same BLAS call for any B
            y = (x[:, None, :] @ self._wt)[:, 0, :]
        return y

    def gathered(self, s: np.ndarray) -> np.ndarray:
        # the sum of one product is that product (+ 0.0: the sparse sum starts at +0.0)
        cols, weights = self._gather
        y = s[:, cols].astype(np.float64) if self._graded else (s[:, cols] != 0).astype(float)
        y *= weights
        y += 0.0
        return self._sum_parts(y)

    def gathered_code(self, code: np.ndarray) -> np.ndarray:
        cols, weights = self._gather
        y = code[:, cols].astype(np.float64)
        y *= weights
        y += 0.0
        return self._sum_parts(y)

    def finish(self, y: np.ndarray) -> np.ndarray:
        return self._sum_parts(y)

    def _part(self, y: np.ndarray, i: int) -> np.ndarray:
        """Group ``i``'s outputs ``(B, n_out)`` of a result over the groups side by side."""
        return y if self._parts == 1 else y[:, i * self._n_out:(i + 1) * self._n_out]

    def _sum_parts(self, y: np.ndarray) -> np.ndarray:
        return y if self._parts == 1 else self._part(y, 0) + self._part(y, 1)


@implements(proc=BatchDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyBatchDenseModelFloat(_BatchMatrixModel):
    """Float64 synapses (Lava's ``PyDenseModelFloat`` per sample)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    _payload = np.float64


@implements(proc=BatchDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyBatchDenseModelBitAcc(_BatchMatrixModel):
    """Integer synapses as Lava's ``PyDenseModelBitAcc``/``PySparseModelBitAcc`` per sample.

    Products are formed in float64: exact while ``|sum|`` stays below ``2**53`` (8-bit weights,
    24-bit graded inputs and a fan-in below ``2**21``).
    """

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    _payload = np.int32
    _fixed = True

    def __init__(self, proc_params):
        super().__init__(proc_params)
        # 8-bit integer mantissas (prepare truncated them)
        self._gather_int = None if self._gather is None else self._gather[1].astype(np.int32)
        self._one_gather = self._merged_gather()

    def _merged_gather(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Two groups gathering the same inputs with left shifts (a scaled identity's split
        weights): ``(columns, (w_0 << e_0) + (w_1 << e_1))`` as int64, one gather and one
        product instead of two (the same integers, wrapped to int32 the same way)."""
        p = self.proc_params
        if self._gather is None or self._parts != 2:
            return None
        exps = (int(p["weight_exp"]), int(p["low_weight_exp"]))
        n = self._n_out
        cols, w = self._gather[0], self._gather_int.astype(np.int64)
        (c0, c1), (w0, w1) = (cols[:n], cols[n:]), (w[:n], w[n:])
        if min(exps) < 0 or not np.all((c0 == c1) | (w0 == 0) | (w1 == 0)):
            return None
        return np.where(w0 != 0, c0, c1), (w0 << exps[0]) + (w1 << exps[1])

    def prepare(self, w):
        data = w.data if sp.issparse(w) else w
        mode = determine_sign_mode(data) if data.size else None
        if mode is not None:
            data = truncate_weights(clip_weights(np.asarray(data), mode, num_bits=8), mode, 8)
        if sp.issparse(w):
            w = w.copy()
            w.data = np.asarray(data, dtype=np.float64)
            return w
        return np.asarray(data, dtype=np.float64)

    def gathered(self, s: np.ndarray) -> np.ndarray:
        # integer products: int32 is exact for binary input (8-bit weights), int64 for graded
        if self._one_gather is not None:
            cols, w = self._one_gather
            x = s[:, cols].astype(np.int64) if self._graded else s[:, cols] != 0
            return (x * w).astype(np.int32)
        cols = self._gather[0]
        if self._graded:
            a = s[:, cols].astype(np.int64) * self._gather_int  # int64 products
        else:
            a = (s[:, cols] != 0) * self._gather_int
        return self.shift(a)

    def gathered_code(self, code: np.ndarray) -> np.ndarray:
        if self._one_gather is not None:
            cols, w = self._one_gather
            return (code[:, cols].astype(np.int64) * w).astype(np.int32)
        # int64 codes times the int32 mantissas: int64 products, no per-window weight copy
        return self.shift(code[:, self._gather[0]].astype(np.int64) * self._gather_int)

    def finish(self, y: np.ndarray) -> np.ndarray:
        return self.shift(np.rint(y).astype(np.int64))

    def shift(self, a: np.ndarray) -> np.ndarray:
        """``a << weight_exp`` (arithmetic right shift for a negative exponent), as int32;
        with two groups each by its own exponent, added as the target adds two int32
        messages (``receive``; windowed targets sum in int64: the planner merges two groups
        only where their window sum fits int32)."""
        p = self.proc_params
        out = _shifted(self._part(a, 0), int(p["weight_exp"]))
        if self._parts == 2:
            out = out + _shifted(self._part(a, 1), int(p["low_weight_exp"]))
        return out


def _shifted(a: np.ndarray, exp: int) -> np.ndarray:
    """``a << exp`` (arithmetic right shift for a negative exponent), as int32."""
    if exp:
        a = np.left_shift(a, exp) if exp > 0 else np.right_shift(a, -exp)
    return a.astype(np.int32, copy=False)
