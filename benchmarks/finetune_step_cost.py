"""Cost of one fine-tuning step on the CIFAR-10 ResNet-20, coded vs stepped generate windows,
and whether the grad-mode forward is the network's own.

For each T: the converted network (``--cache`` files of ``finetune_resnet20.py``, or a fresh
conversion with ``convert`` 's defaults from 256 training images), one forward + backward of
a batch of training images through :class:`TrainableSpikingNetwork` with
``coded_window`` (the default for ``k = 2``: exact code, one-loop surrogate backward) and with
``stepped_window`` (the plugin neuron stepped in threshold units), alternated ``--rounds``
times in one run (min and median, and the load). Then the largest difference between the
grad-mode and the no-grad logits of ``--check`` images, for both windows, in float32.

Run: ``python benchmarks/finetune_step_cost.py [--T 3 2] [--batch 64] [--rounds 4]
[--check 256] [--cache out/cache] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from spikeconverter.converters import convert
from spikeconverter.converters import load as load_network
from spikeconverter.models import load_cifar_resnet
from spikeconverter.training.trainable import TrainableSpikingNetwork

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
CKPT = SHARED / "models" / "cifar10-resnet-akamaster" / "resnet20-12fca82f.th"
DATA = SHARED / "data" / "cifar10"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def images(n: int) -> torch.Tensor:
    from torchvision import datasets, transforms

    ds = datasets.ImageFolder(DATA / "train", transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]))
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n].tolist()
    return torch.stack([ds[i][0] for i in idx])


def network(T: int, cache: str | None, x: torch.Tensor):
    path = Path(cache) / f"resnet20_s0_T{T}_channel_both.snn" if cache else None
    if path is not None and path.is_file():
        return load_network(path)
    return convert(load_cifar_resnet(CKPT).eval(), x[:256], T=T, progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[3, 2])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--check", type=int, default=256)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = images(max(args.check, args.batch, 256))
    for T in args.T:
        net = network(T, args.cache, x)
        nets = {"coded": TrainableSpikingNetwork(net.graph, net.schedule),
                "stepped": TrainableSpikingNetwork(net.graph, net.schedule)}
        nets["stepped"].coded_window = nets["stepped"].stepped_window
        times: dict[str, list[float]] = {k: [] for k in nets}
        for _ in range(args.rounds):
            for name, tn in nets.items():  # alternated: both sides see the same load
                t0 = time.perf_counter()
                tn(x[:args.batch]).logsumexp(1).mean().backward()
                times[name].append(time.perf_counter() - t0)
        line = " | ".join(f"{k} min {min(v):.2f} s median {statistics.median(v):.2f} s"
                          for k, v in times.items())
        ratio = min(times["stepped"]) / min(times["coded"])
        print(f"T={T} batch {args.batch}: {line} | stepped/coded (min) {ratio:.2f}x | load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        for name, tn in nets.items():
            with torch.no_grad():
                exact = tn(x[:args.check])
            grad_mode = tn(x[:args.check]).detach()
            print(f"T={T} {name}: max |grad-mode - exact| logits over {args.check} images "
                  f"{float((grad_mode - exact).abs().max()):.4g}", flush=True)


if __name__ == "__main__":
    main()
