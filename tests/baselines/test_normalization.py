import numpy as np
import pytest
import torch
from graphs import conv_graph, inputs, mlp_graph

from spikeconverter.baselines import rate_thresholds


def test_max_mode_is_the_largest_activation():
    g = conv_graph()
    x = inputs(g, 16)
    vals = g.forward(x, quantized=False)
    lam = rate_thresholds(g, x, mode="max", batch_size=5)
    assert set(lam) == {"c1", "c2", "c3"}
    assert lam["c1"] == pytest.approx(float(vals["c1"].max()))
    assert lam["c2"] == pytest.approx(float(vals["c2"].abs().max()))  # signed: |u|


def test_percentile_mode_over_positive_activations():
    g = mlp_graph()
    x = inputs(g, 64)
    h = g.forward(x, quantized=False)["h"]
    lam = rate_thresholds(g, [(x[:30], None), (x[30:], None)], mode="percentile", percentile=90)
    assert lam["h"] == pytest.approx(float(np.percentile(h[h > 0].numpy(), 90)))
    assert rate_thresholds(g, x, mode="percentile", percentile=100)["h"] == pytest.approx(
        float(h.max()))


def test_clip_caps_the_threshold_and_dead_layers_get_one():
    g = mlp_graph()
    g["h"].clip = 0.1
    x = inputs(g, 8)
    assert rate_thresholds(g, x, mode="max")["h"] == pytest.approx(0.1)
    g["h"].clip = None
    g["h"].edges[0].ops[0].bias[:] = -1.0  # never active on zero inputs
    assert rate_thresholds(g, torch.zeros(2, 12, dtype=torch.float64))["h"] == 1.0


def test_bad_arguments():
    g = mlp_graph()
    with pytest.raises(ValueError, match="mode"):
        rate_thresholds(g, inputs(g, 2), mode="mean")
    with pytest.raises(ValueError, match="percentile"):
        rate_thresholds(g, inputs(g, 2), percentile=0)
    with pytest.raises(ValueError, match="empty"):
        rate_thresholds(g, [])
