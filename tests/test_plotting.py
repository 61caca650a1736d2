import numpy as np
import pytest
import torch
from PIL import Image

from spikeconverter import coding
from spikeconverter.plotting import (
    plot_accuracy,
    plot_conversion_error,
    plot_raster,
    plot_synops,
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


def test_conversion_error_plot_finds_the_optimiser_s_threshold(tmp_path):
    ratios = np.linspace(0.2, 0.8, 241)
    out = plot_conversion_error(tmp_path / "fig5.png", T=6, k_values=(1.6, 2.0), ratios=ratios,
                                samples=4000)
    _png(out["path"])
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
