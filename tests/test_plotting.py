import numpy as np
import pytest
import torch
from PIL import Image

from spikeconverter import coding
from spikeconverter.plotting import (
    LATENCY_LABEL,
    T_LABEL,
    accuracy_figure,
    draw,
    plot_accuracy,
    plot_conversion_error,
    plot_raster,
    plot_schedule,
    plot_synops,
    schedule_bars,
    synops_figure,
)


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_accuracy_and_synops_plots(tmp_path):
    curves = {"iLIF": {4: 80.0, 8: 90.0}, "soft reset": {32: 50.0, 64: 70.0, 2048: 89.0}}
    p = plot_accuracy(curves, tmp_path / "sub" / "acc.png", ann=91.0)
    w, h = _png(p)
    assert w > 400 and h > 300
    _png(plot_synops({"iLIF": {4: 1e5, 8: 2e5}, "rate": {32: 0.0, 64: 3e6}},
                     tmp_path / "ops.png", ann_macs=4e6))
    assert sorted(x.name for x in tmp_path.rglob("*")) == ["acc.png", "ops.png", "sub"]
    with pytest.raises(ValueError, match="no curves"):
        plot_accuracy({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'iLIF' has no points"):
        plot_accuracy({"iLIF": {}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=".png"):
        plot_accuracy(curves, tmp_path / "x.pdf")


def test_accuracy_figure_has_a_latency_axis_for_both_methods():
    curves = {"iLIF": {8: 91.0, 4: 86.0}, "soft reset": {32: 50.0, 2048: 100.0}}
    latency = {"iLIF": {4: 77, 8: 153}, "soft reset": {32: 32, 2048: 2048}}
    spec = accuracy_figure(curves, latency=latency, ann=91.64, images=1017, title="r20")
    assert "1,017 test images" in spec.title
    by_t, by_latency = spec.panels
    assert (by_t.xlabel, by_latency.xlabel) == (T_LABEL, LATENCY_LABEL)
    ilif, rate = by_t.series
    assert ilif.x == (4.0, 8.0) and ilif.y == (86.0, 91.0)
    ilif, rate = by_latency.series
    # iLIF's points move to the schedule's latency; rate coding's latency is its step count
    assert ilif.x == (77.0, 153.0) and ilif.y == (86.0, 91.0)
    assert rate.x == (32.0, 2048.0) and rate.label == "soft reset"
    for panel in spec.panels:
        assert panel.ylim == (None, 100.0)  # percentages: the axis ends at 100
        assert panel.references == ((91.64, "ANN (91.64 %)"),)
    # without latencies there is only the T panel; a missing latency is an error, not a guess
    assert len(accuracy_figure(curves).panels) == 1
    with pytest.raises(ValueError, match=r"'iLIF' has no latency for T = \[8\]"):
        accuracy_figure(curves, latency={"iLIF": {4: 77}, "soft reset": latency["soft reset"]})


def test_draw_shows_the_spec():
    curves = {"iLIF": {4: 1e5, 8: 2e5}, "rate": {32: 0.0, 64: 3e6}}
    spec = synops_figure(curves, latency={"iLIF": {4: 77, 8: 153}, "rate": {32: 32, 64: 64}},
                         ann_macs=4e6, images=30)
    assert spec.panels[0].series[1].y == (1e-9, 3e6)  # zero ops sit at the log axis' floor
    fig = draw(spec)
    assert fig._suptitle.get_text() == spec.title
    for ax, panel in zip(fig.axes, spec.panels, strict=True):
        assert ax.get_xlabel() == panel.xlabel and ax.get_yscale() == "log"
        lines = [ln for ln in ax.get_lines() if ln.get_label() in ("iLIF", "rate")]
        assert [tuple(ln.get_xdata()) for ln in lines] == [s.x for s in panel.series]
        assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == "ANN MACs (4e+06)"
    acc = draw(accuracy_figure({"iLIF": {4: 99.0, 8: 100.0}}))
    assert acc.axes[0].get_ylim()[1] == 100.0


def test_schedule_bars_pipeline_samples():
    from types import SimpleNamespace

    s = SimpleNamespace(offset={"x": 0, "a": 0, "out": 5}, t_acc={"x": 0, "a": 1, "out": 4},
                        t_gen={"x": 1, "a": 4, "out": 0}, steps_per_sample=5, latency_steps=9)
    bars = schedule_bars(s, samples=2)
    assert [(b["population"], b["sample"], b["phase"], b["start"], b["length"]) for b in bars] == [
        ("x", 0, "generate", 0, 1), ("x", 1, "generate", 5, 1),
        ("a", 0, "accumulate", 0, 1), ("a", 0, "generate", 1, 4),
        ("a", 1, "accumulate", 5, 1), ("a", 1, "generate", 6, 4),
        ("out", 0, "accumulate", 5, 4), ("out", 1, "accumulate", 10, 4)]
    with pytest.raises(ValueError, match="samples"):
        schedule_bars(s, samples=0)


def test_conversion_error_plot_finds_the_optimiser_s_threshold(tmp_path):
    ratios = np.linspace(0.2, 0.8, 241)
    out = plot_conversion_error(tmp_path / "fig5.png", T=6, k_values=(1.6, 2.0), ratios=ratios,
                                samples=4000)
    _png(out["path"])
    assert out["colorbar_label"].startswith(r"$\log_{10}")
    u = (np.arange(4000) + 0.5) / 4000
    step = ratios[1] - ratios[0]
    for k in (1.6, 2.0):
        best = coding.optimal_threshold(u, T=6, k=k)
        assert abs(out["best_ratio"][k] - best) <= step
    # k = 2, floor: theta = U_max / 2 makes the top code cover the range; its error is the
    # mean floor loss, half an LSB = theta * 2**-5 / 2
    assert out["best_ratio"][2.0] == pytest.approx(0.5, abs=step)
    i = int(np.argmin(np.abs(ratios - 0.5)))
    assert out["error"][1, i] == pytest.approx(0.5 * 2.0**-5 / 2, rel=0.02)


def test_raster(tmp_path):
    s = torch.zeros(12, 5)
    s[4:8] = coding.encode(torch.tensor([0.3, 1.2, -0.9, 1.7, 0.0]), 1.0, 4, signed=True)
    _png(plot_raster(s, tmp_path / "r.png", windows=[(0, 4, "accumulate"), (4, 8, "generate")]))
    with pytest.raises(ValueError, match=r"\(T, N\)"):
        plot_raster(np.zeros(5), tmp_path / "r2.png")


def test_schedule_plot_of_a_converted_network(tmp_path):
    from spikeconverter.converters import convert
    from spikeconverter.models import get_model

    torch.manual_seed(0)
    model = get_model("small_cnn", in_channels=1, input_size=8, num_classes=3, width=4, hidden=8)
    net = convert(model.eval(), torch.randn(4, 1, 8, 8), T=3, progress=False)
    out = plot_schedule(net.schedule, tmp_path / "s.png", samples=3)
    _png(out["path"])
    assert out["populations"] == list(net.schedule.offset)
    ends = [b["start"] + b["length"] for b in out["bars"] if b["sample"] == 0]
    assert max(ends) == net.schedule.latency_steps
    last = max(b["start"] + b["length"] for b in out["bars"])
    assert last == net.schedule.steps_for(3)
