"""Batched Lava simulation: every batch size gives the logits of batch size 1, bit for bit."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_lava_backend import TinyCNN, TinyResNet, _data, _model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from graphs import conv_graph, inputs  # noqa: E402

pytest.importorskip("lava", reason="the Lava backend needs lava-nc 0.10.0 (Python 3.10)")

import spikeconverter as sc  # noqa: E402
from spikeconverter.converters.to_lava import batched  # noqa: E402

pytestmark = pytest.mark.lava


@pytest.fixture(scope="module", params=[TinyCNN, TinyResNet], ids=["cnn-maxpool", "resnet-optA"])
def lnet(request):
    model, x = _model(request.param), _data(16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = sc.convert(model, x, T=5, dtype=torch.float64, progress=False, backend="lava")
    return net, _data(7, seed=5)


@pytest.mark.parametrize("fixed", [False, True], ids=["float", "fixed"])
def test_batched_equals_batch_size_1(lnet, fixed):
    net, x = lnet
    one = net.run(x, fixed_point=fixed, batch_size=1, progress=False)
    assert net.stats["steps_simulated"] == net.schedule.steps_for(7)
    three = net.run(x, fixed_point=fixed, batch_size=3, progress=False)  # 3 windows, last half
    assert net.stats["steps_simulated"] == net.schedule.steps_for(3)
    assert net.stats["batch_size"] == 3
    np.testing.assert_array_equal(three, one)
    default = net.run(x, fixed_point=fixed, progress=False)
    np.testing.assert_array_equal(default, one)
    # the unbatched graph of Lava's own synapses: the same integers, float up to sum order
    ref = net.run(x, fixed_point=fixed, graph="lava", progress=False)
    if fixed:
        np.testing.assert_array_equal(one, ref)
        assert net.stats["saturations"] == 0
    else:
        np.testing.assert_allclose(one, ref, rtol=0, atol=1e-12)


def test_bounded_feed_many_small_images(lnet, monkeypatch):
    """400 images, 4 at a time, one window per chunk: the feed never holds more than its pipe
    (chunk + 2 windows) and the prefill one chunk, and the logits match the whole-set path."""
    net, _ = lnet
    x = _data(400, seed=7)
    sizes = []
    build = batched.build_batched

    def spy(plan, schedule, batch, windows, prefill, buffer):
        sizes.append((0 if prefill is None else len(prefill), buffer))
        return build(plan, schedule, batch, windows, prefill, buffer)

    monkeypatch.setattr(batched, "build_batched", spy)
    period = net.schedule.steps_per_sample
    out = net.run(x, fixed_point=True, batch_size=4, chunk_steps=period, progress=False)
    assert sizes == [(sizes[0][0], 3)] and sizes[0][0] <= 2  # ~1 window ahead, pipe of 3
    ref = net.run(x[:40], fixed_point=True, batch_size=8, progress=False)
    np.testing.assert_array_equal(out[:40], ref)
    assert out.shape == (400, ref.shape[1])


def test_bad_arguments_are_refused_before_work(lnet):
    net, x = lnet
    with pytest.raises(ValueError, match="batch_size"):
        net.run(x, batch_size=0)
    with pytest.raises(ValueError, match="graph"):
        net.run(x, graph="loihi")
    with pytest.raises(ValueError, match="one sample at a time"):
        net.run(x, graph="lava", batch_size=4)
    with pytest.raises(ValueError, match="chunk_steps"):
        net.run(x, chunk_steps=0)


@pytest.mark.parametrize("fixed", [False, True], ids=["float", "fixed"])
def test_batched_signed_trains(fixed):
    """A signed population (no ReLU: -1/0/+1 spikes, graded payloads) after a max pool, with a
    residual: batched == batch size 1 bit for bit, and the fixed-point logits equal the graph
    of Lava's own synapses. The signed layer must actually send -1 spikes."""
    from spikeconverter.converters import calibrate
    from spikeconverter.converters.to_lava.network import LavaNetwork

    graph = conv_graph(seed=3)
    cal = inputs(graph, 16)
    calibrate(graph, cal, T=4, progress=False, dtype=torch.float64)
    net = LavaNetwork(graph)
    net.calibrate_fixed_point(cal, progress=False)
    plan = net.plan(fixed)
    assert plan.populations["c2"].signed
    assert any(s.graded for s in plan.synapses if s.source == "c2")
    x = inputs(graph, 5, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # core-limit warnings of the tiny fixed-point plan
        one = net.run(x, fixed_point=fixed, batch_size=1, progress=False)
        two = net.run(x, fixed_point=fixed, batch_size=2, progress=False)
        ref = net.run(x, fixed_point=fixed, graph="lava", progress=False)
    np.testing.assert_array_equal(two, one)
    if fixed:
        np.testing.assert_array_equal(one, ref)
    else:
        np.testing.assert_allclose(one, ref, rtol=0, atol=1e-12)
    # the signed layer's value (conv of the pooled relu layer) is below -theta somewhere on
    # these inputs, so its trains hold -1 spikes
    c1, c2 = net.graph["c1"].edges[0].ops[0], net.graph["c2"].edges[0].ops[0]
    h = torch.relu(torch.nn.functional.conv2d(x, torch.as_tensor(c1.weight),
                                              torch.as_tensor(c1.bias), padding=1))
    u = torch.nn.functional.conv2d(torch.nn.functional.max_pool2d(h, 2),
                                   torch.as_tensor(c2.weight), padding=1)
    theta = float(np.min(net.graph["c2"].theta))
    assert (u < -theta * 2.0 ** -3).any()  # at least the smallest code -1 * LSB
