"""The embedded demo (``spikeconverter demo``, ``make demo``): train, convert, compare, plot.

Trains :func:`~spikeconverter.models.small_cnn` on scikit-learn's bundled 8x8 digits (1,797
images, no download) for a few seconds, converts it to iLIF neurons at T = 2..16, compares the
SNN to the ANN and to a rate-coded IF baseline, runs a few samples in the Lava simulator (float
and fixed point) when the Lava backend is available, and writes the figures to a folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["DEMO_FILES", "DigitsData", "load_digits_data", "run_demo", "train_classifier"]

#: The files :func:`run_demo` writes into its folder.
DEMO_FILES = ("results.csv", "accuracy.png", "synops.png", "conversion_error.png", "raster.png")

DEMO_T = (2, 3, 4, 6, 8, 12, 16)
DEMO_RATE_STEPS = (2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class DigitsData:
    """Digits split into train/test tensors ``(N, 1, 8, 8)``, normalised with train statistics."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: float
    std: float


def load_digits_data(test_fraction: float = 0.2, seed: int = 0) -> DigitsData:
    """scikit-learn's digits, shuffled with ``seed`` and split (stratified)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=test_fraction, random_state=seed,
                                          stratify=d.target)
    mean, std = float(xtr.mean()), float(xtr.std())

    def tens(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((a - mean) / std).unsqueeze(1)

    return DigitsData(tens(xtr), torch.from_numpy(ytr).long(), tens(xte),
                      torch.from_numpy(yte).long(), mean, std)


def train_classifier(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 30, lr: float = 3e-3,
    batch_size: int = 64, seed: int = 0,
) -> nn.Module:
    """Plain Adam + cross-entropy training (seeded); returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0], batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    return model.eval()


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * float((pred == y).float().mean())


def run_demo(
    out_dir: str | Path = "out/demo",
    *,
    epochs: int = 30,
    T_values: tuple[int, ...] = DEMO_T,
    rate_steps: tuple[int, ...] = DEMO_RATE_STEPS,
    lava_samples: int = 3,
    seed: int = 0,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Run the demo; returns the numbers it printed and the files it wrote."""
    from spikeconverter.baselines import RateNetwork, rate_thresholds
    from spikeconverter.converters import convert
    from spikeconverter.evaluation import LABELS
    from spikeconverter.models import get_model
    from spikeconverter.plotting import (
        plot_accuracy,
        plot_conversion_error,
        plot_raster,
        plot_synops,
    )
    from spikeconverter.reporting import format_table, write_csv

    out = Path(out_dir)
    t_start = time.perf_counter()
    torch.manual_seed(seed)
    data = load_digits_data(seed=seed)
    log(f"digits: {len(data.y_train)} training and {len(data.y_test)} test images, 8x8 grey")
    model = get_model("small_cnn", in_channels=1, input_size=8, num_classes=10, width=16,
                      hidden=64)
    t0 = time.perf_counter()
    train_classifier(model, data.x_train, data.y_train, epochs=epochs, seed=seed)
    with torch.no_grad():
        ann_pred = model(data.x_test).argmax(1)
    ann_acc = _accuracy(ann_pred, data.y_test)
    log(f"trained small_cnn in {time.perf_counter() - t0:.1f} s: ANN test accuracy "
        f"{ann_acc:.2f}%")
    files: dict[str, Path] = {}
    result: dict[str, Any] = {"ann_top1": ann_acc, "files": files}

    calib = data.x_train[:256]
    rows = []
    ilif_acc, ilif_ops = {}, {}
    raster_net = None
    for T in T_values:
        net = convert(model, calib, T=T, progress=False)
        pred = net(data.x_test).argmax(1)
        ilif_acc[T] = _accuracy(pred, data.y_test)
        ilif_ops[T] = float(net.stats["synaptic_ops_per_sample"])
        rows.append({"method": "iLIF", "T": T, "top1": ilif_acc[T],
                     "agreement": _accuracy(pred, ann_pred), "synops_per_image": ilif_ops[T],
                     "latency_steps": net.stats["latency_steps"]})
        if T == 4:
            raster_net = net
    from spikeconverter.converters import capture

    graph = capture(model, calib[:2])
    lam = rate_thresholds(graph, calib, mode="percentile")
    rate = RateNetwork(graph, lam, "soft_reset").run(data.x_test, rate_steps)
    rate_acc, rate_ops = {}, {}
    for t in rate.steps:
        pred = rate.logits[t].argmax(1)
        rate_acc[t] = _accuracy(pred, data.y_test)
        rate_ops[t] = rate.synops[t] / rate.batch
        rows.append({"method": "rate (soft reset)", "T": t, "top1": rate_acc[t],
                     "agreement": _accuracy(pred, ann_pred), "synops_per_image": rate_ops[t],
                     "latency_steps": None})
    cols = ["method", "T", "top1", "agreement", "synops_per_image", "latency_steps"]
    log(f"\nANN {ann_acc:.2f}% vs SNN (accuracy and agreement with the ANN in %):")
    log(format_table(rows, cols))
    result["rows"] = rows
    files["csv"] = write_csv(out / "results.csv", rows, cols)

    result["lava"] = _lava_part(model, calib, data, ann_pred, lava_samples, log)

    files["accuracy"] = plot_accuracy(
        {LABELS["iLIF"]: ilif_acc, LABELS["soft_reset"]: rate_acc}, out / "accuracy.png",
        ann=ann_acc, title="digits: accuracy vs time steps")
    files["synops"] = plot_synops(
        {LABELS["iLIF"]: ilif_ops, LABELS["soft_reset"]: rate_ops}, out / "synops.png",
        ann_macs=float(raster_net.stats["ann_macs_per_sample"]) if raster_net else None,
        title="digits: synaptic operations vs time steps")
    files["conversion_error"] = plot_conversion_error(out / "conversion_error.png", T=6)["path"]
    if raster_net is not None:
        files["raster"] = _raster(raster_net, data.x_test[:1], out / "raster.png", plot_raster)
    elapsed = time.perf_counter() - t_start
    names = ", ".join(p.name for p in files.values())
    log(f"\nwrote {len(files)} files to {out.resolve()}/ ({names}) in {elapsed:.0f} s")
    result["seconds"] = elapsed
    return result


def _raster(net: Any, x: torch.Tensor, path: Path, plot_raster: Callable) -> Path:
    """Spikes of the second hidden layer for one image, with its pipeline windows."""
    g, s = net.graph, net.schedule
    relus = [p.name for p in g if p.kind == "relu"]
    name = relus[1] if len(relus) > 1 else relus[0]
    net.record = True
    try:
        net(x)
    finally:
        net.record = False
    train = net.spikes[name][:, 0].reshape(net.spikes[name].shape[0], -1)
    off, acc, T = s.offset[name], s.t_acc[name], g[name].T
    gen = s.generate_start(name)
    full = torch.zeros(gen + T + 2, train.shape[1])
    full[gen : gen + T] = train
    windows = [(off, off + acc, f"accumulate ({acc})"), (gen, gen + T, f"generate (T={T})")]
    return plot_raster(full[:, :48], path, windows=windows,
                       title=f"layer {name!r}: spikes of one image (first 48 neurons)")


def _lava_part(model: nn.Module, calib: torch.Tensor, data: DigitsData, ann_pred: torch.Tensor,
               n: int, log: Callable[[str], Any]) -> dict[str, Any]:
    """A few test images in Lava, float and fixed point; skipped while the backend is missing."""
    from spikeconverter.converters import convert

    if n <= 0:
        return {"status": "skipped"}
    try:
        lnet = convert(model, calib, T=4, backend="lava", progress=False)
    except NotImplementedError as e:
        log(f"\nLava: not available yet ({e}); the Lava part of the demo is skipped")
        return {"status": "unavailable", "reason": str(e)}
    x, y = data.x_test[:n], data.y_test[:n]
    out: dict[str, Any] = {"status": "ran", "labels": y.tolist(), "ann": ann_pred[:n].tolist()}
    for fixed in (False, True):
        logits = np.asarray(lnet.run(x, fixed_point=fixed))
        out["fixed" if fixed else "float"] = logits.argmax(1).tolist()
    log(f"\nLava on {n} test images: labels {out['labels']}, ANN {out['ann']}, "
        f"Lava float {out['float']}, Lava fixed point {out['fixed']}")
    return out
