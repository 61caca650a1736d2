"""Calibration and inference faults: NaN/inf, outliers, empty and mixed batches, long trains,
saturation -- each a clear error, a warning or a count, never a silent wrong result."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

import spikeconverter as sc


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64, 3)).eval()


@pytest.fixture(scope="module")
def data():
    return torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def convert(model, data, **kw):
    kw.setdefault("T", 6)
    return sc.convert(model, data, progress=False, **kw)


def _batches(data, index=None, value=None):
    b = [data[i:i + 8].clone() for i in range(0, 24, 8)]
    if index is not None:
        b[index][3, 0, 2, 2] = value
    return b


@pytest.mark.parametrize("value, kind", [(float("inf"), "0 NaN, 1 inf"),
                                         (float("nan"), "1 NaN, 0 inf")])
@pytest.mark.parametrize("index", [0, 2])
def test_non_finite_calibration_batches_are_named(model, data, value, kind, index):
    with pytest.raises(ValueError, match=rf"calibration batch {index} holds 1 non-finite "
                                         rf"values \({kind}\)"):
        convert(model, _batches(data, index, value))


def test_an_extreme_outlier_warns_naming_the_population_and_batch(model, data):
    with pytest.warns(RuntimeWarning, match=r"population '\w+' has its maximum .* \(in "
                                            r"calibration batch 1\).*percentile"):
        convert(model, _batches(data, 1, 1e30))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        convert(model, _batches(data))  # ordinary data: no warning


@pytest.mark.parametrize("calibration, message", [
    ([], "calibration data is empty"),
    ([torch.rand(0, 1, 8, 8)], r"calibration batch 0 must have shape \(B, \.\.\.\) with B >= 1"),
    ([torch.rand(4, 1, 8, 8), torch.rand(4, 1, 12, 12)],
     r"calibration batch 1 must have shape \(B, 1, 8, 8\).*\(4, 1, 12, 12\)"),
])
def test_bad_calibration_batches(model, calibration, message):
    with pytest.raises(ValueError, match=message):
        convert(model, calibration)


def test_batch_size_zero(model, data):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        convert(model, data, batch_size=0)


def test_norse_refuses_non_finite_and_empty_inputs(model, data):
    net = convert(model, data)
    x = data[:2].clone()
    x[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"the input holds 1 non-finite values \(1 NaN"):
        net(x)
    with pytest.raises(ValueError, match=r"the input must have shape \(B, 1, 8, 8\) with "
                                         r"B >= 1 samples, got \(0, 1, 8, 8\)"):
        net(data[:0])


@pytest.mark.parametrize("mode", ["fused", "frame", "plugin"])
def test_norse_counts_inputs_beyond_the_calibration_range(model, data, mode):
    # plain max calibration: theta covers every calibration value (the post-training
    # correction may trade a rare top value for a finer code, which counts as a saturation)
    net = convert(model, data, mode=mode, correction="none")
    net(data)
    assert net.stats["saturations"] == 0  # the calibration data itself never saturates
    net(data * 4)
    pops = net.stats["populations"]
    assert net.stats["saturations"] == sum(p["saturations"] for p in pops.values()) > 0
    conv = next(name for name, p in pops.items() if p["kind"] == "relu")
    # cross-check against the captured ANN: activations above 2 theta are clipped
    with torch.no_grad():
        u = net.graph.forward((data * 4).double(), quantized=False)[conv]
    theta = float(net.graph[conv].theta)
    lsb = theta * 2.0 ** (1 - net.graph[conv].T)
    clear = int((u > 2 * theta + lsb).sum())  # clearly beyond: counted in every mode
    assert clear <= pops[conv]["saturations"] <= int((u > 2 * theta).sum())


def test_trains_longer_than_the_dtype_holds_are_refused_at_convert(model, data):
    with pytest.raises(ValueError, match=r"T=25 is too long.*float32 only up to T=24.*"
                                         r"dtype=torch.float64"):
        convert(model, data, T=25)
    with pytest.raises(ValueError, match=r"T=54 is too long.*float64 only up to T=53"):
        convert(model, data, T=54, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"T_per_layer\['_1'\]=40 is too long"):
        convert(model, data, T_per_layer={"_1": 40})


@pytest.mark.parametrize("T, dtype", [(24, torch.float32), (53, torch.float64)])
def test_the_longest_allowed_trains_are_exact(model, data, T, dtype):
    net = convert(model, data, T=T, dtype=dtype, rounding="floor")
    x = data[:6].to(dtype)
    want = net.graph.forward(x.double(), quantized=True)[net.graph.output]
    err = float((net(x).double() - want).abs().max())
    assert err <= (1e-12 if dtype == torch.float64 else 1e-4) * float(want.abs().max()), err


def test_T_per_layer_cannot_name_a_max_pool_or_the_readout(model, data):
    with pytest.raises(ValueError, match="max pooling population '_2'.*T_per_layer\\['_1'\\]"):
        convert(model, data, T_per_layer={"_2": 3})
    with pytest.raises(ValueError, match="readout '_4'"):
        convert(model, data, T_per_layer={"_4": 3})


@pytest.mark.lava
def test_lava_refuses_chunk_steps_zero_and_long_trains(model, data):
    pytest.importorskip("lava")
    with pytest.raises(ValueError, match="T=54 is too long"):
        convert(model, data, T=54, backend="lava")
    lnet = convert(model, data, T=4, backend="lava")
    with pytest.raises(ValueError, match="chunk_steps must be an integer >= 1"):
        lnet.run(data[:1], chunk_steps=0, progress=False)
