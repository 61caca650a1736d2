"""Per-channel thresholds and the post-training correction (converters.correction)."""

import copy
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from convhelpers import (
    SHARED,
    SMALL_SHAPE,
    TinyResNet,
    small_cnn,
    small_images,
    with_bn_statistics,
)

from spikeconverter.converters import SpikingNetwork, calibrate, capture, compute_schedule, load
from spikeconverter.converters.correction import (
    CORRECTIONS,
    correct,
    spread,
    spread_batches,
)
from spikeconverter.converters.network_search import tune_thresholds
from spikeconverter.converters.reconstruction import NETWORK, BlockFit, blocks, network_fit
from spikeconverter.models import get_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from graphs import conv_graph, inputs  # noqa: E402

SHAPE = SMALL_SHAPE
images = small_images


@pytest.fixture(scope="module")
def model():
    return small_cnn()


def test_channel_thresholds_are_per_channel_maxima(model):
    x = images(16)
    g = calibrate(capture(model, x[:2]), x, T=4, granularity="channel", progress=False,
                  dtype=torch.float64)
    values = g.forward(x, quantized=False)
    for p in g:
        if p.kind == "relu":
            v = values[p.name].transpose(0, 1).reshape(p.shape[0], -1).amax(1)
            want = np.where(v.numpy() > 0, v.numpy() / 2, 1.0)
            assert np.asarray(p.theta).shape == (p.shape[0],)
            np.testing.assert_allclose(p.theta, want, rtol=1e-12)
    assert g.meta["threshold_granularity"] == "channel"


@pytest.mark.parametrize("mode", ["max", "percentile", "optimal"])
@pytest.mark.parametrize("method", ["none", "both", "refit", "reconstruct", "block", "network"])
def test_channel_thresholds_keep_the_snn_exact(model, mode, method):
    x = images(16)
    g = calibrate(capture(model, x[:2]), x, T=3, mode=mode, granularity="channel",
                  progress=False, dtype=torch.float64, percentile=99.0)
    correct(g, x, method=method, dtype=torch.float64)
    test = images(6, seed=5)
    want = g.forward(test)[g.output]
    for sim in ("fused", "frame", "plugin"):
        got = SpikingNetwork(g, compute_schedule(g, 0), mode=sim, dtype=torch.float64)(test)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_channel_thresholds_survive_the_file(model, tmp_path):
    x = images(8)
    g = calibrate(capture(model, x[:2]), x, T=3, granularity="channel", progress=False)
    correct(g, x)
    net = SpikingNetwork(g, compute_schedule(g, 0), dtype=torch.float64)
    net.save(tmp_path / "net.snn")
    again = load(tmp_path / "net.snn")
    for a, b in zip(net.graph, again.graph, strict=True):
        np.testing.assert_array_equal(np.asarray(a.theta, dtype=float),
                                      np.asarray(b.theta, dtype=float))
    assert again.graph.meta["correction"] == "both"
    assert torch.equal(net(x), again(x))


@pytest.mark.parametrize("seed", [0, 1])
def test_correction_brings_a_small_net_closer_to_its_ann_at_low_T(seed):
    torch.manual_seed(seed)  # the net's weights: unseeded, the margin flaked on rare draws
    net = with_bn_statistics(get_model("small_cnn", input_size=8), SHAPE, seed=seed)
    cal, test = images(64, seed=10 + seed), images(256, seed=20 + seed)
    graph = capture(net, cal[:2])
    ann = graph.forward(test, quantized=False)[graph.output]
    err = {}
    for method in ("none", "threshold", "both", "reconstruct", "block"):
        g = calibrate(copy.deepcopy(graph), cal, T=3, progress=False, dtype=torch.float64)
        correct(g, cal, method=method, dtype=torch.float64)
        err[method] = float((g.forward(test)[g.output] - ann).square().mean())
    # on other draws of the same nets: both 0.0052 vs none 0.0068, 0.0041 vs 0.0060
    assert err["both"] < 0.85 * err["none"] and err["threshold"] < 0.85 * err["none"], err
    assert err["reconstruct"] < 0.85 * err["none"], err
    assert err["block"] < 0.85 * err["none"], err


def tiny_resnet_graph(cal, seed=0):
    torch.manual_seed(seed)  # the net's weights
    net = with_bn_statistics(TinyResNet(), SHAPE)
    return capture(net.double(), cal[:2])


def test_blocks_are_the_residual_blocks():
    g = tiny_resnet_graph(images(4))
    cut = [[p.name for p in b] for b in blocks(g)]
    names = [p.name for p in g]
    # input | stem | block a (a1, a2 + skip) | block b (b1, b2 + option-A skip) | readout
    assert [len(b) for b in cut] == [1, 1, 2, 2, 1], cut
    assert [n for b in cut for n in b] == names


@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_block_reconstruction_keeps_a_resnet_exact(granularity):
    cal, test = images(32, seed=3), images(16, seed=4)
    g = calibrate(tiny_resnet_graph(cal), cal, T=3, granularity=granularity, progress=False,
                  dtype=torch.float64)
    correct(g, cal, method="block", dtype=torch.float64, reconstruct_steps=10)
    want = g.forward(test)[g.output]
    got = SpikingNetwork(g, compute_schedule(g, 0), dtype=torch.float64)(test)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_a_block_fit_lowers_its_output_error_and_writes_it_into_the_graph(granularity):
    cal = images(64, seed=3)
    g = calibrate(tiny_resnet_graph(cal), cal, T=3, granularity=granularity, progress=False,
                  dtype=torch.float64)
    block = blocks(g)[2]  # the residual block a1, a2 + identity skip
    quant, ann = g.forward(cal), g.forward(cal, quantized=False)
    fit = BlockFit(g, block, quant, ann[block[-1].name], torch.Generator().manual_seed(0))
    before, after = fit.fit(60)
    assert after < 0.95 * before, (before, after)
    # the graph now holds the fit: its quantised block output has the error the fit reports
    out = g.forward(cal)[block[-1].name]
    assert float((out - ann[block[-1].name]).square().mean()) == pytest.approx(after, rel=1e-9)


@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_the_network_step_lowers_the_logits_error_and_keeps_a_resnet_exact(granularity,
                                                                          monkeypatch):
    cal, test = images(64, seed=3), images(16, seed=4)
    g = calibrate(tiny_resnet_graph(cal), cal, T=3, granularity=granularity, progress=False,
                  dtype=torch.float64)
    ann_logits = g.forward(cal, quantized=False)[g.output]  # before the correction
    correct(g, cal, method="both", dtype=torch.float64)
    monkeypatch.setitem(NETWORK, "lr", 1e-3)  # a few steps must move this tiny net
    before, after = network_fit(g, cal, ann_logits, torch.Generator().manual_seed(0), 40)
    assert after < 0.95 * before, (before, after)
    # the graph holds the kept fit: its logits have the error the fit reports
    err = float((g.forward(cal)[g.output] - ann_logits).square().mean())
    assert err == pytest.approx(after, rel=1e-9)
    want = g.forward(test)[g.output]
    got = SpikingNetwork(g, compute_schedule(g, 0), dtype=torch.float64)(test)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # in a conversion: the block pass, then the network step (KL loss): kept, still exact
    g0 = calibrate(tiny_resnet_graph(cal), cal, T=3, granularity=granularity, progress=False,
                   dtype=torch.float64)
    plain = correct(copy.deepcopy(g0), cal, method="block", dtype=torch.float64,
                    reconstruct_steps=10)
    monkeypatch.setitem(NETWORK, "steps", 40)
    monkeypatch.setitem(NETWORK, "loss", "kl")
    g = correct(g0, cal, method="block", dtype=torch.float64, reconstruct_steps=10)
    want = g.forward(test)[g.output]
    assert not torch.equal(want, plain.forward(test)[plain.output])
    got = SpikingNetwork(g, compute_schedule(g, 0), dtype=torch.float64)(test)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_refit_fits_the_readout_to_the_ann_on_its_data():
    graph = calibrate(conv_graph(seed=4), inputs(conv_graph(), 32), T=2, progress=False,
                      dtype=torch.float64)
    cal = inputs(graph, 64, seed=7)
    ann = graph.forward(cal, quantized=False)[graph.output]
    err = {}
    for method in ("bias", "refit"):
        g = correct(copy.deepcopy(graph), cal, method=method, dtype=torch.float64)
        err[method] = float((g.forward(cal)[g.output] - ann).square().mean())
    # weights and bias by least squares, then thresholds: closer on its data than the bias shift
    assert err["refit"] < err["bias"], err


@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_network_search_lowers_the_logits_kl_and_keeps_a_resnet_exact(granularity):
    cal, test = images(64, seed=3), images(16, seed=4)
    g = calibrate(tiny_resnet_graph(cal), cal, T=3, granularity=granularity, progress=False,
                  dtype=torch.float64)
    ann_logits = g.forward(cal, quantized=False)[g.output]  # before the bias correction
    correct(g, cal, method="both", dtype=torch.float64)
    spiking = [p for p in g if p.kind == "relu"]
    before = [np.asarray(p.theta, dtype=float).copy() for p in spiking]
    res = tune_thresholds(g, cal, ann_logits, factors=(0.5, 0.8, 1.25, 2.0))
    assert res["kl_after"] < 0.99 * res["kl_before"], res
    # only whole-population factors of the candidates move the thresholds
    moved = [np.asarray(p.theta, dtype=float) / b for p, b in zip(spiking, before, strict=True)]
    assert any(not np.allclose(m, 1.0) for m in moved)
    for m in moved:
        assert np.allclose(m, m.flat[0]) and any(np.isclose(m.flat[0], f)
                                                 for f in (0.5, 0.8, 1.0, 1.25, 2.0))
    # the reported KL is the graph's: the search's cached values were the graph's own
    ann = torch.log_softmax(ann_logits, 1)
    kl = torch.nn.functional.kl_div(torch.log_softmax(g.forward(cal)[g.output], 1), ann,
                                    log_target=True, reduction="batchmean")
    assert float(kl) == pytest.approx(res["kl_after"], rel=1e-9)
    want = g.forward(test)[g.output]
    got = SpikingNetwork(g, compute_schedule(g, 0), dtype=torch.float64)(test)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_forward_from_resumes_the_forward_pass():
    cal = images(8, seed=3)
    g = calibrate(tiny_resnet_graph(cal), cal, T=3, progress=False, dtype=torch.float64)
    full = g.forward(cal)
    for start in (0, 3, len(list(g)) - 1):
        names = [p.name for p in g][:start]
        again = g.forward_from({n: full[n] for n in names}, start, cal)
        for n, v in full.items():
            assert torch.equal(again[n], v), (start, n)


def test_a_capped_correction_uses_inputs_spread_over_all_of_them():
    # calibration draws come sorted by class: the first max_images would miss the later classes
    assert spread(torch.arange(10), 4).tolist() == [0, 3, 6, 9]
    assert spread(torch.arange(3), 4).tolist() == [0, 1, 2]
    graph = conv_graph()
    x = torch.cat([inputs(graph, 8), 3.0 * inputs(graph, 8)])  # two "classes", in order
    calibrate(graph, x, T=3, progress=False)
    capped, spread_first, prefix = (correct(copy.deepcopy(graph), data, max_images=m,
                                            search_images=4)
                                    for data, m in ((x, 4), (spread(x, 4), 4), (x[:4], 4)))
    thetas = [[np.asarray(p.theta).tolist() for p in g if p.spiking] for g in
              (capped, spread_first, prefix)]
    assert thetas[0] == thetas[1]
    assert thetas[0] != thetas[2]


@pytest.mark.parametrize("batch", [1, 3, 7, 64])
def test_a_long_iterable_is_spread_without_holding_it(batch):
    class Counted:
        """Batches of row indices; records how many earlier batches are still alive."""

        def __init__(self, rows):
            self.rows, self.alive = rows, 0

        def __iter__(self):
            given = []
            for start in range(0, self.rows, batch):
                self.alive = max(self.alive, sum(r() is not None for r in given))
                b = torch.arange(start, min(start + batch, self.rows))
                given.append(weakref.ref(b))
                yield b
                del b

    # up to 2 n rows read: exactly spread() of all of them
    for rows in (5, 8):
        got = spread_batches(Counted(rows), 4, 32)
        assert got.tolist() == spread(torch.arange(min(rows, 32)), 4).tolist()
    # more: n rows over the first `limit`, evenly (gaps differ by at most a factor of 2)
    for rows, limit in ((100, 100), (1000, 64 * 8), (37, 1000)):
        data = Counted(rows)
        got = spread_batches(data, 8, limit).tolist()
        assert data.alive <= 1  # the rows kept are copies: read batches are let go
        span = min(rows, limit)
        assert len(got) == 8 and got == sorted(set(got)) and got[0] == 0
        gaps = np.diff(got)
        assert got[-1] >= span - 2 * gaps.max() and gaps.max() <= 2 * gaps.min(), got
        # at most 2 n rows held: those kept are every stride-th, stride the least power of 2
        # that leaves 2 n or fewer (spread over all the rows read would pick others)
        stride = 1
        while -(-span // stride) > 2 * 8:
            stride *= 2
        assert stride > 1 and all(g % stride == 0 for g in got), (stride, got)


def test_bad_arguments_are_named():
    graph = conv_graph()
    with pytest.raises(ValueError, match="not calibrated"):
        correct(graph, inputs(graph, 4))
    calibrate(graph, inputs(graph, 4), T=3, progress=False)
    with pytest.raises(ValueError, match="correction method must be one of"):
        correct(graph, inputs(graph, 4), method="adaround")
    with pytest.raises(ValueError, match="max_images"):
        correct(graph, inputs(graph, 4), max_images=0)
    with pytest.raises(ValueError, match="granularity"):
        calibrate(graph, inputs(graph, 4), T=3, granularity="neuron", progress=False)
    assert set(CORRECTIONS) == {"none", "bias", "threshold", "both", "refit", "reconstruct",
                                "block", "network"}
    calibrate(graph, inputs(graph, 4), T=3, progress=False)
    with pytest.raises(ValueError, match="factors"):
        tune_thresholds(graph, inputs(graph, 4), factors=(0.9, -1.0))
    with pytest.raises(ValueError, match="sweeps"):
        tune_thresholds(graph, inputs(graph, 4), sweeps=0)
    with pytest.raises(ValueError, match="ann_logits has 3 rows for 4 inputs"):
        tune_thresholds(graph, inputs(graph, 4), torch.zeros(3, 10))


@pytest.mark.slow
def test_correction_keeps_the_T16_resnet20_result(shared_resnet20):
    data = SHARED / "data" / "cifar10"
    if not (data / "test").is_dir() or not (data / "train").is_dir():
        pytest.skip(f"shared CIFAR-10 images {data} not available")
    from torchvision import datasets, transforms

    from spikeconverter.data import calibration_batch

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(
        (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    test = datasets.ImageFolder(str(data / "test"), tf)
    xs = torch.stack([test[i][0] for i in range(len(test))])
    cal = calibration_batch(datasets.ImageFolder(str(data / "train"), tf), 256, seed=0)
    graph = calibrate(capture(shared_resnet20, xs[:2]), cal, T=16, progress=False)
    preds = {}
    for method in ("none", "both"):
        g = correct(copy.deepcopy(graph), cal, method=method)
        net = SpikingNetwork(g, compute_schedule(g, 0))
        with torch.no_grad():
            preds[method] = torch.cat([net(xs[i:i + 256]).argmax(1)
                                       for i in range(0, len(xs), 256)])
    assert int((preds["none"] != preds["both"]).sum()) <= 1


def test_convert_uses_the_settings_measured_best_for_its_T(model):
    from spikeconverter.converters import convert
    from spikeconverter.converters.correction import CHANNEL_T, LOW_T, default_settings

    x = images(8)
    for T in (3, CHANNEL_T + 2, LOW_T + 8):
        want = default_settings(T)
        g = convert(model, x, T=T, progress=False).graph
        assert g.meta["correction"] == want["correction"]
        assert g.meta["threshold_granularity"] == want["threshold_granularity"]
        per_channel = np.asarray(g["features_2"].theta).ndim == 1
        assert per_channel == (want["threshold_granularity"] == "channel")
    g = convert(model, x, T=3, threshold_granularity="layer", correction="none",
                progress=False).graph
    assert np.asarray(g["features_2"].theta).ndim == 0 and g.meta["correction"] == "none"


def test_T4_default_depends_on_the_calibration_images(model, monkeypatch):
    from spikeconverter.converters import api, convert, correction

    few = correction.default_settings(4, correction.WIDE_DRAW - 1)
    wide = correction.default_settings(4, correction.WIDE_DRAW)
    assert (few["threshold_granularity"], few["correction"]) == ("layer", "both")
    assert (wide["threshold_granularity"], wide["correction"], wide["reconstruct_steps"]) == (
        "channel", "block", correction.WIDE_DRAW_STEPS)
    assert correction.default_settings(2)["correction"] == "block"
    assert correction.default_settings(4) == few  # the image count unknown: the steady one
    # through convert(): 8 images made a wide draw; the steps it asks for are recorded and
    # cut to 2 to keep the test short
    monkeypatch.setattr(correction, "WIDE_DRAW", 8)
    asked = []

    def short_correct(*args, reconstruct_steps=None, **kwargs):
        asked.append((kwargs["method"], reconstruct_steps))
        return correction.correct(*args, reconstruct_steps=2 if reconstruct_steps else None,
                                  **kwargs)

    monkeypatch.setattr(api, "correct", short_correct)
    g = convert(model, images(8), T=4, progress=False).graph
    assert asked == [("block", correction.WIDE_DRAW_STEPS)]
    assert g.meta["correction"] == "block" and np.asarray(g["features_2"].theta).ndim == 1
    g = convert(model, images(7), T=4, progress=False).graph
    assert asked[-1] == ("both", None) and np.asarray(g["features_2"].theta).ndim == 0
    g = convert(model, images(8), T=4, correction="both", progress=False).graph
    assert asked[-1] == ("both", None) and g.meta["correction"] == "both"


def test_chosen_settings_put_the_callers_choices_over_the_defaults():
    from spikeconverter.converters import correction

    wide = correction.chosen_settings(4, correction.WIDE_DRAW)
    assert wide == correction.default_settings(4, correction.WIDE_DRAW)
    mine = correction.chosen_settings(4, correction.WIDE_DRAW, calibration_mode="optimal",
                                      threshold_granularity="layer", correction="both")
    assert (mine["calibration_mode"], mine["threshold_granularity"], mine["correction"]) == (
        "optimal", "layer", "both")
    # another correction than the default does not inherit the default's step count
    assert wide["reconstruct_steps"] == correction.WIDE_DRAW_STEPS
    assert mine["reconstruct_steps"] is None
    assert correction.chosen_settings(4, correction.WIDE_DRAW,
                                      correction="block")["reconstruct_steps"] == (
        correction.WIDE_DRAW_STEPS)


@pytest.mark.parametrize("T", [2, 3, 4, 5, 8, 16])
def test_the_default_draw_is_wide_enough_for_the_default_setting(T):
    # the draw a caller gets without naming a count is one that default_settings turns into the
    # best measured setting at that T (at T = 4 the block reconstruction, which needs WIDE_DRAW)
    from spikeconverter.converters import correction

    drawn = correction.calibration_draw(T)
    assert drawn == (correction.WIDE_DRAW if T == correction.WIDE_DRAW_T else correction.DRAW)
    assert correction.default_settings(T, drawn) == correction.default_settings(T, 10**6)
    # a named granularity or correction is not the default setting: no wide draw for it
    assert correction.calibration_draw(T, correction="both") == correction.DRAW
    assert correction.calibration_draw(T, threshold_granularity="channel") == correction.DRAW
