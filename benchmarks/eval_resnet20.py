"""Accuracy of the converted CIFAR-10 ResNet-20 (shared checkpoint) against its ANN.

Measures on ../shared/data/cifar10/test (1,017 images): ANN top-1, then for every calibration
mode and T in 4, 6, 8, 12, 16 the SNN's top-1 and its argmax agreement with the ANN (Norse
backend, fused mode, float32). Calibration: 256 images of ../shared/data/cifar10/train.

Run: ``python benchmarks/eval_resnet20.py [--rounding nearest] [--T 4 6 8 12 16]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torchvision import datasets, transforms

from spikeconverter.converters import convert
from spikeconverter.models import load_cifar_resnet

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
CKPT = SHARED / "models" / "cifar10-resnet-akamaster" / "resnet20-12fca82f.th"
NORM = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def load(split: str) -> datasets.ImageFolder:
    return datasets.ImageFolder(str(SHARED / "data" / "cifar10" / split),
                                transforms.Compose([transforms.ToTensor(), NORM]))


def predict(fn, xs: torch.Tensor, batch: int = 128) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(xs[i:i + batch]).argmax(1) for i in range(0, len(xs), batch)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[4, 6, 8, 12, 16])
    ap.add_argument("--modes", nargs="+", default=["max", "percentile", "optimal"])
    ap.add_argument("--rounding", default="nearest")
    ap.add_argument("--calibration", type=int, default=256)
    ap.add_argument("--input-encoding", default="analog", choices=["analog", "spikes"])
    args = ap.parse_args()
    if not CKPT.is_file():
        sys.exit(f"needs the shared checkpoint {CKPT}")
    torch.manual_seed(0)
    model = load_cifar_resnet(CKPT)
    test, train = load("test"), load("train")
    xs = torch.stack([test[i][0] for i in range(len(test))])
    ys = torch.tensor(test.targets)
    idx = torch.randperm(len(train))[: args.calibration]
    cal = torch.stack([train[int(i)][0] for i in idx])
    ann = predict(model, xs)
    n = len(xs)
    print(f"ResNet-20, {n} test images, calibration {len(cal)} train images, "
          f"rounding {args.rounding}, input {args.input_encoding}")
    ann_acc = 100 * float((ann == ys).float().mean())
    print(f"ANN top-1: {int((ann == ys).sum())}/{n} = {ann_acc:.2f}%")
    print(f"{'mode':<11}{'T':>3} {'SNN correct':>12} {'top-1 %':>8} {'loss pt':>8} "
          f"{'agree %':>8} {'latency':>8} {'s':>6}")
    for mode in args.modes:
        for T in args.T:
            t0 = time.time()
            net = convert(model, cal, T=T, calibration_mode=mode, rounding=args.rounding,
                          input_encoding=args.input_encoding, progress=False)
            snn = predict(net, xs)
            acc = 100 * float((snn == ys).float().mean())
            agree = 100 * float((snn == ann).float().mean())
            print(f"{mode:<11}{T:>3} {int((snn == ys).sum()):>12} {acc:>8.2f} "
                  f"{ann_acc - acc:>8.2f} {agree:>8.2f} {net.schedule.latency_steps:>8} "
                  f"{time.time() - t0:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
