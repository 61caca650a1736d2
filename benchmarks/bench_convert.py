"""Wall time of ResNet-20 as an ANN and as its converted SNN (T=16), batch 128, on the CPU.

Prints the SNN/ANN ratio (the SNN side: the call and the read of ``net.stats``) for the "fused"
and "frame" simulation modes and the process's peak
resident memory after each (ru_maxrss; it only grows, so each figure is the peak so far:
ANN first, then fused, then frame).
Goals (issue 4): fused <= 2x the ANN, frame <= 1.2*T x the ANN.

Run: ``python benchmarks/bench_convert.py [--batch 128] [--T 16] [--repeats 3]``

``--imagenet`` (issue 16): resnet34, mobilenet_v2 and vgg16_bn at 224x224 (random weights,
BatchNorm statistics from random images, ``benchmarks/imagenet_nets.py``), batch 8, T=16, fused
mode against the ANN, the two sides alternated in one run; prints the min and median ratio of
the repeats, the peak memory and the load, for the logits alone and with ``net.stats`` read
after each call (spikes are counted on that read). Goal: fused/ANN <= 2.5x.
``python benchmarks/bench_convert.py --imagenet [--batch 8] [--repeats 3] [--nets resnet34]``
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
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


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def alternated(ann, snn, x: torch.Tensor,
               repeats: int) -> tuple[list[float], list[float], list[float]]:
    """Wall times of ``ann`` and ``snn`` on ``x``, alternated, after one warm-up of each, and
    of reading ``snn.stats`` after each call (spike counting, done on the first read)."""
    ta, ts, tc = [], [], []
    with torch.no_grad():
        ann(x), snn(x), snn.stats  # noqa: B018 (warm-up of the read)
        for _ in range(repeats):
            t0 = time.perf_counter()
            ann(x)
            t1 = time.perf_counter()
            snn(x)
            t2 = time.perf_counter()
            assert snn.stats is not None  # the read counts the spikes
            tc.append(time.perf_counter() - t2)
            ts.append(t2 - t1)
            ta.append(t1 - t0)
    return ta, ts, tc


def imagenet(args: argparse.Namespace) -> None:
    """fused/ANN ratios of the three ImageNet networks (see the module docstring)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from imagenet_nets import imagenet_model, images

    print(f"ImageNet nets 224x224, batch {args.batch}, T={args.T}, fused mode, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    print("ratio = fused SNN time / ANN time, the two run alternately on the same batch "
          f"{args.repeats} times: min and median of the per-pair ratios, and min/min; "
          "'logits' = the call alone, '+stats' = the call and the first read of net.stats "
          "(spike, synaptic-op and saturation counts: the issue's reading); load = 1-minute "
          "load average of the machine (the ratios shift under load)", flush=True)
    for name in args.nets:
        model = imagenet_model(name, batch=args.batch)
        x, cal = images(args.batch), images(args.batch, seed=2)
        net = convert(model, cal, T=args.T, progress=False)
        gc.collect()
        ta, ts, tc = alternated(model, net, x, args.repeats)
        with_stats = [s + c for s, c in zip(ts, tc, strict=True)]
        for what, t in (("logits", ts), ("+stats", with_stats)):
            ratios = [s / a for a, s in zip(ta, t, strict=True)]
            print(f"{name:13s} ANN {min(ta):7.2f} s  fused {what} {min(t):7.2f} s  ratio min "
                  f"{min(ratios):5.2f}x median {statistics.median(ratios):5.2f}x "
                  f"(min/min {min(t) / min(ta):5.2f}x)  peak RSS {peak_rss_mib():7.0f} MiB  "
                  f"load {os.getloadavg()[0]:.1f}  [goal <= 2.5x: "
                  f"{'met' if min(t) / min(ta) <= 2.5 else 'NOT met'}]", flush=True)
        del model, net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--T", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--imagenet", action="store_true", help="the three ImageNet networks")
    ap.add_argument("--nets", nargs="+", default=["resnet34", "mobilenet_v2", "vgg16_bn"])
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--modes", nargs="+", choices=("fused", "frame"), default=["fused", "frame"],
                    help="simulation modes timed on ResNet-20 (default: both)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.imagenet:
        args.batch = args.batch or 8
        imagenet(args)
        return
    args.batch = args.batch or 128
    torch.manual_seed(0)
    model, x, cal, what = model_and_data(args.batch)
    print(f"ResNet-20 ({what}), batch {args.batch}, T={args.T}, "
          f"{torch.get_num_threads()} threads, {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f}")
    print("SNN time = the call and the first read of net.stats (the counts); ANN and SNN run "
          f"alternately {args.repeats} times; ratio = min SNN / min ANN (the goal's), per-pair "
          "min and median besides")
    base_rss = peak_rss_mib()
    with torch.no_grad():
        model(x)
    print(f"ANN forward alone: peak RSS {peak_rss_mib():8.0f} MiB")
    net = convert(model, cal, T=args.T, progress=False)
    results = {}
    for mode in args.modes:
        snn = SpikingNetwork(net.graph, net.schedule, mode=mode)
        gc.collect()
        ta, ts, tc = alternated(model, snn, x, args.repeats)
        ts = [s + c for s, c in zip(ts, tc, strict=True)]  # logits and the stats read
        t_ann, t = min(ta), min(ts)
        ratios = [b / a for a, b in zip(ta, ts, strict=True)]
        results[mode] = t / t_ann
        print(f"SNN {mode:6s} {t * 1e3:9.1f} ms vs ANN {t_ann * 1e3:7.1f} ms: ratio "
              f"{t / t_ann:6.2f}x (min/min; per-pair min {min(ratios):.2f}x median "
              f"{statistics.median(ratios):.2f}x)   peak RSS {peak_rss_mib():8.0f} MiB "
              f"(process peak so far)  load {os.getloadavg()[0]:.1f}")
    sched = net.schedule
    print(f"latency {sched.latency_steps} steps, {sched.steps_per_sample} steps/sample"
          f", synaptic ops/sample {snn.stats['synaptic_ops_per_sample']:.3g} vs ANN MACs/sample "
          f"{snn.stats['ann_macs_per_sample']:.3g}")
    goals = {"fused": 2.0, "frame": 1.2 * args.T}
    print("goals: " + "; ".join(
        f"{m} <= {goals[m]:.1f}x -> {r:.2f}x [{'met' if r <= goals[m] else 'NOT met'}]"
        for m, r in results.items()) + f"; memory baseline {base_rss:.0f} MiB")


if __name__ == "__main__":
    main()
