"""The whole-window surrogate gradient equals autograd through the plugin neuron's steps."""

import pytest
import torch

from spikeconverter.plugin import ILIF, ILIFParameters
from spikeconverter.plugin.surrogate import window_code


def stepped_code(u: torch.Tensor, T: int, signed: bool, method: str, alpha: float):
    """The code of a ``T``-step ``k = 2`` window started at ``u`` (threshold units), stepped by
    the plugin's ILIF with surrogate spikes: differentiable in ``u``."""
    p = ILIFParameters(k=2.0, v_th=torch.ones((), dtype=u.dtype), t_acc=1, t_gen=T,
                       rounding="floor", signed=signed, method=method, alpha=alpha)
    z, _ = ILIF(p)(torch.cat([u.unsqueeze(0), u.new_zeros((T, *u.shape))]))
    weights = 2.0 ** torch.arange(T - 1, -1, -1, dtype=u.dtype)
    return torch.tensordot(weights, z[1:], dims=1)


@pytest.mark.parametrize("T", [1, 2, 3, 5])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("method, alpha", [("triangle", 1.0), ("super", 10.0)])
def test_window_code_gradient_equals_stepping_the_neuron(T, signed, method, alpha):
    g = torch.Generator().manual_seed(T)
    # below, inside and above the code range, and exactly on code boundaries
    u = torch.cat([torch.rand(400, generator=g, dtype=torch.float64) * 5 - 2.5,
                   torch.arange(-2 ** T, 2 ** T + 1, dtype=torch.float64) * 2.0 ** (1 - T)])
    a = u.clone().requires_grad_(True)
    ref = stepped_code(a, T, signed, method, alpha)
    (ref_grad,) = torch.autograd.grad(ref, a, torch.linspace(-1, 2, len(u), dtype=u.dtype))
    b = u.clone().requires_grad_(True)
    out = window_code(b, ref.detach().to(torch.int32), T, signed, method, alpha)
    (grad,) = torch.autograd.grad(out, b, torch.linspace(-1, 2, len(u), dtype=u.dtype))
    assert out.dtype == u.dtype and torch.equal(out, ref.detach())
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)
    assert ref_grad.abs().sum() > 0  # the comparison is not between two zeros


def test_window_code_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        window_code(torch.zeros(3), torch.zeros(4), 2, False, "triangle", 1.0)
