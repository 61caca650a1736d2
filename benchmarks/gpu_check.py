"""CUDA check of issue 16, for a machine with a GPU (about 5 minutes on an H200).

(a) Exactness on CUDA: the converted small_cnn and a CIFAR ResNet-20 (random weights, BN
    statistics from random data) give the same logits and spike counts on CUDA as on the CPU, in
    float64, in all three modes (fused, frame, plugin).
(b) Throughput on one GPU at ImageNet size: images/s of resnet34, mobilenet_v2 and vgg16_bn at
    224x224, T=16, fused mode, and of their ANNs, with the projected time for 50,000 images.

Imports nothing from Lava. Run from the repository root::

    PYTHONPATH=src python benchmarks/gpu_check.py [--batch 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imagenet_nets import NETS, imagenet_model, images  # noqa: E402

from spikeconverter.converters import convert  # noqa: E402
from spikeconverter.models import get_model  # noqa: E402

MODES = ("fused", "frame", "plugin")


def cifar_model(name: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    model = get_model(name, **kw).train()
    side = kw.get("input_size", 32)
    chans = 1 if name == "small_cnn" else 3
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, chans, side, side))
    return model.eval()


def exactness() -> bool:
    """(a): CUDA == CPU in float64 for every mode; prints one line per case."""
    ok = True
    cases = [("small_cnn", cifar_model("small_cnn", input_size=28), (1, 28, 28)),
             ("cifar_resnet20", cifar_model("cifar_resnet20"), (3, 32, 32))]
    for name, model, shape in cases:
        g = torch.Generator().manual_seed(3)
        x = torch.randn(16, *shape, generator=g)
        for mode in MODES:
            net = convert(model, x, T=8, mode=mode, dtype=torch.float64, progress=False)
            cpu = net(x)
            spikes = net.stats["spikes"]
            gpu = net.to("cuda")(x.cuda())
            torch.cuda.synchronize()
            diff = float((gpu.cpu() - cpu).abs().max())
            same = diff <= 1e-9 and net.stats["spikes"] == spikes
            ok &= same
            print(f"  {name:15s} {mode:6s} max |CUDA - CPU| = {diff:.2e}, spikes CPU {spikes} "
                  f"CUDA {net.stats['spikes']}  [{'OK' if same else 'DIFFERENT'}]", flush=True)
    return ok


def rate(fn, x: torch.Tensor, repeats: int) -> float:
    """Images per second of ``fn`` on batch ``x`` (best of ``repeats``, after a warm-up)."""
    with torch.no_grad():
        fn(x)
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
    return x.shape[0] / best


def throughput(batch: int, repeats: int, T: int) -> None:
    """(b): the table of images/s and projected hours for 50,000 images."""
    print(f"\n(b) one GPU ({torch.cuda.get_device_name()}), 224x224, T={T}, fused, batch {batch}, "
          "float32, random weights with BN statistics from random images")
    print(f"  {'net':13s} {'ANN img/s':>10s} {'SNN img/s':>10s} {'SNN/ANN':>8s} "
          f"{'ANN 50k':>9s} {'SNN 50k':>9s} {'peak GiB':>8s}")
    for name in NETS:
        model = imagenet_model(name, device="cuda")
        net = convert(model, images(32, seed=2).cuda(), T=T, progress=False, device="cuda",
                      batch_size=16)
        x = images(batch).cuda()
        torch.cuda.reset_peak_memory_stats()
        a, s = rate(model, x, repeats), rate(net, x, repeats)
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"  {name:13s} {a:10.1f} {s:10.1f} {a / s:7.2f}x {50000 / a / 60:7.1f} m "
              f"{50000 / s / 60:7.1f} m {peak:8.1f}", flush=True)
        del model, net, x
        torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--T", type=int, default=16)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: CUDA is not available", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, Python {sys.version.split()[0]}, "
          f"lava imported: {'lava' in sys.modules}")
    print("(a) CUDA == CPU, float64, all modes")
    ok = exactness()
    throughput(args.batch, args.repeats, args.T)
    print(f"\nlava imported: {'lava' in sys.modules}; exactness {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
