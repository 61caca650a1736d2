"""The embedded demo (``spikeconverter demo``, ``make demo``): load, convert, compare, plot.

Loads the pretrained :func:`~spikeconverter.models.small_cnn` that ships with the package
(:data:`DEMO_WEIGHTS`, trained on scikit-learn's bundled 8x8 digits: 1,797 images, no download),
converts it to iLIF neurons at T = 2..16, compares the SNN to the ANN and to a rate-coded IF
baseline, runs a few samples in the Lava simulator (float and fixed point) when the Lava backend
is available, and writes the figures to a folder. ``epochs=N`` trains the CNN from scratch
instead.

How the shipped weights were made (``python benchmarks/train_demo_weights.py``, which calls
:func:`train_demo_weights`): :func:`load_digits_data` (stratified 80/20 split, seed 0; 1,437
training and 360 test images, normalised with the training mean and std), 30 epochs of Adam
(lr 3e-3, cosine schedule, batch 64, seed 0) with cross-entropy, CPU, float32. The file holds the
``state_dict`` and a ``meta`` dict with these settings and the measured test accuracy (99.44 %,
358/360), which the demo prints; it is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "DEMO_FILES",
    "DEMO_MODEL",
    "DEMO_WEIGHTS",
    "DigitsData",
    "demo_model",
    "load_digits_data",
    "run_demo",
    "train_classifier",
    "train_demo_weights",
]

#: The files :func:`run_demo` writes into its folder.
DEMO_FILES = ("results.csv", "accuracy.png", "synops.png", "conversion_error.png", "raster.png")

DEMO_T = (2, 3, 4, 6, 8, 12, 16)
DEMO_RATE_STEPS = (2, 4, 8, 16, 32, 64, 128, 256)
#: The demo's model: :func:`~spikeconverter.models.small_cnn` with these arguments.
DEMO_MODEL: dict[str, Any] = {"in_channels": 1, "input_size": 8, "num_classes": 10, "width": 16,
                              "hidden": 64}
#: The pretrained weights, package data of :mod:`spikeconverter.models`.
DEMO_WEIGHTS = "small_cnn_digits.pt"
DEMO_TRAINING: dict[str, Any] = {"epochs": 30, "lr": 3e-3, "batch_size": 64, "seed": 0}


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


def demo_model(weights: str | Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The demo's small CNN with pretrained weights, in eval mode, and the weights' ``meta``.

    Parameters
    ----------
    weights : str or Path, optional
        A file written by :func:`train_demo_weights`; default: the one shipped in the package.

    Raises
    ------
    FileNotFoundError
        The file is missing (e.g. an install without package data).
    ValueError
        The file does not hold a ``state_dict`` of the demo model.
    """
    from spikeconverter.models import get_model

    if weights is None:
        ref = resources.files("spikeconverter.models") / DEMO_WEIGHTS
        if not ref.is_file():
            raise FileNotFoundError(f"the demo's pretrained weights {DEMO_WEIGHTS!r} are not in "
                                    "this installation; reinstall the package, or run the demo "
                                    "with --epochs N to train the model instead")
        with resources.as_file(ref) as path:
            blob = torch.load(path, map_location="cpu", weights_only=True)
    else:
        blob = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise ValueError(f"{weights or DEMO_WEIGHTS!s} is not a demo weights file (a dict with "
                         "'state_dict' and 'meta', as train_demo_weights writes)")
    model = get_model("small_cnn", **DEMO_MODEL)
    model.load_state_dict(blob["state_dict"])
    return model.eval(), dict(blob.get("meta", {}))


def train_demo_weights(
    path: str | Path | None = None, *, log: Callable[[str], Any] = print, **training: Any
) -> dict[str, Any]:
    """Train the demo's CNN on the digits and save its weights (how :data:`DEMO_WEIGHTS` is made).

    Parameters
    ----------
    path : str or Path, optional
        Where to write ``{"state_dict", "meta"}``; nothing is written when ``None``.
    log : callable
        Receives one progress line.
    **training
        Overrides of :data:`DEMO_TRAINING` (``epochs``, ``lr``, ``batch_size``, ``seed``).

    Returns
    -------
    dict
        The ``meta`` saved with the weights: data, training settings, test accuracy.
    """
    from spikeconverter.atomic import atomic_path
    from spikeconverter.models import get_model

    unknown = sorted(set(training) - set(DEMO_TRAINING))
    if unknown:
        raise ValueError(f"unknown training settings {unknown}; known: {sorted(DEMO_TRAINING)}")
    cfg = {**DEMO_TRAINING, **training}
    torch.manual_seed(cfg["seed"])
    data = load_digits_data(seed=cfg["seed"])
    model = get_model("small_cnn", **DEMO_MODEL)
    t0 = time.perf_counter()
    train_classifier(model, data.x_train, data.y_train, **cfg)
    with torch.no_grad():
        correct = int((model(data.x_test).argmax(1) == data.y_test).sum())
    meta = {
        "data": "sklearn.datasets.load_digits, stratified 80/20 split (load_digits_data, seed "
                f"{cfg['seed']}), normalised with the training mean {data.mean:.6f} and std "
                f"{data.std:.6f}",
        "train_images": len(data.y_train), "test_images": len(data.y_test),
        "optimizer": "Adam, cosine learning-rate schedule, cross-entropy", **cfg,
        "test_correct": correct, "test_top1": 100.0 * correct / len(data.y_test),
        "torch": str(torch.__version__),
    }
    log(f"trained small_cnn for {cfg['epochs']} epochs in {time.perf_counter() - t0:.1f} s: "
        f"test accuracy {meta['test_top1']:.2f}% ({correct}/{len(data.y_test)})")
    if path is not None:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        with atomic_path(path) as tmp:
            torch.save({"state_dict": state, "meta": meta}, tmp)
    return meta


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * float((pred == y).float().mean())


def run_demo(
    out_dir: str | Path = "out/demo",
    *,
    epochs: int | None = None,
    T_values: tuple[int, ...] = DEMO_T,
    rate_steps: tuple[int, ...] = DEMO_RATE_STEPS,
    lava_samples: int = 3,
    seed: int = 0,
    log: Callable[[str], Any] = print,
    device: torch.device | str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Run the demo; returns the numbers it printed and the files it wrote.

    Parameters
    ----------
    out_dir : str or Path
        Folder for ``results.csv`` and the figures.
    epochs : int, optional
        Train the CNN from scratch for this many epochs (seeded with ``seed``) instead of loading
        the shipped weights.
    T_values : tuple of int
        Spike-train lengths of the iLIF conversions.
    rate_steps : tuple of int
        Time steps at which the rate-coded baseline is read.
    lava_samples : int
        Test images run in the Lava simulator (0 skips Lava).
    seed : int
        Seed of the training (with ``epochs``); the data split is always the weights' (seed 0).
    log : callable
        Receives the progress lines and the results.
    device : torch.device or str, optional
        Where the ANN and the Norse networks run (default: the CPU; Lava always runs there).
    limit : int, optional
        Use only the first ``limit`` test images (of 360; the split is already shuffled).

    Raises
    ------
    ValueError
        A bad ``device`` or ``limit``, checked before any work.
    """
    from spikeconverter.devices import resolve_device

    dev = resolve_device(device)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
    threads = torch.get_num_threads()
    # The demo's tensors are tiny: a second intra-op thread gains little, and on a busy machine
    # its spin-waiting costs a lot (measured under a load of ~25 on 2 cores: 589 s with torch's
    # default 2 threads, 69 s with 1).
    torch.set_num_threads(1)
    try:
        return _run_demo(Path(out_dir), epochs, T_values, rate_steps, lava_samples, seed, log,
                         dev, limit)
    finally:
        torch.set_num_threads(threads)


def _run_demo(out: Path, epochs: int | None, T_values: tuple[int, ...],
              rate_steps: tuple[int, ...], lava_samples: int, seed: int,
              log: Callable[[str], Any], dev: torch.device,
              limit: int | None) -> dict[str, Any]:
    from spikeconverter.reporting import format_table, write_csv

    t_start = time.perf_counter()
    data = load_digits_data(seed=0)
    log(f"digits: {len(data.y_train)} training and {len(data.y_test)} test images, 8x8 grey"
        + (f"; the first {limit} test images used" if limit is not None else "")
        + (f"; on {dev}" if dev.type != "cpu" else ""))
    model = _ann(epochs, seed, data, log).to(dev)
    data = replace(data, x_train=data.x_train.to(dev), y_train=data.y_train.to(dev),
                   x_test=data.x_test[:limit].to(dev), y_test=data.y_test[:limit].to(dev))
    with torch.no_grad():
        ann_pred = model(data.x_test).argmax(1)
    ann_acc = _accuracy(ann_pred, data.y_test)
    log(f"ANN test accuracy {ann_acc:.2f}% ({int((ann_pred == data.y_test).sum())}/"
        f"{len(data.y_test)})")
    files: dict[str, Path] = {}
    result: dict[str, Any] = {"ann_top1": ann_acc, "files": files}
    calib = data.x_train[:256]
    ilif = _ilif_part(model, calib, data, ann_pred, T_values, log)
    rate = _rate_part(model, calib, data, ann_pred, rate_steps, log)
    rows = ilif["rows"] + rate["rows"]
    cols = ["method", "T", "top1", "agreement", "synops_per_image", "latency_steps"]
    log(f"\nANN {ann_acc:.2f}% vs SNN (accuracy and agreement with the ANN in %):")
    log(format_table(rows, cols))
    result["rows"] = rows
    files["csv"] = write_csv(out / "results.csv", rows, cols)
    result["lava"] = _lava_part(model, calib, data, ann_pred, lava_samples, log)
    files.update(_figures(out, ann_acc, ilif, rate, data, log))
    elapsed = time.perf_counter() - t_start
    names = ", ".join(p.name for p in files.values())
    log(f"\nwrote {len(files)} files to {out.resolve()}/ ({names}) in {elapsed:.0f} s")
    result["seconds"] = elapsed
    return result


def _ann(epochs: int | None, seed: int, data: DigitsData, log: Callable[[str], Any]) -> nn.Module:
    """The shipped pretrained CNN, or one trained from scratch for ``epochs``."""
    from spikeconverter.models import get_model

    if epochs is None:
        model, meta = demo_model()
        log(f"loaded the pretrained small_cnn ({DEMO_WEIGHTS}: {meta.get('epochs', '?')} epochs "
            "of Adam on the training split; `spikeconverter demo --epochs N` trains it here)")
        return model
    log(f"training small_cnn for {epochs} epochs (a few seconds per epoch on 2 cores) ...")
    torch.manual_seed(seed)
    model = get_model("small_cnn", **DEMO_MODEL)
    t0 = time.perf_counter()
    train_classifier(model, data.x_train, data.y_train, epochs=epochs, seed=seed)
    log(f"trained small_cnn in {time.perf_counter() - t0:.1f} s")
    return model


def _ilif_part(model: nn.Module, calib: torch.Tensor, data: DigitsData, ann_pred: torch.Tensor,
               T_values: tuple[int, ...], log: Callable[[str], Any]) -> dict[str, Any]:
    """Convert at every T and run the test set; one progress line per T."""
    from spikeconverter.converters import convert

    rows, acc, ops, latency, raster_net = [], {}, {}, {}, None
    log(f"iLIF: converting and running {len(data.y_test)} test images at T = "
        f"{', '.join(map(str, T_values))}")
    for T in T_values:
        t0 = time.perf_counter()
        net = convert(model, calib, T=T, progress=False, device=calib.device)
        with torch.no_grad():
            pred = net(data.x_test).argmax(1)
        acc[T] = _accuracy(pred, data.y_test)
        ops[T] = float(net.stats["synaptic_ops_per_sample"])
        latency[T] = int(net.stats["latency_steps"])
        rows.append({"method": "iLIF", "T": T, "top1": acc[T],
                     "agreement": _accuracy(pred, ann_pred), "synops_per_image": ops[T],
                     "latency_steps": net.stats["latency_steps"]})
        log(f"  T={T:<3d} top-1 {acc[T]:6.2f}%  latency {net.stats['latency_steps']} steps  "
            f"({time.perf_counter() - t0:.1f} s)")
        if T == 4:
            raster_net = net
    macs = float(raster_net.stats["ann_macs_per_sample"]) if raster_net is not None else None
    return {"rows": rows, "acc": acc, "ops": ops, "latency": latency, "raster_net": raster_net,
            "ann_macs": macs}


def _rate_part(model: nn.Module, calib: torch.Tensor, data: DigitsData, ann_pred: torch.Tensor,
               rate_steps: tuple[int, ...], log: Callable[[str], Any]) -> dict[str, Any]:
    """The soft-reset rate-coded baseline, read at every step count of ``rate_steps``."""
    from spikeconverter.baselines import RateNetwork, rate_thresholds
    from spikeconverter.converters import capture

    t0 = time.perf_counter()
    log(f"rate-coded IF baseline (soft reset): {max(rate_steps)} steps on "
        f"{len(data.y_test)} test images ...")
    graph = capture(model, calib[:2])
    lam = rate_thresholds(graph, calib, mode="percentile", device=calib.device)
    res = RateNetwork(graph, lam, "soft_reset", device=calib.device).run(data.x_test, rate_steps)
    rows, acc, ops = [], {}, {}
    for t in res.steps:
        pred = res.logits[t].argmax(1)
        acc[t] = _accuracy(pred, data.y_test)
        ops[t] = res.synops[t] / res.batch
        rows.append({"method": "rate (soft reset)", "T": t, "top1": acc[t],
                     "agreement": _accuracy(pred, ann_pred), "synops_per_image": ops[t],
                     "latency_steps": t})  # a rate code's latency is its step count
    log(f"  done in {time.perf_counter() - t0:.1f} s")
    return {"rows": rows, "acc": acc, "ops": ops, "latency": {t: t for t in res.steps}}


def _figures(out: Path, ann_acc: float, ilif: dict[str, Any], rate: dict[str, Any],
             data: DigitsData, log: Callable[[str], Any]) -> dict[str, Path]:
    """Accuracy, synaptic operations, conversion error and a raster, as PNG files."""
    from spikeconverter.evaluation import LABELS
    from spikeconverter.plotting import (
        plot_accuracy,
        plot_conversion_error,
        plot_raster,
        plot_synops,
    )

    t0 = time.perf_counter()
    log("\nplotting ...")
    files: dict[str, Path] = {}
    labels = {"iLIF": LABELS["iLIF"], "rate": LABELS["soft_reset"]}
    latency = {labels["iLIF"]: ilif["latency"], labels["rate"]: rate["latency"]}
    images = len(data.y_test)
    files["accuracy"] = plot_accuracy(
        {labels["iLIF"]: ilif["acc"], labels["rate"]: rate["acc"]}, out / "accuracy.png",
        ann=ann_acc, title="digits: accuracy", latency=latency, images=images)
    files["synops"] = plot_synops(
        {labels["iLIF"]: ilif["ops"], labels["rate"]: rate["ops"]}, out / "synops.png",
        ann_macs=ilif["ann_macs"], title="digits: synaptic operations", latency=latency,
        images=images)
    files["conversion_error"] = plot_conversion_error(out / "conversion_error.png", T=6)["path"]
    if ilif["raster_net"] is not None:
        files["raster"] = _raster(ilif["raster_net"], data.x_test[:1], out / "raster.png",
                                  plot_raster)
    log(f"  done in {time.perf_counter() - t0:.1f} s")
    return files


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
    train = net.spikes[name][:, 0].reshape(net.spikes[name].shape[0], -1).cpu()
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
    t0 = time.perf_counter()
    log(f"\nLava simulator: {n} test images at T=4, float then fixed point (starting the "
        "runtime takes a few seconds) ...")
    model, calib = model.cpu(), calib.cpu()  # Lava simulates on the CPU
    try:
        lnet = convert(model, calib, T=4, backend="lava", progress=False)
    except NotImplementedError as e:
        log(f"\nLava: not available yet ({e}); the Lava part of the demo is skipped")
        return {"status": "unavailable", "reason": str(e)}
    x, y = data.x_test[:n].cpu(), data.y_test[:n]
    out: dict[str, Any] = {"status": "ran", "labels": y.tolist(), "ann": ann_pred[:n].tolist()}
    for fixed in (False, True):
        logits = np.asarray(lnet.run(x, fixed_point=fixed))
        out["fixed" if fixed else "float"] = logits.argmax(1).tolist()
    log(f"Lava on {n} test images ({time.perf_counter() - t0:.1f} s): labels {out['labels']}, "
        f"ANN {out['ann']}, Lava float {out['float']}, Lava fixed point {out['fixed']}")
    return out
