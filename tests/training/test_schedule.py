"""The learning-rate schedule (linear warm-up, cosine decay after it), the thresholds' own
learning-rate scale, and the label of the network kept by best-on-validation selection."""

from __future__ import annotations

import argparse
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from trainhelpers import shuffled_digits, trained_cnn

from spikeconverter.converters import convert
from spikeconverter.training import FinetuneConfig, finetune
from spikeconverter.training.cli import _config, add_finetune_parser, run_finetune, with_teacher
from spikeconverter.training.finetune import lr_factor


@pytest.fixture(scope="module")
def digits():
    """sklearn digits (8x8): 400 training images, an ANN trained on them, its T=2 network."""
    x, y = shuffled_digits(2)
    x, y = x[:400], y[:400]
    model = trained_cnn(x, y, epochs=8)
    # one threshold per layer: the step sizes below are checked against scalar thresholds
    net = convert(model, x[:128], T=2, threshold_granularity="layer", progress=False)
    return net, (x, y)


def _weights(graph) -> np.ndarray:
    return np.concatenate([np.asarray(getattr(op, a), dtype=np.float64).ravel()
                           for pop in graph for e in pop.edges for op in e.ops
                           for a in ("weight", "bias") if getattr(op, a) is not None])


def _thresholds(graph) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(pop.theta, dtype=np.float64))
                           for pop in graph if pop.kind in ("relu", "signed")])


def test_lr_factor_warmup_then_constant_or_cosine():
    assert [lr_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [lr_factor(s) for s in (0, 7)] == [1.0, 1.0]
    # without warm-up: the cosine of the whole run (the schedule before warm-up existed)
    assert [lr_factor(s, 0, 8) for s in range(9)] == pytest.approx(
        [0.5 * (1 + math.cos(math.pi * s / 8)) for s in range(9)])
    # with it: the peak after the warm-up, then the cosine over the remaining steps, to 0
    got = [lr_factor(s, 2, 10) for s in range(11)]
    assert got[:3] == [0.5, 1.0, 1.0] and got[10] == pytest.approx(0.0, abs=1e-12)
    assert got[6] == pytest.approx(0.5)  # halfway through the 8 steps after the warm-up
    assert all(a >= b for a, b in zip(got[1:-1], got[2:], strict=True))


def test_adam_warmup_shrinks_the_first_step(digits):
    """Adam's first step moves every parameter with a gradient by lr (m / sqrt(v) = sign(g));
    with ``warmup=W`` it moves them by lr / W, and the schedule reaches lr at step W."""
    net, (x, y) = digits
    data = (x[:32], y[:32])
    before = _weights(net.graph)
    for warmup, expected in ((0, 1e-3), (10, 1e-4)):
        ft = copy.deepcopy(net)
        finetune(ft, data, max_steps=1, batch_size=32, optimizer="adam", lr=1e-3,
                 weight_decay=0.0, warmup=warmup, progress=False)
        delta = np.abs(_weights(ft.graph) - before)
        assert delta.max() == pytest.approx(expected, rel=1e-3), warmup
        assert (delta > 0.9 * expected).mean() > 0.5


def test_threshold_lr_scale(digits):
    """Adam's first step moves each threshold by ``lr * threshold_lr_scale`` and the weights
    by lr; scale 0 keeps the calibrated thresholds while the weights train."""
    net, (x, y) = digits
    data = (x[:32], y[:32])
    w0, th0 = _weights(net.graph), _thresholds(net.graph)
    for scale in (0.0, 0.1):
        ft = copy.deepcopy(net)
        finetune(ft, data, max_steps=1, batch_size=32, optimizer="adam", lr=1e-3,
                 weight_decay=0.0, threshold_lr_scale=scale, progress=False)
        assert np.abs(_weights(ft.graph) - w0).max() == pytest.approx(1e-3, rel=1e-3)
        dth = np.abs(_thresholds(ft.graph) - th0)
        if scale == 0:  # unchanged up to the float32 parameter's rounding
            assert dth.max() < 1e-6 * th0.max()
        else:
            assert dth.max() == pytest.approx(1e-4, rel=1e-3)
    # SGD: the same scale on the thresholds' step (no momentum yet at step 1)
    sgd = copy.deepcopy(net)
    finetune(sgd, data, max_steps=3, batch_size=32, lr=0.05, threshold_lr_scale=0.0,
             progress=False)
    np.testing.assert_allclose(_thresholds(sgd.graph), th0, rtol=1e-6)
    assert not np.array_equal(_weights(sgd.graph), w0)
    with pytest.raises(ValueError, match="threshold_lr_scale"):
        FinetuneConfig(threshold_lr_scale=-1.0)
    with pytest.raises(ValueError, match="warmup"):
        FinetuneConfig(warmup=1.5)


def _params(graph, attr: str) -> np.ndarray:
    return np.concatenate([np.asarray(getattr(op, attr), dtype=np.float64).ravel()
                           for pop in graph for e in pop.edges for op in e.ops
                           if getattr(op, attr) is not None])


def test_weight_lr_scale(digits):
    """Adam's first step moves the weights by ``lr * weight_lr_scale`` and the biases by lr;
    scale 0 freezes the weights exactly (no gradients) while biases and thresholds train."""
    net, (x, y) = digits
    data = (x[:32], y[:32])
    w0, b0, th0 = _params(net.graph, "weight"), _params(net.graph, "bias"), \
        _thresholds(net.graph)
    for scale in (0.0, 0.1):
        ft = copy.deepcopy(net)
        finetune(ft, data, max_steps=1, batch_size=32, optimizer="adam", lr=1e-3,
                 weight_decay=0.0, weight_lr_scale=scale, progress=False)
        dw = np.abs(_params(ft.graph, "weight") - w0)
        assert np.abs(_params(ft.graph, "bias") - b0).max() == pytest.approx(1e-3, rel=1e-3)
        assert np.abs(_thresholds(ft.graph) - th0).max() == pytest.approx(1e-3, rel=1e-3)
        if scale == 0:
            assert dw.max() == 0.0
        else:
            assert dw.max() == pytest.approx(1e-4, rel=1e-3)
    # SGD with frozen weights over several steps: weights unchanged, biases trained
    sgd = copy.deepcopy(net)
    finetune(sgd, data, max_steps=3, batch_size=32, lr=0.05, weight_lr_scale=0.0,
             progress=False)
    assert np.array_equal(_params(sgd.graph, "weight"), w0)
    assert not np.array_equal(_params(sgd.graph, "bias"), b0)
    with pytest.raises(ValueError, match="weight_lr_scale"):
        FinetuneConfig(weight_lr_scale=-0.5)


def test_best_label_tells_the_converted_network_from_trained_steps(digits):
    """Validation before training is step 0, "converted"; a mid-epoch winner is labelled by its
    step and the epochs done, not by ``best_epoch`` alone (0 for both)."""
    net, (x, y) = digits
    # 320 training images, batches of 40: 8 steps an epoch; validation every 2 steps
    opts = dict(val_fraction=0.2, batch_size=40, val_every=2, progress=False, epochs=1)

    def uphill(logits, labels):  # every step makes the network worse
        return -F.cross_entropy(logits, labels)

    h = finetune(copy.deepcopy(net), (x, y), loss_fn=uphill, lr=0.5, **opts)
    assert h["best_step"] == 0 and h["best_epoch"] == 0 and h["best"] == "converted"
    assert h["val_accuracy"][-1] < h["val_accuracy"][0]
    # a network the uphill steps damaged (no validation: the last step is kept) is one that
    # ordinary training is sure to improve, so a trained step wins and is labelled
    damaged = copy.deepcopy(net)
    finetune(damaged, (x, y), loss_fn=uphill, lr=0.5, max_steps=2, batch_size=40,
             progress=False)
    h = finetune(damaged, (x, y), lr=0.05, **opts)
    assert h["val_steps"] == [0, 2, 4, 6, 8]
    step = h["best_step"]
    assert step > 0 and h["val_accuracy"][step // 2] > h["val_accuracy"][0]
    assert h["best"] == f"step {step} (epoch {step / 8:.2f})"


def test_cli_passes_schedule_mixing_and_averaging(tmp_path):
    parser = argparse.ArgumentParser(prog="spikeconverter")
    add_finetune_parser(parser.add_subparsers(dest="command", required=True))
    common = ["finetune", "net.snn", "-d", "train", "-o", str(tmp_path / "o.snn")]
    cfg = _config(parser.parse_args(common))
    assert cfg.warmup == 0 and cfg.threshold_lr_scale == 1.0 and cfg.weight_lr_scale == 1.0
    cfg = _config(parser.parse_args(common + ["--warmup", "20", "--threshold-lr-scale", "0.1",
                                              "--weight-lr-scale", "0"]))
    assert cfg.warmup == 20 and cfg.threshold_lr_scale == 0.1 and cfg.weight_lr_scale == 0.0
    assert cfg.mixup is None and cfg.mixup_kind == "mixup" and cfg.swa_from is None
    cfg = _config(parser.parse_args(common + ["--mixup", "1", "--mixup-kind", "cutmix",
                                              "--swa-from", "50"]))
    assert cfg.mixup == 1.0 and cfg.mixup_kind == "cutmix" and cfg.swa_from == 50
    with pytest.raises(ValueError, match="either ema"):
        _config(parser.parse_args(common + ["--swa-from", "50", "--ema", "0.9"]))
    assert parser.parse_args(common).feature_weight == 0.0
    args = parser.parse_args(common + ["--feature-weight", "5"])
    assert args.feature_weight == 5.0
    with pytest.raises(ValueError, match="--feature-weight .* --distill MODEL"):
        run_finetune(args)  # refused before net.snn (which does not exist) is read
    ann = torch.nn.Linear(2, 2)
    cfg = with_teacher(_config(args), args, ann)
    assert cfg.feature_weight == 5.0 and cfg.teacher is ann and cfg.select_on == "accuracy"
    args = parser.parse_args(common + ["--select-on", "agreement"])
    assert with_teacher(_config(args), args, ann).select_on == "agreement"
