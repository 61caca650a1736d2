"""Where fused mode spends its time against the ANN (torch.profiler, one thread).

``python benchmarks/profile_fused.py mobilenet_v2 [--batch 2] [--T 16]``: the ANN's and the
fused SNN's operators (the call and the read of ``net.stats``, where the spikes are counted)
at 224x224 by self CPU time (random weights, BN statistics from random
images, ``benchmarks/imagenet_nets.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imagenet_nets import imagenet_model, images  # noqa: E402

from spikeconverter.converters import convert  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("net", nargs="?", default="mobilenet_v2")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--T", type=int, default=16)
    ap.add_argument("--rows", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = imagenet_model(args.net, batch=4, bn_batches=1)
    net = convert(model, images(4, seed=2), T=args.T, progress=False)
    x = images(args.batch)
    with torch.no_grad():
        def snn(x: torch.Tensor) -> torch.Tensor:
            out = net(x)
            assert net.stats is not None  # the read counts the spikes: profiled with the call
            return out

        for name, fn in (("ANN", model), ("fused SNN (logits and stats)", snn)):
            fn(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn(x)
            print(f"== {args.net} {name}, batch {args.batch}, T={args.T}")
            print(prof.key_averages().table(sort_by="self_cpu_time_total",
                                            row_limit=args.rows))


if __name__ == "__main__":
    main()
