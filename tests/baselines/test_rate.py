import math

import numpy as np
import pytest
import torch
from graphs import conv_graph, inputs, mlp_graph

from spikeconverter.baselines import (
    RATE_METHODS,
    RateNetwork,
    rate_thresholds,
    simulate_rate,
)
from spikeconverter.converters.ir import Edge, Graph, Op, Population


def identity_graph(n: int, lam_clip=None) -> Graph:
    """input -> identity -> relu -> identity -> readout: the readout integrates lambda * z."""
    eye = np.eye(n)
    pops = {
        "x": Population("x", "input", (n,)),
        "h": Population("h", "relu", (n,), edges=[Edge("x", [Op("linear", eye)])],
                        clip=lam_clip),
        "y": Population("y", "readout", (n,), edges=[Edge("h", [Op("linear", eye)])]),
    }
    return Graph(pops, "x", "y")


U = torch.tensor([[0.0, 1 / 16, 0.25, 0.375, 0.5, 0.75, 15 / 16, 1.0]], dtype=torch.float64)
STEPS = (1, 2, 3, 5, 8, 13, 32, 100)


def counts(method: str) -> dict[int, torch.Tensor]:
    g = identity_graph(U.shape[1])
    res = simulate_rate(g, U, {"h": 1.0}, method, steps=STEPS, dtype=torch.float64)
    return {t: res.logits[t][0] * t for t in STEPS}  # lambda = 1: logits * t = spike count


def test_soft_reset_counts_are_the_floor_of_the_charge():
    u = U[0]
    for t, c in counts("soft_reset").items():
        assert torch.equal(c, torch.floor(t * u + 1e-12)), t


def test_hard_reset_loses_the_charge_above_threshold():
    # From V = 0 a neuron needs ceil(1/u) steps to reach the threshold, then starts over.
    u = U[0].tolist()
    for t, c in counts("hard_reset").items():
        want = [0.0 if x == 0 else float(t // math.ceil(1 / x - 1e-12)) for x in u]
        assert c.tolist() == want, t
    # where they differ: u = 0.75 fires every other step with a hard reset, 3 of 4 with soft
    assert counts("hard_reset")[100][5] == 50 and counts("soft_reset")[100][5] == 75


def test_threshold_shift_rounds_to_nearest():
    u = U[0]
    for t, c in counts("threshold_shift").items():
        assert torch.equal(c, torch.floor(t * u + 0.5 + 1e-12)), t


@pytest.mark.parametrize("method", ["soft_reset", "threshold_shift"])
@pytest.mark.parametrize("make", [mlp_graph, conv_graph])
def test_logits_approach_the_ann_as_steps_grow(make, method):
    g = make()
    x = inputs(g, 32)
    ann = g.forward(x, quantized=False)[g.output].float()
    lam = rate_thresholds(g, x, mode="max")
    steps = (16, 128, 1024)
    res = simulate_rate(g, x, lam, method, steps=steps)
    err = [float((res.logits[t] - ann).abs().mean()) for t in steps]
    scale = float(ann.abs().mean())
    assert err[0] > err[1] > err[2], err
    assert err[2] < 0.03 * scale, (err, scale)
    agree = float((res.logits[1024].argmax(1) == ann.argmax(1)).float().mean())
    assert agree >= 0.9


def test_hard_reset_underestimates_where_soft_reset_does_not():
    g = mlp_graph()
    x = inputs(g, 32)
    ann = g.forward(x, quantized=False)[g.output].float()
    lam = rate_thresholds(g, x, mode="max")
    hard = simulate_rate(g, x, lam, "hard_reset", steps=(512,))
    soft = simulate_rate(g, x, lam, "soft_reset", steps=(512,))
    e_hard = float((hard.logits[512] - ann).abs().mean())
    e_soft = float((soft.logits[512] - ann).abs().mean())
    assert e_hard > 5 * e_soft
    assert hard.spikes[512]["h"] < soft.spikes[512]["h"]


def test_spike_counts_and_synaptic_operations():
    g = mlp_graph(n_out=5, hidden=16)
    x = inputs(g, 8)
    lam = rate_thresholds(g, x, mode="max")
    res = simulate_rate(g, x, lam, "soft_reset", steps=(10, 40), record="h")
    for t in (10, 40):
        # every hidden neuron drives all 5 outputs (dense random weights)
        assert res.synops[t] == res.spikes[t]["h"] * 5
    assert res.spikes[10]["h"] <= res.spikes[40]["h"]
    assert res.raster.shape == (40, 16)
    # the raster is sample 0; a batch of one gives the same total
    one = simulate_rate(g, x[:1], lam, "soft_reset", steps=(40,))
    assert float(res.raster.abs().sum()) == one.spikes[40]["h"]
    assert res.neurons == {"x": 12, "h": 16, "y": 5}


def test_max_pooling_follows_the_busiest_unit():
    # two units in one pooling window, rates 1/2 and 1/4: the gate passes the faster one
    pops = {
        "x": Population("x", "input", (1, 1, 2)),
        "h": Population("h", "relu", (1, 1, 2), edges=[
            Edge("x", [Op("conv2d", np.ones((1, 1, 1, 1)), attrs={"stride": 1})])]),
        "p": Population("p", "maxpool", (1, 1, 1), edges=[Edge("h", [])],
                        attrs={"kernel_size": (1, 2), "stride": (1, 2), "padding": 0}),
        "y": Population("y", "readout", (1,), edges=[Edge("p", [Op("flatten")])]),
    }
    g = Graph(pops, "x", "y")
    x = torch.tensor([[[[0.25, 0.5]]]], dtype=torch.float64)
    res = simulate_rate(g, x, {"h": 1.0}, "soft_reset", steps=(64,), record="p")
    assert res.spikes[64]["p"] == 32 == float(res.raster.sum())
    assert float(res.logits[64][0, 0]) == pytest.approx(0.5)


def test_signed_population_fires_both_ways():
    eye = np.eye(3)
    pops = {
        "x": Population("x", "input", (3,)),
        "s": Population("s", "signed", (3,), edges=[Edge("x", [Op("linear", eye)])]),
        "y": Population("y", "readout", (3,), edges=[Edge("s", [Op("linear", eye)])]),
    }
    g = Graph(pops, "x", "y")
    x = torch.tensor([[-0.5, 0.25, -1.0]], dtype=torch.float64)
    for method in RATE_METHODS:
        res = simulate_rate(g, x, {"s": 1.0}, method, steps=(64,), dtype=torch.float64)
        assert res.logits[64][0].tolist() == pytest.approx([-0.5, 0.25, -1.0], abs=1 / 64)


def test_bad_arguments_are_named():
    g = mlp_graph()
    x = inputs(g, 2)
    with pytest.raises(ValueError, match="method"):
        RateNetwork(g, {"h": 1.0}, "leaky")
    with pytest.raises(ValueError, match="'h'"):
        RateNetwork(g, {}, "soft_reset")
    net = RateNetwork(g, {"h": 1.0})
    with pytest.raises(ValueError, match="input shape"):
        net.run(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="steps"):
        net.run(x, steps=())
    with pytest.raises(ValueError, match="record"):
        net.run(x, steps=(4,), record="y")


def stepwise(net: RateNetwork, x: torch.Tensor, T: int) -> torch.Tensor:
    """The readout after ``T`` steps of the plain loop: every population, step after step."""
    from spikeconverter.baselines.rate import reset_subtract, reset_value

    g = net.graph
    reset = reset_value if net.method == "hard_reset" else reset_subtract
    zero = torch.zeros((), dtype=net.dtype)
    v = {p.name: torch.zeros((x.shape[0], *p.shape), dtype=net.dtype)
         for p in g if p.kind in ("relu", "signed", "readout")}
    counts = {p.edges[0].source: torch.zeros_like(v[p.edges[0].source])
              for p in g if p.kind == "maxpool" and p.edges[0].source in v}
    out: dict = {}
    for _ in range(T):
        for pop in g:
            net._step(pop, x, out, v, counts, reset, zero)
    return v[g.output] / T


@pytest.mark.parametrize("method", sorted(RATE_METHODS))
def test_blocks_of_steps_are_the_step_by_step_network(method):
    # run() integrates each population over a block of steps at a time; any block length
    # gives the network of the plain step-by-step loop (max pooling, signed, residual inside)
    g = conv_graph()
    x = inputs(g, 4)
    lam = rate_thresholds(g, x, mode="max")
    net = RateNetwork(g, lam, method, dtype=torch.float64)
    want = stepwise(net, x, 37)
    for chunk in (1, 5, 64):
        got = net.run(x, (37,), chunk=chunk).logits[37]
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_poisson_input_averages_to_the_input_and_is_seeded():
    g = identity_graph(U.shape[1])
    x = U * 2 - 1  # signed values, largest |x| = 1
    net = RateNetwork(g, {"h": 1.0}, "soft_reset", dtype=torch.float64, encoding="poisson")
    # input spikes carry 1 = lambda: h fires at each positive one, with probability x
    h = net.run(x, (4000,), keep_counts=True)
    rate = h.counts["h"][0] / 4000
    want = x[0].clamp_min(0)
    assert (rate - want).abs().max() < 0.03
    again = net.run(x, (4000,), keep_counts=True)
    assert torch.equal(again.counts["h"], h.counts["h"])
    with pytest.raises(ValueError, match="encoding"):
        RateNetwork(g, {"h": 1.0}, encoding="spikes")
