"""The surrogate gradient of a whole ``k = 2`` generate window, attached to its exact code.

Fine-tuning runs the spiking network's exact forward pass (the backend's bit-packed codes)
and needs, backward, the gradient that stepping the plugin's neuron
(:func:`spikeconverter.plugin.ilif_step` with Norse's surrogate spike function) through the
window would give. With the membrane in threshold units, ``x_0 = u`` when generation starts,
``z_j = [x_j >= 1]`` (signed: ``- [x_j <= -1]``) and ``x_{j+1} = 2 (x_j - z_j)``, the code
``c = sum_j z_j 2**(T-1-j)`` has the surrogate derivative

``dc/du = 2**(T-1) * sum_j g_j * prod_{i<j} (1 - g_i) = 2**(T-1) * (1 - prod_j (1 - g_j))``,

``g_j`` the surrogate derivative of step ``j``'s spike (signed: of both spikes). This is what
autograd through the ``T`` steps computes, evaluated in one backward loop of ``T`` elementwise
steps and without the forward's autograd graph (the forward is the exact code itself, so
training sees the network's own spikes bit for bit).
"""

from __future__ import annotations

import torch
from norse.torch.functional.threshold import threshold

__all__ = ["surrogate_derivative", "window_code"]


def surrogate_derivative(x: torch.Tensor, method: str, alpha: float) -> torch.Tensor:
    """Norse's surrogate derivative of the spike ``[x >= 0]`` at ``x`` (the backward of
    :func:`norse.torch.functional.threshold.threshold`, so its formula stays Norse's)."""
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        out = threshold(leaf, method, alpha)
        (g,) = torch.autograd.grad(out, leaf, torch.ones_like(out))
    return g


class _WindowCode(torch.autograd.Function):
    """Forward: the given code (as ``u`` 's dtype); backward: the window's surrogate
    derivative (module docstring) with respect to ``u``."""

    @staticmethod
    def forward(ctx, u, code, T, signed, method, alpha):  # noqa: D102 - autograd protocol
        ctx.save_for_backward(u)
        ctx.T, ctx.signed, ctx.method, ctx.alpha = T, signed, method, alpha
        return code.to(u.dtype)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102 - autograd protocol
        (u,) = ctx.saved_tensors
        steps = [u.detach()]  # x_j, the membrane at each generate step
        for _ in range(ctx.T - 1):
            x = steps[-1]
            z = (x >= 1).to(x.dtype)
            if ctx.signed:
                z = z - (x <= -1).to(x.dtype)
            steps.append(2 * (x - z))
        x = torch.stack(steps)
        g = surrogate_derivative(x - 1, ctx.method, ctx.alpha)  # one call for all steps
        if ctx.signed:
            g = g + surrogate_derivative(-x - 1, ctx.method, ctx.alpha)
        # sum_j g_j prod_{i<j} (1 - g_i) telescopes to 1 - prod_j (1 - g_j)
        total = 1 - torch.prod(1 - g, dim=0)
        return grad * total * 2.0 ** (ctx.T - 1), None, None, None, None, None


def window_code(u: torch.Tensor, code: torch.Tensor, T: int, signed: bool, method: str,
                alpha: float) -> torch.Tensor:
    """``code`` as a float tensor of ``u`` 's dtype whose gradient is the surrogate derivative
    of the ``T``-step ``k = 2`` generate window started at ``u`` (threshold units).

    Parameters
    ----------
    u : torch.Tensor
        The membrane when generation starts, divided by the threshold (bias and rounding
        offset included), with the autograd history gradients should reach.
    code : torch.Tensor
        The window's exact code (integer or float, ``u`` 's shape): the forward value.
    T : int
        Generate steps.
    signed : bool
        Signed neurons (spikes of both signs).
    method, alpha : str, float
        Norse's surrogate method and its parameter.
    """
    if code.shape != u.shape:
        raise ValueError(f"code {tuple(code.shape)} and membrane {tuple(u.shape)} differ in "
                         "shape")
    return _WindowCode.apply(u, code, int(T), bool(signed), method, float(alpha))
