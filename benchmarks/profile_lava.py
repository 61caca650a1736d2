"""Where the CPU of a batched Lava run goes, per ProcessModel class (fixed point).

Run: ``python benchmarks/profile_lava.py NETWORK.snn --batch 64 --images 2048
[--data ../shared/data/cifar10/test]`` (enough windows that the pipeline is full for a while:
the per-class figures are taken over those steps only).

Every ``run_spk`` of the project's models and every channel ``send``/``recv`` is wrapped (in
this process, before Lava forks its workers) to add up its CPU time (``time.thread_time``:
blocked waits do not count); each worker writes its totals to a temporary folder every 25
steps, together with its whole CPU time (all threads: Lava's command loop and channel
threads). Printed per step: the CPU of all workers and of the runtime (``RUSAGE_CHILDREN``
after the run), of the models' ``run_spk`` and, inside it, of the channel copies, per model
class. The ratio of the per-image CPU at two batch sizes is what a machine with enough idle
cores would give; the wall-clock ratio is ``bench_lava.py --part steady``'s. The wrappers
cost a few microseconds per call (inflating the small batch most).
"""

from __future__ import annotations

import argparse
import collections
import functools
import glob
import importlib
import inspect
import json
import os
import pkgutil
import resource
import tempfile
import threading
import time
import warnings

FOLDER = tempfile.mkdtemp(prefix="profile_lava_")
STATS: dict = collections.defaultdict(lambda: [0.0, 0])  # class -> [cpu seconds, calls]
IO: dict = collections.defaultdict(float)  # class -> cpu seconds in send/recv
CURRENT = [""]


HISTORY: list = []  # this worker's snapshots: one per DUMP_EVERY steps
DUMP_EVERY = 25


def _dump(model) -> None:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    HISTORY.append({"step": int(model.time_step), "cpu": ru.ru_utime + ru.ru_stime,
                    "stats": {k: list(v) for k, v in STATS.items()}, "io": dict(IO)})
    with open(os.path.join(FOLDER, f"{os.getpid()}.json"), "w") as f:
        json.dump(HISTORY, f)


def _wrap_run(cls) -> None:
    orig = cls.__dict__["run_spk"]

    @functools.wraps(orig)
    def run_spk(self):
        key = CURRENT[0] = type(self).__name__
        start = time.thread_time()
        orig(self)
        s = STATS[key]
        s[0] += time.thread_time() - start
        s[1] += 1
        if self.time_step % DUMP_EVERY == 0:
            _dump(self)

    cls.run_spk = run_spk


def _wrap_io(cls, name: str) -> None:
    orig = getattr(cls, name)

    @functools.wraps(orig)
    def call(self, *args):
        start = time.thread_time()
        out = orig(self, *args)
        IO[CURRENT[0]] += time.thread_time() - start
        return out

    setattr(cls, name, call)


def instrument() -> None:
    """Wrap the models' ``run_spk`` and Lava's channel ports (before the runtime starts)."""
    from lava.magma.compiler.channels import pypychannel
    from lava.magma.core.model.py.model import PyLoihiProcessModel

    import spikeconverter.processes as procs

    done = set()
    for info in pkgutil.walk_packages(procs.__path__, "spikeconverter.processes."):
        if not info.name.endswith(".models"):
            continue
        for obj in vars(importlib.import_module(info.name)).values():
            if not (inspect.isclass(obj) and issubclass(obj, PyLoihiProcessModel)):
                continue
            for cls in obj.__mro__:
                if "run_spk" in cls.__dict__ and cls not in done \
                        and cls.__module__.startswith("spikeconverter"):
                    done.add(cls)
                    _wrap_run(cls)
    _wrap_io(pypychannel.CspSendPort, "send")
    _wrap_io(pypychannel.CspRecvPort, "recv")


def _pss_mb(pid: int) -> float:
    """Proportional set size of one process (shared memory split among its users), MB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(parent: int) -> list[int]:
    pids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            pids.append(int(stat.split("/")[2]))
    return pids


def sample_memory(stop: threading.Event, peak: list) -> None:
    """Every second: the PSS of this process and of its children (Lava's workers), summed;
    the largest sum in ``peak[0]`` (MB)."""
    me = os.getpid()
    while not stop.wait(1.0):
        workers = sorted((_pss_mb(p) for p in _children(me)), reverse=True)
        total = _pss_mb(me) + sum(workers)
        if total > peak[0]:
            peak[:] = [total, _pss_mb(me), workers[:3]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network", help="a network file written by spikeconverter convert")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--images", type=int, default=2048,
                        help="images to run (the folder's, repeated as needed)")
    parser.add_argument("--data", default="../shared/data/cifar10/test")
    args = parser.parse_args()
    import torch

    from spikeconverter.converters import load
    from spikeconverter.converters.api import resolve_backend
    from spikeconverter.converters.to_lava.plancache import plan_cache_path
    from spikeconverter.data import Normalization, load_dataset

    instrument()
    net = load(args.network)
    lnet = resolve_backend("lava")(net.graph)  # as spikeconverter run-lava builds it
    lnet.use_plan_cache(plan_cache_path(args.network))
    meta = net.graph.meta
    norm = Normalization(tuple(meta["input_mean"]), tuple(meta["input_std"])) \
        if meta.get("input_mean") else None
    ds = load_dataset(args.data, normalization=norm, limit=args.images)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    x = x.repeat((-(-args.images // len(x)), 1, 1, 1))[:args.images]  # past the folder's size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lnet.plan(True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        stop, peak = threading.Event(), [0.0, 0.0, []]
        sampler = threading.Thread(target=sample_memory, args=(stop, peak), daemon=True)
        sampler.start()
        start = time.perf_counter()
        try:
            lnet.run(x, fixed_point=True, batch_size=args.batch, progress=False)
        finally:
            wall = time.perf_counter() - start
            stop.set()
            sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    steps = lnet.stats["steps_simulated"]
    children = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    period = lnet.schedule.steps_per_sample
    windows = -(-len(x) // args.batch)
    # every layer busy: after the first window's logits, before the last window enters
    full = (lnet.schedule.latency_steps, lnet.plan(True).input_delay + (windows - 1) * period)
    report(args.batch, len(x), wall, steps, children, period, full)
    print(f"  peak memory (PSS of this process and Lava's workers, sampled every second) "
          f"{peak[0]:.0f} MB; this process {peak[1]:.0f} MB, largest workers "
          f"{', '.join(f'{w:.0f}' for w in peak[2])} MB")


def _delta(history: list, lo: int, hi: int) -> tuple[dict, int] | None:
    """One worker's CPU between its snapshots at the first step >= lo and the last <= hi."""
    inside = [h for h in history if lo <= h["step"] <= hi]
    if len(inside) < 2:
        return None
    a, b = inside[0], inside[-1]
    stats = {k: [c - a["stats"].get(k, [0.0, 0])[0], n - a["stats"].get(k, [0.0, 0])[1]]
             for k, (c, n) in b["stats"].items()}
    io = {k: v - a["io"].get(k, 0.0) for k, v in b["io"].items()}
    return {"cpu": b["cpu"] - a["cpu"], "stats": stats, "io": io}, b["step"] - a["step"]


def report(batch: int, n: int, wall: float, steps: int, children: float, period: int,
           full: tuple[int, int]) -> None:
    """Print the CPU per step and per image: whole run (start-up included), then per model
    class over the steps ``full`` during which the pipeline is full (every layer busy)."""
    agg: dict = collections.defaultdict(lambda: [0.0, 0, 0])
    io: dict = collections.defaultdict(float)
    workers, span = 0.0, 0
    lo, hi = full
    histories = []
    for path in glob.glob(os.path.join(FOLDER, "*.json")):
        with open(path) as f:
            histories.append(json.load(f))
    if not any(_delta(h, lo, hi) for h in histories):  # too few windows: every snapshot
        lo, hi = 0, steps
    for history in histories:
        got = _delta(history, lo, hi)
        if got is None:
            continue
        d, span = got
        workers += d["cpu"]
        for key, (cpu, calls) in d["stats"].items():
            a = agg[key]
            a[0] += cpu
            a[1] += calls
            a[2] += 1
        for key, cpu in d["io"].items():
            io[key] += cpu
    ms = 1e3 / max(span, 1)
    per_image = period / batch
    print(f"B={batch}, {n} images, {steps} steps, {wall:.1f} s wall, load "
          f"{os.getloadavg()[0]:.1f}")
    per_step = 1e3 * children / steps  # start-up included
    print(f"  whole run, CPU of workers and runtime {per_step:7.1f} ms/step "
          f"({per_step * per_image:.1f} ms per image: {period} steps per window of {batch})")
    print(f"  full pipeline (steps {lo}..{hi}, {span} steps): workers {workers * ms:7.1f} ms/step "
          f"= {workers * ms * per_image:.1f} ms per image; run_spk "
          f"{sum(a[0] for a in agg.values()) * ms * per_image:.1f} ms per image, of it channel "
          f"copies {sum(io.values()) * ms * per_image:.1f}; outside run_spk (Lava's loop) "
          f"{(workers - sum(a[0] for a in agg.values())) * ms * per_image:.1f}")
    for key, (cpu, _, procs) in sorted(agg.items(), key=lambda kv: -kv[1][0]):
        print(f"    {key:<30} x{procs:<3} run_spk {cpu * ms:7.2f} ms/step "
              f"{cpu * ms * per_image:6.2f} ms/image (send+recv {io.get(key, 0.0) * ms:6.2f} "
              "ms/step)")


if __name__ == "__main__":
    main()
