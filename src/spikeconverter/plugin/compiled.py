"""One-loop element-wise kernels of big CPU populations, compiled by ``torch.compile``.

:func:`spikeconverter.plugin.kernels.start_and_code` runs about ten element-wise torch ops
per block; on a CPU each is a pass over the block, so on ImageNet-size populations they cost
more than the convolutions. :func:`start_code_sat` is the same arithmetic written once over
the whole tensor, in float32 only (an exact floor division without the eager kernel's float64
product, whose conversions cost more than the rest); ``torch.compile`` (TorchInductor) turns
it into one vectorised C++ loop (one read of the membranes, one write of the codes). Inductor
keeps IEEE semantics by default (no unsafe math, no floating-point contraction), so the results
are bit for bit the eager kernel's (tested at every code and saturation boundary).

Optional, never required: it needs a C++ compiler. :func:`compiled` gives ``None`` when the
``SPIKECONVERTER_COMPILE`` environment variable is ``0``, off a CPU, below
:data:`MIN_ELEMENTS` (small populations: the compile time would never pay back) and after a
failed compilation (a warning says why, once; the eager kernels take over).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable

import torch

__all__ = ["MIN_ELEMENTS", "compiled", "failed", "popcount32", "start_code_sat", "veltkamp_split"]

#: Smallest population (neurons times batch) that takes the compiled kernel.
MIN_ELEMENTS = 1 << 21

_lock = threading.Lock()
_state: dict[str, Callable | None] = {}


def start_code_sat(v: torch.Tensor, bias: torch.Tensor, half: torch.Tensor, hi: torch.Tensor,
                   lo_sat: torch.Tensor, clip: torch.Tensor, scale: torch.Tensor,
                   theta: torch.Tensor, theta_hi: torch.Tensor, theta_lo: torch.Tensor,
                   weight: torch.Tensor, unit: torch.Tensor, signed: bool,
                   ) -> tuple[torch.Tensor, ...]:
    """Start, saturation count and int32 code of contiguous float32 membranes ``v`` in float32
    arithmetic alone, the codes written over ``v`` (``v.view(torch.int32)`` reads them).

    The start and the saturation test are the eager steps of
    :func:`spikeconverter.plugin.kernels.start_and_code`, in the same order: ``u = v + bias``,
    plus ``half`` (times ``sign(u)`` when ``signed``); the count of ``u > hi`` or
    ``u < lo_sat``. The code ``floor(a / theta)`` of ``a = min(|u|, clip) scale`` (``clip`` the
    largest float32 below ``2 theta``, ``scale = 2**(T-1)``: both exact, ``T <= 23``; ``u`` for
    unsigned neurons, clipped at 0), signed by ``sign(u)``, comes without float64:

    * ``m = floor(fl(a / theta))`` is ``floor(a / theta)`` or one more (rounding is monotone
      and the integers involved are float32);
    * it is one more exactly when ``a < m theta``. With ``p = fl(m theta)``, ``a < p`` and
      ``a > p`` decide that (``a`` and ``p`` are float32); at ``a == p`` the sign of the
      product's rounding error ``m theta - p`` does, computed exactly by Dekker's product
      (``m`` split by Veltkamp into 12-bit halves, ``theta = theta_hi + theta_lo`` split so
      beforehand).

    The spikes of each code (its set bits, counted by shifts and masks) are summed over all
    neurons and samples, and weighted by ``weight`` (int32 per neuron, e.g. the fan-out), in
    int64: exact.

    The decoded value ``code unit`` (float32: ``unit = theta 2**(1-T)`` gives exactly
    :meth:`spikeconverter.plugin.kernels.SpikeTrain.value`) is written on the way too, so that
    a consumer's synapses read it without another pass.

    Returns the saturation count, the spikes and the weighted spikes (0-dim int64 each) and
    the decoded values.
    """
    u = v + bias
    u = u + half * torch.sign(u) if signed else u + half
    sat = ((u > hi) | (u < lo_sat)).sum()
    a = torch.minimum(u.abs() if signed else torch.clamp_min(u, 0.0), clip) * scale
    m = torch.floor(a / theta)
    p = m * theta
    cm = m * 4097.0  # Veltkamp split of m (at most 24 bits) into two 12-bit halves
    m_hi = cm - (cm - m)
    m_lo = m - m_hi
    err = ((m_hi * theta_hi - p) + m_hi * theta_lo + m_lo * theta_hi) + m_lo * theta_lo
    m = m - ((a < p) | ((a == p) & (err > 0))).to(m.dtype)
    mag = m.to(torch.int32)
    code = mag * torch.sign(u).to(torch.int32) if signed else mag
    # the int32 bits stored as float32 (a bit cast): compiled code may mutate an input only in
    # its own dtype, and a fresh output would cost the CPU a page fault per 4 KiB
    v.copy_(code.view(torch.float32))
    spikes = popcount32(mag)
    return (sat, spikes.sum(dtype=torch.int64), (spikes * weight).sum(dtype=torch.int64),
            code.to(torch.float32) * unit)


def popcount32(x: torch.Tensor) -> torch.Tensor:
    """Set bits of non-negative int32 values, by shifts, masks and adds (no table: the form a
    compiler vectorises)."""
    x = x - ((x >> 1) & 0x55555555)
    x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F
    x = x + (x >> 8)
    return (x + (x >> 16)) & 0x3F


def veltkamp_split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 ``x`` as ``hi + lo`` (exactly), each with at most 12 significant bits."""
    x = x.to(torch.float32)
    cx = x * 4097.0
    hi = cx - (cx - x)
    return hi, x - hi


def compiled(name: str, numel: int, device: torch.device) -> Callable | None:
    """The compiled form of kernel ``name`` (``"start_code_sat"``) for a population of
    ``numel`` elements on ``device``, or ``None`` where the eager kernel is to be used."""
    if device.type != "cpu" or numel < MIN_ELEMENTS:
        return None
    if os.environ.get("SPIKECONVERTER_COMPILE", "1") == "0":
        return None
    with _lock:
        if name not in _state:
            _state[name] = torch.compile(globals()[name], dynamic=True)
        return _state[name]


def failed(name: str, error: BaseException) -> None:
    """Turn kernel ``name``'s compiled form off for this process after ``error`` (once, with
    a warning naming the cause: the eager kernel gives the same results, only slower)."""
    with _lock:
        if _state.get(name) is not None:
            warnings.warn(f"torch.compile of {name} failed ({type(error).__name__}: {error}); "
                          "using the eager kernels (same results, slower). Set "
                          "SPIKECONVERTER_COMPILE=0 to skip the attempt.", RuntimeWarning,
                          stacklevel=3)
        _state[name] = None
