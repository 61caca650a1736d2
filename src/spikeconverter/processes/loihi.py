"""What the ProcessModels share: Loihi's fixed-point conventions and the window clock.

Kept outside the Process folders, which Lava scans for ProcessModels.
"""

from __future__ import annotations

import ctypes
import multiprocessing
from typing import Any

import numpy as np
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import IdentityTransformer, PyInPort

from spikeconverter.coding import rounding_offset
from spikeconverter.processes.base import A_IN_SHIFT_MAX

__all__ = [
    "SHIFT",
    "V_MAX",
    "V_MIN",
    "FixedPointMembrane",
    "FloatMembrane",
    "WindowClockModel",
    "WindowedSynapse",
    "candidate_mask_step",
    "fixed_rounding_offset",
    "keep_heap",
    "receive",
    "receive_parts",
    "receive_sum",
    "validate_fixed_point",
]

#: Range of a 24-bit signed membrane.
V_MIN = -(2**23)
V_MAX = 2**23 - 1
#: Loihi MSB-aligns thresholds and synaptic input with a 6-bit shift (Lava's LIF convention).
SHIFT = A_IN_SHIFT_MAX
#: Mantissa ranges of the fixed-point Vars (Lava LIF: 17-bit unsigned vth, 13-bit signed bias).
VTH_RANGE = (1, 2**17 - 1)
BIAS_MANT_RANGE = (-(2**12), 2**12 - 1)


def _check_mantissa(kind: str, proc: Any, var: str, lo: int, hi: int, what: str) -> None:
    value = np.asarray(getattr(proc, var).init, dtype=np.float64)
    bad = (value != np.round(value)) | (value < lo) | (value > hi)
    if np.any(bad):
        first = value.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]]
        raise ValueError(
            f"{kind} {proc.name!r}: the fixed-point Var {var!r} must hold integer mantissas in "
            f"[{lo}, {hi}] ({what}); it holds {first!r} (Lava would truncate it silently)"
        )


def validate_fixed_point(proc: Any) -> None:
    """Raise ValueError if ``proc`` (an iLIF or Readout Process) cannot run bit-accurately:
    ``k`` must be 2, the Vars ``vth`` (if it has one) and ``bias_mant`` integer mantissas in
    :data:`VTH_RANGE` and :data:`BIAS_MANT_RANGE`. The message names the Process and the Var.
    """
    kind = type(proc).__name__
    if proc.proc_params["k"] != 2.0:
        raise ValueError(
            f"{kind} {proc.name!r}: k={proc.proc_params['k']} runs only in the floating_pt "
            "models; the fixed-point models implement k=2 (a left shift)"
        )
    if "vth" in proc.vars.member_names:
        _check_mantissa(kind, proc, "vth", *VTH_RANGE, "effective threshold vth << 6")
    _check_mantissa(kind, proc, "bias_mant", *BIAS_MANT_RANGE, "scaled by 2**bias_exp")


#: glibc's ``mallopt`` parameters (``malloc.h``).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_HEAP_KEPT: list[bool] = []


def keep_heap() -> None:
    """Make this process's ``malloc`` reuse freed memory for large arrays (glibc only).

    Called by the batched models' constructors, which Lava runs in its worker processes; a
    no-op elsewhere (a model built in the calling process, e.g. by a test, leaves its
    allocator alone).
    glibc serves a request above its mmap threshold (at most 32 MiB) with a fresh mapping and
    unmaps it on ``free``: every step's fresh arrays of a large batch (a ``(256, 16384)``
    int64 membrane is 32 MiB) then fault in every page again, which made the per-sample cost
    grow with the batch (a fresh 32 MiB cast took 3.4x the time of one into a reused buffer).
    With mappings off and no trimming, the heap keeps the worker's peak working set, the same
    arrays step after step, so memory stays bounded by one step's arrays.
    """
    if _HEAP_KEPT or multiprocessing.parent_process() is None:  # not a worker
        return
    _HEAP_KEPT.append(True)
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: its default policy stays
        return
    mallopt(_M_MMAP_MAX, 0)
    mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)


#: Integer messages and biases below this magnitude keep the membrane update inside int32.
INT32_SAFE = 2**24


def fixed_rounding_offset(vth_eff: Any, t_gen: int, rounding: str) -> np.ndarray:
    """Rounding offset of the integer membrane: :func:`spikeconverter.coding.rounding_offset`
    for ``k = 2``, floored to an integer.

    For ``"nearest"`` this is Loihi's shift ``vth_eff >> t_gen`` (half an LSB is
    ``vth_eff * 2**-t_gen``); it is exact when ``vth_eff`` is divisible by ``2**t_gen``, which
    a converter must choose. For ``"floor"`` it is 0. The float product is exact here
    (``|vth_eff| < 2**53`` times a power of two), so flooring it equals the shift bit for bit.

    Parameters
    ----------
    vth_eff : int array
        Effective thresholds ``vth << 6``.
    t_gen : int
        Steps of the generate phase.
    rounding : {"floor", "nearest"}
        Rounding mode of the neurons.
    """
    half = rounding_offset(np.asarray(vth_eff, dtype=np.float64), t_gen, 2.0, rounding)
    return np.floor(half).astype(np.int64)


def receive(port: PyInPort) -> np.ndarray:
    """What ``port.recv()`` returns, without its extra passes where they change nothing.

    Lava's dense ``recv`` allocates zeros of the port's dtype and adds every channel's message
    to them: two more passes over the array each step. With plain channels (no virtual-port
    transform) the sum of the messages is the same integers or floats (adding to zero is
    exact), so this adds the messages directly; the result has the channels' dtype (the
    sender's), e.g. compact ``int8`` spikes.
    """
    ports = getattr(port, "csp_ports", None)
    if not ports or not isinstance(getattr(port, "_transformer", None), IdentityTransformer):
        return port.recv()
    out = ports[0].recv()  # a fresh copy of the message
    for other in ports[1:]:
        out = out + other.recv()  # not in place: the dtypes may differ
    return out


def receive_parts(port: PyInPort) -> list[np.ndarray]:
    """The messages of ``port``'s channels, one array each (``[port.recv()]`` where the port
    transforms them), to be summed a slice at a time."""
    ports = getattr(port, "csp_ports", None)
    if not ports or not isinstance(getattr(port, "_transformer", None), IdentityTransformer):
        return [port.recv()]
    return [p.recv() for p in ports]


def receive_sum(port: PyInPort, dtype: Any) -> np.ndarray:
    """The sum of ``port``'s messages in ``dtype`` (e.g. int64: several 32-bit window sums
    into one population cannot overflow)."""
    ports = getattr(port, "csp_ports", None)
    if not ports or not isinstance(getattr(port, "_transformer", None), IdentityTransformer):
        return port.recv().astype(dtype)
    out = ports[0].recv().astype(dtype)
    for other in ports[1:]:
        out += other.recv()
    return out


class WindowClockModel(PyLoihiProcessModel):
    """Phase clock of the windowed models; subclasses set ``_offset`` and ``_period``.

    Step ``n = time_step - 1`` is idle before ``_offset``; after it, its phase in the window is
    ``(n - _offset) mod _period``.
    """

    _offset: int = 0
    _period: int = 1
    _bias_step: int = 0
    _payload = np.float64

    def _tau(self) -> int:
        """Phase of this step in its window, or -1 while idle before the offset."""
        rel = self.time_step - 1 - self._offset
        return -1 if rel < 0 else rel % self._period

    def _send_silence(self, port) -> None:
        """Send zeros of the port's shape (allocated once)."""
        if getattr(self, "_silence", None) is None:
            self._silence = np.zeros(port.shape, dtype=self._payload)
        port.send(self._silence)


def code_dtype(window: dict[str, Any], fixed: bool) -> np.dtype:
    """The dtype of a windowed synapse's code: for spike payloads and ``k = 2`` the smallest
    integer holding ``window['bits']``; for an analog payload int64 in fixed point; else
    float64."""
    payload = window["payload"]
    if payload == "analog":
        return np.dtype(np.int64 if fixed else np.float64)
    if window["k"] != 2.0:
        return np.dtype(np.float64)
    bits = int(window["bits"])
    kinds = (np.uint8, np.uint16, np.uint32, np.uint64) if payload == "binary" else \
        (np.int8, np.int16, np.int32, np.int64)
    for dt in kinds:
        if bits <= np.iinfo(dt).bits:
            return np.dtype(dt)
    return np.dtype(np.float64)  # > 64 bits: a float code (windowed only in float)


class WindowedSynapse:
    """Mixin of the batched synapse models: the windowed mode (``proc_params["window"]``).

    Per step, the input joins the code ``c <- k c + s`` of the current window (binary spikes
    as 0/1, graded payloads as they are; integer codes where exact); at the window's last step
    ``window_sum`` turns the code into the synapse's output, which is sent at the next step
    -- the target's last accumulate step -- and nothing is sent at the other steps. A model
    calls ``_init_window`` with its input's shape and runs ``_run_window`` as its
    ``run_spk`` when ``self._window`` is set; it provides ``window_sum(code)``, ``a_out``,
    ``s_in`` and ``_zero`` (zeros of ``a_out``'s shape).

    With ``window["lead"] = d`` the code is taken over the steps ``d`` earlier (a delay of
    ``d`` steps in front of the synapse, folded into it: the output is held until the
    delayed window's end, at most one window, since ``d < period``). With
    ``window["code_in"]`` the source sends one message per window, at its first step, whose
    bytes are the window's code (bit ``length - 1 - t`` is the spike of step ``t``), and
    nothing at the other steps: the code arrives whole instead of being built step by step.
    """

    _window: dict[str, Any] | None = None

    def _init_window(self, window: dict[str, Any] | None, in_shape: tuple[int, ...],
                     fixed: bool) -> None:
        self._window = window
        if window is None:
            return
        self._w_start, self._w_len = int(window["start"]), int(window["length"])
        self._w_period, self._w_k = int(window["period"]), float(window["k"])
        self._w_payload = window["payload"]
        self._w_lead = int(window.get("lead", 0))
        self._w_code_in = bool(window.get("code_in", False))
        self._code = np.zeros(in_shape, dtype=code_dtype(window, fixed))
        self._pending = None
        self._live = False

    def _run_window(self) -> None:
        rel = self.time_step - 1 - self._w_start
        if rel >= self._w_len and (rel - self._w_len) % self._w_period == 0:
            self.a_out.send(self._zero if self._pending is None else self._pending)
            self._pending = None
        rel += self._w_lead  # the input's window leads by the folded delay
        if self._w_code_in:
            self._take_code(rel)
            return
        s = receive(self.s_in).reshape(self._code.shape)
        if rel < 0:
            return
        tau = rel % self._w_period
        if tau >= self._w_len:
            return
        if tau == 0:
            self._live = False  # the code is all zero until a spike arrives
        if self._live:
            self._add_to_code(s, False)
        elif s.any():  # the first spikes of the window: the code is just them
            self._add_to_code(s, True)
            self._live = True
        if tau == self._w_len - 1 and self._live:
            self._pending = self.window_sum(self._code)

    def _take_code(self, rel: int) -> None:
        """``code_in``: receive the window's code at its first step, sum it at its last."""
        if rel < 0:
            return
        tau = rel % self._w_period
        if tau == 0:
            c = receive(self.s_in).reshape(self._code.shape)
            self._live = bool(c.any())
            if self._live:  # the bytes of the code, sent as int8
                np.copyto(self._code, c.view(self._code.dtype))
        if tau == self._w_len - 1 and self._live:
            self._pending = self.window_sum(self._code)

    def _add_to_code(self, s: np.ndarray, first: bool) -> None:
        code = self._code
        x = s != 0 if self._w_payload == "binary" else s
        if first:
            np.copyto(code, x, casting="unsafe")
        elif code.dtype.kind == "f":
            code *= self._w_k
            code += x
        elif self._w_payload == "binary":
            np.left_shift(code, 1, out=code)
            np.bitwise_or(code, x, out=code)
        else:
            np.left_shift(code, 1, out=code)
            np.add(code, x, out=code, casting="unsafe")


class FloatMembrane:
    """Mixin of the floating-point models: the accumulate step ``V <- k V + a_in``.

    Expects the Vars ``v``, ``bias_mant`` and the clock attributes ``_k`` and ``_bias_step`` of a
    :class:`WindowClockModel`; :class:`FixedPointMembrane` is its integer twin.
    """

    def _accumulate(self, a_in: np.ndarray, tau: int) -> np.ndarray:
        """``V <- k V + a_in`` in place (``V <- a_in`` at ``tau = 0``), plus ``bias_mant`` at
        the bias step ``t_acc - 1 - bias_shift``; returns the membrane."""
        if tau == 0:
            self.v[:] = a_in
        else:
            self.v *= self._k
            self.v += a_in
        if tau == self._bias_step:
            self.v += self.bias_mant
        return self.v


class FixedPointMembrane:
    """Mixin of the bit-accurate models: the integer accumulate step and the 24-bit clamp.

    Expects the Vars ``v``, ``bias_mant``, ``bias_exp``, ``saturations`` and the clock attributes
    ``_k``, ``_t_acc`` and ``_bias_step`` of a :class:`WindowClockModel`.
    """

    @classmethod
    def validate_process(cls, proc: Any) -> None:
        """Called by the Process when Lava's compiler picks this model (see
        :class:`spikeconverter.processes.base.AbstractMembrane`): :func:`validate_fixed_point`.
        """
        validate_fixed_point(proc)

    def _require_k2(self, proc: str) -> None:
        if self._k != 2.0:
            raise ValueError(
                f"{proc}: k={self._k} needs the floating_pt model; the fixed-point model "
                "implements only k=2 (a left shift)"
            )

    @property
    def _a_in_shift(self) -> int:
        """The input's left shift (``a_in_shift``; 6, Lava LIF's, unless the synapses apply
        part of Loihi's ``2**(6 + weight_exp)``)."""
        return int(self.proc_params.get("a_in_shift", SHIFT))

    def _accumulate(self, a_in: np.ndarray, tau: int) -> np.ndarray:
        """``V <- 2V + (a_in << a_in_shift)`` (``V <- a_in << a_in_shift`` at ``tau = 0``;
        the shift is 6 by default), plus the bias ``bias_mant << bias_exp`` at the bias step
        ``t_acc - 1 - bias_shift``; not yet clamped.

        In int32 when that is exact: integer input below ``2**24`` in magnitude (a 24-bit
        message) and a bias below ``2**24`` keep ``|V|`` below ``2**31`` (the stored membrane
        is 24-bit); otherwise (wider or float input, as Lava's ``recv`` would hand it) int64.
        """
        wide = a_in.dtype.kind not in "iub" or (
            a_in.size > 0 and a_in.dtype.itemsize > 2
            and (int(a_in.max()) >= INT32_SAFE or int(a_in.min()) <= -INT32_SAFE))
        bias = self._bias_term() if tau == self._bias_step else None
        if bias is not None and bias.size and np.abs(bias).max() >= INT32_SAFE:
            wide = True
        dtype = np.int64 if wide else np.int32
        v = np.left_shift(a_in.astype(dtype), self._a_in_shift)
        if tau > 0:
            v += np.left_shift(self.v.astype(dtype, copy=False), 1)
        if bias is not None:
            v += bias.astype(dtype, copy=False)
        return v

    _bias_cache: np.ndarray | None = None

    def _bias_term(self) -> np.ndarray:
        """``bias_mant << bias_exp`` (right shift for negative exponents), int64; computed
        once and kept until a Var is set from the host (:meth:`on_var_update`). Read only."""
        if self._bias_cache is None:
            exp = self.bias_exp.astype(np.int64)
            bias = self.bias_mant.astype(np.int64)
            self._bias_cache = np.where(exp >= 0, bias << np.maximum(exp, 0),
                                        bias >> np.maximum(-exp, 0))
        return self._bias_cache

    def on_var_update(self) -> None:
        """Lava calls this after the host set a Var: what is derived from the Vars is
        recomputed at its next use."""
        self._bias_cache = None
        super().on_var_update()

    def _clamp(self, v: np.ndarray) -> None:
        """Store ``v`` (integers) in the 24-bit membrane, counting the clamped entries."""
        if v.size and (int(v.max()) > V_MAX or int(v.min()) < V_MIN):  # two cheap reductions
            self.saturations += (v > V_MAX) | (v < V_MIN)
            v = np.clip(v, V_MIN, V_MAX)
        self.v[:] = v


def candidate_mask_step(x: np.ndarray, idx: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """One generate step of spike max pooling on MSB-first trains (the candidate-mask rule).

    An output fires if any of its candidate inputs fired; an output that fired keeps only the
    candidates that fired, the others keep all theirs. On MSB-first codes this emits the code
    of the largest input.

    Parameters
    ----------
    x : numpy.ndarray
        Input spikes as booleans ``(..., n_in + 1)``; the last entry is the zero padding.
    idx : numpy.ndarray
        Input index of every tap of every output, ``(outputs, taps)``.
    candidates : numpy.ndarray
        ``(..., outputs, taps)``, nonzero = candidate; updated in place.

    Returns
    -------
    numpy.ndarray
        The output spikes, booleans ``(..., outputs)``.
    """
    hit = x[..., idx] & (candidates != 0)
    out = hit.any(axis=-1)
    candidates[out] = hit[out]
    return out
