"""Scaling out (issue 16): devices, bit-packed max pooling, streamed and resumable evaluation,
torch.distributed evaluation and fine-tuning (2 gloo processes spawned here, on the CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, TensorDataset

from spikeconverter import coding
from spikeconverter.converters import convert
from spikeconverter.devices import resolve_device
from spikeconverter.evaluation import evaluate
from spikeconverter.models import small_cnn
from spikeconverter.plugin.kernels import (
    SpikeTrain,
    code_max_pool2d,
    generate,
    generate_code,
    popcount,
    spike_max_pool2d,
    unpack_code,
)
from spikeconverter.training import finetune

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def tiny(seed: int = 0, n: int = 11):
    """A small CNN (8x8 inputs, max pooling) with random weights, ``n`` images and labels."""
    torch.manual_seed(seed)
    model = small_cnn(input_size=8, width=4, hidden=8).eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return model, x, y


# -- devices ----------------------------------------------------------------------------------

def test_resolve_device_names_the_fix():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("meta").type == "meta"
    with pytest.raises(ValueError, match="cpu', 'cuda' or 'cuda:N'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available.*--device cpu"):
            resolve_device("cuda:0")


def test_network_tensors_move_with_to():
    model, x, _ = tiny()
    net = convert(model, x, T=4, progress=False, device="cpu")
    assert net.device.type == "cpu"
    meta = net.to("meta")
    assert meta.device.type == "meta"
    assert all(t.device.type == "meta" for t in meta.buffers())


@CUDA
@pytest.mark.parametrize("mode", ["fused", "frame", "plugin"])
def test_cuda_logits_equal_cpu_logits_in_float64(mode):
    model, x, _ = tiny()
    net = convert(model, x, T=6, progress=False, mode=mode, dtype=torch.float64)
    cpu = net(x)
    cpu_stats = net.stats["spikes"]
    gpu = net.to("cuda")(x.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-9)
    assert net.stats["spikes"] == cpu_stats


# -- kernels ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [(2, 2, 0, 1, False), (3, 2, 1, 1, False), (3, 2, 1, 1, True),
                                  (3, 1, 1, 2, False), (2, 3, 0, 1, True)])
def test_code_max_pool_is_the_spike_max_pool(args):
    T = 7
    g = torch.Generator().manual_seed(1)
    code = torch.randint(0, 2**T, (2, 3, 9, 10), generator=g).double()
    frames = spike_max_pool2d(unpack_code(code, T), *args)
    assert torch.equal(unpack_code(code_max_pool2d(code, *args), T), frames)


def test_popcount_with_and_without_a_bound():
    values = torch.tensor([0, 1, 3, 255, 2**16 - 1, 2**16, 2**40 + 7, 2**52 + 2**31],
                          dtype=torch.float64)
    want = torch.tensor([bin(int(v)).count("1") for v in values], dtype=torch.uint8)
    assert torch.equal(popcount(values), want)
    assert torch.equal(popcount(values[:5], bits=16), want[:5])


@pytest.mark.parametrize("T", [1, 4, 16, 24])
@pytest.mark.parametrize("signed", [False, True])
def test_float32_codes_are_exact_at_every_boundary(T, signed):
    """Float32 fused codes (one float64 division) equal the exact code and, for T <= 16, the
    step-by-step float32 spikes; their counts equal the frames' counts. The membranes sit on,
    just below and just above every code boundary ``m theta / 2**(T-1)``."""
    g = torch.Generator().manual_seed(T)
    theta = torch.rand(5, 1, 1, generator=g) * 3 + 0.01
    m = torch.randint(0, 2**T + 2, (2, 5, 6, 6), generator=g).float()
    edge = (m * theta / 2 ** (T - 1)).float()
    v = torch.cat([edge, torch.nextafter(edge, torch.tensor(-1e9)),
                   torch.nextafter(edge, torch.tensor(1e9)), torch.randn(edge.shape) * theta])
    if signed:
        v = v * torch.randint(0, 2, v.shape, generator=g).mul(2).sub(1)
    code = generate_code(v, theta, T, signed)
    want = coding.binary_code(v.double().abs() if signed else v.double(), theta.double(), T)
    assert code.dtype == torch.float32
    assert torch.equal(code.double(), want * torch.sign(v.double()) if signed else want)
    if T <= 16:
        frames = generate(v, theta, T, 2.0, signed)
        assert torch.equal(unpack_code(code, T), frames)
        assert torch.equal(SpikeTrain(theta, T, 0, code=code).counts(signed),
                           SpikeTrain(theta, T, 0, frames=frames).counts(signed))


# -- streamed evaluation and resume ---------------------------------------------------------

def test_evaluation_streams_writes_progress_and_resumes(tmp_path):
    model, x, y = tiny()
    data = DataLoader(TensorDataset(x, y), batch_size=4)
    ckpt = tmp_path / "progress.json"
    kw = dict(baselines=["soft_reset"], baseline_steps=[8, 16], baseline_limit=5,
              progress=False, checkpoint=ckpt)
    first = evaluate(model, data, x, T_values=[3], **kw)
    assert ckpt.is_file() and first.meta["baseline_images"] == 5
    lines: list[str] = []
    second = evaluate(model, data, x, T_values=[3, 4], resume=True, log=lines.append, **kw)
    assert any("T=3: done before" in s for s in lines)
    assert not any(s.startswith("soft_reset") for s in lines)  # the baseline was done too
    fresh = evaluate(model, data, x, T_values=[3, 4], **{**kw, "checkpoint": None})
    assert second.rows == fresh.rows
    with pytest.raises(ValueError, match="rounding"):
        evaluate(model, data, x, T_values=[3], resume=True, rounding="floor", **kw)


# -- torch.distributed (2 gloo processes) ---------------------------------------------------

def _init(rank: int, world: int, store: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world)


def _evaluate_worker(rank: int, world: int, store: str, out: str) -> None:
    _init(rank, world, store)
    try:
        model, x, y = tiny()
        if rank:  # e.g. random weights drawn per process: evaluate takes rank 0's
            torch.nn.init.normal_(next(model.parameters()))
        data = DataLoader(TensorDataset(x, y), batch_size=3)
        rep = evaluate(model, data, x, T_values=[3, 5], baselines=["hard_reset"],
                       baseline_steps=[8], baseline_limit=7, progress=False)
        torch.save({"rows": rep.rows, "ann": rep.ann}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_process_evaluation_gives_the_single_process_counts(tmp_path):
    model, x, y = tiny()
    single = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=3), x, T_values=[3, 5],
                      baselines=["hard_reset"], baseline_steps=[8], baseline_limit=7,
                      progress=False)
    out = str(tmp_path / "rep")
    mp.spawn(_evaluate_worker, args=(2, str(tmp_path / "store"), out), nprocs=2)
    for rank in (0, 1):
        got = torch.load(f"{out}.{rank}", weights_only=False)
        assert got["rows"] == single.rows  # 11 images: 6 + 5, none padded in
        assert got["ann"] == single.ann


def _finetune_worker(rank: int, world: int, store: str, out: str) -> None:
    _init(rank, world, store)
    try:
        model, x, y = tiny(n=8)
        net = convert(model, x, T=3, progress=False, dtype=torch.float64)
        finetune(net, DataLoader(TensorDataset(x.double(), y), batch_size=4), max_steps=1,
                 progress=False, momentum=0.0, weight_decay=0.0, clip_grad_norm=None)
        torch.save(net.state_dict(), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_process_finetuning_step_equals_the_combined_batch(tmp_path):
    model, x, y = tiny(n=8)
    net = convert(model, x, T=3, progress=False, dtype=torch.float64)
    finetune(net, DataLoader(TensorDataset(x.double(), y), batch_size=8), max_steps=1,
             progress=False, momentum=0.0, weight_decay=0.0, clip_grad_norm=None)
    out = str(tmp_path / "state")
    mp.spawn(_finetune_worker, args=(2, str(tmp_path / "store"), out), nprocs=2)
    for rank in (0, 1):
        got = torch.load(f"{out}.{rank}", weights_only=True)
        for k, v in net.state_dict().items():
            torch.testing.assert_close(got[k], v, rtol=1e-9, atol=1e-12)


def test_python_dash_m_runs_the_cli_and_checks_the_device():
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run([sys.executable, "-m", "spikeconverter", "evaluate", "--help"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "--device" in r.stdout and "--workers" in r.stdout
    if not torch.cuda.is_available():
        r = subprocess.run([sys.executable, "-m", "spikeconverter", "convert", "small_cnn",
                            "-d", "nowhere", "-o", "x.snn", "--device", "cuda"],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 2 and "CUDA is not available" in r.stderr


def test_resume_reruns_ilif_rows_that_lack_the_baselines_images(tmp_path):
    model, x, y = tiny()
    data = DataLoader(TensorDataset(x, y), batch_size=4)
    ckpt = tmp_path / "progress.json"
    kw = dict(T_values=[3], baseline_steps=[8], baseline_limit=5, progress=False)
    evaluate(model, data, x, baselines=[], checkpoint=ckpt, **kw)  # e.g. --baselines none
    kw["baselines"] = ["soft_reset"]
    lines: list[str] = []
    resumed = evaluate(model, data, x, checkpoint=ckpt, resume=True, log=lines.append, **kw)
    assert not any("done before" in s for s in lines)  # its top-1 on the 5 images was missing
    assert "top1_baseline_images" in resumed.rows[0]
    assert resumed.rows == evaluate(model, data, x, **kw).rows
