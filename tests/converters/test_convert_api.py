"""convert(): arguments, errors, calibration modes, save/load."""

import pytest
import torch
from convhelpers import SMALL_SHAPE, small_cnn, small_images

from spikeconverter.converters import (
    ConversionError,
    calibrate,
    capture,
    compute_schedule,
    convert,
    load,
)
from spikeconverter.converters.serialize import FORMAT
from spikeconverter.models import get_model

SHAPE = SMALL_SHAPE
images = small_images


@pytest.fixture(scope="module")
def model():
    return small_cnn()


def test_calibration_forms_give_the_same_thresholds(model):
    x = images(12)
    kw = {"progress": False, "threshold_granularity": "layer", "correction": "none"}
    a = convert(model, x, T=4, batch_size=5, **kw)
    b = convert(model, [x[:5], x[5:]], T=4, **kw)
    c = convert(model, [(x[:7], torch.zeros(7)), (x[7:], torch.zeros(5))], T=4, **kw)
    d = convert(model, iter([x[:3], x[3:]]), T=4, **kw)
    th = [[p.theta for p in n.graph if p.theta is not None] for n in (a, b, c, d)]
    for other in th[1:]:  # batch sizes differ: float32 convolutions may round differently
        assert other == pytest.approx(th[0], rel=1e-5)


@pytest.mark.parametrize("mode", ["max", "percentile", "optimal"])
def test_calibration_modes(model, mode):
    x = images(16)
    g = calibrate(capture(model, x[:2]), x, T=3, mode=mode, progress=False,
                  dtype=torch.float64, percentile=99.0)
    values = g.forward(x, quantized=False)
    for p in g:
        if p.kind == "relu":
            top = float(values[p.name].max())
            if mode == "max":
                assert p.theta == pytest.approx(top / 2)
            else:
                assert 0 < p.theta <= top / 2 * (1 + 1e-9)
    assert g.meta["calibration_mode"] == mode


def test_optimal_thresholds_lower_the_conversion_error(model):
    x = images(32)
    err = {}
    for mode in ("max", "optimal"):
        g = calibrate(capture(model, x[:2]), x, T=2, mode=mode, rounding="floor",
                      progress=False, dtype=torch.float64)
        q = g.forward(x, quantized=True)
        f = g.forward(x, quantized=False)
        err[mode] = sum(float((q[p.name] - f[p.name]).abs().mean()) for p in g
                        if p.kind == "relu" and p.name == "features_2")
    assert err["optimal"] < err["max"]


def test_headroom_scales_max_thresholds(model):
    x = images(8)
    a = calibrate(capture(model, x[:2]), x, T=3, progress=False)
    b = calibrate(capture(model, x[:2]), x, T=3, headroom=1.5, progress=False)
    for pa, pb in zip(a, b, strict=True):
        if pa.kind == "relu":
            assert pb.theta == pytest.approx(1.5 * pa.theta)


def test_empty_calibration_is_an_error(model):
    for empty in (torch.zeros(0, *SHAPE), [], iter([])):
        with pytest.raises(ValueError, match="empty"):
            convert(model, empty, T=4, progress=False)


@pytest.mark.parametrize("T", [0, -1, 2.5, True])
def test_bad_T_is_an_error(model, T):
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        convert(model, images(4), T=T, progress=False)


def test_bad_T_per_layer_and_options(model):
    with pytest.raises(ValueError, match="not a population"):
        convert(model, images(4), T=4, T_per_layer={"nope": 3}, progress=False)
    with pytest.raises(ValueError, match=r"T_per_layer\['features_2'\]"):
        convert(model, images(4), T=4, T_per_layer={"features_2": 0}, progress=False)
    with pytest.raises(ValueError, match="calibration mode"):
        convert(model, images(4), T=4, calibration_mode="mean", progress=False)
    with pytest.raises(ValueError, match="mode must be one of"):
        convert(model, images(4), T=4, mode="fast", progress=False)
    with pytest.raises(ValueError, match="backend must be one of"):
        convert(model, images(4), T=4, backend="loihi", progress=False)


def test_nan_weights_are_named(model):
    bad = get_model("small_cnn", input_size=8).eval()
    with torch.no_grad():
        bad.features[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"features\.0\.weight"):
        convert(bad, images(4).float(), T=4, progress=False)


def test_unsupported_op_through_convert():
    class Tanh(torch.nn.Module):
        def forward(self, x):
            return torch.tanh(x).flatten(1)

    with pytest.raises(ConversionError, match="tanh"):
        convert(Tanh(), images(4), T=4, progress=False)


def test_lava_backend_reports_what_is_missing_or_builds(model):
    try:
        convert(model, images(4), T=4, backend="lava", progress=False)
    except NotImplementedError as e:
        assert "lava" in str(e) and "norse" in str(e)


# -- save / load --------------------------------------------------------------------------


def test_save_load_roundtrip(model, tmp_path):
    net = convert(model, images(8), T=5, progress=False, dtype=torch.float64,
                  calibration_mode="percentile", threshold_granularity="layer")
    path = tmp_path / "sub" / "net.snn"
    net.save(path)
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    again = load(path)
    x = images(3, seed=9)
    assert torch.equal(net(x), again(x))
    assert again.schedule == net.schedule
    assert again.mode == net.mode and again.dtype == torch.float64
    assert [p.theta for p in again.graph] == [p.theta for p in net.graph]
    assert again.graph.meta["calibration_mode"] == "percentile"


def test_load_refuses_corrupt_foreign_and_newer_files(model, tmp_path):
    net = convert(model, images(8), T=3, progress=False)
    good = tmp_path / "good.snn"
    net.save(good)
    corrupt = tmp_path / "corrupt.snn"
    corrupt.write_bytes(good.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt.snn.*not a readable"):
        load(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="foreign.pt.*not a spikeconverter network"):
        load(foreign)
    blob = torch.load(good, weights_only=True)
    assert blob["format"] == FORMAT
    blob["version"] = 99
    newer = tmp_path / "newer.snn"
    torch.save(blob, newer)
    with pytest.raises(ValueError, match="newer.snn.*version 99"):
        load(newer)
    with pytest.raises(ValueError, match="no such file"):
        load(tmp_path / "missing.snn")


def test_schedule_hop_latency(model):
    net = convert(model, images(8), T=4, progress=False)
    s0, s1 = net.schedule, compute_schedule(net.graph, hop_latency=1)
    edges = sum(1 for p in net.graph if p.kind != "input")
    # every population on the chain waits one more step per hop
    assert s1.latency_steps == s0.latency_steps + edges
    with pytest.raises(ValueError, match="hop_latency"):
        compute_schedule(net.graph, hop_latency=-1)
