"""The temporal-separation code of SpikeConverter, free of any framework.

A value ``u`` held in an iLIF membrane at the start of its generation phase leaves as a train of
``T`` spikes, most significant first: ``s_j = [V >= theta]``, ``V <- k * (V - s_j * theta)``.
With ``k = 2`` the train is the binary expansion of ``u / theta``, so

``decode(encode(u)) = quantize(u) = floor(clip(u, 0, top) / lsb) * lsb``

with ``lsb = theta * 2**(1 - T)`` and ``top = theta * (2 - lsb / theta)``. Signed trains
(spikes in {-1, 0, +1}) do the same for ``|u|`` and carry the sign.

Every function takes numpy arrays or torch tensors and returns the same kind.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

try:  # torch is a dependency of the package, but the code itself does not need it
    import torch
except ImportError:  # pragma: no cover
    torch = None

ROUNDING_MODES = ("floor", "nearest")
"""The code's rounding: ``"floor"`` (the paper's) or ``"nearest"`` (adds half an LSB)."""

__all__ = [
    "ROUNDING_MODES",
    "binary_code",
    "code_range",
    "conversion_error",
    "decode",
    "encode",
    "lsb",
    "optimal_threshold",
    "quantize",
    "rounding_offset",
    "synapse_scale",
    "threshold_for_peak",
    "top_code",
    "validate_code_params",
    "window_period",
]


# --------------------------------------------------------------------------------------------
# validation


def validate_code_params(
    *, k: float | None = None, T: int | None = None, theta: Any = None, rounding: str | None = None
) -> None:
    """Raise ValueError naming the first bad argument of a code.

    Parameters
    ----------
    k : float, optional
        Inverse leak; must lie in (1, 2] (k > 2 lets the soft-reset membrane grow without bound).
    T : int, optional
        Number of generated spikes; an integer >= 1.
    theta : float or array, optional
        Threshold(s); every entry finite and > 0.
    rounding : str, optional
        One of ``ROUNDING_MODES``.
    """
    if k is not None:
        if not (isinstance(k, (int, float)) and math.isfinite(k) and 1.0 < k <= 2.0):
            raise ValueError(f"k must be a number in (1, 2], got {k!r}")
    if T is not None:
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
            raise ValueError(f"T must be an integer >= 1, got {T!r}")
    if theta is not None:
        th = _to_numpy(theta)
        if th.size == 0 or not np.all(np.isfinite(th)) or not np.all(th > 0):
            raise ValueError(f"theta must be finite and > 0, got {theta!r}")
    if rounding is not None and rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {ROUNDING_MODES}, got {rounding!r}")


def _to_numpy(x: Any) -> np.ndarray:
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


def _is_torch(x: Any) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def _check_finite(u: Any, name: str) -> None:
    # a finite sum proves every entry finite (NaN and inf reach the sum) in one reduction;
    # only a non-finite sum (also an overflow of finite entries) needs the elementwise check
    if _is_torch(u):
        if bool(torch.isfinite(u.sum())):
            return
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            if bool(np.isfinite(np.sum(u))):
                return
    ok = bool(torch.isfinite(u).all()) if _is_torch(u) else bool(np.all(np.isfinite(u)))
    if not ok:
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")


def _as_array(u: Any) -> Any:
    if _is_torch(u):
        return u if u.is_floating_point() else u.to(torch.get_default_dtype())
    return np.asarray(u, dtype=np.float64)


def _like(theta: Any, u: Any) -> Any:
    """Theta as something that broadcasts against ``u`` (same framework, dtype and device)."""
    if _is_torch(u):
        return torch.as_tensor(theta, dtype=u.dtype, device=u.device)
    return np.asarray(_to_numpy(theta), dtype=u.dtype)


# --------------------------------------------------------------------------------------------
# the code


def lsb(theta: Any, T: int, k: float = 2.0) -> Any:
    """Weight of the last spike of a ``T``-spike train: ``theta * k**(1 - T)``."""
    return theta * float(k) ** (1 - T)


def top_code(theta: Any, T: int, k: float = 2.0) -> Any:
    """Largest decodable value, all ``T`` spikes on: ``theta * sum_j k**-j``."""
    return theta * sum(float(k) ** -j for j in range(T))


def rounding_offset(theta: Any, T: int, k: float = 2.0, rounding: str = "nearest") -> Any:
    """What a neuron adds to its membrane when generation starts: half an LSB for
    ``"nearest"`` (unbiased rounding), 0 for ``"floor"``. Signed neurons add it times ``sign(V)``.
    """
    if rounding == "nearest":
        return lsb(theta, T, k) / 2
    return 0 * theta


def synapse_scale(theta_source: Any, t_acc: int, k: float = 2.0) -> Any:
    """Factor on the synapses from a source with threshold ``theta_source`` into a target that
    accumulates for ``t_acc`` steps: ``theta_source / k**(t_acc - 1)``.

    The target's membrane after ``V <- k V + I`` over its window weighs the first spike of an
    MSB-first train by ``k**(t_acc - 1)``; this factor turns that back into ``theta_source``.
    """
    return theta_source / float(k) ** (t_acc - 1)


def window_period(t_acc: int, t_gen: int, double_buffered: bool = False) -> int:
    """Steps between the starts of a neuron's successive windows: ``t_acc + t_gen`` with one
    membrane bank; ``max(t_acc, t_gen)`` with two (double buffering: the next window
    accumulates in the other bank while this one generates)."""
    return max(t_acc, t_gen) if double_buffered else t_acc + t_gen


def code_range(theta: Any, k: float = 2.0) -> Any:
    """Supremum of the values a train of any length can encode: ``theta * k / (k - 1)``
    (``2 theta`` for the binary code).

    Calibration places it at the largest activation, so ``theta = peak * (k - 1) / k``
    (:func:`threshold_for_peak`).
    """
    return theta * (float(k) / (float(k) - 1.0))


def threshold_for_peak(peak: Any, k: float = 2.0) -> Any:
    """The threshold whose :func:`code_range` ends at ``peak``: ``peak * (k - 1) / k``
    (``peak / 2`` for the binary code, computed as exactly that)."""
    if float(k) == 2.0:
        return peak / 2
    return peak * ((float(k) - 1.0) / float(k))


def binary_code(v: Any, theta: Any, T: int) -> Any:
    """The generate phase of ``k = 2`` neurons in closed form: the integer whose ``T`` binary
    digits (most significant first) are the spikes of a membrane starting at ``v``.

    The spikes are ``z_j = [V_j >= theta]``, ``V_{j+1} = 2 (V_j - z_j theta)``. Each soft reset
    subtracts theta from a value in ``[theta, 2 theta)`` (exact in floating point, Sterbenz) and
    doubling is exact, so the train is ``floor(v 2**(T-1) / theta)`` clipped to
    ``[0, 2**T - 1]``; ``fmod`` gives that floor without rounding error. Values below 0 give 0.

    Parameters
    ----------
    v : array or tensor
        Membrane at the start of generation (rounding offset already added; ``|v|`` for signed
        neurons).
    theta : array or tensor
        Threshold, same framework and dtype as ``v``, broadcastable against it.
    T : int
        Train length.

    Returns
    -------
    array or tensor
        Integer-valued, dtype of ``v``.
    """
    lib = torch if _is_torch(v) else np
    scaled = v * float(2 ** (T - 1))  # exact: a power of two
    # negative values give n <= 0 (fmod keeps the dividend's sign): the clip makes them 0
    if lib is torch:  # the same operations, in place: big layers allocate one tensor, not five
        rest = torch.fmod(scaled, theta)
        return scaled.sub_(rest).div_(theta).round_().clamp_(0, 2**T - 1)
    n = lib.round((scaled - lib.fmod(scaled, theta)) / theta)
    return lib.clip(n, 0, 2**T - 1)


def _start_value(u: Any, theta: Any, T: int, k: float, rounding: str, signed: bool) -> Any:
    """Membrane value when generation starts: ``|u|`` (signed) or ``u``, plus half an LSB."""
    v = abs(u) if signed else u
    if rounding == "nearest":
        v = v + rounding_offset(theta, T, k, rounding)
    return v


def encode(
    u: Any,
    theta: Any,
    T: int,
    k: float = 2.0,
    rounding: str = "floor",
    signed: bool = False,
) -> Any:
    """Spike train of the generation phase for membrane values ``u``.

    Parameters
    ----------
    u : array or tensor
        Membrane potential at the start of generation (any shape).
    theta : float or array
        Threshold; arrays broadcast against ``u`` (e.g. one per channel).
    T : int
        Number of time steps (spikes) to generate.
    k : float
        Inverse leak, in (1, 2].
    rounding : {"floor", "nearest"}
        ``"nearest"`` adds half an LSB to the membrane before generating.
    signed : bool
        Emit -1 spikes for negative ``u`` (graded/ternary trains) instead of staying silent.

    Returns
    -------
    array or tensor of shape ``(T, *u.shape)``
        Spikes in {0, 1} ({-1, 0, 1} if signed), most significant first, dtype of ``u``.
    """
    validate_code_params(k=k, T=T, theta=theta, rounding=rounding)
    u = _as_array(u)
    _check_finite(u, "u")
    th = _like(theta, u)
    v = _start_value(u, th, T, k, rounding, signed)
    spikes = []
    for _ in range(T):
        s = (v >= th) * 1.0 if not _is_torch(v) else (v >= th).to(v.dtype)
        spikes.append(s)
        v = k * (v - s * th)
    out = torch.stack(spikes) if _is_torch(u) else np.stack(spikes).astype(u.dtype)
    if signed:
        sign = torch.sign(u) if _is_torch(u) else np.sign(u)
        out = out * sign
    return out


def decode(spikes: Any, theta: Any, k: float = 2.0) -> Any:
    """Value of MSB-first trains: ``theta * sum_j spikes[j] * k**-j`` over dim 0.

    The weighted sum is formed before multiplying by ``theta`` so that, for ``k = 2``, it is exact
    and ``decode(encode(u))`` equals ``quantize(u)`` bit for bit.
    """
    validate_code_params(k=k, theta=theta)
    spikes = _as_array(spikes)
    T = spikes.shape[0]
    shape = (T,) + (1,) * (spikes.ndim - 1)
    if _is_torch(spikes):
        w = torch.tensor([float(k) ** -j for j in range(T)], dtype=spikes.dtype,
                         device=spikes.device).reshape(shape)
    else:
        w = np.array([float(k) ** -j for j in range(T)], dtype=spikes.dtype).reshape(shape)
    return _like(theta, spikes) * (spikes * w).sum(0)


def quantize(
    u: Any,
    theta: Any,
    T: int,
    k: float = 2.0,
    rounding: str = "floor",
    signed: bool = False,
) -> Any:
    """What ``decode(encode(u, ...))`` gives, without simulating spikes when ``k = 2``.

    For ``k = 2`` the closed form is ``floor(clip(u, 0, top) / lsb) * lsb`` (on ``|u|`` with the
    sign restored when ``signed``); the integer part uses an exact remainder (``fmod``) so that
    it matches the spike-by-spike comparisons bit for bit. Other ``k`` fall back to the greedy
    expansion, which is vectorised over ``u`` and loops over ``T`` only.
    """
    validate_code_params(k=k, T=T, theta=theta, rounding=rounding)
    u = _as_array(u)
    _check_finite(u, "u")
    th = _like(theta, u)
    v = _start_value(u, th, T, k, rounding, signed)
    if k != 2.0:
        return _greedy_expansion(u, v, th, T, k, signed)
    lib = torch if _is_torch(u) else np
    n = binary_code(v, th, T)
    q = th * (n * float(2.0 ** (1 - T)))
    if signed:
        q = q * lib.sign(u)
    return q


def _greedy_expansion(u: Any, v: Any, th: Any, T: int, k: float, signed: bool) -> Any:
    """``decode(encode(u))`` for any k without materialising the train (same comparisons)."""
    digits = 0.0
    for j in range(T):
        s = v >= th
        s = s.to(v.dtype) if _is_torch(v) else s.astype(v.dtype)
        digits = digits + s * float(k) ** -j
        v = k * (v - s * th)
    q = th * digits
    if signed:
        q = q * (torch.sign(u) if _is_torch(u) else np.sign(u))
    return q


# --------------------------------------------------------------------------------------------
# thresholds (paper Eq. 13)


def conversion_error(
    samples: Any,
    theta: Any,
    k: float = 2.0,
    T: int = 16,
    rounding: str = "floor",
    signed: bool = False,
) -> Any:
    """Expected conversion error ``E|U_in - U_out|`` (paper Eq. 13).

    ``U_in`` is the value the layer should pass on (``relu(u)``, or ``u`` when ``signed``) and
    ``U_out = decode(encode(u))``. ``theta`` may be an array of candidates: the result then has
    its shape, one mean error per candidate.
    """
    validate_code_params(k=k, T=T, theta=theta, rounding=rounding)
    x = _to_numpy(samples).astype(np.float64).ravel()
    _check_finite(x, "samples")
    if x.size == 0:
        raise ValueError("samples is empty: need at least one value to measure an error")
    th = np.asarray(_to_numpy(theta), dtype=np.float64)
    target = x if signed else np.maximum(x, 0.0)
    q = quantize(x[None, :], th.reshape(-1, 1), T, k, rounding, signed)
    err = np.abs(target[None, :] - q).mean(axis=1)
    return err.reshape(th.shape) if th.ndim else float(err[0])


def optimal_threshold(
    samples: Any,
    T: int,
    k: float = 2.0,
    rounding: str = "floor",
    signed: bool = False,
    num_candidates: int = 256,
    max_samples: int = 20000,
    seed: int = 0,
) -> float:
    """Threshold that minimises :func:`conversion_error` on ``samples``.

    A coarse grid over ``theta / U_max`` in (0, 1] (``U_max`` the largest ``|sample|``) is
    evaluated in one vectorised pass, then a finer grid around its best point. Inputs larger than
    ``max_samples`` are subsampled (seeded) to keep the cost bounded.

    Returns
    -------
    float
        The best threshold found (``U_max / 2`` when all samples are zero-valued after ReLU).
    """
    validate_code_params(k=k, T=T, rounding=rounding)
    x = _to_numpy(samples).astype(np.float64).ravel()
    if x.size == 0:
        raise ValueError("samples is empty: need at least one value to choose a threshold")
    _check_finite(x, "samples")
    if x.size > max_samples:
        x = np.random.default_rng(seed).choice(x, size=max_samples, replace=False)
    u_max = float(np.max(np.abs(x) if signed else np.maximum(x, 0.0)))
    if u_max <= 0.0:
        return 1.0
    lo, hi = 1.0 / num_candidates, 1.0
    best = hi / 2
    for _ in range(3):  # coarse grid, then two zooms around the best candidate
        grid = np.linspace(lo, hi, num_candidates)
        errs = conversion_error(x, grid * u_max, k, T, rounding, signed)
        i = int(np.argmin(errs))
        best = float(grid[i])
        step = grid[1] - grid[0]
        lo, hi = max(best - step, step / 4), best + step
    return best * u_max
