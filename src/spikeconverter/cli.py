"""The `spikeconverter` command (placeholder until the demo lands: shows the code's error)."""

from __future__ import annotations

import argparse

import numpy as np

from spikeconverter import coding


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spikeconverter")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="conversion error of the temporal-separation code per T")
    parser.parse_args(argv)
    x = np.random.default_rng(0).random(10000)
    print(f"{'T':>3} {'theta/Umax':>10} {'E|U_in-U_out|':>14}")
    for T in (2, 4, 8, 16):
        theta = coding.optimal_threshold(x, T)
        print(f"{T:3d} {theta:10.3f} {coding.conversion_error(x, theta, 2.0, T):14.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
