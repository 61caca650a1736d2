"""The Loihi 2 core mapping and cost estimate, against independent counts and the Norse stats."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

import spikeconverter as sc
from spikeconverter.converters.hardware import (
    LOIHI2,
    SOURCES,
    core_mapping,
    format_hardware_report,
    hardware_report,
    measure_activity,
)


class PoolNet(nn.Module):
    """conv-relu-maxpool, conv-relu, avgpool, flatten, linear (modules, so hooks can count)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
            nn.Linear(16 * 2 * 2, 10))

    def forward(self, x):
        return self.body(x)


def _converted(T=4, n=32):
    torch.manual_seed(0)
    model = PoolNet().double().eval()
    x = torch.randn(n, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return model, x, sc.convert(model, x, T=T, dtype=torch.float64, progress=False)


def _independent_neurons(model, x) -> int:
    """Outputs of every ReLU and max pooling module plus the logits, counted by hooks."""
    count = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: count.append(out[0].numel()))
             for m in model.modules() if isinstance(m, (nn.ReLU, nn.MaxPool2d))]
    with torch.no_grad():
        logits = model(x[:1])
    for h in hooks:
        h.remove()
    return sum(count) + logits[0].numel()


def test_neuron_totals_equal_an_independent_count():
    model, x, net = _converted()
    mapping = core_mapping(net.graph)
    assert mapping["totals"]["neurons"] == _independent_neurons(model, x)
    assert sum(i["neurons"] for i in mapping["layers"].values()) == mapping["totals"]["neurons"]


def test_resnet20_neurons_cores_and_shared_conv_weights(shared_resnet20):
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    net = sc.convert(shared_resnet20, x, T=8, progress=False)
    mapping = core_mapping(net.graph)
    # n = 3 blocks per stage: 1 + 2n ReLUs at 16x32x32, 2n at 32x16x16, 2n at 64x8x8, 10 logits
    neurons = 7 * 16 * 32 * 32 + 6 * 32 * 16 * 16 + 6 * 64 * 8 * 8 + 10
    assert mapping["totals"]["neurons"] == neurons
    convs = [m for m in shared_resnet20.modules() if isinstance(m, nn.Conv2d)]
    edges = [e for i in mapping["layers"].values() for e in i["synapses"]]
    kernels = sum(int((c.weight != 0).sum()) for c in convs)
    # conv weights counted as stored (once per kernel), not per connection
    assert sum(e["stored"] for e in edges if e["kind"] == "conv") == kernels
    # the shortcuts: 3 identities at 16x32x32, then per later stage an option-A skip (half the
    # channels have a source) and 2 identities
    shortcut = 3 * 16384 + (8192 // 2 + 2 * 8192) + (4096 // 2 + 2 * 4096)
    assert sum(e["stored"] for e in edges if e["kind"] == "sparse") == shortcut
    t = mapping["totals"]
    assert t["fits"] and t["chips"] == 1 and t["cores"] <= LOIHI2.cores_per_chip
    assert t["connections"] > 10 * kernels


def test_conv_weights_counted_once_and_cores_follow_memory():
    model, _, net = _converted()
    layers = core_mapping(net.graph)["layers"]
    first = next(iter(layers.values()))
    assert first["synapse_kinds"] == ["conv"]
    assert first["stored_weights"] == 8 * 3 * 3 * 3
    assert first["connections"] > first["stored_weights"]  # 8x8 positions share the kernel
    small = replace(LOIHI2, core_memory_bytes=1024)
    tight = core_mapping(net.graph, small)
    for name, info in tight["layers"].items():
        assert info["cores"] >= layers[name]["cores"]
        assert info["neurons"] / info["cores"] <= small.neurons_per_core
    assert tight["totals"]["cores"] > core_mapping(net.graph)["totals"]["cores"]
    assert tight["totals"]["chips"] == math.ceil(tight["totals"]["cores"] / 128)
    doubled = core_mapping(net.graph, double_buffered=True)
    for name, info in doubled["layers"].items():
        assert info["state_bytes"] == 2 * layers[name]["state_bytes"]


def test_activity_matches_the_norse_network_spike_for_spike():
    _, x, net = _converted()
    with torch.no_grad():
        net(x)
    activity = measure_activity(net.graph, [x[:20], x[20:]])
    assert activity["samples"] == len(x)
    for name, st in net.stats["populations"].items():
        if st["kind"] in ("relu", "maxpool"):
            assert activity["spikes"][name] * len(x) == pytest.approx(st["spikes"])
    # Norse counts no synaptic ops for the analog input; the first layer takes only the input
    first = next(p.name for p in net.graph if p.kind == "relu")
    ours = sum(activity["synaptic_ops"].values()) - activity["synaptic_ops"][first]
    assert ours == pytest.approx(net.stats["synaptic_ops_per_sample"])


def test_report_estimates_and_cites():
    _, x, net = _converted()
    rep = hardware_report(net.graph, net.schedule, measure_activity(net.graph, [x]))
    p = rep["per_inference"]
    hw = rep["hardware"]
    expected = (p["synaptic_ops"] * hw["energy_per_synop_pj"]
                + p["neuron_updates"] * hw["energy_per_neuron_update_pj"]
                + p["spikes"] * hw["energy_per_spike_pj"]) * 1e-6
    assert p["energy_uj_estimate"] == pytest.approx(expected)
    assert p["neuron_updates"] == rep["totals"]["neurons"] * net.schedule.steps_per_sample
    with torch.no_grad():
        net(x[:1])
    assert p["ann_macs"] == net.stats["ann_macs_per_sample"]
    for field in ("cores_per_chip", "neurons_per_core", "core_memory_bytes",
                  "energy_per_synop_pj", "energy_per_neuron_update_pj", "max_fan_in"):
        assert field in SOURCES and field in hw
    text = format_hardware_report(rep)
    assert "ESTIMATE" in text and "fits: yes" in text


@pytest.mark.lava
def test_lava_network_report_and_the_report_command(tmp_path, capsys):
    pytest.importorskip("lava", reason="the Lava backend needs lava-nc 0.10.0 (Python 3.10)")
    from spikeconverter.cli import main

    torch.manual_seed(0)
    model = PoolNet().double().eval()
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lnet = sc.convert(model, x, T=4, progress=False, backend="lava")
    rep = lnet.hardware_report()  # the calibration data's activity
    assert rep["per_inference"]["samples_measured"] == 16
    assert rep["totals"]["neurons"] == _independent_neurons(model, x)
    assert lnet.hardware_report(x[:4])["per_inference"]["samples_measured"] == 4
    lnet.save(tmp_path / "net.snn")
    assert main(["report", str(tmp_path / "net.snn"), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "cores" in out and "ESTIMATE" in out
    assert (tmp_path / "out" / "hardware.png").stat().st_size > 0
    assert (tmp_path / "out" / "hardware.json").stat().st_size > 0
