"""A whole test set in Lava: accuracy and agreement with the Norse network, written as it goes.

Used by ``spikeconverter run-lava``. The Lava network runs batched
(:meth:`~spikeconverter.converters.to_lava.network.LavaNetwork.iter_run`); for every window of
samples that leaves the simulator, the Norse network's predictions of the same samples are
computed and a row per sample is appended to the CSV file (flushed), so an interrupted run
keeps what it reached. A tqdm bar shows images/s and the ETA.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["LAVA_CSV_FIELDS", "run_test_set"]

#: Columns of the per-image CSV.
LAVA_CSV_FIELDS = ("index", "label", "lava", "norse", "lava_logit_max")


def run_test_set(lnet: Any, norse: Any, images: torch.Tensor, labels: list[int], *,
                 fixed_point: bool, batch_size: int | None = None,
                 csv_path: str | os.PathLike | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Run ``images`` through ``lnet`` in Lava and ``norse``; return the summary.

    Parameters
    ----------
    lnet : LavaNetwork
    norse : SpikingNetwork
        The same converted network in Norse (its predictions are the reference).
    images : torch.Tensor
        ``(N, *input_shape)``, normalised as for the conversion.
    labels : list of int
    fixed_point : bool
    batch_size : int, optional
        Lava batch (default: the library default).
    csv_path : path, optional
        Per-image rows (:data:`LAVA_CSV_FIELDS`), appended and flushed window by window.

    Returns
    -------
    dict
        ``images``, ``correct``, ``accuracy`` (%), ``agree`` and ``agreement`` (% of images
        where Lava's top-1 equals Norse's), ``norse_accuracy`` (%), ``saturations`` (fixed
        point), ``seconds``, ``images_per_s``, ``batch_size``.
    """
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"{n} images but {len(labels)} labels")
    handle = open(csv_path, "w", newline="") if csv_path is not None else None  # noqa: SIM115
    start = time.perf_counter()
    correct = agree = norse_ok = done = 0
    try:
        writer = csv.writer(handle) if handle else None
        if writer:
            writer.writerow(LAVA_CSV_FIELDS)
        with tqdm(total=n, desc="lava " + ("fixed" if fixed_point else "float"), unit="img",
                  disable=not progress) as bar:
            for first, logits in lnet.iter_run(images, fixed_point, batch_size=batch_size):
                idx = range(first, first + len(logits))
                with torch.no_grad():
                    ref = norse(images[first:first + len(logits)]).argmax(1).tolist()
                pred = np.asarray(logits).argmax(1).tolist()
                y = [labels[i] for i in idx]
                correct += sum(p == t for p, t in zip(pred, y, strict=True))
                norse_ok += sum(r == t for r, t in zip(ref, y, strict=True))
                agree += sum(p == r for p, r in zip(pred, ref, strict=True))
                done += len(pred)
                if writer:
                    writer.writerows([i, t, p, r, f"{float(np.max(v)):.6g}"]
                                     for i, t, p, r, v in zip(idx, y, pred, ref, logits,
                                                              strict=True))
                    handle.flush()
                bar.update(len(pred))
                bar.set_postfix(acc=f"{100 * correct / done:.1f}%",
                                agree=f"{100 * agree / done:.1f}%")
    finally:
        if handle:
            handle.close()
    seconds = time.perf_counter() - start
    stats = lnet.stats or {}
    return {"images": n, "correct": correct, "accuracy": 100.0 * correct / n, "agree": agree,
            "agreement": 100.0 * agree / n, "norse_accuracy": 100.0 * norse_ok / n,
            "saturations": stats.get("saturations") if fixed_point else None,
            "seconds": seconds, "images_per_s": n / seconds,
            "batch_size": stats.get("batch_size"),
            "csv": None if csv_path is None else str(Path(csv_path))}
