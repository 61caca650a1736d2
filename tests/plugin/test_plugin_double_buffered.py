"""Double-buffered iLIF: two membrane banks, a window every max(t_acc, t_gen) steps, and per
sample exactly the spikes of the single-banked neuron fed every t_acc + t_gen steps."""

import pytest
import torch

from spikeconverter.coding import window_period
from spikeconverter.plugin import ILIF, ILIFCell, ILIFParameters


def stream(current: torch.Tensor, offset: int, period: int, total: int) -> torch.Tensor:
    """Sample ``i``'s accumulate currents ``current[i]`` placed at ``offset + i * period``."""
    x = torch.zeros(total, *current.shape[2:], dtype=current.dtype)
    for i in range(current.shape[0]):
        at = offset + i * period
        x[at:at + current.shape[1]] = current[i]
    return x


def per_sample(z: torch.Tensor, n: int, start: int, period: int, t_gen: int) -> torch.Tensor:
    return torch.stack([z[start + i * period:start + i * period + t_gen] for i in range(n)])


@pytest.mark.parametrize("rounding", ["floor", "nearest"])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("t_acc, t_gen, offset", [(4, 4, 0), (3, 6, 5), (6, 2, 1), (1, 8, 2)])
def test_double_buffered_stream_equals_single_banked(rounding, signed, t_acc, t_gen, offset):
    torch.manual_seed(1)
    n, shape = 5, (3, 4)
    current = torch.randn(n, t_acc, *shape, dtype=torch.float64)
    kw = dict(v_th=torch.tensor([0.5, 0.7, 1.1, 0.9], dtype=torch.float64), t_acc=t_acc,
              t_gen=t_gen, offset=offset, bias=torch.randn(*shape, dtype=torch.float64) * 0.1,
              rounding=rounding, signed=signed)
    single, double = ILIFParameters(**kw), ILIFParameters(**kw, double_buffered=True)
    p1, p2 = window_period(t_acc, t_gen), window_period(t_acc, t_gen, True)
    assert (p1, p2) == (t_acc + t_gen, max(t_acc, t_gen))
    total1, total2 = offset + n * p1, offset + (n - 1) * p2 + t_acc + t_gen
    z1, _ = ILIF(single)(stream(current, offset, p1, total1))
    z2, state = ILIF(double)(stream(current, offset, p2, total2))
    assert state.v.shape == (2, *shape)  # two banks
    expected = per_sample(z1, n, offset + t_acc, p1, t_gen)
    assert expected.abs().sum() > 0
    assert torch.equal(per_sample(z2, n, offset + t_acc, p2, t_gen), expected)
    # nothing else is emitted: every spike of the stream is in some sample's generate window
    assert z2.abs().sum() == expected.abs().sum()


def test_double_buffered_generates_while_accumulating_the_next_sample():
    p = ILIFParameters(v_th=torch.tensor(1.0), t_acc=2, t_gen=2, double_buffered=True)
    cell, state, out = ILIFCell(p), None, []
    # sample 0 = 1.5 (code 11), sample 1 = 0.5 (code 01): inputs arrive every 2 steps
    for x in [0.0, 1.5 / 1, 0.0, 0.5, 0.0, 0.0]:
        z, state = cell(torch.tensor([x]), state)
        out.append(int(z))
    assert out == [0, 0, 1, 1, 0, 1]


def test_the_time_loop_and_the_cell_agree_and_the_clock_carries_over():
    torch.manual_seed(2)
    p = ILIFParameters(v_th=torch.tensor(0.6), t_acc=3, t_gen=3, offset=1, double_buffered=True)
    x = torch.randn(20, 6)
    z_loop, _ = ILIF(p)(x)
    state, zs = None, []
    for t in range(20):
        z, state = ILIFCell(p)(x[t], state)
        zs.append(z)
    assert torch.equal(torch.stack(zs), z_loop)
    za, s = ILIF(p)(x[:7])
    zb, _ = ILIF(p)(x[7:], s)
    assert torch.equal(torch.cat([za, zb]), z_loop)


def test_gradients_reach_the_threshold_through_both_banks():
    p = ILIFParameters(v_th=torch.tensor(0.6), t_acc=2, t_gen=2, double_buffered=True)
    layer = ILIF(p, learnable="v_th")
    z, _ = layer(torch.rand(10, 4, requires_grad=True))
    z.sum().backward()
    assert layer.v_th.grad is not None and torch.isfinite(layer.v_th.grad)


def test_double_buffered_must_be_a_bool():
    with pytest.raises(ValueError, match="double_buffered"):
        ILIF(ILIFParameters(double_buffered="yes"))
