"""Which torchvision classifiers convert: converts / exact / refused-why, latency at T=8.

Sweeps ``torchvision.models.list_models(module=torchvision.models)``. Each model (num_classes=10,
random weights, float64) runs in a child process with a timeout:

1. the smallest input of 32, 64, 80, 128, 224 pixels the model accepts;
2. capture only (random BatchNorm statistics): a refused model is recorded with every blocker,
   grouped by reason;
3. otherwise realistic BatchNorm statistics (random affine parameters, running statistics from a
   few train-mode forward passes on random data), ``convert(T=8)``, and the SNN (Norse, float64)
   against the quantised ANN on 2 random inputs: the max relative error
   ``max|snn - qann| / max|qann|`` and the schedule's latency in steps.

Results are written as they come: ``OUT/coverage.csv`` (one row per model) and
``OUT/coverage.md``; with ``--docs`` also ``docs/coverage.md``. Models with more than 300M
parameters (ViT-L/H, RegNet-Y-128GF) are not built (``--skip-giants``, on by default).

Run: ``nice -n 15 python benchmarks/coverage.py [--out out/coverage] [--timeout 1800] [--docs]
[--only NAME ...]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torchvision
from tqdm import tqdm

from spikeconverter.atomic import atomic_path

SIZES = (32, 64, 80, 128, 224)
T = 8
#: > 300M parameters: building them in float64 alone needs several GB and minutes
GIANTS = {"vit_h_14": "632M", "regnet_y_128gf": "645M", "vit_l_16": "304M", "vit_l_32": "306M"}
FIELDS = ["model", "status", "input", "populations", "max_rel_error", "latency_steps",
          "seconds", "reason"]
ROOT = Path(__file__).resolve().parents[1]


def with_bn_statistics(model: torch.nn.Module, shape: tuple[int, ...], seed: int = 0):
    """Random BatchNorm affine parameters and running statistics from random batches."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, *shape, dtype=torch.float64, generator=g))
    return model.eval()


def _input_size(model: torch.nn.Module) -> int:
    for s in SIZES:
        try:
            with torch.no_grad():
                model(torch.zeros(2, 3, s, s, dtype=torch.float64))
            return s
        except Exception:  # noqa: BLE001, S112 - too small for this model: try the next size
            continue
    raise ValueError(f"runs on none of the input sizes {SIZES}")


def _reason(err: Exception) -> str:
    """Blockers grouped: 'SiLU x49; Sigmoid x16; mul x16' (or the error's first line)."""
    blockers = getattr(err, "blockers", ())
    if not blockers:
        return str(err).strip().splitlines()[0][:300]
    counts: dict[str, int] = {}
    for b in blockers:
        label = b.target.split("(")[-1].rstrip(")") if b.op == "call_module" else b.target
        if b.op == "get_attr":
            label = "stored tensor (get_attr)"
        if "ReLU-family" in b.why:
            label = f"{label} (no exact spiking form)"
        counts[label] = counts.get(label, 0) + 1
    return "; ".join(f"{k} x{n}" for k, n in counts.items())


def one(name: str) -> dict:
    """Everything about one model (run in a child process)."""
    from spikeconverter.converters import ConversionError, capture, convert

    torch.set_num_threads(1)  # on a shared machine more threads are much slower, not faster
    t0 = time.time()
    row = {"model": name}
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, num_classes=10).double().eval()
    size = _input_size(model)
    shape = (3, size, size)
    row["input"] = f"{size}x{size}"
    x = torch.randn(2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    try:
        capture(model, x)
    except ConversionError as e:
        return row | {"status": "refused", "reason": _reason(e), "seconds": time.time() - t0}
    model = with_bn_statistics(model, shape)
    net = convert(model, x, T=T, dtype=torch.float64, progress=False)
    with torch.no_grad():
        out = net(x)
        ref = net.graph.forward(x, quantized=True)[net.graph.output]
    err = float((out - ref).abs().max() / ref.abs().max())
    return row | {"status": "exact" if err <= 1e-9 else "inexact", "max_rel_error": err,
                  "latency_steps": net.schedule.latency_steps,
                  "populations": len(net.graph.populations), "seconds": time.time() - t0}


def _child(name: str, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", name]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=os.environ | {"PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return {"model": name, "status": "timeout", "reason": f"over {timeout:.0f} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode or not lines:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        return {"model": name, "status": "error", "reason": tail[:300]}
    return json.loads(lines[-1])


def markdown(rows: list[dict], total: int) -> str:
    """The coverage table with a summary line."""
    exact = sum(r["status"] == "exact" for r in rows)
    lines = [f"**{exact} of {total}** torchvision classifiers convert exactly "
             f"(SNN == quantised ANN in float64 at T={T}); {len(rows)} of {total} swept.", "",
             "| model | status | input | max rel. error | latency steps (T=8) | reason |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        err = r.get("max_rel_error")
        err = "" if err is None or err == "" else f"{float(err):.1e}"
        lines.append(f"| {r['model']} | {r['status']} | {r.get('input', '')} | {err} | "
                     f"{r.get('latency_steps', '')} | {r.get('reason', '')} |")
    return "\n".join(lines) + "\n"


DOC_HEAD = """# Coverage: torchvision classifiers

Produced by `benchmarks/coverage.py` (see its docstring for the method): every classifier of
`torchvision.models.list_models(module=torchvision.models)` with `num_classes=10`, random
weights with realistic BatchNorm statistics, float64, the smallest input it accepts. *exact*:
the Norse SNN's logits equal the quantised ANN's (max relative error <= 1e-9; float64 rounding
gives ~1e-16). *refused*: `ConversionError` with every blocker; the reason column counts them by
kind. iLIF neurons represent ReLU-family activations (ReLU, ReLU6, clipped ReLU) exactly;
SiLU, GELU, Hardswish and sigmoid gates have no exact spiking form, so those models would need
retraining with ReLU. Latency: steps from the first input step to the readout at T=8 (Norse
schedule, direct delivery).

"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "out" / "coverage"))
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per model")
    ap.add_argument("--only", nargs="+", help="these models only")
    ap.add_argument("--docs", action="store_true", help="also write docs/coverage.md")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.child)))
        return
    names = args.only or torchvision.models.list_models(module=torchvision.models)
    total = len(torchvision.models.list_models(module=torchvision.models))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for name in (bar := tqdm(names, desc="coverage", unit="model")):
        bar.set_postfix_str(name)
        if name in GIANTS:
            row = {"model": name, "status": "skipped",
                   "reason": f"not built: {GIANTS[name]} parameters (giant)"}
        else:
            row = _child(name, args.timeout)
        rows.append(row)
        tqdm.write(f"{name}: {row['status']} {row.get('max_rel_error', '')} "
                   f"{row.get('reason', '')}"[:200])
        with atomic_path(out / "coverage.csv") as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in FIELDS} for r in rows)
        table = markdown(rows, total)
        with atomic_path(out / "coverage.md") as tmp:
            tmp.write_text(table)
        if args.docs:
            with atomic_path(ROOT / "docs" / "coverage.md") as tmp:
                tmp.write_text(DOC_HEAD + table)


if __name__ == "__main__":
    main()
