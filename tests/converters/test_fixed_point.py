"""The fixed-point planner keeps every value inside its Loihi 2 format, or refuses by name."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import spikeconverter as sc
from spikeconverter.converters.hardware import LOIHI2
from spikeconverter.converters.to_lava.fixed_point import (
    WEIGHT_EXP_RANGE,
    fixed_point_plan,
    plan_violations,
)
from spikeconverter.converters.to_lava.plan import synapse_groups


def assert_in_formats(plan, hw=LOIHI2):
    """An independent check of every value of a fixed-point plan against its format."""
    lo, hi = WEIGHT_EXP_RANGE
    for s in plan.synapses:
        w = s.weight.toarray() if sp.issparse(s.weight) else np.asarray(s.weight)
        m = w if s.kind == "conv" else w / 2  # Dense/Sparse hold 2m with weight_exp e - 1
        assert np.array_equal(m, np.rint(m)) and np.abs(m).max() <= 128, s.target
        assert lo <= s.weight_exp <= hi, (s.target, s.weight_exp)
        if (s.weight_exp if s.kind == "conv" else s.weight_exp + 1) < 0:
            # a floor-shifted sum only where it buys bits: some mantissa is odd
            assert np.any(m % 2), s.target
    for p in plan.populations.values():
        if p.kind not in ("relu", "signed", "readout"):
            continue
        mant, exp = np.asarray(p.bias), np.asarray(p.bias_exp)
        assert np.array_equal(mant, np.rint(mant)) and np.abs(mant).max() <= 2**12, p.name
        assert exp.min() >= 0 and exp.max() <= hw.bias_exp_max, p.name
        assert 0 <= p.bias_shift <= p.t_acc - 1, p.name
        if p.kind != "readout":
            vth = np.asarray(p.vth, dtype=np.float64)
            assert np.array_equal(vth, np.rint(vth)), p.name
            assert vth.min() >= 1 and vth.max() < 2**hw.vth_bits, p.name
    assert plan_violations(plan) == []


def _net(widths, bias_scale, seed):
    torch.manual_seed(seed)
    layers, n = [nn.Flatten()], 6
    for w in widths:
        lin = nn.Linear(n, w)
        with torch.no_grad():
            lin.bias.mul_(bias_scale)
        layers += [lin, nn.ReLU()]
        n = w
    layers.append(nn.Linear(n, 3))
    return nn.Sequential(*layers).double().eval()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.integers(2, 12), min_size=1, max_size=3),
       bias_scale=st.sampled_from([0.0, 1.0, 30.0, 1000.0]),
       T=st.integers(2, 10), seed=st.integers(0, 2**16),
       granularity=st.sampled_from(["layer", "channel"]))
def test_every_value_of_a_plan_lies_in_its_format(widths, bias_scale, T, seed, granularity):
    model = _net(widths, bias_scale, seed)
    x = torch.rand(24, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    lnet = sc.convert(model, x, T=T, progress=False, backend="lava",
                      threshold_granularity=granularity)
    try:
        plan = lnet.plan(fixed_point=True)
    except ValueError as e:  # a refusal must name the layer and the limit
        assert "layer '" in str(e) and "allow_violations" in str(e)
        return
    assert_in_formats(plan)
    assert lnet.fixed_point_report()["violations"] == []


def _big_bias_net(spread=1e-3):
    # u = 1000 (x - 1) with x in [1, 1 + spread]: theta ~ 500 spread but the bias is 1000
    model = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 2)).double().eval()
    with torch.no_grad():
        model[0].weight.fill_(1000.0)
        model[0].bias.fill_(-1000.0)
    x = 1 + spread * torch.rand(16, 1, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(0))
    return model, x


def test_refusal_names_the_layer_and_the_limit():
    # bias / theta ~ 4e5: beyond 13 bits << 7 even when shifted by the whole window
    model, x = _big_bias_net(5e-6)
    lnet = sc.convert(model, x, T=2, progress=False, backend="lava")
    layer = next(p.name for p in lnet.graph if p.kind == "relu")
    with pytest.raises(ValueError, match=rf"layer '{layer}': bias"):
        lnet.plan(fixed_point=True)
    lnet.allow_violations = True
    with pytest.warns(UserWarning, match="allow_violations=True"):
        lnet.plan(fixed_point=True)
    rep = lnet.fixed_point_report()
    assert rep["allow_violations"] and any(layer in v for v in rep["violations"])


def test_bias_shift_is_used_before_refusing():
    # the second layer (t_acc = T) computes 1000 (h - 1) on h = x in [1, 1.1]: a bias of 1000
    # against a threshold ~50 needs an exponent 10 at full resolution
    model = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 2), nn.ReLU(),
                          nn.Linear(2, 2)).double().eval()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(0.0)
        model[2].weight.fill_(1000.0)
        model[2].bias.fill_(-1000.0)
    x = 1 + 0.1 * torch.rand(32, 1, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(0))
    lnet = sc.convert(model, x, T=8, progress=False, backend="lava")
    plan = lnet.plan(fixed_point=True)  # T = 8: shifting the bias 7 steps early suffices
    assert_in_formats(plan)
    layer = [p.name for p in lnet.graph if p.kind == "relu"][1]
    assert plan.populations[layer].bias_shift > 0
    assert lnet.fixed_point_report()["layers"][layer]["bias_shift"] > 0


def test_readout_error_is_reported_and_bounded():
    model, x = _big_bias_net(0.1)
    lnet = sc.convert(model, x, T=8, progress=False, backend="lava")
    rep = lnet.fixed_point_report()
    assert 0 <= rep["readout_error"] < 0.05
    from spikeconverter.converters.to_lava.fixed_point import fixed_point_plan

    with pytest.raises(ValueError, match="readout weight error"):
        fixed_point_plan(lnet.plan(), lnet.graph, lnet.schedule, lnet.membrane_peaks,
                         max_readout_error=0.0)


@pytest.mark.slow
def test_resnet20_plan_in_formats(shared_resnet20):
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    lnet = sc.convert(shared_resnet20, x, T=8, progress=False, backend="lava")
    assert_in_formats(lnet.plan(fixed_point=True))
    assert lnet.fixed_point_report()["readout_error"] < 0.05


class _PoolReadout(nn.Module):
    """conv-relu, global average pooling over 16 x 16, linear: ResNet's readout in small (the
    composed pool + linear matrix has 1,024 inputs with weights 1/256 of the linear's)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _pool_readout(granularity="layer"):
    torch.manual_seed(0)
    model = _PoolReadout().double().eval()
    x = torch.randn(12, 1, 16, 16, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1))
    return sc.convert(model, x, T=6, progress=False, backend="lava",
                      threshold_granularity=granularity), x


@pytest.mark.lava
def test_tiny_readout_weights_take_a_negative_exponent():
    lnet, x = _pool_readout()
    plan = lnet.plan(fixed_point=True)
    assert_in_formats(plan)
    readout = next(s for s in plan.synapses if s.target == plan.output)
    assert readout.weight_exp + (0 if readout.kind == "conv" else 1) < 0
    rep = lnet.fixed_point_report()
    assert rep["violations"] == [] and rep["readout_error"] < 0.05
    # aligned to the synapses (the default): the readout applies part of 2**(6 + exp) itself,
    # down to its synapses' lowest exponent (a split's low group included)
    assert rep["readout_floor_error"] == 0
    lowest = min(s.weight_exp for s in plan.synapses if s.target == plan.output)
    assert plan.populations[plan.output].a_in_exp == lowest
    assert rep["layers"][plan.output]["a_in_shift"] == 6 + lowest
    _assert_fixed_follows_float(lnet, x[:4])
    floored, frep = fixed_point_plan(lnet.plan(), lnet.graph, lnet.schedule,
                                     lnet.membrane_peaks, alignment="floor")
    assert_in_formats(floored)
    assert 0 < frep["readout_floor_error"] < 0.05
    assert all(p.a_in_exp == 0 for p in floored.populations.values())


def _integer_twin(plan):
    """The float64 plan of a fixed-point plan's integers as Loihi combines them: weights
    ``m * 2**(6 + weight_exp)``, thresholds ``vth << 6``, biases ``mant * 2**exp`` (exact
    in float64 at these sizes, and never floored)."""
    twin = copy.deepcopy(plan)
    twin.select_tag = "floating_pt"
    for syn in twin.synapses:
        syn.weight = syn.weight.astype(np.float64) * 2.0 ** (6 + syn.weight_exp)
        syn.weight_exp = 0
    for spec in twin.populations.values():
        if spec.kind in ("relu", "signed", "readout"):
            if spec.kind != "readout":
                spec.vth = np.asarray(spec.vth, dtype=np.float64) * 64
            spec.bias = np.asarray(spec.bias, dtype=np.float64) * 2.0 ** np.asarray(
                spec.bias_exp, dtype=np.float64)
            spec.bias_exp, spec.a_in_exp = 0, 0
    return twin


@pytest.mark.lava
@pytest.mark.parametrize(("alignment", "split"), [("synapse", False), ("synapse", True),
                                                  ("floor", False)])
def test_aligned_fixed_point_is_loihis_exact_weight_scaling(alignment, split):
    """Aligned to the synapses, the bit-accurate Lava run (batched and the unbatched graph of
    Lava's own Dense/Conv) is the exact integer arithmetic ``m * 2**(6 + weight_exp)`` of its
    plan, bit for bit, split weights included (two synapse groups on one edge); the
    floor-shifted convention is not (its summed input is floored)."""
    lnet, x = _pool_readout()
    plan, rep = fixed_point_plan(lnet.plan(), lnet.graph, lnet.schedule, lnet.membrane_peaks,
                                 alignment=alignment, split_weights=split)
    assert_in_formats(plan)
    assert any(s.weight_exp < 0 for s in plan.synapses)
    assert any(s.part for s in plan.synapses) == split
    lnet._plans[True], lnet._plans[False] = plan, _integer_twin(plan)
    x = x[:3]
    exact = lnet.run(torch.round(x * 2.0 ** plan.input_shift), progress=False)
    batched = lnet.run(x, fixed_point=True, batch_size=2, progress=False)
    assert lnet.stats["saturations"] == 0
    if alignment == "floor":
        assert not np.array_equal(batched, exact)
        return
    np.testing.assert_array_equal(batched, exact)
    np.testing.assert_array_equal(lnet.run(x, fixed_point=True, graph="lava", progress=False),
                                  exact)


def _assert_fixed_follows_float(lnet, x) -> None:
    """Fixed point on ``x``: no saturation, the float classes, logits within 5 %."""
    flt = lnet.run(x, progress=False)
    fix = lnet.run(x, fixed_point=True, progress=False)
    assert lnet.stats["saturations"] == 0
    assert (flt.argmax(1) == fix.argmax(1)).all()
    assert np.max(np.abs(fix - flt)) < 0.05 * np.max(np.abs(flt))


@pytest.mark.lava
def test_per_channel_thresholds_run_in_fixed_point():
    lnet, x = _pool_readout("channel")
    flt_plan, plan = lnet.plan(), lnet.plan(fixed_point=True)
    assert_in_formats(plan)
    budget = lnet.margin * 2.0**23
    for name, spec in plan.populations.items():
        if spec.kind != "relu":
            continue
        theta = np.asarray(flt_plan.populations[name].vth, dtype=np.float64)
        vth = np.asarray(spec.vth, dtype=np.float64)
        assert np.unique(theta).size > 1 and np.unique(vth).size > 1  # per channel indeed
        gain = 64 * vth / theta  # each threshold exact, every gain within the layer's budget
        assert gain.max() <= budget / max(lnet.membrane_peaks[name], 2 * theta.max())
        assert np.all((vth * 64) % 2**spec.t_gen == 0)  # nearest's half LSB is exact
    _assert_fixed_follows_float(lnet, x[:4])


@pytest.mark.lava
def test_equalized_rows_keep_formats_and_thresholds_exact():
    # per-channel gains under one layer threshold: rows above `equalize` x the largest are
    # brought down to it (their gains lowered), so the group's exponent drops and small rows
    # gain mantissa bits; every threshold stays exact and within the layer's budget
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 3)).double().eval()
    with torch.no_grad():  # rows (output channels) of very different sizes
        model[2].weight.mul_(torch.tensor([1.0, 0.1, 0.3, 1.0, 0.05, 0.5]).reshape(-1, 1, 1, 1))
    x = torch.randn(12, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lnet = sc.convert(model, x, T=6, progress=False, backend="lava")
    flt_plan = lnet.plan()
    # one synapse group per edge: what equalizing is for (split weights need no evening out)
    base, base_rep = fixed_point_plan(flt_plan, lnet.graph, lnet.schedule, lnet.membrane_peaks,
                                      split_weights=False)
    plan, rep = fixed_point_plan(flt_plan, lnet.graph, lnet.schedule, lnet.membrane_peaks,
                                 equalize=0.25, split_weights=False)
    assert_in_formats(plan)
    assert rep["violations"] == []
    name = [n for n, s in plan.populations.items() if s.kind == "relu"][1]  # the input's
    # synapses take the input shift instead: only layers fed by spikes are evened out
    theta = float(np.max(flt_plan.populations[name].vth))
    vth = np.asarray(plan.populations[name].vth, dtype=np.float64)
    assert np.ndim(base.populations[name].vth) == 0 and np.unique(vth).size > 1
    gain = 64 * vth / theta
    assert gain.max() <= 64 * base.populations[name].vth / theta  # gains only go down
    assert np.all((vth * 64) % 2**plan.populations[name].t_gen == 0)
    conv = next(s for s in plan.synapses if s.target == name)
    assert conv.weight_exp < next(s for s in base.synapses if s.target == name).weight_exp
    err = max(rep["layers"][name]["weight_error"].values())
    assert err < max(base_rep["layers"][name]["weight_error"].values())
    lnet.split_weights = False
    lnet._plans[True] = plan  # run the equalized plan bit-accurately
    _assert_fixed_follows_float(lnet, x[:4])
    with pytest.raises(ValueError, match="equalize"):
        fixed_point_plan(flt_plan, lnet.graph, lnet.schedule, lnet.membrane_peaks, equalize=0)


@pytest.mark.lava
def test_split_weights_add_a_low_group_and_cost_twice_the_synapses():
    lnet, _ = _pool_readout()
    one, rep1 = fixed_point_plan(lnet.plan(), lnet.graph, lnet.schedule, lnet.membrane_peaks,
                                 split_weights=False)
    two, rep2 = fixed_point_plan(lnet.plan(), lnet.graph, lnet.schedule, lnet.membrane_peaks,
                                 split_weights=True)
    name = next(n for n, s in two.populations.items() if s.kind == "relu")
    hi, lo = (s for s in two.synapses if s.target == name)
    assert (hi.part, lo.part, hi.edge) == (0, 1, lo.edge) and lo.weight_exp < hi.weight_exp
    np.testing.assert_array_equal(hi.weight, next(s for s in one.synapses
                                                  if s.target == name).weight)
    # the two groups carry the weights more precisely: 3 bits for the input's synapses (at
    # exponents -3 and -6; the input takes the other 3 bits of resolution)
    err1 = max(rep1["layers"][name]["weight_error"].values())
    err2 = max(rep2["layers"][name]["weight_error"].values())
    assert (hi.weight_exp, lo.weight_exp) == (-3, -6) and err2 < err1 / 4
    assert two.input_shift == one.input_shift - 3
    assert synapse_groups(two)[name] == [2] and synapse_groups(one)[name] == [1]
    # the hardware report counts both groups: weights stored twice, every spike drives both
    lnet.split_weights = False
    base = lnet.hardware_report()
    lnet.split_weights = True
    split = lnet.hardware_report()
    b, s_ = base["layers"][name], split["layers"][name]
    assert s_["stored_weights"] == 2 * b["stored_weights"]
    assert s_["synaptic_ops"] == pytest.approx(2 * b["synaptic_ops"])
    assert split["per_inference"]["synaptic_ops"] > base["per_inference"]["synaptic_ops"]
