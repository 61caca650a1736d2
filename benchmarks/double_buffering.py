"""Double-buffered vs single-banked iLIF: a stream of N CIFAR-10 test images through ResNet-20.

    PYTHONPATH=src python benchmarks/double_buffering.py [N] [T] [--lava N_LAVA]

Converts the shared CIFAR-10 ResNet-20 (256 training images for calibration, default
settings) once per option and streams the same N test images through the Norse network step by
step on one clock (:meth:`SpikingNetwork.stream`): prints, per option, the latency, the period P,
the steps the stream took (counted), ``latency + (N - 1) * P``, whether the logits equal the
other option's bit for bit and the batch mode's, top-1 on the N images, wall time and the load.
With ``--lava N_LAVA`` it also runs the first N_LAVA images through the Lava float network
(unbatched graph: a stream). Results are appended to ``benchmarks/results/double_buffering.jsonl``
as they come.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

import spikeconverter as sc
from spikeconverter.data import calibration_batch, load_dataset, resolve_normalization
from spikeconverter.modelspec import load_model

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
OUT = Path(__file__).resolve().parent / "results" / "double_buffering.jsonl"


def _write(row: dict) -> None:
    row["load"] = os.getloadavg()
    print(json.dumps(row), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as f:
        f.write(json.dumps(row) + "\n")


def main(n: int, T: int, n_lava: int) -> None:
    norm = resolve_normalization("imagenet")
    model = load_model("cifar_resnet20", SHARED / "models" / "cifar10-resnet-akamaster"
                       / "resnet20-12fca82f.th")
    calib = calibration_batch(load_dataset(SHARED / "data" / "cifar10" / "train",
                                           normalization=norm), 256)
    test = load_dataset(SHARED / "data" / "cifar10" / "test", normalization=norm, limit=n)
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.tensor([test[i][1] for i in range(len(test))])
    logits = {}
    for db in (False, True):
        net = sc.convert(model, calib, T=T, progress=False, double_buffered=db,
                         dtype=torch.float64)  # float64: exact, bit-for-bit comparisons
        start = time.perf_counter()
        out = net.stream(x, progress=True)
        wall = time.perf_counter() - start
        s = dict(net.stats)
        logits[db] = out
        batch = net(x)
        _write({"option": "double" if db else "single", "N": n, "T": T, "backend": "norse",
                "latency_steps": s["latency_steps"], "period": s["steps_per_sample"],
                "steps_simulated": s["steps_simulated"],
                "latency_plus_(N-1)P": s["latency_steps"] + (n - 1) * s["steps_per_sample"],
                "max_abs_diff_vs_batch_mode": float((out - batch).abs().max()),
                "top1": int((out.argmax(1) == y).sum()), "wall_s": round(wall, 1)})
    _write({"logits_equal_bit_for_bit": bool(torch.equal(logits[False], logits[True]))})
    if n_lava:
        lava_logits = {}
        for db in (False, True):
            lnet = sc.convert(model, calib, T=T, progress=False, backend="lava",
                              double_buffered=db)
            start = time.perf_counter()
            lava_logits[db] = lnet.run(x[:n_lava], batch_size=1, progress=True)
            s = lnet.stats
            _write({"option": "double" if db else "single", "N": n_lava, "T": T,
                    "backend": "lava-float", "latency_steps": s["latency_steps"],
                    "period": s["steps_per_sample"], "steps_simulated": s["steps_simulated"],
                    "wall_s": round(time.perf_counter() - start, 1)})
        _write({"lava_logits_equal_bit_for_bit":
                bool((lava_logits[False] == lava_logits[True]).all())})


if __name__ == "__main__":
    args = sys.argv[1:]
    n_lava = 0
    if "--lava" in args:
        i = args.index("--lava")
        n_lava = int(args[i + 1])
        del args[i:i + 2]
    main(int(args[0]) if args else 100, int(args[1]) if len(args) > 1 else 8, n_lava)
