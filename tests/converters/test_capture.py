"""Capture: fx trace -> IR reproduces the model, with the documented population rules."""

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from convhelpers import with_bn_statistics

from spikeconverter.converters import ConversionError, capture
from spikeconverter.models import get_model


def kinds(graph):
    out = {}
    for p in graph:
        out[p.kind] = out.get(p.kind, 0) + 1
    return out


def check_reproduces(model, shape, n=2, seed=1):
    x = torch.randn(n, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    g = capture(model, x)
    with torch.no_grad():
        ref = model(x)
    out = g.forward(x, quantized=False)[g.output]
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10 * float(ref.abs().max()))
    return g


def test_cifar_resnet20_structure_and_self_check():
    m = with_bn_statistics(get_model("cifar_resnet20"), (3, 32, 32))
    g = check_reproduces(m, (3, 32, 32))
    assert kinds(g) == {"input": 1, "relu": 19, "readout": 1}
    # option-A shortcut: a slice + channel pad edge next to the conv edge
    ops = sorted([o.kind for o in e.ops] for e in g["relu_8"].edges)
    assert ops == [["conv2d"], ["slice", "pad"]]
    assert [o.kind for o in g[g.output].edges[0].ops] == ["avgpool2d", "flatten", "linear"]


def test_small_cnn_bn_folded_and_dropout_gone():
    m = with_bn_statistics(get_model("small_cnn", input_size=8), (1, 8, 8))
    g = check_reproduces(m, (1, 8, 8))
    assert kinds(g) == {"input": 1, "relu": 3, "maxpool": 2, "readout": 1}
    assert all(len(e.ops) <= 2 for p in g for e in p.edges)


@pytest.mark.parametrize("name, shape, expected", [
    ("resnet18", (3, 32, 32), {"relu": 17, "maxpool": 1}),
    ("mobilenet_v2", (3, 32, 32), {"relu": 35, "signed": 17}),
])
def test_torchvision_models_reproduce(name, shape, expected):
    kw = {"width_mult": 0.5} if name == "mobilenet_v2" else {}
    m = with_bn_statistics(getattr(torchvision.models, name)(num_classes=10, **kw), shape)
    g = check_reproduces(m, shape)
    for kind, n in expected.items():
        assert kinds(g)[kind] == n
    # every edge holds at most one weighted layer
    for p in g:
        for e in p.edges:
            assert sum(o.kind in ("conv2d", "linear") for o in e.ops) <= 1, (p.name, e.source)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn", "vgg16", "vgg16_bn"])
def test_vgg_reproduces_with_adaptive_pool_folded(name):
    m = with_bn_statistics(getattr(torchvision.models, name)(num_classes=10), (3, 32, 32))
    g = check_reproduces(m, (3, 32, 32))
    # 1x1 -> 7x7 adaptive pooling is no average pooling: folded into the first Linear
    first_fc = [p for p in g if p.kind == "relu" and len(p.shape) == 1][0]
    assert first_fc.edges[0].ops[-1].weight.shape == (4096, 512)


class ConvPoolRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        x = F.relu6(F.max_pool2d(self.conv(x), 2))
        return self.fc(torch.flatten(x, 1))


def test_conv_maxpool_relu_is_reordered():
    g = check_reproduces(ConvPoolRelu().double().eval(), (2, 8, 8))
    names = [(p.kind, p.clip) for p in g]
    assert names == [("input", None), ("relu", 6.0), ("maxpool", None), ("readout", None)]


class Functional(nn.Module):
    """Functional ops, inplace ReLU, x.view, strided conv with dilation and groups."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 8, 3, stride=2, padding=2, dilation=2, groups=2)
        self.b = nn.Conv2d(8, 8, 3, padding="same", groups=8)
        self.fc = nn.Linear(8 * 2 * 2, 3)

    def forward(self, x):
        y = torch.relu(self.a(x))
        z = self.b(y).clamp(min=0)
        z = F.avg_pool2d(z + y, 2)
        z = F.dropout(z, 0.5, training=self.training)
        return self.fc(z.view(z.size(0), -1))


def test_functional_forms():
    g = check_reproduces(Functional().double().eval(), (4, 8, 8))
    assert [p.kind for p in g] == ["input", "relu", "relu", "readout"]
    readout = g[g.output]
    assert len(readout.edges) == 2  # avgpool(z + y) distributes over the add
    assert sum(o.bias is not None for e in readout.edges for o in e.ops) == 1  # bias once


def test_training_mode_warns_and_captures_eval():
    m = with_bn_statistics(get_model("small_cnn", input_size=8), (1, 8, 8)).train()
    with pytest.warns(UserWarning, match="training mode"):
        capture(m, torch.randn(2, 1, 8, 8, dtype=torch.float64))
    assert m.training  # the caller's model is left as it was


def test_capture_leaves_the_model_untouched():
    m = with_bn_statistics(get_model("small_cnn", input_size=8), (1, 8, 8))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        capture(m, torch.randn(2, 1, 8, 8, dtype=torch.float64))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


# -- errors --------------------------------------------------------------------------------


class Sigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


class Gelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.GELU()

    def forward(self, x):
        return self.act(self.fc(x))


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


class SignedMaxPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        return F.max_pool2d(self.conv(x), 2).flatten(1)


def test_unsupported_function_names_node_op_and_target():
    with pytest.raises(ConversionError) as e:
        capture(Sigmoid(), torch.randn(2, 4))
    msg = str(e.value)
    assert "'sigmoid'" in msg and "call_function" in msg and "sigmoid" in msg
    assert "Supported:" in msg and "Conv2d" in msg


def test_unsupported_module_names_node_op_and_target():
    with pytest.raises(ConversionError, match=r"node 'act' \(op call_module, target act \(GELU\)"):
        capture(Gelu(), torch.randn(2, 4))


def test_untraceable_model_is_a_clear_error():
    with pytest.raises(ConversionError, match="could not be traced by torch.fx.*control flow"):
        capture(DataDependent(), torch.randn(2, 4))


def test_max_pool_of_signed_values_is_refused():
    with pytest.raises(ConversionError, match="max pooling"):
        capture(SignedMaxPool(), torch.randn(2, 1, 4, 4))


def test_nan_weights_name_the_layer():
    m = get_model("small_cnn", input_size=8).eval()
    with torch.no_grad():
        m.classifier[1].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"classifier\.1\.weight.*NaN"):
        capture(m, torch.randn(2, 1, 8, 8))


class PreActivation(nn.Module):
    """BatchNorm after a ReLU (nothing to fold it into) and a BatchNorm1d after a Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 6)
        self.bn1d = nn.BatchNorm1d(6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        x = self.bn(F.relu(self.conv(x)))
        x = F.relu(self.conv2(x))
        return self.out(F.relu(self.bn1d(self.fc(x.flatten(1)))))


def test_batchnorm_without_a_layer_before_it_is_an_affine_op():
    m = with_bn_statistics(PreActivation(), (2, 4, 4))
    g = check_reproduces(m, (2, 4, 4))
    # the lone BatchNorm2d is a depthwise 1x1 conv: it makes the conv2 input a signed population
    assert [p.kind for p in g] == ["input", "relu", "signed", "relu", "relu", "readout"]
    assert g["bn"].edges[0].ops[0].attrs["groups"] == 4
    # BatchNorm1d right after a Linear is folded
    assert [o.kind for o in g["relu_2"].edges[0].ops] == ["flatten", "linear"]


class TwoOutputs(nn.Module):
    def forward(self, x):
        return x.flatten(1), x.flatten(1)


def test_tuple_output_is_refused():
    with pytest.raises(ConversionError, match="one tensor"):
        capture(TwoOutputs(), torch.randn(2, 1, 2, 2))


def test_an_operation_is_one_entry_of_the_handler_table():
    """The visitor knows only its table: without the ``torch.flatten`` handler the same model
    is refused with the node named, with it the capture reproduces the model."""
    from spikeconverter.converters.capture.handlers import OPS
    from spikeconverter.converters.capture.tracing import trace
    from spikeconverter.converters.capture.visitor import Capture, OpTable

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(torch.flatten(F.relu(x), 1))

    model = Net().double().eval()
    x = torch.randn(2, 2, 2, 2, dtype=torch.float64)
    without = OpTable(OPS.modules, {f: h for f, h in OPS.functions.items()
                                    if f is not torch.flatten}, OPS.methods)
    with pytest.raises(ConversionError,
                       match=r"unsupported function \(1 node\):\n  - node 'flatten'"):
        Capture(trace(model), x, without).run()
    graph = Capture(trace(model), x, OPS).run()
    with torch.no_grad():
        torch.testing.assert_close(graph.forward(x, quantized=False)[graph.output], model(x))
