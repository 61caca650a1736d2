"""Which torchvision classifiers convert: converts / exact / refused-why, latency at T=8.

Sweeps ``torchvision.models.list_models(module=torchvision.models)``, one model per forked
child process (the imports done once; the model's memory returned when the child ends), with a
timeout and a resident-memory guard per model:

1. **check** (every model first; no weights needed): the model is built on the ``meta``
   device and materialised with zeros in float16 (no weight initialisation, a quarter of
   float64's memory), its smallest accepted input of 32, 64, 80, 128, 224 pixels is found
   with batch 1, and it is captured without the self-check. A refused model is recorded with
   its blockers grouped (:func:`reason`);
2. **exactness** (then the models that pass the check, smallest first): random weights
   (seed 0), realistic BatchNorm statistics (random affine parameters, running statistics
   from two train-mode passes over 4 random inputs), float64, ``convert(T=8)`` calibrated on
   4 random inputs (``max`` thresholds, no post-training correction unless
   ``--correction``), and the Norse SNN against the quantised ANN on 2 random inputs: the
   max relative error ``max|snn - qann| / max|qann|`` and the schedule's latency in steps.

Results are appended as each model finishes: ``OUT/coverage.csv`` (one row per model) and
``OUT/coverage.md``; a rerun skips the models already there except those whose status is named
by ``--redo`` (default: the errors, timeouts and memory kills). ``--docs`` writes
``docs/coverage.md`` from the CSV (also alone: ``--docs --only-docs``).

Run: ``nice -n 15 python benchmarks/coverage.py [--out out/coverage] [--timeout 1800]
[--max-rss-gb 8] [--docs] [--only NAME ...]``
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from tqdm import tqdm

from spikeconverter.atomic import atomic_path
from spikeconverter.converters import ConversionError, capture, convert, resolve_backend
from spikeconverter.interrupts import raise_on_signals

SIZES = (32, 64, 80, 128, 224)
T = 8
FIELDS = ["model", "status", "input", "params_M", "populations", "max_rel_error",
          "latency_steps", "seconds", "reason"]
DONE = ("exact", "inexact", "refused", "too big")
ROOT = Path(__file__).resolve().parents[1]
COMMAND = "nice -n 15 python benchmarks/coverage.py --docs"


def with_bn_statistics(model: torch.nn.Module, shape: tuple[int, ...], seed: int = 0):
    """Random BatchNorm affine parameters and running statistics from random batches.

    Only the BatchNorm layers are put in training mode: the rest of the model runs as in eval
    (no dropout, no auxiliary heads, which may not fit a small input: Inception-v3's)."""
    g = torch.Generator().manual_seed(seed)
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
            m.train()
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, *shape, dtype=torch.float64, generator=g))
    return model.eval()


def skeleton(name: str, dtype: torch.dtype = torch.float16) -> torch.nn.Module:
    """``name`` without weight initialisation: built on the meta device, then zeros on the CPU
    (BatchNorm variances ones). Enough for the capture, which needs the graph, not values.
    A model whose constructor cannot run on the meta device is built on the CPU."""
    try:
        with torch.device("meta"):
            model = torchvision.models.get_model(name, num_classes=10)
        model = model.to_empty(device="cpu")
    except NotImplementedError:  # the constructor computes with tensors (RegNet's widths)
        model = torchvision.models.get_model(name, num_classes=10)
    model = model.to(dtype).eval()
    with torch.no_grad():
        for pname, t in list(model.named_parameters()) + list(model.named_buffers()):
            t.fill_(1 if pname.endswith("running_var") else 0)
    return model


def input_size(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """The smallest of :data:`SIZES` that ``model`` accepts (batch 1)."""
    for s in SIZES:
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, s, s, dtype=dtype))
            return s
        except Exception:  # noqa: BLE001, S112 - too small for this model: try the next size
            continue
    raise ValueError(f"runs on none of the input sizes {SIZES}")


def reason(err: Exception) -> str:
    """The distinct blocking ops of a refusal, most frequent first, each with its count, one
    example node and its source line, and one short reason: ``GELU x36 (e.g.
    features.1.0.block.4 at convnext.py:63: no exact spiking form)``. Stored parameters are not
    blockers of their own: the op that uses them is."""
    blockers = getattr(err, "blockers", ())
    if not blockers:
        return str(err).strip().splitlines()[0][:300]
    groups: dict[str, list] = {}
    for b in blockers:
        groups.setdefault(_label(b), []).append(b)
    parts = []
    for label, group in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        b = group[0]
        where = Path(b.location.split(":")[0]).name + ":" + b.location.split(":")[1].split(
            " ")[0] if b.location else ""
        example = b.target.split(" (")[0] if b.op == "call_module" else b.node
        parts.append(f"{label} x{len(group)} (e.g. {example}{' at ' + where if where else ''}"
                     f": {_short(b.why)})")
    return "; ".join(parts)


def _label(b) -> str:
    if b.op == "call_module":
        return b.target.split("(")[-1].rstrip(")")
    return b.target.rsplit(".", 1)[-1]


def _short(why: str) -> str:
    """The first clause of a blocker's reason."""
    if "no exact spiking form" in why:
        return "not ReLU-family, no exact spiking form"
    return why.split(";")[0].split(" (")[0][:120]


def check(name: str, emit: Callable[[dict], None]) -> None:
    """The check of one model (no weights): its row, ``refused`` or ``converts``."""
    t0 = time.time()
    row: dict = {"model": name, "status": "checking"}
    model = skeleton(name)
    row["params_M"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
    dtype = torch.float16
    try:
        size = input_size(model, dtype)
    except ValueError:  # some ops have no float16 kernel on the CPU
        model, dtype = model.float(), torch.float32
        size = input_size(model, dtype)
    row["input"] = f"{size}x{size}"
    try:
        capture(model, torch.zeros(1, 3, size, size, dtype=dtype), check=False)
    except ConversionError as e:
        emit(row | {"status": "refused", "reason": reason(e), "seconds": time.time() - t0})
        return
    emit(row | {"status": "converts", "seconds": time.time() - t0})


def exactness(row: dict, correction: str, emit: Callable[[dict], None]) -> None:
    """The exactness run of a model that passed the check (``row``): its row, ``exact`` or
    ``inexact``, with the max relative error and the latency."""
    t0 = time.time()
    size = int(row["input"].split("x")[0])
    shape = (3, size, size)
    emit(row | {"status": "converts"})
    torch.manual_seed(0)
    model = torchvision.models.get_model(row["model"], num_classes=10).double().eval()
    model = with_bn_statistics(model, shape)
    g = torch.Generator().manual_seed(2)
    calib = torch.randn(4, *shape, dtype=torch.float64, generator=g)
    x = torch.randn(2, *shape, dtype=torch.float64, generator=g)
    net = convert(model, calib, T=T, dtype=torch.float64, progress=False, batch_size=2,
                  calibration_mode="max", correction=correction)
    del model
    with torch.no_grad():
        out = net(x)
        ref = net.graph.forward(x, quantized=True)[net.graph.output]
    err = float((out - ref).abs().max() / ref.abs().max())
    emit(row | {"status": "exact" if err <= 1e-9 else "inexact", "max_rel_error": err,
                "latency_steps": net.schedule.latency_steps, "reason": "",
                "populations": len(net.graph.populations), "seconds": time.time() - t0})


def _rss_gb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            kb = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
        return kb / 2**20
    except (OSError, StopIteration):
        return 0.0


def _run_one(row: dict, correction: str, path: str) -> None:
    """The forked child: :func:`check` (``row`` has only the model's name) or
    :func:`exactness`, its rows appended to ``path`` as JSON lines."""
    def emit(row: dict) -> None:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")

    try:
        if row.get("status") == "converts":
            exactness(row, correction, emit)
        else:
            check(row["model"], emit)
    except BaseException as exc:  # noqa: BLE001 - reported as the model's error row
        emit({"model": row["model"], "status": "failed",
              "reason": f"{type(exc).__name__}: {exc}"})
        raise


def _child(row: dict, timeout: float, max_rss_gb: float, correction: str) -> dict:
    """Run :func:`check` or :func:`exactness` for ``row`` in a forked child process (the
    imports are done once, in the parent; the child's memory is returned when it ends); kill it
    past ``timeout`` seconds or ``max_rss_gb`` resident memory. The last row it wrote tells how
    far it got."""
    t0, killed, name = time.time(), "", row["model"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.jsonl")
        p = multiprocessing.get_context("fork").Process(target=_run_one,
                                                        args=(row, correction, path))
        p.start()
        try:
            while p.is_alive():
                p.join(1.0)
                if not p.is_alive():
                    break
                if time.time() - t0 > timeout:
                    killed = f"over {timeout:.0f} s"
                elif (rss := _rss_gb(p.pid)) > max_rss_gb:
                    killed = f"over {max_rss_gb:g} GB resident memory ({rss:.1f} GB)"
                if killed:
                    break
        finally:  # also when the sweep itself is stopped: no child left behind
            if p.is_alive():
                p.kill()
                p.join()
        rows = [json.loads(ln) for ln in Path(path).read_text().splitlines()] if os.path.exists(
            path) else []
    failed = rows.pop() if rows and rows[-1]["status"] == "failed" else None
    row = rows[-1] if rows else {"model": name}
    row["seconds"] = time.time() - t0 + (float(row.get("seconds") or 0)
                                         if row.get("status") == "converts" else 0)
    if row.get("status") in DONE or (p.exitcode == 0 and not failed):
        return row  # done, or a check that passed (its exactness run comes later)
    stage = "the exactness run" if row.get("status") == "converts" else "the check"
    if killed:
        status = "too big" if "memory" in killed and stage == "the exactness run" else (
            "timeout" if "s" == killed[-1] else "memory")
        return row | {"status": status, "reason": f"{stage} killed: {killed} (capture "
                      f"{'passes' if stage == 'the exactness run' else 'not finished'})"}
    why = failed["reason"] if failed else f"exit code {p.exitcode}"
    return row | {"status": "error", "reason": f"{stage} failed: {why[:300]}"}


def _blocking_ops(r: dict) -> list[str]:
    """The blocking op labels of a refused row's reason."""
    return [part.split(" x")[0] for part in r.get("reason", "").split("; ") if " x" in part]


def summary(rows: list[dict], total: int) -> list[str]:
    """Counts by status, and the refused models per blocking op."""
    by: dict[str, list[str]] = {}
    for r in rows:
        by.setdefault(r["status"], []).append(r["model"])
    exact = len(by.get("exact", []))
    lines = [f"**{exact} of {total}** torchvision classifiers convert exactly (SNN == quantised "
             f"ANN in float64 at T={T}); {len(rows)} of {total} swept: "
             + ", ".join(f"{k} {len(v)}" for k, v in sorted(by.items())) + ".", ""]
    ops: dict[str, list[str]] = {}
    for r in rows:
        if r["status"] == "refused":
            for op in _blocking_ops(r):
                ops.setdefault(op, []).append(r["model"])
    refused = [r for r in rows if r["status"] == "refused"]
    if refused:
        act = [r["model"] for r in refused if "no exact spiking form" in r.get("reason", "")]
        rest = sorted({r["model"] for r in refused} - set(act))
        lines += [f"{len(act)} of the {len(refused)} refused models use an activation with no "
                  "exact spiking form (not ReLU-family)"
                  + (f"; the others: {', '.join(rest)}." if rest else "."), ""]
    if ops:
        lines.append("Refused models by blocking op (a model counts under each of its ops):")
        lines.append("")
        lines += [f"- `{op}`: {len(ms)} model{'s' * (len(ms) > 1)}" for op, ms in sorted(
            ops.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
        lines.append("")
    others = [r for r in rows if r["status"] not in ("exact", "refused")]
    lines += [f"- {r['model']}: {r['status']} ({_cell(r.get('reason', ''))})" for r in others]
    secs = sum(float(r.get("seconds") or 0) for r in rows)
    lines += ["" if others else "", f"Sum of the per-model wall times: {secs / 60:.0f} min "
              "(each model in its own process; the machine shared with other jobs).", ""]
    return lines


def _cell(text: str) -> str:
    """``text`` for a markdown table cell (node names hold underscores; no pipes)."""
    for ch in "\\_*|<>`":
        text = text.replace(ch, "\\" + ch)
    return text


def markdown(rows: list[dict], total: int) -> str:
    """The coverage table with the summary above it."""
    lines = summary(rows, total) + [
        "| model | status | input | params (M) | populations | max rel. error | "
        "latency steps (T=8) | s | reason |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        err = r.get("max_rel_error")
        err = "" if err is None or err == "" else f"{float(err):.1e}"
        secs = f"{float(r['seconds']):.0f}" if r.get("seconds") not in (None, "") else ""
        lines.append(f"| {r['model']} | {r['status']} | {r.get('input', '')} | "
                     f"{r.get('params_M', '')} | {r.get('populations', '')} | {err} | "
                     f"{r.get('latency_steps', '')} | {secs} | {_cell(r.get('reason', ''))} |")
    return "\n".join(lines) + "\n"


DOC_HEAD = f"""# Coverage: torchvision classifiers

Produced by `benchmarks/coverage.py` (its docstring has the method), command:
`{COMMAND}`. Every classifier of `torchvision.models.list_models(module=torchvision.models)`
with `num_classes=10`, random weights with realistic BatchNorm statistics, float64, the
smallest input it accepts, batch 2. *exact*: the Norse SNN's logits equal the quantised ANN's
(max relative error <= 1e-9; float64 rounding gives ~1e-16). *refused*: `ConversionError`
before any weights are built; the reason column lists the distinct blocking ops (count, one
example node and its source line, why). A stored parameter used by a blocking op is not
counted as a blocker of its own. iLIF neurons represent ReLU-family activations (ReLU, ReLU6,
clipped ReLU) exactly; SiLU, GELU, Hardswish and sigmoid gates have no exact spiking form, so
those models would need retraining with ReLU. Latency: steps from the first input step to the
readout at T=8 (Norse schedule, direct delivery).

"""


def read_rows(path: Path) -> list[dict]:
    """The rows of an earlier sweep (none if there is no file)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write(rows: list[dict], out: Path, docs: bool) -> None:
    """The CSV and markdown table (and docs/coverage.md), in the models' listed order."""
    names = torchvision.models.list_models(module=torchvision.models)
    rows = sorted(rows, key=lambda r: names.index(r["model"]) if r["model"] in names else 999)
    with atomic_path(out / "coverage.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in FIELDS} for r in rows)
    table = markdown(rows, len(names))
    with atomic_path(out / "coverage.md") as tmp:
        tmp.write_text(table)
    if docs:
        with atomic_path(ROOT / "docs" / "coverage.md") as tmp:
            tmp.write_text(DOC_HEAD + table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "out" / "coverage"))
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per model")
    ap.add_argument("--max-rss-gb", type=float, default=8.0, help="memory guard per model")
    ap.add_argument("--correction", default="none", help="post-training correction")
    ap.add_argument("--only", nargs="+", help="these models only")
    ap.add_argument("--redo", nargs="*", default=["error", "timeout", "memory"],
                    help="statuses of an earlier sweep to redo (default: error timeout memory)")
    ap.add_argument("--docs", action="store_true", help="also write docs/coverage.md")
    ap.add_argument("--only-docs", action="store_true", help="just rewrite the tables")
    args = ap.parse_args()
    with raise_on_signals():  # SIGTERM stops the sweep and its child cleanly
        run(args)


def run(args: argparse.Namespace) -> None:
    """The sweep (:func:`main` without the argument parsing)."""
    torch.set_num_threads(1)  # on a shared machine more threads are much slower, not faster
    resolve_backend("norse")  # imported once here, inherited by every forked child
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {r["model"]: r for r in read_rows(out / "coverage.csv")}
    names = args.only or torchvision.models.list_models(module=torchvision.models)
    if not args.only_docs:
        # the checks first (cheap), then the exactness runs, smallest models first
        todo = [n for n in names if args.only or n not in rows or rows[n]["status"]
                in args.redo]
        sweep(rows, [{"model": n} for n in todo], "check", args)
        todo = [rows[n] for n in names if rows.get(n, {}).get("status") == "converts"]
        sweep(rows, sorted(todo, key=lambda r: float(r.get("params_M") or 0)), "exactness",
              args)
    write(list(rows.values()), out, args.docs)


def sweep(rows: dict[str, dict], todo: list[dict], what: str, args: argparse.Namespace) -> None:
    """One child per row of ``todo``; ``rows`` and the tables updated as each ends."""
    for row in (bar := tqdm(todo, desc=what, unit="model")):
        name = row["model"]
        bar.set_postfix_str(name)
        rows[name] = r = _child(row, args.timeout, args.max_rss_gb, args.correction)
        tqdm.write(f"{name}: {r['status']} {r.get('max_rel_error', '')} "
                   f"{r.get('reason', '')}"[:200])
        write(list(rows.values()), Path(args.out), args.docs)


if __name__ == "__main__":
    main()
