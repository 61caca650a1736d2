"""Loihi 2 hardware report of the shared CIFAR-10 ResNets (T = 8), single- and double-banked.

    PYTHONPATH=src python benchmarks/loihi2_report.py cifar_resnet20   # or cifar_resnet32

Converts with 256 training images, uses the Lava schedule, counts spikes on 128 test images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import spikeconverter as sc
from spikeconverter.converters.hardware import (
    format_hardware_report,
    hardware_report,
    measure_activity,
)
from spikeconverter.converters.lava_backend import lava_schedule
from spikeconverter.data import calibration_batch, load_dataset, resolve_normalization
from spikeconverter.modelspec import load_model

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
CHECKPOINTS = {"cifar_resnet20": "resnet20-12fca82f.th", "cifar_resnet32": "resnet32-d509ac18.th"}


def main(arch: str) -> None:
    norm = resolve_normalization("imagenet")
    model = load_model(arch, SHARED / "models" / "cifar10-resnet-akamaster" / CHECKPOINTS[arch])
    calib = calibration_batch(load_dataset(SHARED / "data" / "cifar10" / "train",
                                           normalization=norm), 256)
    test = load_dataset(SHARED / "data" / "cifar10" / "test", normalization=norm, limit=128)
    x = torch.stack([test[i][0] for i in range(len(test))])
    net = sc.convert(model, calib, T=8, progress=False)
    activity = measure_activity(net.graph, [x[:64], x[64:]])
    for double in (False, True):
        rep = hardware_report(net.graph, lava_schedule(net.graph, double), activity)
        print(f"{arch}, {'double-buffered' if double else 'single-banked'}")
        print(format_hardware_report(rep), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cifar_resnet20")
