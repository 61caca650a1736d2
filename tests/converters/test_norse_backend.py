"""Norse backend: the SNN equals the quantised ANN (exactness invariant) and keeps its schedule."""

import pytest
import torch
import torchvision
from convhelpers import with_bn_statistics

from spikeconverter import coding
from spikeconverter.converters import (
    SpikingNetwork,
    calibrate,
    capture,
    compute_schedule,
    convert,
    spike_max_pool2d,
)
from spikeconverter.models import get_model


def data(n, shape, seed=2):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, dtype=torch.float64, generator=gen)


def assert_exact(net, x):
    """SNN logits == quantised-ANN logits (float64 rounding), and latency == steps taken."""
    out = net(x)
    ref = net.graph.forward(x, quantized=True)[net.graph.output]
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9 * float(ref.abs().max()))
    assert net.stats["steps_simulated"] == net.schedule.latency_steps
    return out


MODELS = {
    "small_cnn": (lambda: get_model("small_cnn", input_size=8), (1, 8, 8)),
    "cifar_resnet20": (lambda: get_model("cifar_resnet20"), (3, 32, 32)),
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), (3, 32, 32)),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.35),
                     (3, 32, 32)),
    "vgg11": (lambda: torchvision.models.vgg11(num_classes=10), (3, 32, 32)),
    "vgg11_bn": (lambda: torchvision.models.vgg11_bn(num_classes=10), (3, 32, 32)),
    "vgg16": (lambda: torchvision.models.vgg16(num_classes=10), (3, 32, 32)),
    "vgg16_bn": (lambda: torchvision.models.vgg16_bn(num_classes=10), (3, 32, 32)),
}
FAST = ["small_cnn", "cifar_resnet20", "resnet18", "mobilenet_v2"]
SLOW = ["vgg11", "vgg11_bn", "vgg16", "vgg16_bn"]


def converted(name, T=4, mode="fused", **kw):
    make, shape = MODELS[name]
    model = with_bn_statistics(make(), shape)
    return convert(model, data(8, shape), T=T, mode=mode, dtype=torch.float64, progress=False,
                   **kw), shape


@pytest.mark.parametrize("name, mode", [(n, m) for n in FAST for m in ("fused", "frame")] + [
    # VGG's 100M-parameter classifier makes these heavy: one runs always, the rest when slow
    pytest.param(n, m, marks=pytest.mark.slow) if (n, m) != ("vgg11_bn", "fused") else (n, m)
    for n in SLOW for m in ("fused", "frame")
])
def test_snn_equals_quantised_ann(name, mode):
    net, shape = converted(name, T=4, mode=mode)
    out = assert_exact(net, data(2, shape, seed=5))
    assert out.shape == (2, 10)
    st = net.stats
    assert st["populations"][net.graph.output]["ann_macs"] > 0
    assert st["synaptic_ops_per_sample"] > 0
    assert st["ann_macs_per_sample"] > st["analog_input_macs_per_sample"] > 0


@pytest.mark.parametrize("name, kw", [("cifar_resnet20", {}), ("small_cnn", {}),
                                      ("small_cnn", {"input_encoding": "spikes"}),
                                      ("mobilenet_v2", {"rounding": "floor"})])
def test_modes_agree_spike_for_spike_with_plugin_neurons(name, kw):
    net, shape = converted(name, T=4, mode="plugin", **kw)
    x = data(2, shape, seed=7)
    runs = {}
    for mode in ("plugin", "frame", "fused"):
        other = SpikingNetwork(net.graph, net.schedule, mode=mode, dtype=torch.float64)
        other.record = True
        runs[mode] = (other(x), dict(other.spikes), other.stats)
    ref_out, ref_spikes, ref_stats = runs["plugin"]
    assert ref_stats["steps_simulated"] == net.schedule.latency_steps
    for mode in ("frame", "fused"):
        out, spikes, stats = runs[mode]
        torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
        assert spikes.keys() == ref_spikes.keys()
        for k in spikes:
            assert torch.equal(spikes[k], ref_spikes[k]), (mode, k)
        assert stats["populations"] == ref_stats["populations"]


def test_spikes_are_the_code_of_the_quantised_values():
    net, shape = converted("small_cnn", T=5)
    x = data(3, shape)
    net.record = True
    net(x)
    values = net.graph.forward(x, quantized=True)
    for pop in net.graph:
        if pop.kind in ("relu", "maxpool"):
            decoded = coding.decode(net.spikes[pop.name], pop.theta)
            torch.testing.assert_close(decoded, values[pop.name], rtol=0, atol=1e-12)
            assert set(net.spikes[pop.name].unique().tolist()) <= {0.0, 1.0}


def test_signed_populations_emit_signed_trains():
    net, shape = converted("mobilenet_v2", T=4)
    net.record = True
    net(data(2, shape))
    signed = [p.name for p in net.graph if p.kind == "signed"]
    assert signed
    assert any((net.spikes[n] < 0).any() for n in signed)


@pytest.mark.parametrize("rounding", ["floor", "nearest"])
def test_spike_encoded_input_and_rounding(rounding):
    net, shape = converted("small_cnn", T=5, input_encoding="spikes", rounding=rounding)
    assert net.graph.rounding == rounding
    net.record = True
    assert_exact(net, data(2, shape))
    inp = net.graph.input
    assert net.spikes[inp].shape[0] == 5 and (net.spikes[inp] < 0).any()
    assert net.stats["populations"][inp]["spikes"] > 0
    assert net.stats["analog_input_macs_per_sample"] == 0


def test_per_layer_T_and_schedule_alignment():
    make, shape = MODELS["cifar_resnet20"]
    model = with_bn_statistics(make(), shape)
    g = capture(model, data(2, shape))
    names = [p.name for p in g if p.kind == "relu"]
    T_per_layer = {n: 3 + i % 4 for i, n in enumerate(names)}
    calibrate(g, data(8, shape), T=4, T_per_layer=T_per_layer, progress=False,
              dtype=torch.float64)
    s = compute_schedule(g)
    assert all(s.t_gen[n] == t for n, t in T_per_layer.items())
    # a residual add accumulates as long as its longest source train
    for p in g:
        if p.kind == "relu" and len(p.edges) == 2:
            assert s.t_acc[p.name] == max(g[e.source].T for e in p.edges)
    for mode in ("fused", "frame"):
        assert_exact(SpikingNetwork(g, s, mode=mode, dtype=torch.float64), data(2, shape))


def test_schedule_of_a_residual_block():
    net, _ = converted("cifar_resnet20", T=4)
    s = net.schedule
    # first block: relu (offset 0) -> relu_1 -> relu_2 (= conv(relu_1) + relu)
    assert s.offset["relu"] == 0 and s.t_acc["relu"] == 1
    assert s.offset["relu_1"] == 1 and s.offset["relu_2"] == 5
    skip = [i for i, e in enumerate(net.graph["relu_2"].edges) if e.source == "relu"][0]
    assert s.delay[("relu_2", skip)] == 4  # one whole window
    # input step 0, then 19 ReLU windows of T = 4 in a chain (the first accumulates 1 step,
    # the readout accumulates the last train)
    assert s.latency_steps == 1 + 19 * 4
    assert s.steps_per_sample == 8
    assert s.steps_for(3) == s.latency_steps + 16


def test_float32_agrees_with_float64():
    torch.manual_seed(0)  # the model's random weights: a near tie of the top two would flake
    net, shape = converted("cifar_resnet20", T=6)
    x = data(4, shape)
    a = net(x)
    net32 = SpikingNetwork(net.graph, net.schedule, mode="fused", dtype=torch.float32)
    b = net32(x.float())
    assert b.dtype == torch.float32
    assert (a.argmax(1) == b.argmax(1)).all()
    torch.testing.assert_close(b.double(), a, rtol=0.05, atol=0.05 * float(a.abs().max()))


def test_spike_max_pool_equals_max_of_codes():
    g = torch.Generator().manual_seed(3)
    T = 5
    u = torch.rand(2, 3, 7, 7, generator=g, dtype=torch.float64) * 2
    frames = coding.encode(u, 1.0, T)
    q = coding.quantize(u, 1.0, T)
    for kw in [dict(kernel_size=(2, 2), stride=(2, 2)),
               dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1)),
               dict(kernel_size=(3, 3), stride=(2, 2), ceil_mode=True),
               dict(kernel_size=(2, 2), stride=(1, 1), dilation=(2, 2))]:
        out = spike_max_pool2d(frames, **kw)
        ref = torch.nn.functional.max_pool2d(q, **kw)
        torch.testing.assert_close(coding.decode(out, 1.0, 2.0), ref, rtol=0, atol=0)


def test_bad_input_shape_is_named():
    net, _ = converted("small_cnn", T=3)
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        net(torch.zeros(2, 3, 8, 8))


def test_inverse_leak_below_two_is_exact_too():
    net, shape = converted("small_cnn", T=5, k=1.6, mode="plugin")
    x = data(2, shape, seed=4)
    ref = assert_exact(net, x)
    for mode in ("frame", "fused"):
        other = SpikingNetwork(net.graph, net.schedule, mode=mode, dtype=torch.float64)
        torch.testing.assert_close(other(x), ref, rtol=1e-9, atol=1e-9 * float(ref.abs().max()))
