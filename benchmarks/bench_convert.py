"""Wall time of ResNet-20 as an ANN and as its converted SNN (T=16), batch 128, on the CPU.

Prints the SNN/ANN ratio for the "fused" and "frame" simulation modes and the peak memory of
each (resident set growth via the process's peak RSS is not resettable, so peak memory is
measured with torch's CPU allocator profiler-free proxy: tracemalloc does not see torch
tensors; we report the peak of the sum of live tensor bytes sampled by a memory hook).
Goals (issue 4): fused <= 2x the ANN, frame <= 1.2*T x the ANN.

Run: ``python benchmarks/bench_convert.py [--batch 128] [--T 16] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
from pathlib import Path

import torch

from spikeconverter.converters import SpikingNetwork, convert
from spikeconverter.models import get_model, load_cifar_resnet

CKPT = (Path(__file__).resolve().parents[1] / ".." / "shared" / "models"
        / "cifar10-resnet-akamaster" / "resnet20-12fca82f.th")


def model_and_data(batch: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    g = torch.Generator().manual_seed(0)
    if CKPT.is_file():
        model, what = load_cifar_resnet(CKPT), "shared checkpoint"
    else:  # random weights with BatchNorm statistics from random data
        model, what = get_model("cifar_resnet20").train(), "random weights"
        with torch.no_grad():
            for _ in range(4):
                model(torch.randn(64, 3, 32, 32, generator=g))
        model.eval()
    x = torch.randn(batch, 3, 32, 32, generator=g)
    cal = torch.randn(256, 3, 32, 32, generator=g)
    return model, x, cal, what


def timed(fn, x: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        fn(x)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            best = min(best, time.perf_counter() - t0)
    return best


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--T", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, x, cal, what = model_and_data(args.batch)
    print(f"ResNet-20 ({what}), batch {args.batch}, T={args.T}, "
          f"{torch.get_num_threads()} threads, {torch.__version__}")
    base_rss = peak_rss_mib()
    t_ann = timed(model, x, args.repeats)
    ann_rss = peak_rss_mib()
    print(f"ANN forward          {t_ann * 1e3:9.1f} ms   peak RSS {ann_rss:8.0f} MiB")
    net = convert(model, cal, T=args.T, progress=False)
    results = {}
    for mode in ("fused", "frame"):
        snn = SpikingNetwork(net.graph, net.schedule, mode=mode)
        gc.collect()
        t = timed(snn, x, args.repeats)
        results[mode] = t / t_ann
        print(f"SNN {mode:6s} forward   {t * 1e3:9.1f} ms   ratio {t / t_ann:6.2f}x ANN   "
              f"peak RSS {peak_rss_mib():8.0f} MiB (process peak so far)")
    print(f"latency {net.schedule.latency_steps} steps, {net.schedule.steps_per_sample} steps/sample"
          f", synaptic ops/sample {snn.stats['synaptic_ops_per_sample']:.3g} vs ANN MACs/sample "
          f"{snn.stats['ann_macs_per_sample']:.3g}")
    print(f"goals: fused <= 2x -> {results['fused']:.2f}x "
          f"[{'met' if results['fused'] <= 2 else 'NOT met'}]; frame <= {1.2 * args.T:.1f}x -> "
          f"{results['frame']:.2f}x [{'met' if results['frame'] <= 1.2 * args.T else 'NOT met'}]"
          f"; memory baseline {base_rss:.0f} MiB")


if __name__ == "__main__":
    main()
