"""Steps per second of the iLIF cell against norse's LIFCell on the same tensor.

Run: ``python benchmarks/bench_neuron.py [--shape 128 64 32 32] [--steps 20]``.
Goal (issue 2): ILIFCell within 1.5x of LIFCell.
"""

from __future__ import annotations

import argparse
import time

import torch
from norse.torch import LIFCell

from spikeconverter.plugin import ILIFCell, ILIFParameters


def steps_per_second(cell: torch.nn.Module, x: torch.Tensor, steps: int) -> float:
    with torch.no_grad():
        state = None
        for _ in range(3):  # warm-up: allocations, first-call overheads
            _, state = cell(x, state)
        start = time.perf_counter()
        for _ in range(steps):
            _, state = cell(x, state)
        return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[128, 64, 32, 32])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    x = torch.rand(*args.shape, device=args.device) * 0.2
    ilif = ILIFCell(ILIFParameters(t_acc=8, t_gen=8, v_th=torch.tensor(0.5))).to(args.device)
    lif = LIFCell().to(args.device)
    # interleave the two so that machine noise hits both alike; keep the best of 3 rounds
    rates = {"ILIFCell": 0.0, "LIFCell": 0.0}
    for _ in range(3):
        rates["ILIFCell"] = max(rates["ILIFCell"], steps_per_second(ilif, x, args.steps))
        rates["LIFCell"] = max(rates["LIFCell"], steps_per_second(lif, x, args.steps))
    print(f"tensor {tuple(x.shape)} on {args.device}, {args.steps} steps, best of 3")
    for name, rate in rates.items():
        print(f"  {name:9s} {rate:8.2f} steps/s")
    ratio = rates["LIFCell"] / rates["ILIFCell"]
    print(f"ILIFCell time / LIFCell time = {ratio:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
