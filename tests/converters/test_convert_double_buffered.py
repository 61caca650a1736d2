"""Double buffering end to end in Norse: the schedule's period, a stream of samples step by step
(same logits as single-banked and as the batch modes, in latency + (N - 1) * P steps), saving,
and the hardware report's state cost."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from convhelpers import TinyResNet

import spikeconverter as sc
from spikeconverter.converters.hardware import hardware_report, measure_activity
from spikeconverter.converters.norse_stream import stream_schedule
from spikeconverter.converters.schedule import compute_schedule

ResNet = TinyResNet  # the option-A residual net the Lava tests use


class PoolCNN(nn.Module):
    """conv-relu-maxpool, conv (no ReLU: a signed population), conv-relu, linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c3 = nn.Conv2d(4, 6, 3, padding=1, stride=2)
        self.fc = nn.Linear(6 * 2 * 2, 5)

    def forward(self, x):
        x = self.c2(F.max_pool2d(F.relu(self.c1(x)), 2))
        return self.fc(torch.flatten(F.relu(self.c3(x)), 1))


def _setup(cls, seed=0, n=24):
    torch.manual_seed(seed)
    model = cls().double().eval()
    x = torch.randn(n, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return model, x


def _pair(cls, T=4, **kw):
    model, x = _setup(cls)
    nets = [sc.convert(model, x, T=T, dtype=torch.float64, progress=False, double_buffered=db,
                       **kw) for db in (False, True)]
    return nets, x


@pytest.mark.parametrize("cls", [PoolCNN, ResNet])
def test_schedule_period_halves_and_latency_stays(cls):
    (single, double), _ = _pair(cls, T=4)
    for lock in (False, True):
        a = compute_schedule(single.graph, 1, lock_step=lock)
        b = compute_schedule(single.graph, 1, lock_step=lock, double_buffered=True)
        assert (a.steps_per_sample, b.steps_per_sample) == (8, 4)
        assert b.latency_steps == a.latency_steps and b.offset == a.offset
        assert b.delay == a.delay and b.double_buffered and not a.double_buffered
        for n in (1, 7, 100):
            assert b.steps_for(n) == b.latency_steps + (n - 1) * 4
    assert double.schedule.double_buffered and double.schedule.steps_per_sample == 4
    assert not single.schedule.double_buffered


@pytest.mark.parametrize("cls", [PoolCNN, ResNet])
def test_double_buffered_stream_equals_single_banked_in_fewer_steps(cls):
    (single, double), x = _pair(cls, T=4)
    images = x[:5]
    ref = single(images)
    a = single.stream(images)
    sa = dict(single.stats)
    b = double.stream(images)
    sb = dict(double.stats)
    assert torch.equal(a, b)  # each bank runs the single-banked equations
    torch.testing.assert_close(b, ref, rtol=1e-9, atol=1e-12)  # = the batch modes
    assert torch.equal(double(images), ref)
    assert (sa["steps_per_sample"], sb["steps_per_sample"]) == (8, 4)
    assert sa["latency_steps"] == sb["latency_steps"]
    for s in (sa, sb):  # counted by the loop: until the readout holds the last sample's logits
        assert s["steps_simulated"] == s["latency_steps"] + 4 * s["steps_per_sample"]
    assert sb["steps_simulated"] < sa["steps_simulated"]


def test_stream_with_spike_input_signed_layers_and_per_layer_T():
    model, x = _setup(PoolCNN)
    graph = sc.convert(model, x, T=4, dtype=torch.float64, progress=False).graph
    relus = [p.name for p in graph if p.kind == "relu"]
    kw = dict(T=4, dtype=torch.float64, progress=False, input_encoding="spikes",
              T_per_layer={relus[0]: 6})
    nets = [sc.convert(model, x, double_buffered=db, **kw) for db in (False, True)]
    out = [net.stream(x[:4]) for net in nets]
    assert torch.equal(out[0], out[1])
    torch.testing.assert_close(out[1], nets[0](x[:4]), rtol=1e-9, atol=1e-12)
    s = stream_schedule(nets[1].graph, True)
    assert s.steps_per_sample == 6  # the longest window: max over populations of max(t_acc, T)
    assert nets[1].stats["steps_simulated"] == s.latency_steps + 3 * 6


def test_the_option_is_saved_and_can_be_overridden(tmp_path):
    (_, double), x = _pair(PoolCNN)
    path = tmp_path / "net.snn"
    double.save(path)
    loaded = sc.load(path)
    assert loaded.schedule.double_buffered and loaded.schedule.steps_per_sample == 4
    assert torch.equal(loaded.stream(x[:3]), double.stream(x[:3]))
    single = sc.load(path, double_buffered=False)
    assert not single.schedule.double_buffered and single.schedule.steps_per_sample == 8


def test_hardware_report_counts_two_banks_and_the_shorter_period():
    (single, double), x = _pair(PoolCNN)
    activity = measure_activity(single.graph, [x])
    reports = [hardware_report(net.graph, net.schedule, activity) for net in (single, double)]
    a, b = reports
    assert b["double_buffered"] and not a["double_buffered"]
    for name, info in b["layers"].items():
        assert info["state_bytes"] == 2 * a["layers"][name]["state_bytes"]
        # both banks update at every one of half as many steps: the same work per sample
        assert info["neuron_updates"] == a["layers"][name]["neuron_updates"]
    assert b["per_inference"]["steps_per_sample"] == 4
    assert a["per_inference"]["steps_per_sample"] == 8
    assert b["per_inference"]["time_steps"] == a["per_inference"]["time_steps"]
    assert b["per_inference"]["energy_uj_estimate"] == pytest.approx(
        a["per_inference"]["energy_uj_estimate"])
    with pytest.raises(ValueError, match="single-banked"):
        hardware_report(single.graph, single.schedule, activity, double_buffered=True)


def test_bad_option_is_named():
    model, x = _setup(PoolCNN)
    with pytest.raises(ValueError, match="double_buffered"):
        sc.convert(model, x, T=4, progress=False, double_buffered="yes")


def _lava_nets(cls):
    pytest.importorskip("lava", reason="the Lava backend needs lava-nc 0.10.0 (Python 3.10)")
    model, x = _setup(cls)
    return [sc.convert(model, x, T=4, dtype=torch.float64, progress=False, backend="lava",
                       double_buffered=db) for db in (False, True)], x[:3]


def _run(lnet, images, **kw):
    logits = lnet.run(images, progress=False, **kw)
    return logits, dict(lnet.stats)


@pytest.mark.lava
@pytest.mark.parametrize("cls", [PoolCNN, ResNet])
def test_lava_double_buffered_equals_single_banked(cls):
    (single, double), images = _lava_nets(cls)
    built = double.processes(images[:1]).neurons  # (the Lava processes: imported through it)
    ilifs = [built[p.name] for p in double.graph if p.kind in ("relu", "signed")]
    assert ilifs and all(p.double_buffered and p.period == 4 for p in ilifs)
    for fixed_point in (False, True):  # float and bit-accurate: the same logits, bit for bit
        (a, sa), (b, sb) = (_run(n, images, batch_size=1, fixed_point=fixed_point)
                            for n in (single, double))
        assert (a == b).all()
        assert (sa["steps_per_sample"], sb["steps_per_sample"]) == (8, 4)
        assert sa["latency_steps"] == sb["latency_steps"]
        for s in (sa, sb):
            assert s["steps_simulated"] == s["latency_steps"] + 2 * s["steps_per_sample"]
        if not fixed_point:  # and the Norse network's logits
            model, x = _setup(cls)
            norse = sc.convert(model, x, T=4, dtype=torch.float64, progress=False)
            ref = norse(images).numpy()
            assert abs(b - ref).max() <= 1e-9 * abs(ref).max()
    # the batched graph (BatchILIF with two banks) too
    (a, sa), (b, sb) = (_run(n, images, batch_size=2) for n in (single, double))
    assert (a == b).all() and (sa["steps_per_sample"], sb["steps_per_sample"]) == (8, 4)
    # the hardware report follows the network's option; another value is a what-if
    ra, rb = single.hardware_report(), double.hardware_report()
    assert rb["double_buffered"] and not ra["double_buffered"]
    assert (ra["per_inference"]["steps_per_sample"], rb["per_inference"]["steps_per_sample"]) \
        == (8, 4)
    what_if = single.hardware_report(double_buffered=True)
    assert what_if["totals"] == rb["totals"] and what_if["per_inference"] == rb["per_inference"]
