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
from spikeconverter.converters.to_lava import batched, windowed  # noqa: E402

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
    # every population but the readout accumulated per window; step by step is the same
    modes = net.stats["accumulate"]
    assert all(m.startswith("window") for n, m in modes.items() if n != net.graph.output)
    assert not net.stats["window_fallback"]
    step = net.run(x, fixed_point=fixed, batch_size=3, progress=False, windowed=False)
    assert set(net.stats["accumulate"].values()) == {"step"}
    np.testing.assert_array_equal(step, one)
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

    def spy(plan, schedule, batch, windows, prefill, buffer, **kw):
        sizes.append((0 if prefill is None else len(prefill), buffer))
        return build(plan, schedule, batch, windows, prefill, buffer, **kw)

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


def _floor_shifted_net(split: bool = False):
    """TinyResNet in fixed point with every spike-fed Conv floor-shifting its sum (weight
    exponent one lower, odd mantissas): exponent -1 is windowed through the parity
    correction, the one Conv pushed to -2 must stay per step. ``split``: two synapse groups
    per edge (both changed so)."""
    model, x = _model(TinyResNet), _data(16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = sc.convert(model, x, T=5, dtype=torch.float64, progress=False, backend="lava")
    net.split_weights = split
    plan = net.plan(True)
    for spec in plan.populations.values():  # Lava Dense's convention: the neurons shift by 6
        spec.a_in_exp = 0
    convs = [s for s in plan.synapses if s.kind == "conv" and s.source != plan.input]
    for i, syn in enumerate(convs):
        w = np.asarray(syn.weight).copy()
        w[w % 2 == 0] += 1
        syn.weight = np.clip(w, -127, 127)
        syn.weight_exp = -1 if i else -2
    return net, convs[0].target


def test_windowed_floor_shift_and_static_fallback():
    """Per window == per step == batch size 1, bit for bit, saturations included, where the
    per-step sums are floor-shifted (exponent -1: parity correction); a layer whose exponent
    (-2, odd weights) is not linear falls back to per-step accumulation."""
    net, stepped = _floor_shifted_net()
    modes = windowed.window_plan(net.plan(True), net.schedule).report()
    assert modes[stepped].startswith("step: ") and "exponent -2" in modes[stepped]
    assert sum(m.startswith("window") for m in modes.values()) >= 3
    x = _data(5, seed=5) * 3  # large inputs: some 24-bit membranes clamp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step = net.run(x, fixed_point=True, batch_size=2, progress=False, windowed=False)
        sat = net.stats["saturations"]
        win = net.run(x, fixed_point=True, batch_size=2, progress=False)
        assert net.stats["accumulate"] == modes and not net.stats["window_fallback"]
        assert net.stats["saturations"] == sat
        one = net.run(x, fixed_point=True, batch_size=1, progress=False)
    np.testing.assert_array_equal(win, step)
    np.testing.assert_array_equal(one, step)


def test_split_weight_groups_run_as_one_process(monkeypatch):
    """Fixed point's two synapse groups per edge (split weights) are one batched Process that
    sends the sum of both, each group shifted (floor-shifted: parity) and wrapped as it would
    be alone: the logits and saturations of two Processes, per window and per step."""
    net, _ = _floor_shifted_net(split=True)
    plan = net.plan(True)
    edges = {(s.target, s.edge) for s in plan.synapses}
    assert len(edges) < len(plan.synapses)
    g = batched.build_batched(plan, net.schedule, 2, 1, None, buffer=2,
                              modes=windowed.window_plan(plan, net.schedule))
    assert len(g.synapses) == len(edges)
    # a Process per group for the reference
    _assert_runs_equal_reference(
        net, lambda: monkeypatch.setattr(batched, "groups_fit", lambda *args: False))


def _assert_runs_equal_reference(net, use_reference) -> None:
    """Fixed-point runs of ``net``, windowed and per step, equal (logits and saturation counts)
    a per-step run after ``use_reference()`` switched the code path under test off; inputs
    large enough that some 24-bit membranes clamp."""
    images = _data(5, seed=5) * 3
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for win in (True, False):
            runs.append((net.run(images, fixed_point=True, batch_size=2, progress=False,
                                 windowed=win), net.stats["saturations"]))
        use_reference()
        ref = net.run(images, fixed_point=True, batch_size=2, progress=False, windowed=False)
        sat = net.stats["saturations"]
    for logits, saturations in runs:
        np.testing.assert_array_equal(logits, ref)
        assert saturations == sat


def test_one_gather_of_two_groups_is_the_two_gathers(monkeypatch):
    """A gathered (identity-like) edge whose two groups read the same inputs with left shifts
    runs one gather with the combined integer weights: the logits and saturations of gathering
    each group alone, per window and per step."""
    from spikeconverter.processes import BatchDense
    from spikeconverter.processes.batchdense.models import PyBatchDenseModelBitAcc

    model, x = _model(TinyResNet), _data(16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = sc.convert(model, x, T=5, dtype=torch.float64, progress=False, backend="lava")
    plan = net.plan(True)
    g = batched.build_batched(plan, net.schedule, 2, 1, None, buffer=2,
                              modes=windowed.window_plan(plan, net.schedule))
    merged = [PyBatchDenseModelBitAcc(p.proc_params)._one_gather is not None
              for p in g.synapses if isinstance(p, BatchDense)]
    assert any(merged)  # the shortcuts take the one-gather path
    # each group gathered alone for the reference
    _assert_runs_equal_reference(
        net, lambda: monkeypatch.setattr(PyBatchDenseModelBitAcc, "_merged_gather",
                                         lambda self: None))


def test_unverified_window_reruns_step_by_step(lnet, monkeypatch):
    """A windowed neuron that cannot prove it never clamped before its window's last step is
    counted; the run is then repeated step by step: the same logits, no window yielded twice.
    (Forced here by an input bound no membrane satisfies.)"""
    net, x = lnet
    ref = net.run(x, fixed_point=True, batch_size=2, progress=False, windowed=False)
    monkeypatch.setattr(windowed, "input_bound", lambda plan, syns: 2**23)
    seen = []
    for first, part in net.iter_run(x, fixed_point=True, batch_size=2, chunk_steps=1):
        seen.append(first)
        np.testing.assert_array_equal(part, ref[first:first + len(part)])
    assert sorted(seen) == list(range(0, len(x), 2))
    assert net.stats["window_fallback"]


def test_skip_delays_fold_into_synapses_and_codes_travel_whole():
    """On the residual net the skip edges' delays are taken over by their windowed synapses
    (no Delay Process left in the batched graph) and, in fixed point, the populations whose
    receivers are all windowed synapses of their generate phase send one code message per
    window: the graphs that test_batched_equals_batch_size_1 checks bit for bit."""
    model, x = _model(TinyResNet), _data(16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = sc.convert(model, x, T=5, dtype=torch.float64, progress=False, backend="lava")
    for fixed in (False, True):
        plan = net.plan(fixed)
        modes = windowed.window_plan(plan, net.schedule)
        delayed = [s for s in plan.synapses if s.delay]
        assert delayed and all(modes.windows[(s.target, s.edge)]["lead"] == s.delay
                               for s in delayed)
        g = batched.build_batched(plan, net.schedule, 2, 1, None, buffer=2, modes=modes)
        assert g.delays == []
        senders = {n for n, on in modes.code_send.items() if on}
        assert bool(senders) == fixed
        for s in plan.synapses:
            w = modes.windows.get((s.target, s.edge))
            assert (s.source in senders) == bool(w and w.get("code_in")), (s.source, s.target)


@pytest.mark.parametrize("extra, culprit", [({"lead": 5}, "lead"),
                                            ({"code_in": True, "payload": "signed"}, "code_in"),
                                            ({"stride": 1}, "optionally")])
def test_window_options_are_checked(extra, culprit):
    from spikeconverter.processes import BatchDense

    window = {"start": 4, "length": 3, "period": 6, "k": 2.0, "payload": "binary", "bits": 3}
    BatchDense(weights=np.ones((2, 3)), batch=1, in_shape=(3,), out_shape=(2,),
               window={**window, "lead": 4, "code_in": True})  # the largest lead: accepted
    with pytest.raises(ValueError, match=culprit):
        BatchDense(weights=np.ones((2, 3)), batch=1, in_shape=(3,), out_shape=(2,),
                   window={**window, **extra})


def test_low_weight_groups_are_checked():
    from spikeconverter.processes import BatchConv, BatchDense

    with pytest.raises(ValueError, match="low_weights must have the shape"):
        BatchDense(weights=np.ones((2, 3)), batch=1, low_weights=np.ones((3, 2)))
    with pytest.raises(ValueError, match="low_weight must have the shape"):
        BatchConv(weight=np.ones((2, 3, 3, 2)), input_shape=(4, 4, 2), batch=1,
                  low_weight=np.ones((2, 1, 1, 2)))


@pytest.mark.parametrize("floor_shifted", [False, True], ids=["shifted", "floor-shifted"])
def test_batch_slices_equal_whole_arrays(monkeypatch, floor_shifted):
    """A large batch is computed a slice at a time at a window's end (BatchILIF's membrane and
    code) and BatchConv finishes each sub-batch's product at once: one sample per slice and
    per sub-batch gives the logits and saturation counts of whole arrays (inputs large enough
    that some 24-bit membranes clamp)."""
    from spikeconverter.processes.batchconv import models as conv_models
    from spikeconverter.processes.batchilif import models as ilif_models

    if floor_shifted:
        net, _ = _floor_shifted_net(split=True)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = sc.convert(_model(TinyResNet), _data(16), T=5, dtype=torch.float64,
                             progress=False, backend="lava")
    x = _data(5, seed=5) * (3 if floor_shifted else 40)  # large inputs: some membranes clamp
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for elements, patch in ((2**16, 2**20), (1, 1)):  # whole arrays, then one sample
            # the workers are forked after this: they read the patched values
            monkeypatch.setattr(ilif_models, "CHUNK_ELEMENTS", elements)
            monkeypatch.setattr(conv_models, "PATCH_BYTES", patch)
            assert len(ilif_models.batch_slices((5, 4, 4))) == (5 if elements == 1 else 1)
            runs.append((net.run(x, fixed_point=True, batch_size=5, progress=False),
                         net.stats["saturations"]))
            windowed_now = [n for n, m in net.stats["accumulate"].items()
                            if m.startswith("window")]
            assert len(windowed_now) >= 2, net.stats["accumulate"]
    np.testing.assert_array_equal(runs[1][0], runs[0][0])
    assert runs[1][1] == runs[0][1] and runs[0][1] > 0
