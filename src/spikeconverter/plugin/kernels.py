"""Whole-window kernels of the iLIF neuron: a population's complete window in a few tensor ops.

:func:`spikeconverter.plugin.ilif_step` is the neuron one step at a time; these kernels compute
the same spikes for a whole window at once, and are what the Norse network's fast modes, the
fine-tuning network and the Lava fixed-point planner use:

* :class:`SpikeTrain`: a population's train over its generate window, as frames or bit-packed
  (one integer per neuron, ``k = 2``), with its decoded value and spike counts;
* :func:`accumulate_weights`: the weight ``k**(t_acc - 1 - t)`` of accumulate step ``t``;
* :func:`start_generate`: the membrane at the start of generation (bias and rounding offset);
* :func:`generate` (step by step, any ``k``) and :func:`generate_code` (closed form, ``k = 2``,
  through :func:`spikeconverter.coding.binary_code`);
* :func:`spike_max_pool2d`: max pooling of MSB-first trains, spike by spike;
* :func:`popcount`, :func:`unpack_code` and :func:`pair`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F

from spikeconverter import coding
from spikeconverter.plugin.compiled import compiled, veltkamp_split
from spikeconverter.plugin.compiled import failed as compile_failed

__all__ = [
    "SpikeTrain",
    "accumulate_weights",
    "generate",
    "generate_code",
    "pair",
    "popcount",
    "reciprocal_above",
    "code_max_pool2d",
    "BLOCK",
    "blocks",
    "fast_code",
    "start_and_code",
    "spike_max_pool2d",
    "start_generate",
    "unpack_code",
]


def pair(v: Any) -> tuple[int, int]:
    """``(v, v)`` for an int, ``(v[0], v[1])`` for a pair (torch's ``_pair`` convention)."""
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


# -- bit-packed trains ------------------------------------------------------------------------

_POPCOUNT16 = torch.tensor([bin(i).count("1") for i in range(1 << 16)], dtype=torch.uint8)
_TABLES: dict[Any, torch.Tensor] = {}  # per device (uint8), per (device, dtype) (float)


def _popcount_table(device: torch.device) -> torch.Tensor:
    """The 16-bit popcount table on ``device`` (copied there once, not on every call)."""
    table = _TABLES.get(device)
    if table is None:
        table = _TABLES[device] = _POPCOUNT16.to(device)
    return table


def _popcount_table_as(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The 16-bit popcount table on ``device`` as ``dtype`` (made there once)."""
    key = (device, dtype)
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES[key] = _POPCOUNT16.to(device, dtype)
    return table


def _popcount_int32(n: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Set bits of int32 values ``0 <= n < 2**16`` as ``dtype``, shape of ``n``: one
    ``index_select`` from the table in ``dtype`` (int32 indices, flat: on a CPU about twice as
    fast as indexing with int64 or ``F.embedding``)."""
    table = _popcount_table_as(n.device, dtype)
    return table.index_select(0, n.reshape(-1)).reshape(n.shape)


def popcount(x: torch.Tensor, bits: int | None = None) -> torch.Tensor:
    """Set bits of non-negative integer-valued floats, uint8.

    ``bits`` bounds the values (``x < 2**bits``, e.g. a train's length): up to 16 bits one
    table lookup. Wider or unknown values are counted 16 bits at a time over all 64 bits
    (no data-dependent branch, so nothing is read back to the host on a GPU).
    """
    if bits is not None and bits <= 16:
        return _popcount_table(x.device)[x.to(torch.int64)]  # int64: indexing's own type
    n = x.to(torch.int64)
    table = _popcount_table(n.device)
    total = table[n & 0xFFFF]
    for shift in (16, 32, 48):
        total += table[(n >> shift) & 0xFFFF]
    return total


def unpack_code(code: torch.Tensor, T: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Frames ``(T, *code.shape)`` of signed integer codes, most significant digit first, as
    ``dtype`` (default: a float code's own dtype; float32 for integer codes)."""
    if dtype is None:
        dtype = code.dtype if code.is_floating_point() else torch.float32
    mag = code.abs().to(torch.int64)
    shifts = torch.arange(T - 1, -1, -1, device=mag.device).reshape(-1, *([1] * mag.ndim))
    bits = ((mag.unsqueeze(0) >> shifts) & 1).to(dtype)
    return bits * torch.sign(code).to(dtype)


class SpikeTrain:
    """A population's spike train over its generate window.

    Held as frames ``(T, B, ...)`` or bit-packed (``code``: one signed integer per neuron whose
    binary digits, most significant first, are the spikes; ``k = 2`` only).

    Parameters
    ----------
    theta : torch.Tensor
        Threshold of the emitting neurons (the value of the first spike).
    T : int
        Train length.
    start : int
        Global step of the first spike (the schedule's generate start).
    k : float
        Inverse leak (the weight ratio of successive spikes).
    frames, code : torch.Tensor, optional
        Exactly one of them.
    decoded : torch.Tensor, optional
        A code's value ``value(1.0)``, computed already (by the compiled kernel, with the
        codes): returned by :meth:`value` for ``factor = 1`` instead of a new one (read only).
    """

    def __init__(self, theta: torch.Tensor, T: int, start: int, *, k: float = 2.0,
                 frames: torch.Tensor | None = None, code: torch.Tensor | None = None,
                 decoded: torch.Tensor | None = None):
        if (frames is None) == (code is None):
            raise ValueError("SpikeTrain needs exactly one of frames and code")
        if decoded is not None and code is None:
            raise ValueError("SpikeTrain: decoded values come with a code")
        self.theta, self.T, self.start, self.k = theta, T, start, k
        self._frames, self.code, self.decoded = frames, code, decoded

    def frames(self) -> torch.Tensor:
        """The spikes ``(T, B, ...)`` (unpacked once from the code when packed)."""
        if self._frames is None:
            self._frames = unpack_code(self.code, self.T, dtype=self.theta.dtype)
        return self._frames

    def value(self, factor: float = 1.0, *, out: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded value times ``factor``: ``factor * theta * sum_j k^-j s_j``.

        ``out``: where a bit-packed train's value goes (a tensor of the code's shape and the
        threshold's dtype, e.g. a reused work buffer; not under autograd). A train with
        ``decoded`` values returns them for ``factor = 1`` (not ``out``; not to be modified).
        """
        if self.decoded is not None and factor == 1.0:
            return self.decoded
        if self.code is not None:
            # one multiply; exact like theta * (code * 2^(1-T)) when factor is a power of two
            scale = self.theta * (factor * 2.0 ** (1 - self.T))
            if self.code.is_floating_point() and out is None:
                return self.code * scale
            if out is None:
                out = torch.empty(self.code.shape, dtype=torch.result_type(self.code, scale),
                                  device=self.code.device)
            # integer codes (|code| < 2**24) convert exactly: the same product as a float
            # code's; block by block (cache-sized on a CPU), one read and one write
            plain = _scalar(scale)
            for bs, cs in blocks(tuple(self.code.shape), self.code.device.type == "cpu"):
                out[bs, cs].copy_(self.code[bs, cs]).mul_(_part(plain, cs))
            return out
        w = _constant(tuple(factor * self.k ** -j for j in range(self.T)), self._frames)
        return self.theta * torch.tensordot(w, self._frames, dims=1)

    def counts(self, signed: bool) -> torch.Tensor:
        """Spikes (of either sign) per neuron over the window, summed over the batch, float64."""
        if self.code is None:
            f = self._frames
            return (f.abs() if signed else f).sum((0, 1), dtype=torch.float64)
        code = self.code
        if self.T <= 16 and not code.is_floating_point():
            return _int_code_counts(code, self.T, signed)
        if self.T <= 16:
            # one gather from a 16-bit table of the code's float type: exact per-neuron sums
            # (at most T * B)
            n = code.to(torch.int32)
            per = _popcount_int32(n.abs_() if signed else n, code.dtype)
            return per.sum(0).to(torch.float64)
        return popcount(code.abs() if signed else code, self.T).sum(
            0, dtype=torch.int64).to(torch.float64)


def _int_code_counts(code: torch.Tensor, T: int, signed: bool) -> torch.Tensor:
    """:meth:`SpikeTrain.counts` of integer codes, ``T <= 16``: a gather from the 16-bit
    popcount table indexed by the codes themselves (float32, or float64 where ``T B`` could
    reach ``2**24``: every partial sum an exact integer), summed over the batch. On a CPU row
    by row in cache-sized blocks: no tensor of the codes' size is made."""
    B = code.shape[0]
    rows = code.reshape(B, -1)
    acc_dtype = torch.float32 if T * B < 2**24 else torch.float64
    table = _popcount_table_as(code.device, acc_dtype)
    if code.device.type != "cpu" or rows.numel() <= BLOCK:
        idx = rows.reshape(-1)
        per = table.index_select(0, idx.abs() if signed else idx)
        return per.view(rows.shape).sum(0).to(torch.float64).view(code.shape[1:])
    n = rows.shape[1]
    acc = torch.zeros(n, dtype=acc_dtype)
    step = min(BLOCK, n)
    gathered = torch.empty(step, dtype=acc_dtype)
    mags = torch.empty(step, dtype=code.dtype) if signed else None
    for b in range(B):
        for j in range(0, n, step):
            idx = rows[b, j:j + step]
            k = idx.numel()
            if signed:
                idx = torch.abs(idx, out=mags[:k])
            acc[j:j + k].add_(torch.index_select(table, 0, idx, out=gathered[:k]))
    return acc.to(torch.float64).view(code.shape[1:])


# -- the accumulate and generate phases -------------------------------------------------------

def accumulate_weights(n: int, k: float, t_acc: int, at: int, like: torch.Tensor) -> torch.Tensor:
    """Weights ``k**(t_acc - 1 - t)`` of the ``n`` accumulate steps ``t = at .. at + n - 1``.

    After ``V <- k V + I`` over a window of ``t_acc`` steps the membrane is
    ``sum_t k**(t_acc - 1 - t) I(t)``; a train landing at window step ``at`` contributes its
    frames with these weights. Dtype and device of ``like``.
    """
    return _constant(tuple(k ** (t_acc - 1 - (at + j)) for j in range(n)), like)


_CONSTANTS: dict[tuple, torch.Tensor] = {}


def _constant(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    """``values`` as a tensor of ``like``'s dtype and device, made there once and reused: a
    host-to-device copy on every call would make each layer wait for the GPU."""
    key = (values, like.dtype, like.device)
    out = _CONSTANTS.get(key)
    if out is None:
        if len(_CONSTANTS) > 4096:  # bounded: windows and offsets come in few combinations
            _CONSTANTS.clear()
        out = _CONSTANTS[key] = torch.tensor(values, dtype=like.dtype, device=like.device)
    return out


def start_generate(v: torch.Tensor, bias: torch.Tensor, theta: torch.Tensor, T: int, k: float,
                   rounding: str, signed: bool, *, inplace: bool = False,
                   offset: float | torch.Tensor | None = None) -> torch.Tensor:
    """The membrane when generation starts: accumulated ``v`` plus the bias, plus
    :func:`spikeconverter.coding.rounding_offset` (times ``sign(V)`` for signed neurons).

    ``inplace`` overwrites ``v`` (a fresh membrane nobody else holds): the same values, two
    fewer tensors of the population's size. ``offset``: that rounding offset, computed already
    (a number for unsigned neurons, a tensor for signed ones).
    """
    v = v.add_(bias) if inplace else v + bias
    if rounding == "nearest":
        half = coding.rounding_offset(theta, T, k, rounding) if offset is None else offset
        # half * sign(v) is exact (+-half or 0), so the fused add rounds like v + half * sign
        v = v.addcmul_(half, torch.sign(v)) if signed else v.add_(half)
    return v


def generate_code(v: torch.Tensor, theta: torch.Tensor, T: int, signed: bool) -> torch.Tensor:
    """The generate phase of ``k = 2`` neurons as a bit-packed code (signed integers).

    :func:`spikeconverter.coding.binary_code` on ``|v|`` (signed) or ``v``. Float32 membranes
    with ``T <= 24`` take :func:`start_and_code` (the same codes, as int32, without ``fmod``,
    the slowest step); other membranes keep their float dtype and are widened to float64 for
    ``T > 24`` so that every code is exact.
    """
    if fast_code(v, T):
        return start_and_code(v.clone(), None, theta, T, "floor", signed, saturations=False)[0]
    wide = T <= 24 or v.dtype == torch.float64
    work = v if wide else v.double()
    n = coding.binary_code(work.abs() if signed else work, theta.to(work.dtype), T)
    if signed:
        n = n * torch.sign(work)
    return n.to(v.dtype) if wide else n


def saturation_margin(theta: Any, T: int, k: float, rounding: str) -> Any:
    """How far beyond :func:`spikeconverter.coding.code_range` a started membrane lies when
    it counts as saturated: the rounding offset plus half an LSB (its train is clipped to the
    top code with an error beyond the code's resolution; the margin also keeps float rounding
    at the calibration maximum itself from counting)."""
    return coding.rounding_offset(theta, T, k, rounding) + coding.lsb(theta, T, k) / 2


def fast_code(v: torch.Tensor, T: int) -> bool:
    """Whether ``v`` takes :func:`start_and_code` (float32 membranes, ``T <= 24``: int32
    codes)."""
    return v.dtype == torch.float32 and T <= 24


#: Elements per block of :func:`start_and_code` and :meth:`SpikeTrain.value` on a CPU: a
#: float64 block (1 MiB) stays in a core's L2 cache, so a chain of element-wise steps reads and
#: writes main memory about once instead of once per step.
BLOCK = 1 << 17


@functools.lru_cache(maxsize=512)
def blocks(shape: tuple[int, ...], cpu: bool) -> tuple[tuple[Any, Any], ...]:
    """Index pairs ``(samples, channels)`` that cut a ``(B, C, ...)`` tensor into blocks of
    about :data:`BLOCK` elements (whole channels, several samples; the whole tensor off a CPU,
    where one launch beats many)."""
    whole = ((slice(None), Ellipsis),)
    if not cpu or len(shape) < 2 or math.prod(shape) <= BLOCK:
        return whole
    B, C, inner = shape[0], shape[1], math.prod(shape[2:])
    if B * inner <= BLOCK:
        cc = BLOCK // (B * inner)
        return tuple((slice(None), slice(c, c + cc)) for c in range(0, C, cc))
    bb = max(1, BLOCK // max(inner, 1))
    return tuple((slice(b, b + bb), slice(c, c + 1)) for c in range(C) for b in range(0, B, bb))


def _channels(t: torch.Tensor | None, cs: Any) -> torch.Tensor | None:
    """The part of a per-population tensor (a scalar or ``(C, ...)``) that goes with the
    channels ``cs`` of a ``(B, C, ...)`` block."""
    return t if t is None or t.ndim == 0 else t[cs]


def _part(x: float | torch.Tensor, cs: Any) -> float | torch.Tensor:
    """A number as is, a per-population tensor's part for the channels ``cs``."""
    return x if isinstance(x, float) else _channels(x, cs)


def _scalar(t: torch.Tensor) -> float | torch.Tensor:
    """A 0-dim CPU tensor as a Python float (exact for float32 and float64: the element-wise
    ops then take their scalar form); anything else as is."""
    return float(t) if t.ndim == 0 and t.device.type == "cpu" else t


def start_and_code(v: torch.Tensor, bias: torch.Tensor | None, theta: torch.Tensor, T: int,
                   rounding: str, signed: bool, *, saturations: bool = True,
                   out: torch.Tensor | None = None, work: torch.Tensor | None = None,
                   weight: torch.Tensor | None = None, found: dict | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`start_generate`, the saturation test and :func:`generate_code` of ``k = 2``
    neurons in one pass over float32 membranes ``v`` (``T <= 24``; ``v`` is overwritten): the
    int32 codes and the number of saturated neuron-samples.

    Block by block (:func:`blocks`; cache-sized on a CPU):

    * ``v + bias`` and the rounding offset, exactly as :func:`start_generate`;
    * the saturations: ``(|v| for signed) - code_range > margin`` in float32 (``margin`` = the
      offset plus half an LSB, as ``SpikingNetwork._count_saturated``). That difference is
      exact wherever it decides (Sterbenz), so the test is ``v > u`` for the real
      ``u = 2 theta + margin`` (exact in float64), i.e. ``v > t`` for ``t`` the largest float32
      not above ``u``; on a CPU only blocks whose maximum passes ``t`` are counted;
    * the code ``floor(x)``, ``x = v 2**(T-1) / theta``, clipped to ``[0, 2**T - 1]`` (signed:
      ``sign(x) floor(|x|)`` clipped symmetrically): ``v`` is first clipped in float32 to
      ``[0, c]`` (signed: ``[-c, c]``), ``c`` the largest float32 below ``2 theta``, whose code
      is the top code for ``T <= 23`` (``T = 24``: the quotient is clipped instead); then one
      float64 product with :func:`reciprocal_above` of ``theta 2**(1-T)``. With ``v`` and
      ``theta`` float32 a non-integer ``x >= 1/2`` lies at least ``2**-25`` from every integer
      (``v 2**(T-1) - m theta`` is a nonzero multiple of ``ulp(theta) / 2``); the product is
      never below ``|x|`` (the reciprocal is above ``1/d``, rounding is monotone and an integer
      ``|x|`` is a float64) and at most ``|x| 2**-50 < 2**-26`` above it, so its truncation
      (by the conversion to int32) is ``floor(x)`` exactly, integers included.

    Parameters
    ----------
    v : torch.Tensor
        Accumulated float32 membranes ``(B, ...)``, bias not yet added; contiguous ones get the
        codes in their own storage (viewed as int32).
    bias : torch.Tensor or None
        Added first (``None``: nothing, and no rounding offset either: the plain
        :func:`generate_code` of finished membranes).
    theta : torch.Tensor
        Float32 threshold, a scalar or per channel.
    saturations : bool
        Count them (``False``: ``None`` is returned instead).
    out : torch.Tensor, optional
        Int32 codes (default: ``v``'s own storage when contiguous).
    work : torch.Tensor, optional
        A float64 buffer for the quotients of a block (at least :data:`BLOCK` elements on a CPU,
        ``v.numel()`` elsewhere; any block that does not fit gets a fresh one).
    weight, found : torch.Tensor and dict, optional
        Where the compiled kernel (:mod:`spikeconverter.plugin.compiled`) runs, it counts the
        codes' spikes and decodes them on the way: ``found["totals"]`` is ``[spikes, sum of
        spikes times weight]`` (float64, exact; ``weight`` int32 per neuron, e.g. the
        fan-out), ``found["value"]`` the float32 values ``code theta 2**(1-T)`` (see
        :class:`SpikeTrain`'s ``decoded``). Nothing is added where the eager kernel ran.

    Returns
    -------
    tuple
        The int32 codes, and the saturation count (0-dim int64 on ``v``'s device) or ``None``.
    """
    if bias is None:  # a finished membrane: no offset to add
        rounding = "floor"
    cpu = v.device.type == "cpu"
    th = theta.to(torch.float32)
    half = coding.rounding_offset(th, T, 2.0, rounding) if rounding == "nearest" else None
    r = reciprocal_above(th.double() * 2.0 ** (1 - T))  # of an exact float64 (a power of two)
    top = float(2**T - 1)
    lo = -top if signed else 0.0
    # the float32 clip below 2 theta codes as the top code for T <= 23 (see above)
    c = torch.nextafter(coding.code_range(th), torch.zeros_like(th)) if T <= 23 else None
    t = t_min = None
    if saturations:
        # u = code_range + margin = 2 theta + (offset + lsb / 2), exact in float64
        u = coding.code_range(th.double()) + saturation_margin(th.double(), T, 2.0, rounding)
        t = u.float()
        t = torch.where(t.double() > u, torch.nextafter(t, torch.full_like(t, -math.inf)), t)
        t_min = float(t.min()) if cpu else None
    if out is None:
        out = v.view(torch.int32) if v.is_contiguous() else torch.empty(
            v.shape, dtype=torch.int32, device=v.device)
    fn = compiled("start_code_sat", v.numel(), v.device) if v.ndim >= 2 and T <= 23 and \
        v.is_contiguous() and out.data_ptr() == v.data_ptr() else None
    if fn is not None:
        try:
            count, *spikes, value = _start_and_code_compiled(fn, v, bias, th, T, half, t, c,
                                                             signed, weight)
            if found is not None:
                found.update(totals=torch.stack(spikes).to(torch.float64), value=value)
            return out, count if saturations else None
        except Exception as error:  # noqa: BLE001 (any compiler failure: eager takes over)
            compile_failed("start_code_sat", error)
    count = torch.zeros((), dtype=torch.int64, device=v.device) if saturations else None
    # scalar thresholds on a CPU: Python numbers once, not a read per block
    plain_half = None if half is None or signed else _scalar(half)
    plain_t, plain_r, plain_c = (_scalar(x) if x is not None else None for x in (t, r, c))
    neg_c = None if c is None or not signed else _scalar(-c)
    for bs, cs in blocks(tuple(v.shape), cpu):
        vb = v[bs, cs]
        if bias is not None:
            start_generate(vb, _channels(bias, cs), th, T, 2.0, rounding, signed, inplace=True,
                           offset=None if half is None else _channels(half, cs) if signed
                           else _part(plain_half, cs))
        if saturations and (not cpu or _exceeds(vb, t_min, signed)):
            tb = _part(plain_t, cs)
            count += torch.count_nonzero(vb > tb)
            if signed:
                count += torch.count_nonzero(vb < -tb)
        n = vb.numel()
        q = work[:n].view(vb.shape) if work is not None and work.numel() >= n else \
            torch.empty(vb.shape, dtype=torch.float64, device=v.device)
        if c is None:
            q.copy_(vb).mul_(_part(plain_r, cs)).clamp_(lo, top)
        else:  # two one-sided clips: a tensor pair in one clamp is several times slower
            vb.clamp_min_(_part(neg_c, cs) if signed else 0.0).clamp_max_(_part(plain_c, cs))
            q.copy_(vb).mul_(_part(plain_r, cs))
        out[bs, cs].copy_(q)  # truncates toward zero: floor(x) (sign(x) floor(|x|))
    return out, count


def _start_and_code_compiled(fn, v: torch.Tensor, bias: torch.Tensor | None, th: torch.Tensor,
                             T: int, half: torch.Tensor | None, t: torch.Tensor | None,
                             clip: torch.Tensor, signed: bool,
                             weight: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """:func:`start_and_code` by the compiled one-loop kernel ``fn``
    (:func:`spikeconverter.plugin.compiled.start_code_sat`; codes over ``v``): the values as
    tensors of one shape per channel (one compiled form serves every population; a missing
    bias, offset or saturation test as the neutral ``0`` and infinities)."""
    shape = (v.shape[1],) + (1,) * (v.ndim - 2)

    def per_channel(x: torch.Tensor | float) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32, device=v.device)
        return x.expand(shape).contiguous() if x.ndim == 0 else x.reshape(shape).float()

    hi = per_channel(math.inf if t is None else t)
    lo_sat = -hi if signed else per_channel(-math.inf)
    theta = per_channel(th)
    theta_hi, theta_lo = veltkamp_split(theta)
    return fn(v, torch.zeros((), dtype=v.dtype) if bias is None else bias,
              per_channel(0.0 if half is None else half), hi, lo_sat, per_channel(clip),
              torch.tensor(2.0 ** (T - 1)), theta, theta_hi, theta_lo,
              torch.zeros((), dtype=torch.int32) if weight is None else weight,
              per_channel(th * 2.0 ** (1 - T)), signed)


def reciprocal_above(d: torch.Tensor) -> torch.Tensor:
    """A float64 ``r`` with ``1/d <= r <= (1/d) (1 + 2**-51)`` for positive float64 ``d``: the
    float64 above the correctly rounded ``1/d`` (which lies within half an ulp of ``1/d``).

    ``x r`` then never falls below ``x / d`` after rounding wherever ``x / d`` is a float64
    (rounding is monotone), which makes the truncated product the exact floor of the quotient
    (see :func:`start_and_code`) at a product's cost instead of a division's.
    """
    r = 1.0 / d.double()
    return torch.nextafter(r, torch.full_like(r, math.inf))


def _exceeds(vb: torch.Tensor, t_min: float, signed: bool) -> bool:
    """Whether some ``v`` (``|v|``) of a CPU block lies above the lowest threshold ``t_min``:
    one read of the block (the exact count follows only then)."""
    if vb.numel() == 0:
        return False
    if signed:
        lo, hi = torch.aminmax(vb)
        return float(hi) > t_min or -float(lo) > t_min
    return float(vb.max()) > t_min


def generate(v: torch.Tensor, theta: torch.Tensor, T: int, k: float,
             signed: bool) -> torch.Tensor:
    """The generate phase step by step: ``z = [V >= theta]``, ``V <- k (V - z theta)``.

    Returns the frames ``(T, *v.shape)``. For k = 2 it tracks ``U_j = V_j / 2^j`` instead
    (exactly the same comparisons, since scaling by powers of two is exact) and so saves the
    multiplication.
    """
    frames = torch.empty((T, *v.shape), dtype=v.dtype, device=v.device)
    u = v.clone()
    for t in range(T):
        th = theta * k ** -t if k == 2.0 else theta
        z = frames[t]
        z.copy_(u >= th)
        if signed:
            z.sub_((u <= -th).to(u.dtype))
        # z is 0 or +-1, so z * th is exact: the same as subtracting th (no host read of th)
        u.addcmul_(z, th, value=-1.0)
        if k != 2.0:
            u.mul_(k)
    return frames


# -- max pooling ------------------------------------------------------------------------------

def _pool_geometry(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> tuple[int, int]:
    """Output length and the extra right padding ``ceil_mode`` needs, as in ``F.max_pool2d``."""
    span = size + 2 * p - d * (k - 1) - 1
    n = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (n - 1) * s >= size + p:
        n -= 1
    return n, max(0, (n - 1) * s + d * (k - 1) + 1 - (size + 2 * p))


def spike_max_pool2d(frames: torch.Tensor, kernel_size, stride, padding=(0, 0), dilation=(1, 1),
                     ceil_mode: bool = False) -> torch.Tensor:
    """Max pooling of MSB-first binary trains, spike by spike (candidate masks).

    For each pooling window a mask of candidate inputs starts full; at each step the window
    emits a spike if any candidate spiked, and then keeps only the candidates that spiked
    (if one did). On MSB-first codes this emits the code of the largest input.

    Parameters
    ----------
    frames : torch.Tensor
        Spikes ``(T, B, C, H, W)`` in {0, 1}.

    Returns
    -------
    torch.Tensor
        ``(T, B, C, H_out, W_out)``, same dtype.
    """
    T, B, C, H, W = frames.shape
    k, s, p, d = (pair(v) for v in (kernel_size, stride, padding, dilation))
    (h_out, h_extra), (w_out, w_extra) = (
        _pool_geometry(size, *args, ceil_mode) for size, *args in zip((H, W), k, s, p, d,
                                                                       strict=True))
    # zero padding is max-neutral here: the trains are non-negative codes
    x = F.pad(frames.reshape(T * B, C, H, W), (p[1], p[1] + w_extra, p[0], p[0] + h_extra))
    kk = k[0] * k[1]
    patches = F.unfold(x, k, dilation=d, stride=s).reshape(T, B, C, kk, -1) > 0
    cand = torch.ones(patches.shape[1:], dtype=torch.bool, device=frames.device)
    out = torch.empty((T, B, C, patches.shape[-1]), dtype=torch.bool, device=frames.device)
    for t in range(T):
        fired = patches[t] & cand
        any_fired = torch.any(fired, dim=2, out=out[t])
        cand = torch.where(any_fired.unsqueeze(2), fired, cand)
    return out.to(frames.dtype).reshape(T, B, C, h_out, w_out)


def code_max_pool2d(code: torch.Tensor, kernel_size, stride, padding=(0, 0), dilation=(1, 1),
                    ceil_mode: bool = False) -> torch.Tensor:
    """Max pooling of bit-packed non-negative MSB-first trains: one max over their codes.

    :func:`spike_max_pool2d` emits the train of the largest input, and for MSB-first binary
    trains the largest input has the largest integer code, so pooling the codes gives the same
    spikes exactly, without unpacking the ``T`` frames.

    Parameters
    ----------
    code : torch.Tensor
        Non-negative integer codes ``(B, C, H, W)`` (a :class:`SpikeTrain`'s ``code``).

    Returns
    -------
    torch.Tensor
        Codes ``(B, C, H_out, W_out)``, same dtype.
    """
    if code.is_floating_point() or code.device.type == "cpu":
        out = F.max_pool2d(code, kernel_size, stride, padding, dilation, ceil_mode)
    else:  # CUDA pools no integers: int32 codes (< 2**24) round-trip through float32 exactly
        out = F.max_pool2d(code.float(), kernel_size, stride, padding, dilation,
                           ceil_mode).to(code.dtype)
    # torch pads with -inf (integers: their minimum); the frame kernel pads with silent inputs
    # (code 0)
    return out.clamp_min_(0)
