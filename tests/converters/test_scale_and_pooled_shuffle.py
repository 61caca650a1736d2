"""Issue 14: multiplication/division by a constant folded into the synapses, and max pooling
after a channel shuffle -- exact in Norse, Lava equal to Norse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from convhelpers import with_bn_statistics
from test_norse_backend import assert_exact, data

from spikeconverter.converters import ConversionError, capture, convert


class ScaleNet(nn.Module):
    """Constants everywhere: on a ReLU population (carried to the next conv), after a conv
    (folded into its weight and bias), on a difference of two populations (edges with no
    conv of their own), a computed factor, negation, subtraction and a scaled readout."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c3 = nn.Conv2d(4, 4, 1)
        self.c4 = nn.Conv2d(4, 3, 1)
        self.fc = nn.Linear(3 * 8 * 8, 3)

    def forward(self, x):
        x = F.relu(self.c1(x)) * 0.5
        y = F.relu(self.c2(x) / 2)
        z = F.relu(self.c3(y))
        z = F.relu(0.25 * z - torch.mul(y, 2.0) / y.size(1))
        w = F.relu(self.c4(z) - (-self.c4(y)).div(3))
        return self.fc(torch.flatten(w * 1.5, 1)) * 0.1


class PooledShuffle(nn.Module):
    """Max pooling after a channel shuffle of a concatenation (ShuffleNet-v2 order), after a
    shuffle of one population, and after a positive constant."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 3, padding=1)
        self.mix = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4 * 2 * 2, 3)

    @staticmethod
    def shuffle(y):
        b, c, h, w = y.size()
        return y.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = torch.cat((x[:, :2], F.relu(self.b(x[:, 2:]))), dim=1)
        y = F.max_pool2d(self.shuffle(y), 2)
        y = F.relu(self.mix(y))
        y = F.max_pool2d(self.shuffle(y) * 0.5, 2)
        return self.fc(y.flatten(1))


class SumNet(nn.Module):
    """``sum`` of three branches (it starts by adding 0), ``add`` with ``alpha``."""

    def __init__(self):
        super().__init__()
        self.c = nn.ModuleList(nn.Conv2d(1, 2, 3, padding=1) for _ in range(3))
        self.fc = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x):
        a, b, c = (F.relu(conv(x)) for conv in self.c)
        y = F.relu(sum([a, b, c]))
        y = F.relu(torch.add(y, a, alpha=-0.5)) + y.add(b, alpha=2)
        return self.fc(y.flatten(1))


def _model(cls, shape=(1, 8, 8)):
    torch.manual_seed(0)
    return with_bn_statistics(cls(), shape)


@pytest.mark.parametrize("cls", [ScaleNet, PooledShuffle, SumNet])
def test_constants_and_pooled_shuffles_are_exact_in_norse(cls):
    model, x = _model(cls), data(4, (1, 8, 8))
    g = capture(model, x)
    with torch.no_grad():  # the capture is the model
        torch.testing.assert_close(g.forward(x, quantized=False)[g.output], model(x),
                                   rtol=1e-10, atol=1e-10)
    assert_exact(convert(model, x, T=8, dtype=torch.float64, progress=False), x)


def test_constants_are_folded_into_the_synapses():
    g = capture(_model(ScaleNet), data(2, (1, 8, 8)))
    # no population for any constant: one per ReLU, plus the input and the readout
    assert [p.kind for p in g] == ["input"] + ["relu"] * 5 + ["readout"]
    # the residual sum of two populations: each edge gets a depthwise 1x1 conv of its factor
    z = g.populations["relu_3"]
    assert [[o.kind for o in e.ops] for e in z.edges] == [["conv2d"], ["conv2d"]]
    assert sorted(float(e.ops[0].weight.ravel()[0]) for e in z.edges) == [-0.5, 0.25]
    # c2 / 2 after a population scaled by 0.5: the weight carries both, the bias only 1/2
    c2 = g.populations["relu_1"].edges[0].ops[0]
    torch.testing.assert_close(torch.as_tensor(c2.weight),
                               _model(ScaleNet).c2.weight.detach().double() / 4)


def test_max_pooling_after_a_shuffle_pools_each_part_then_shuffles():
    g = capture(_model(PooledShuffle), data(2, (1, 8, 8)))
    pools = [p for p in g if p.kind == "maxpool"]
    assert len(pools) == 3  # the concat's two parts, then the one shuffled population
    mix = g.populations["relu_2"]
    assert sorted(o.kind for e in mix.edges for o in e.ops) == ["conv2d", "conv2d", "gather",
                                                                "gather"]


def test_products_and_bad_divisions_are_refused_with_the_reason():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 2, 3)
            self.scale = nn.Parameter(torch.ones(2, 1, 1))

        def forward(self, x):
            y = F.relu(self.c(x))
            return ((y * y) + self.scale * y + y // 2 + y / y).flatten(1)

    with pytest.raises(ConversionError) as e:
        capture(Gate().double().eval(), data(2, (1, 5, 5)))
    whys = {b.node: b.why for b in e.value.blockers}
    assert set(whys) == {"mul", "mul_1", "floordiv", "truediv"}, whys
    assert "squeeze-and-excitation" in whys["mul"]
    assert "stored on the model" in whys["mul_1"]
    assert "constant number" in whys["truediv"]


@pytest.mark.lava
@pytest.mark.parametrize("cls", [ScaleNet, PooledShuffle])
def test_constants_and_pooled_shuffles_in_lava_equal_norse(cls):
    pytest.importorskip("lava", reason="the Lava backend needs lava-nc 0.10.0")
    model, x = _model(cls), data(3, (1, 8, 8))
    norse = convert(model, x, T=5, dtype=torch.float64, progress=False)
    lava = convert(model, x, T=5, dtype=torch.float64, progress=False, backend="lava")
    ref = norse(x).numpy()
    np.testing.assert_allclose(lava.run(x, progress=False), ref, rtol=1e-6,
                               atol=1e-9 * np.abs(ref).max())


def test_stored_parameters_are_no_blockers_of_their_own():
    class Stored(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 2, 3)
            self.w, self.b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.zeros(3))
            self.token = nn.Parameter(torch.zeros(1, 2, 1))

        def forward(self, x):
            y = F.relu(self.c(x)).flatten(2)  # (B, 2, 9)
            y = torch.cat([self.token.expand(y.shape[0], -1, -1), y], dim=2)[:, :, :3]
            return F.layer_norm(y, (3,), self.w, self.b).flatten(1)

    with pytest.raises(ConversionError) as e:
        capture(Stored().double().eval(), data(2, (1, 5, 5)))
    whys = {b.node: b.why for b in e.value.blockers}
    # the op using a parameter is the blocker; the parameters (get_attr) are not listed
    assert set(whys) == {"expand", "layer_norm"}, whys
    assert "'token' is a tensor stored on the model" in whys["expand"]
    assert all(b.op != "get_attr" for b in e.value.blockers)
