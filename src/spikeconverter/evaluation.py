"""ANN vs iLIF SNN vs rate-coded baselines on one dataset: the numbers behind the CLI's report.

One row per (method, T): top-1 accuracy, agreement with the ANN's prediction, spikes and
synaptic operations per image, and the end-to-end latency in steps (for iLIF the schedule's
``latency_steps`` at that T, about ``depth * T``; for a rate-coded baseline T itself, the steps
it ran before its logits were read). The iLIF network is converted once per T (thresholds depend
on T); each baseline runs once up to its largest T and is read out at every checkpoint on the way.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from spikeconverter.baselines import (
    DEFAULT_STEPS,
    RATE_METHODS,
    RateNetwork,
    rate_thresholds,
    spike_norm_thresholds,
)
from spikeconverter.devices import resolve_device
from spikeconverter.distributed import all_sum, broadcast_module, from_rank0, shard_of
from spikeconverter.reporting import write_json

__all__ = ["COLUMNS", "REPORT_FILES", "Evaluation", "check_model_input", "evaluate",
           "report_json", "write_partial_report", "write_report"]

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


def _xy(item: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(item, (tuple, list)) and len(item) >= 2):
        raise ValueError("evaluation data must yield (images, labels) batches")
    return item[0], torch.as_tensor(item[1])


def _loader(data: Any, indices: Sequence[int] | None) -> Any:
    """``data`` itself, or a DataLoader like it over the dataset items ``indices`` (its batch
    size and workers; the items stay in order)."""
    if indices is None:
        return data
    return DataLoader(Subset(data.dataset, list(indices)), batch_size=data.batch_size or 64,
                      num_workers=data.num_workers, collate_fn=data.collate_fn)


def _stream(data: Any, keep: torch.Tensor | None = None, shard: tuple[int, int] = (0, 1),
            dev: torch.device | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor,
                                                                 torch.Tensor]]:
    """``(images, labels, global indices)`` batches of this rank's part of ``data``, read
    through its DataLoader one batch at a time (memory stays bounded).

    ``shard = (rank, world)`` takes every ``world``-th item from ``rank`` on: no item twice and
    none padded in, so counts summed over the ranks are the single-process counts. ``keep``
    (a bool mask over the global indices) restricts the items; a DataLoader then reads only
    those.
    """
    rank, world = shard
    if isinstance(data, DataLoader):
        n = len(data.dataset)
        ids = torch.arange(rank, n, world)
        if keep is not None:
            ids = ids[keep[ids]]
        pos = 0
        for item in _loader(data, ids.tolist() if (world > 1 or keep is not None) else None):
            x, y = _xy(item)
            yield x.to(dev), y, ids[pos:pos + x.shape[0]]
            pos += x.shape[0]
        return
    if world > 1:
        raise ValueError("distributed evaluation needs a torch DataLoader over a Dataset "
                         f"(to shard it), got {type(data).__name__}")
    pos = 0
    for item in data:  # any iterable of (images, labels): filtered while read
        x, y = _xy(item)
        gid = torch.arange(pos, pos + x.shape[0])
        pos += x.shape[0]
        if keep is not None:
            sel = keep[gid]
            x, y, gid = x[sel], y[sel], gid[sel]
        if x.shape[0]:
            yield x.to(dev), y, gid


def _baseline_mask(n: int, limit: int | None, seed: int = 0) -> torch.Tensor | None:
    """A seeded draw of ``limit`` of the ``n`` images (a bool mask), ``None`` for all.

    Drawn rather than taken from the front: ImageFolder data comes sorted by class, and the
    first images would all be of one class.
    """
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"baseline_limit must be an integer >= 1, got {limit!r}")
    if limit >= n:
        return None
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[pick] = True
    return mask


@dataclass
class _Run:
    """What one evaluation run shares between its steps."""

    model: nn.Module
    data: Any
    calibration: Any
    report: Evaluation
    dev: torch.device
    shard: tuple[int, int]
    progress: bool
    say: Callable[..., Any]
    checkpoint: Path | None = None
    on_row: Callable[[Evaluation], Any] | None = None
    ann_pred: dict[int, torch.Tensor] = field(default_factory=dict)
    #: whether the ANN got each of this rank's images right, by global index
    ann_hit: dict[int, bool] = field(default_factory=dict)
    #: the baselines' images (a mask over the global indices; None: all), when baselines run
    keep: torch.Tensor | None = None

    def bar(self, desc: str, total: int | None = None, leave: bool = False) -> Any:
        """A progress bar counting images (rank 0 only)."""
        return tqdm(total=total, desc=desc, unit="img", leave=leave,
                    disable=not self.progress or self.shard[0] != 0)

    def stream(self, desc: str, keep: torch.Tensor | None = None, total: int | None = None,
               leave: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor,
                                                      torch.Tensor]]:
        """This rank's batches (see :func:`_stream`), counted image by image on a bar."""
        with self.bar(desc, total, leave) as bar:
            for x, y, gid in _stream(self.data, keep, self.shard, self.dev):
                yield x, y, gid
                bar.update(x.shape[0] * self.shard[1])  # every rank has about as many

    def ann(self, gid: torch.Tensor) -> torch.Tensor:
        """The ANN's predictions of the images ``gid``."""
        return torch.stack([self.ann_pred[int(i)] for i in gid])

    def save(self, complete: bool = False) -> None:
        """Rewrite the resume checkpoint (rank 0; exact numbers: resume compares them)."""
        if self.checkpoint is not None and self.shard[0] == 0:
            write_json(self.checkpoint, report_json(self.report, complete), digits=None)

    def row_done(self) -> None:
        """A new result: rows back in the order asked for, checkpoint, ``on_row`` (rank 0)."""
        order = [ILIF, *self.report.meta["baselines"]]
        self.report.rows.sort(key=lambda r: (order.index(r["method"]), r["T"]))
        self.save()
        if self.on_row is not None and self.shard[0] == 0:
            self.on_row(self.report)


def _ann_pass(run: _Run) -> Any:
    """ANN predictions of every image (kept by global index: they are small) and top-1."""
    correct = n = 0
    first = None
    for x, y, gid in run.stream("ANN", total=_size(run.data)):
        if x.shape[0] == 0:
            continue
        first = x if first is None else first
        pred = check_model_input(run.model, x).argmax(1).cpu()
        run.ann_pred.update(zip(gid.tolist(), pred, strict=True))
        run.ann_hit.update(zip(gid.tolist(), (pred == y).tolist(), strict=True))
        correct += int((pred == y).sum())
        n += x.shape[0]
    correct, n = (int(v) for v in all_sum([correct, n]))
    if n == 0:
        raise ValueError("the evaluation data is empty")
    return first, correct, n


def _size(data: Any) -> int | None:
    """The number of images of a DataLoader over a sized dataset (for the bars), else None."""
    try:
        return len(data.dataset)
    except (AttributeError, TypeError):
        return None


def _ilif_net(run: _Run, T: int, calibration_mode: str, rounding: str) -> Any:
    """The iLIF conversion at ``T``: converted on rank 0, its calibrated graph sent to all."""
    from spikeconverter.converters import convert
    from spikeconverter.converters.api import resolve_backend

    graph = from_rank0(lambda: convert(
        run.model, run.calibration, T=T, calibration_mode=calibration_mode, rounding=rounding,
        progress=False, device=run.dev).graph)
    return resolve_backend("norse")(graph).to(run.dev)


def _ilif_row(run: _Run, T: int, calibration_mode: str, rounding: str) -> None:
    net = _ilif_net(run, T, calibration_mode, rounding)
    # correct, agreement, spikes, synops, correct on the baselines' images
    c = [0] * 5
    n = run.report.ann["images"]
    for x, y, gid in run.stream(f"iLIF T={T}", total=n):
        pred = net(x).argmax(1).cpu()
        hit = pred == y
        c[0] += int(hit.sum())
        c[1] += int((pred == run.ann(gid)).sum())
        c[2] += int(net.stats["spikes"])
        c[3] += sum(int(p["synaptic_ops"]) for p in net.stats["populations"].values())
        c[4] += int(hit[run.keep[gid]].sum()) if run.keep is not None else int(hit.sum())
    ok, agree, spikes, synops, ok_sub = all_sum(c)
    row = {
        "method": ILIF, "T": int(T), "top1": 100.0 * ok / n, "agreement": 100.0 * agree / n,
        "spikes_per_image": spikes / n, "synops_per_image": synops / n,
        "latency_steps": int(net.stats["latency_steps"]), "images": n,
    }
    m = run.report.meta.get("baseline_images")
    if m is not None:  # every method compared on the same images too
        row["top1_baseline_images"] = 100.0 * ok_sub / m
    run.report.rows.append(row)
    run.report.layers[int(T)] = net.stats["populations"]
    run.say(f"iLIF T={T}: top-1 {row['top1']:.2f}%, agreement {row['agreement']:.2f}%")


def _baseline_net(run: _Run, method: str, graph: Any, lam: dict, spike_norm: dict) -> Any:
    """The rate-coded network of ``method``: the hard-reset baseline with its paper's
    spike-norm thresholds (computed on rank 0, sent to all), the others with ``lam``."""
    if method != "hard_reset":
        return RateNetwork(graph, lam, method, device=run.dev)
    norm = _first(run.calibration, spike_norm["images"])
    run.report.meta["spike_norm"] = {"steps": spike_norm["steps"], "images": len(norm)}
    th = from_rank0(lambda: spike_norm_thresholds(graph, norm, spike_norm["steps"],
                                                  device=run.dev))
    return RateNetwork(graph, th, method, device=run.dev)


def _baseline_rows(run: _Run, method: str, net: Any, steps: list[int]) -> None:
    counts = {t: [0.0] * 4 for t in steps}  # correct, agreement, spikes, synops
    m = run.report.meta["baseline_images"]
    # a batch of a deep network takes minutes over thousands of steps: the inner bar counts
    # steps, the outer one images
    for x, y, gid in run.stream(f"{method} ({m} images)", run.keep, total=m, leave=True):
        ann = run.ann(gid)
        res = net.run(x, steps, progress=run.progress and run.shard[0] == 0)
        for t in steps:
            pred = res.logits[t].argmax(1).cpu()
            c = counts[t]
            c[0] += int((pred == y).sum())
            c[1] += int((pred == ann).sum())
            c[2] += float(sum(res.spikes[t].values()))
            c[3] += float(res.synops[t])
    for t in steps:
        ok, agree, spikes, synops = all_sum(counts[t])
        run.report.rows.append({
            "method": method, "T": t, "top1": 100.0 * ok / m, "agreement": 100.0 * agree / m,
            # a rate-coded network reads its logits after t steps: t is its latency
            "spikes_per_image": spikes / m, "synops_per_image": synops / m,
            "latency_steps": t, "images": m,
        })
    best = max((r for r in run.report.rows if r["method"] == method), key=lambda r: r["top1"])
    run.say(f"{method}: top-1 {best['top1']:.2f}% at best (T={best['T']}) on {m} images")


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


#: settings a resumed evaluation must share with the run it continues
RESUME_KEYS = ("calibration_mode", "rounding", "threshold_norm", "percentile",
               "baseline_steps", "baseline_limit", "spike_norm_steps", "spike_norm_images",
               "images")


def _check_resumable(old: dict, report: Evaluation, checkpoint: Path) -> None:
    for key in RESUME_KEYS:
        if old["meta"].get(key) != report.meta.get(key):
            raise ValueError(f"cannot resume from {str(checkpoint)!r}: it was run with {key}="
                             f"{old['meta'].get(key)!r}, this run has {report.meta.get(key)!r}; "
                             "use the same options or another output folder")
    if old["ann"].get("top1") != report.ann.get("top1"):
        raise ValueError(f"cannot resume from {str(checkpoint)!r}: the ANN's accuracy there "
                         f"({old['ann'].get('top1')}%) differs from this run's "
                         f"({report.ann.get('top1')}%): another model or data")


def _reusable(row: dict, meta: dict) -> bool:
    """Whether a checkpoint's row is what this run would measure: an iLIF row at one of its
    T values that carries the top-1 on the baselines' images exactly when baselines run, or
    a row of one of its baselines."""
    if row["method"] == ILIF:
        return row["T"] in meta["T_values"] and (
            ("top1_baseline_images" in row) == bool(meta["baselines"]))
    return row["method"] in meta["baselines"]


def _resumed(report: Evaluation, checkpoint: Path | None, resume: bool) -> set:
    """``(method, T)`` already done by the run ``checkpoint`` holds (their rows are copied
    into ``report``); nothing unless ``resume``."""
    if not resume:
        return set()
    if checkpoint is None:
        raise ValueError("resume needs a checkpoint file (the CLI's --output folder)")
    if not checkpoint.is_file():
        return set()
    old = json.loads(checkpoint.read_text())
    _check_resumable(old, report, checkpoint)
    done = set()
    for r in old["rows"]:
        if _reusable(r, report.meta):
            report.rows.append(r)
            done.add((r["method"], r["T"] if r["method"] == ILIF else None))
    report.layers.update({int(k): v for k, v in old.get("ilif_layers", {}).items()
                          if (ILIF, int(k)) in done})
    for key in ("baseline_thresholds", "spike_norm"):
        if key in old["meta"] and any(m != ILIF for m, _ in done):
            report.meta[key] = old["meta"][key]
    return done


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
    device: torch.device | str | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
) -> Evaluation:
    """Evaluate the ANN, its iLIF conversion at each ``T`` and the rate baselines.

    The images are read batch by batch (memory stays bounded), once per T and baseline. Under
    ``torch.distributed`` (e.g. ``torchrun``) every rank evaluates its share of the images
    (every ``world``-th, none twice) and the counts are summed over the ranks, so the numbers
    are exactly the single-process ones; thresholds are computed on rank 0 and sent to all.
    A run resumed from its ``checkpoint`` gives exactly the rows of an uninterrupted one.

    Parameters
    ----------
    model : torch.nn.Module
        Trained classifier (put in eval mode, moved to ``device``).
    data : DataLoader or iterable of (images, labels)
        Read batch by batch (a DataLoader under torch.distributed, to shard it).
    calibration : torch.Tensor or iterable
        Inputs for thresholds (iLIF calibration and the baselines' normalisation).
    T_values : sequence of int
        Spike-train lengths of the iLIF conversion.
    baselines : sequence of str
        Names from :data:`~spikeconverter.baselines.RATE_METHODS` (may be empty).
    baseline_steps : sequence of int
        Time steps at which the baselines are read out.
    baseline_limit : int, optional
        Run the baselines on a seeded draw of this many images (they need thousands of steps);
        the iLIF rows then also give their top-1 on those images (``top1_baseline_images``).
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
        tqdm bars counting images (rank 0 only).
    log : callable, optional
        Called with progress lines (e.g. ``print``; rank 0 only).
    on_row : callable, optional
        Called (on rank 0) with the report after every new result (e.g.
        :func:`write_partial_report`), so an interrupted or failing run keeps what it measured.
    device : torch.device or str, optional
        Where the networks run (default: the CPU); checked first.
    checkpoint : str or Path, optional
        JSON file rewritten exactly (by rank 0) after the ANN, each T and each baseline.
    resume : bool
        Keep the rows ``checkpoint`` already holds (same settings and ANN accuracy required)
        and run only the rest.
    """
    from spikeconverter.baselines import ann_macs
    from spikeconverter.converters import capture

    dev = resolve_device(device)
    shard = shard_of()
    say = (log or (lambda *_: None)) if shard[0] == 0 else (lambda *_: None)
    unknown = [b for b in baselines if b not in RATE_METHODS]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {sorted(RATE_METHODS)}")
    if not T_values and not baselines:
        raise ValueError("nothing to evaluate: give some T values or baselines")
    report = Evaluation(meta={
        "T_values": list(T_values), "baselines": list(baselines),
        "baseline_steps": sorted(set(int(t) for t in baseline_steps)),
        "baseline_limit": baseline_limit, "calibration_mode": calibration_mode,
        "rounding": rounding, "threshold_norm": threshold_norm, "percentile": percentile,
        "spike_norm_steps": spike_norm_steps, "spike_norm_images": spike_norm_images,
        "timings_s": {}, "processes": shard[1],
    })
    model = broadcast_module(model.eval().to(dev))  # every rank: rank 0's weights
    run = _Run(model, data, calibration, report, dev, shard, progress, say,
               Path(checkpoint) if checkpoint is not None else None, on_row)
    t0 = time.perf_counter()
    first, correct, n = _ann_pass(run)
    graph = capture(run.model, first[:2])
    report.meta["images"] = n
    report.ann = {"top1": 100.0 * correct / n, "images": n, "macs_per_image": ann_macs(graph)}
    report.meta["timings_s"]["ann"] = time.perf_counter() - t0
    say(f"ANN: top-1 {report.ann['top1']:.2f}% on {n} images")
    if baselines:
        _draw_baseline_images(run, baseline_limit)
    done = _resumed(report, run.checkpoint, resume)
    run.save()
    if done:
        run.row_done()  # the partial report holds the resumed rows at once
    for T in T_values:
        if (ILIF, int(T)) in done:
            say(f"iLIF T={T}: done before ({run.checkpoint})")
            continue
        t0 = time.perf_counter()
        _ilif_row(run, int(T), calibration_mode, rounding)
        report.meta["timings_s"][f"iLIF_T{T}"] = time.perf_counter() - t0
        run.row_done()
    _run_baselines(run, graph, [b for b in baselines if (b, None) not in done],
                   threshold_norm, percentile,
                   {"steps": spike_norm_steps, "images": spike_norm_images})
    run.save(complete=True)
    return report


def _draw_baseline_images(run: _Run, limit: int | None) -> None:
    """The baselines' images (a seeded draw of ``limit``) and the ANN's top-1 on them."""
    report = run.report
    run.keep = _baseline_mask(report.ann["images"], limit)
    m = report.ann["images"] if run.keep is None else int(run.keep.sum())
    report.meta["baseline_images"] = m
    # the baselines' subset has its own ANN accuracy: compare them against that (from the
    # ANN pass: no second read of the images)
    ok = sum(hit for i, hit in run.ann_hit.items() if run.keep is None or bool(run.keep[i]))
    report.ann["top1_baseline_images"] = 100.0 * all_sum([ok])[0] / m


def _run_baselines(run: _Run, graph: Any, methods: list[str], threshold_norm: str,
                   percentile: float, spike_norm: dict) -> None:
    """Each rate baseline on the (drawn) images, its rows saved as soon as it is done."""
    if not methods:
        return
    report = run.report
    lam = from_rank0(lambda: rate_thresholds(graph, run.calibration, mode=threshold_norm,
                                             percentile=percentile, device=run.dev))
    report.meta["baseline_thresholds"] = lam
    for method in methods:
        t0 = time.perf_counter()
        net = _baseline_net(run, method, graph, lam, spike_norm)
        _baseline_rows(run, method, net, report.meta["baseline_steps"])
        report.meta["timings_s"][method] = time.perf_counter() - t0
        run.row_done()


def report_json(report: Evaluation, complete: bool = True) -> dict[str, Any]:
    """The plain-data form of ``report`` (``results.json``, the resume checkpoint)."""
    return {"ann": report.ann, "rows": report.rows, "meta": report.meta,
            "ilif_layers": report.layers, "complete": complete}


def write_partial_report(report: Evaluation, out_dir: str | Path) -> dict[str, Path]:
    """``results.csv`` and ``results.json`` of the rows so far (atomically; plots come at the end
    from :func:`write_report`)."""
    from spikeconverter.reporting import write_csv

    out = Path(out_dir)
    return {
        "csv": write_csv(out / "results.csv", report.rows, COLUMNS),
        "json": write_json(out / "results.json", report_json(report, complete=False)),
    }


def write_report(report: Evaluation, out_dir: str | Path, title: str = "") -> dict[str, Path]:
    """``results.csv``, ``results.json``, ``accuracy.png``, ``synops.png`` in ``out_dir``.

    Numbers in the CSV and JSON files are rounded to
    :data:`~spikeconverter.reporting.SIGNIFICANT_DIGITS` significant digits; the plots show
    every method against ``T`` and against its end-to-end latency in steps, with the number of
    test images in the title.
    """
    from spikeconverter.plotting import plot_accuracy, plot_synops
    from spikeconverter.reporting import write_csv

    out = Path(out_dir)
    files = {
        "csv": write_csv(out / "results.csv", report.rows, COLUMNS),
        "json": write_json(out / "results.json", report_json(report)),
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
