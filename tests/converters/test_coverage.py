"""Issue 14: concatenation, layout ops (channel shuffle), eval-mode no-ops, and refusals that
list every blocker with the reason -- on small networks and on torchvision classifiers."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from convhelpers import with_bn_statistics
from test_norse_backend import assert_exact, data
from torchvision.ops import StochasticDepth

from spikeconverter.converters import ConversionError, capture, convert
from spikeconverter.converters.capture.tracing import trace


class ConcatNet(nn.Module):
    """Two branches concatenated along channels, max pooled, a 1x1 conv over the concat, a
    concat along the width, dropout and stochastic depth (identity in eval)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 3, 3, padding=1)
        self.b = nn.Conv2d(1, 2, 1)
        self.bn = nn.BatchNorm2d(5)
        self.mix = nn.Conv2d(5, 4, 1)
        self.sd = StochasticDepth(0.2, "row")
        self.drop = nn.Dropout3d(0.3)
        self.fc = nn.Linear(4 * 4 * 8, 3)

    def forward(self, x):
        y = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=1)
        y = F.max_pool2d(y, 2)
        z = F.relu(self.mix(F.relu(self.bn(y))))
        z = torch.cat((z, self.sd(z)), dim=-1)  # width 4 + 4
        return self.fc(self.drop(z).flatten(1))


class ShuffleNet(nn.Module):
    """A ShuffleNet-v2 unit: chunk, one half through convs, concat, channel shuffle by a 5-D
    view + transpose + view, then a transpose/permute/flatten of non-batch dims."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.b1 = nn.Conv2d(2, 2, 1)
        self.b2 = nn.Conv2d(2, 2, 3, padding=1, groups=2)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x1, x2 = x.chunk(2, dim=1)
        y = torch.cat((x1, F.relu(self.b2(F.relu(self.b1(x2))))), dim=1)
        b, c, h, w = y.size()
        y = torch.transpose(y.view(b, 2, c // 2, h, w), 1, 2).contiguous().view(b, c, h, w)
        y = F.relu(self.b1(y[:, 1::2]) + y.split(2, dim=1)[0])
        y = torch.cat([y, y.permute(0, 1, 3, 2)], 1)
        return self.fc(torch.flatten(y, 1))


def _model(cls, shape, seed=0):
    torch.manual_seed(seed)
    return with_bn_statistics(cls(), shape)


def _x(shape, n=4):
    return data(n, shape)


@pytest.mark.parametrize("cls", [ConcatNet, ShuffleNet])
def test_small_concat_and_shuffle_networks_are_exact_in_norse(cls):
    model = _model(cls, (1, 8, 8))
    x = _x((1, 8, 8))
    g = capture(model, x)
    with torch.no_grad():  # the capture is the model; the SNN is its quantised ANN
        torch.testing.assert_close(g.forward(x, quantized=False)[g.output], model(x),
                                   rtol=1e-10, atol=1e-10)
    assert_exact(convert(model, x, T=8, dtype=torch.float64, progress=False), x)


def test_concat_is_one_synapse_group_per_part():
    g = capture(_model(ConcatNet, (1, 8, 8)), _x((1, 8, 8)))
    kinds = [p.kind for p in g]
    # the concat needs no population of its own, max pooling pools each part
    assert kinds == ["input", "relu", "relu", "maxpool", "maxpool", "relu", "relu", "readout"]
    bn = [p for p in g][5]  # BatchNorm over the concat + ReLU: one edge per part
    assert [[o.kind for o in e.ops] for e in bn.edges] == [["pad", "conv2d"]] * 2


def test_channel_shuffle_is_composed_into_one_gather_per_edge():
    g = capture(_model(ShuffleNet, (1, 8, 8)), _x((1, 8, 8)))
    for p in g:
        for e in p.edges:
            kinds = [o.kind for o in e.ops]
            assert kinds.count("gather") <= 1, (p.name, kinds)


def test_eval_mode_no_ops_and_dropout_in_training_mode():
    class Drop(nn.Module):
        def __init__(self, training):
            super().__init__()
            self.fc, self.flag = nn.Linear(4, 2), training

        def forward(self, x):
            return self.fc(F.dropout(F.relu(x), 0.5, training=self.flag))

    capture(Drop(False).double().eval(), _x((4,)))
    with pytest.raises(ConversionError, match="training=True"):
        capture(Drop(True).double().eval(), _x((4,)))


class Blocked(nn.Module):
    """Two blockers in separate places, and nodes that only depend on them."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3)
        self.act = nn.SiLU()

    def forward(self, x):
        y = self.act(self.c(x))
        g = torch.sigmoid(y.mean((2, 3), keepdim=True))
        return (y * g).flatten(1)


def test_every_blocker_is_listed_with_location_and_reason():
    with pytest.raises(ConversionError) as e:
        capture(Blocked().double().eval(), _x((1, 5, 5)))
    blockers = {b.node: b for b in e.value.blockers}
    assert set(blockers) == {"act", "sigmoid", "mul"}
    assert "ReLU-family" in blockers["act"].why and "retrain" in blockers["act"].why
    assert "SiLU" in blockers["act"].why
    assert blockers["sigmoid"].location.endswith("in forward")
    assert "test_coverage.py" in blockers["sigmoid"].location
    assert "squeeze-and-excitation" in blockers["mul"].why
    msg = str(e.value)
    assert "3 nodes" in msg and "node 'mul'" in msg and "Supported:" in msg


def _count(gm, modules=(), functions=(), methods=()):
    n = 0
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), modules):
            n += 1
        n += node.op == "call_function" and node.target in functions
        n += node.op == "call_method" and node.target in methods
    return n


@pytest.mark.parametrize("name, act", [
    ("efficientnet_b0", "SiLU"), ("mobilenet_v3_small", "Hardswish")])
def test_non_relu_torchvision_models_are_refused_with_every_blocker(name, act):
    model = torchvision.models.get_model(name, num_classes=10).double().eval()
    with pytest.raises(ConversionError) as e:
        capture(model, _x((3, 32, 32), n=2))
    gm = trace(model)
    # every non-ReLU activation and every gate product, counted on the traced graph itself
    expected = _count(gm, (nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid),
                      (operator.mul, torch.sigmoid), ("mul",))
    assert len(e.value.blockers) == expected > 10
    whys = {b.why for b in e.value.blockers}
    assert any(act in w and "ReLU-family" in w and "no exact spiking form" in w for w in whys)
    assert all(b.location for b in e.value.blockers)


TORCHVISION = {
    "squeezenet1_1": (3, 32, 32),
    "shufflenet_v2_x0_5": (3, 32, 32),
    "googlenet": (3, 32, 32),
    "densenet121": (3, 32, 32),
}


@pytest.mark.parametrize("name", [
    "squeezenet1_1", "shufflenet_v2_x0_5", "googlenet",
    pytest.param("densenet121", marks=pytest.mark.slow)])
def test_torchvision_concat_models_equal_their_quantised_ann(name):
    shape = TORCHVISION[name]
    model = with_bn_statistics(torchvision.models.get_model(name, num_classes=10), shape)
    x = _x(shape, n=2)
    net = convert(model, x, T=8, dtype=torch.float64, progress=False)
    assert_exact(net, x)


@pytest.mark.lava
@pytest.mark.parametrize("cls", [ConcatNet, ShuffleNet])
def test_small_concat_and_shuffle_networks_in_lava_equal_norse(cls):
    pytest.importorskip("lava", reason="the Lava backend needs lava-nc 0.10.0")
    import numpy as np

    model, x = _model(cls, (1, 8, 8)), _x((1, 8, 8), n=3)
    norse = convert(model, x, T=5, dtype=torch.float64, progress=False)
    lava = convert(model, x, T=5, dtype=torch.float64, progress=False, backend="lava")
    ref = norse(x).numpy()
    np.testing.assert_allclose(lava.run(x, progress=False), ref, rtol=1e-6,
                               atol=1e-9 * np.abs(ref).max())


def test_cli_check_exit_codes(capsys):
    from spikeconverter.cli import main

    assert main(["check", "torchvision:squeezenet1_1", "--num-classes", "10",
                 "--input-shape", "3", "32", "32"]) == 0
    assert "convertible" in capsys.readouterr().out
    assert main(["check", "torchvision:mobilenet_v3_small", "--num-classes", "10",
                 "--input-shape", "3", "32", "32"]) == 1
    out = capsys.readouterr().out
    assert "not convertible" in out and "Hardswish" in out and "retrain" in out
    assert main(["check", "torchvision:squeezenet1_1", "--input-shape", "3", "2", "2"]) == 2
    assert "--input-shape" in capsys.readouterr().err
    assert main(["check", "torchvision:no_such_model"]) == 2
    assert main(["check", "torchvision:squeezenet1_1", "--num-classes", "10",
                 "--input-shape", "3", "32", "32", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["check", "torchvision:squeezenet1_1", "--device", "gpu"]) == 2
    assert "device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'" in capsys.readouterr().err
