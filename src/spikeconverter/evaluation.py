"""ANN vs iLIF SNN vs rate-coded baselines on one dataset: the numbers behind the CLI's report.

One row per (method, T): top-1 accuracy, agreement with the ANN's prediction, spikes and
synaptic operations per image, and the end-to-end latency in steps (for iLIF the schedule's
``latency_steps`` at that T, about ``depth * T``; for a rate-coded baseline T itself, the steps
it ran before its logits were read). The iLIF network is converted once per T (thresholds depend
on T); each baseline runs once up to its largest T and is read out at every checkpoint on the way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from spikeconverter.baselines import (
    DEFAULT_STEPS,
    RATE_METHODS,
    RateNetwork,
    rate_thresholds,
    spike_norm_thresholds,
)

__all__ = ["COLUMNS", "REPORT_FILES", "Evaluation", "check_model_input", "evaluate",
           "write_partial_report", "write_report"]

COLUMNS = ("method", "T", "top1", "agreement", "spikes_per_image", "synops_per_image",
           "latency_steps", "images")
"""Columns of the result rows and of ``results.csv`` (accuracies in %, latency in steps)."""
REPORT_FILES = ("results.csv", "results.json", "accuracy.png", "synops.png")
"""The files :func:`write_report` writes into its folder (checked before work by the CLI)."""
ILIF = "iLIF"
LABELS = {ILIF: "iLIF (SpikeConverter)", "hard_reset": "IF hard reset (Sengupta)",
          "soft_reset": "IF soft reset (RMP-SNN)",
          "threshold_shift": "IF threshold shift (Deng & Gu)"}


@dataclass
class Evaluation:
    """Result of :func:`evaluate`.

    Attributes
    ----------
    rows : list of dict
        One per method and T, keys :data:`COLUMNS` (accuracies in %).
    ann : dict
        ``top1`` (%), ``images``, ``macs_per_image``.
    meta : dict
        Settings and timings.
    layers : dict
        Per-T iLIF population stats of the last batch (firing rates, synaptic ops).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    ann: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    layers: dict[int, Any] = field(default_factory=dict)

    def curves(self, key: str) -> dict[str, dict[int, float]]:
        """``{label: {T: row[key]}}`` for plotting.

        Rows measured on fewer images than the ANN say so in their label (with the ANN's
        accuracy on those images). ``curves("latency_steps")`` is the latency of every point,
        the ``latency`` argument of :func:`~spikeconverter.plotting.plot_accuracy`.
        """
        out: dict[str, dict[int, float]] = {}
        for r in self.rows:
            if r.get(key) is None:
                continue
            label = LABELS.get(r["method"], r["method"])
            n = r.get("images")
            if n is not None and self.ann.get("images") not in (None, n):
                there = self.ann.get("top1_baseline_images")
                label += f" [{n} images" + (f", ANN {there:.1f}%]" if there is not None else "]")
            out.setdefault(label, {})[r["T"]] = r[key]
        return out


def check_model_input(model: nn.Module, x: torch.Tensor, what: str = "the data") -> torch.Tensor:
    """Run ``model`` on ``x``; a shape mismatch becomes a ValueError that says what to fix."""
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, AssertionError) as e:  # torchvision's ViT asserts its image size
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"the model does not accept {what}: inputs of shape {tuple(x.shape[1:])} fail with "
            f"'{first}'; check the image size, the number of channels (--channels, the "
            "normalisation preset) and the model"
        ) from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must return logits of shape (batch, classes), got {got}")
    return out


def _batches(loader: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for item in loader:
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise ValueError("evaluation data must yield (images, labels) batches")
        x, y = item[0], torch.as_tensor(item[1])
        if x.shape[0]:
            out.append((x, y))
    if not out:
        raise ValueError("the evaluation data is empty")
    return out


def _subset(batches: list[tuple[torch.Tensor, ...]], limit: int | None,
            seed: int = 0) -> list:
    """A seeded draw of ``limit`` samples from batches of aligned tensors, re-batched alike.

    Drawn rather than taken from the front: ImageFolder data comes sorted by class, and the
    first images would all be of one class.
    """
    if limit is None:
        return batches
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"baseline_limit must be an integer >= 1, got {limit!r}")
    columns = [torch.cat(c) for c in zip(*batches, strict=True)]
    n = columns[0].shape[0]
    if limit >= n:
        return batches
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    size = batches[0][0].shape[0]
    return [tuple(c[pick[i:i + size]] for c in columns) for i in range(0, limit, size)]


def evaluate(
    model: nn.Module,
    data: Any,
    calibration: Any,
    *,
    T_values: Sequence[int] = (4, 8, 16),
    baselines: Sequence[str] = tuple(RATE_METHODS),
    baseline_steps: Sequence[int] = DEFAULT_STEPS,
    baseline_limit: int | None = None,
    calibration_mode: str = "max",
    rounding: str = "nearest",
    threshold_norm: str = "percentile",
    percentile: float = 99.99,
    spike_norm_steps: int = 256,
    spike_norm_images: int = 32,
    progress: bool = True,
    log: Any = None,
    on_row: Callable[[Evaluation], Any] | None = None,
) -> Evaluation:
    """Evaluate the ANN, its iLIF conversion at each ``T`` and the rate baselines.

    Parameters
    ----------
    model : torch.nn.Module
        Trained classifier (put in eval mode here).
    data : iterable of (images, labels)
        E.g. a DataLoader; read once into memory.
    calibration : torch.Tensor or iterable
        Inputs for thresholds (iLIF calibration and the baselines' normalisation).
    T_values : sequence of int
        Spike-train lengths of the iLIF conversion.
    baselines : sequence of str
        Names from :data:`~spikeconverter.baselines.RATE_METHODS` (may be empty).
    baseline_steps : sequence of int
        Time steps at which the baselines are read out.
    baseline_limit : int, optional
        Run the baselines on a seeded draw of this many images (they need thousands of steps).
    calibration_mode, rounding : str
        iLIF conversion options (see :func:`spikeconverter.convert`).
    threshold_norm, percentile
        Baselines' threshold normalisation (see
        :func:`~spikeconverter.baselines.rate_thresholds`) of the soft-reset and
        threshold-shift baselines.
    spike_norm_steps, spike_norm_images : int
        The hard-reset baseline's thresholds come from its paper's spike-norm
        (:func:`~spikeconverter.baselines.spike_norm_thresholds`), balanced over this many
        steps on the first this many calibration inputs.
    progress : bool
        tqdm bars.
    log : callable, optional
        Called with progress lines (e.g. ``print``).
    on_row : callable, optional
        Called with the report after every new result (e.g. :func:`write_partial_report`), so
        an interrupted or failing run keeps what it measured.
    """
    from spikeconverter.baselines import ann_macs
    from spikeconverter.converters import capture, convert

    say = log or (lambda *_: None)
    unknown = [b for b in baselines if b not in RATE_METHODS]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {sorted(RATE_METHODS)}")
    if not T_values and not baselines:
        raise ValueError("nothing to evaluate: give some T values or baselines")
    model = model.eval()
    batches = _batches(data)
    n = sum(x.shape[0] for x, _ in batches)
    report = Evaluation(meta={
        "T_values": list(T_values), "baselines": list(baselines),
        "baseline_steps": sorted(baseline_steps), "calibration_mode": calibration_mode,
        "rounding": rounding, "threshold_norm": threshold_norm, "percentile": percentile,
        "images": n, "timings_s": {},
    })
    t0 = time.perf_counter()
    ann_pred, labels = [], []
    for x, y in batches:
        ann_pred.append(check_model_input(model, x).argmax(1))
        labels.append(y)
    correct = sum(int((p == y).sum()) for p, y in zip(ann_pred, labels, strict=True))
    graph = capture(model, batches[0][0][:2])
    report.ann = {"top1": 100.0 * correct / n, "images": n, "macs_per_image": ann_macs(graph)}
    report.meta["timings_s"]["ann"] = time.perf_counter() - t0
    say(f"ANN: top-1 {report.ann['top1']:.2f}% on {n} images")
    done = on_row or (lambda _report: None)

    for T in T_values:
        t0 = time.perf_counter()
        net = convert(model, calibration, T=T, calibration_mode=calibration_mode,
                      rounding=rounding, progress=False)
        ok = agree = 0
        spikes = synops = 0.0
        preds = []
        for (x, y), p in tqdm(list(zip(batches, ann_pred, strict=True)), disable=not progress,
                              desc=f"iLIF T={T}", leave=False):
            pred = net(x).argmax(1)
            preds.append(pred)
            ok += int((pred == y).sum())
            agree += int((pred == p).sum())
            spikes += float(net.stats["spikes"])
            synops += float(net.stats["synaptic_ops_per_sample"]) * x.shape[0]
        report.rows.append({
            "method": ILIF, "T": int(T), "top1": 100.0 * ok / n, "agreement": 100.0 * agree / n,
            "spikes_per_image": spikes / n, "synops_per_image": synops / n,
            "latency_steps": int(net.stats["latency_steps"]), "images": n,
            "predictions": torch.cat(preds),
        })
        report.layers[int(T)] = net.stats["populations"]
        report.meta["timings_s"][f"iLIF_T{T}"] = time.perf_counter() - t0
        say(f"iLIF T={T}: top-1 {report.rows[-1]['top1']:.2f}%, agreement "
            f"{report.rows[-1]['agreement']:.2f}%")
        done(report)

    if baselines:
        steps = sorted(set(int(t) for t in baseline_steps))
        sub = _subset([(x, y, p, i) for (x, _), y, p, i in
                       zip(batches, labels, ann_pred, _positions(batches), strict=True)],
                      baseline_limit)
        m = sum(x.shape[0] for x, *_ in sub)
        report.meta["baseline_images"] = m
        # the baselines' subset has its own ANN accuracy: compare them against that
        report.ann["top1_baseline_images"] = 100.0 * sum(
            int((p == y).sum()) for _, y, p, _ in sub) / m
        _ilif_on(report, sub, m)
        lam = rate_thresholds(graph, calibration, mode=threshold_norm, percentile=percentile)
        report.meta["baseline_thresholds"] = lam
        for method in baselines:
            t0 = time.perf_counter()
            if method == "hard_reset":
                norm = _first(calibration, spike_norm_images)
                report.meta["spike_norm"] = {"steps": spike_norm_steps, "images": len(norm)}
                net = RateNetwork(graph, spike_norm_thresholds(graph, norm, spike_norm_steps),
                                  method)
            else:
                net = RateNetwork(graph, lam, method)
            ok = dict.fromkeys(steps, 0)
            agree = dict.fromkeys(steps, 0)
            spikes = dict.fromkeys(steps, 0.0)
            synops = dict.fromkeys(steps, 0.0)
            # a batch of a deep network takes minutes over thousands of steps: the inner bar
            # counts steps, the outer one batches
            for x, y, p, _ in tqdm(sub, disable=not progress, desc=f"{method} ({m} images)"):
                res = net.run(x, steps, progress=progress)
                for t in steps:
                    pred = res.logits[t].argmax(1)
                    ok[t] += int((pred == y).sum())
                    agree[t] += int((pred == p).sum())
                    spikes[t] += sum(res.spikes[t].values())
                    synops[t] += res.synops[t]
            for t in steps:
                report.rows.append({
                    "method": method, "T": t, "top1": 100.0 * ok[t] / m,
                    "agreement": 100.0 * agree[t] / m, "spikes_per_image": spikes[t] / m,
                    # a rate-coded network reads its logits after t steps: t is its latency
                    "synops_per_image": synops[t] / m, "latency_steps": t, "images": m,
                })
            report.meta["timings_s"][method] = time.perf_counter() - t0
            best = max(steps, key=lambda t: ok[t])
            say(f"{method}: top-1 {100.0 * ok[best] / m:.2f}% at best (T={best}) on {m} images")
            done(report)
    for r in report.rows:
        r.pop("predictions", None)
    return report


def _positions(batches: list) -> list[torch.Tensor]:
    """Each sample's index in the whole data set, batch by batch."""
    out, start = [], 0
    for x, _ in batches:
        out.append(torch.arange(start, start + x.shape[0]))
        start += x.shape[0]
    return out


def _ilif_on(report: Evaluation, sub: list, m: int) -> None:
    """Give every iLIF row its top-1 on the baselines' images, so all methods compare on the
    same images (and drop the per-image predictions kept for that)."""
    idx = torch.cat([i for *_, i in sub])
    labels = torch.cat([y for _, y, _, _ in sub])
    for r in report.rows:
        pred = r.pop("predictions", None)
        if r["method"] == ILIF and pred is not None:
            r["top1_baseline_images"] = 100.0 * int((pred[idx] == labels).sum()) / m


def _first(calibration: Any, n: int) -> torch.Tensor:
    """The first ``n`` calibration inputs as one tensor."""
    from spikeconverter.data import iter_input_batches

    out, have = [], 0
    for x in iter_input_batches(calibration):
        out.append(x[: n - have])
        have += out[-1].shape[0]
        if have >= n:
            break
    return torch.cat(out)


def write_partial_report(report: Evaluation, out_dir: str | Path) -> dict[str, Path]:
    """``results.csv`` and ``results.json`` of the rows so far (atomically; plots come at the end
    from :func:`write_report`)."""
    from spikeconverter.reporting import write_csv, write_json

    out = Path(out_dir)
    # iLIF rows carry their per-image predictions until the baselines have compared on them
    rows = [{k: v for k, v in r.items() if k != "predictions"} for r in report.rows]
    return {
        "csv": write_csv(out / "results.csv", rows, COLUMNS),
        "json": write_json(out / "results.json", {
            "ann": report.ann, "rows": rows, "meta": report.meta,
            "ilif_layers": report.layers, "complete": False,
        }),
    }


def write_report(report: Evaluation, out_dir: str | Path, title: str = "") -> dict[str, Path]:
    """``results.csv``, ``results.json``, ``accuracy.png``, ``synops.png`` in ``out_dir``.

    Numbers in the CSV and JSON files are rounded to
    :data:`~spikeconverter.reporting.SIGNIFICANT_DIGITS` significant digits; the plots show
    every method against ``T`` and against its end-to-end latency in steps, with the number of
    test images in the title.
    """
    from spikeconverter.plotting import plot_accuracy, plot_synops
    from spikeconverter.reporting import write_csv, write_json

    out = Path(out_dir)
    files = {
        "csv": write_csv(out / "results.csv", report.rows, COLUMNS),
        "json": write_json(out / "results.json", {
            "ann": report.ann, "rows": report.rows, "meta": report.meta,
            "ilif_layers": report.layers, "complete": True,
        }),
    }
    name = f" ({title})" if title else ""
    images = report.ann.get("images")
    latency = report.curves("latency_steps")
    acc = report.curves("top1")
    if acc:
        files["accuracy_plot"] = plot_accuracy(
            acc, out / "accuracy.png", ann=report.ann["top1"], title=f"Accuracy{name}",
            latency=latency, images=images)
    ops = {k: v for k, v in report.curves("synops_per_image").items()
           if any(math.isfinite(x) for x in v.values())}
    if ops:
        files["synops_plot"] = plot_synops(
            ops, out / "synops.png", ann_macs=report.ann.get("macs_per_image"),
            title=f"Synaptic operations{name}", latency=latency, images=images)
    return files
