"""Scaling out (issue 16): devices, bit-packed max pooling, streamed and resumable evaluation,
torch.distributed evaluation and fine-tuning (2 gloo processes spawned here, on the CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
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
from spikeconverter.plugin import compiled, kernels
from spikeconverter.plugin.kernels import (
    SpikeTrain,
    code_max_pool2d,
    generate,
    generate_code,
    popcount,
    spike_max_pool2d,
    start_and_code,
    start_generate,
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
    assert torch.equal(code_max_pool2d(code.int(), *args), code_max_pool2d(code, *args).int())


def test_popcount_with_and_without_a_bound():
    values = torch.tensor([0, 1, 3, 255, 2**16 - 1, 2**16, 2**40 + 7, 2**52 + 2**31],
                          dtype=torch.float64)
    want = torch.tensor([bin(int(v)).count("1") for v in values], dtype=torch.uint8)
    assert torch.equal(popcount(values), want)
    assert torch.equal(popcount(values[:5], bits=16), want[:5])


@pytest.mark.parametrize("T", [1, 4, 16, 24])
@pytest.mark.parametrize("signed", [False, True])
def test_float32_codes_are_exact_at_every_boundary(T, signed):
    """Float32 fused codes (one float64 division, int32) equal the exact code and, for
    T <= 16, the step-by-step float32 spikes; their counts equal the frames' counts. The
    membranes sit on, just below and just above every code boundary ``m theta / 2**(T-1)``."""
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
    assert code.dtype == torch.int32
    assert torch.equal(code.double(), want * torch.sign(v.double()) if signed else want)
    if T <= 16:
        frames = generate(v, theta, T, 2.0, signed)
        assert torch.equal(unpack_code(code, T), frames)
        assert torch.equal(SpikeTrain(theta, T, 0, code=code).counts(signed),
                           SpikeTrain(theta, T, 0, frames=frames).counts(signed))


@pytest.fixture
def block_size(monkeypatch):
    """Sets kernels.BLOCK for one test (the cached block lists cleared before and after)."""
    def set_block(n: int) -> None:
        monkeypatch.setattr(kernels, "BLOCK", n)
        kernels.blocks.cache_clear()

    yield set_block
    kernels.blocks.cache_clear()


def plain_counts(code: torch.Tensor) -> torch.Tensor:
    """Spikes per neuron over a batch of codes, one Python ``bin`` per code (the reference)."""
    flat = [bin(abs(int(c))).count("1") for c in code.reshape(-1).tolist()]
    return torch.tensor(flat, dtype=torch.float64).reshape(code.shape).sum(0)


@pytest.mark.parametrize("T", [1, 2, 7, 15, 16, 20, 24])
@pytest.mark.parametrize("signed", [False, True])
def test_code_counts_equal_a_plain_count(T, signed, block_size):
    """Counts of int32 codes (the fused float32 network's: table lookup or 16-bit halves) and of
    the same codes as floats equal ``bin(c).count("1")`` summed over the batch: random codes,
    every boundary (0, 1, 2**j +- 1, the top code) and, signed, their negatives."""
    g = torch.Generator().manual_seed(T + 100 * signed)
    top = 2**T - 1
    edges = sorted({0, 1, top, top - 1} | {min(max(2**j + d, 0), top)
                                           for j in range(T) for d in (-1, 0, 1)})
    code = torch.randint(0, top + 1, (5, 3, len(edges)), generator=g, dtype=torch.int32)
    code[0, 0] = torch.tensor(edges, dtype=torch.int32)
    code[1, 2] = top
    if signed:
        code = code * (torch.randint(0, 2, code.shape, generator=g, dtype=torch.int32) * 2 - 1)
        code[2, 1] = -torch.tensor(edges, dtype=torch.int32)
    want = plain_counts(code)
    theta = torch.tensor(0.7)
    for c in (code, code.float(), code.double()):
        got = SpikeTrain(theta, T, 0, code=c).counts(signed)
        assert got.dtype == torch.float64 and torch.equal(got, want), c.dtype
    block_size(4)  # row by row in blocks, as big layers on a CPU
    assert torch.equal(SpikeTrain(theta, T, 0, code=code).counts(signed), want)


@pytest.mark.parametrize("T", [1, 5, 16])
def test_integer_and_float_codes_decode_alike(T):
    """An int32 code's value (fresh or into a work buffer) and frames are bit for bit the
    float code's."""
    g = torch.Generator().manual_seed(T)
    code = torch.randint(-(2**T) + 1, 2**T, (4, 3, 5, 5), generator=g, dtype=torch.int32)
    for theta in (torch.tensor(0.3137), torch.rand(3, 1, 1, generator=g) + 0.1):
        ref = SpikeTrain(theta, T, 0, code=code.float())
        new = SpikeTrain(theta, T, 0, code=code)
        for factor in (1.0, 0.5, 2.0**-7):
            want = ref.value(factor)
            assert torch.equal(new.value(factor), want)
            out = torch.full(code.shape, float("nan"))
            assert new.value(factor, out=out) is out and torch.equal(out, want)
        assert new.frames().dtype == torch.float32
        assert torch.equal(new.frames(), ref.frames())


def float32_saturations(v, theta, T, rounding, signed) -> int:
    """The float32 saturation test of ``SpikingNetwork._count_saturated`` on started
    membranes (the reference)."""
    margin = coding.rounding_offset(theta, T, 2.0, rounding) + coding.lsb(theta, T) / 2
    return int(((v.abs() if signed else v) - coding.code_range(theta) > margin).sum())


def boundary_membranes(T: int, signed: bool, rounding: str, theta: torch.Tensor,
                       g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Accumulated membranes ``v`` and a bias whose start (bias and rounding offset added) lies
    on, just below and just above the saturation boundary, the code range and code boundaries
    (and random values), with the started membranes of :func:`start_generate`."""
    lsb = coding.lsb(theta, T)
    margin = coding.rounding_offset(theta, T, 2.0, rounding) + lsb / 2
    rng = coding.code_range(theta)
    base = torch.ones(2, 4, 3, 3) * torch.ones_like(theta)
    points = [rng + margin, rng, rng - lsb, rng + lsb / 2, rng + 2 * lsb, rng * 2, theta,
              theta * 0.75, lsb * 3]
    started = torch.cat([p * base for p in points])
    ulp = [torch.nextafter(started, torch.tensor(d)) for d in (-1e30, 1e30)]
    started = torch.cat([started, *ulp, torch.nextafter(ulp[0], torch.tensor(-1e30)),
                         torch.randn(base.shape, generator=g) * 3 * theta])
    if signed:
        started = started * (torch.randint(0, 2, started.shape, generator=g) * 2 - 1)
    # the accumulated membranes whose start (bias and offset added) lands there
    bias = (torch.randn(started.shape[1:], generator=g) * theta).float()
    v = started - bias
    if rounding == "nearest":
        half = coding.rounding_offset(theta, T, 2.0, rounding)
        v = v - (half * torch.sign(started) if signed else half)
    return v, bias, start_generate(v.clone(), bias, theta, T, 2.0, rounding, signed)


def boundary_thetas(g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Scalar and per-channel thresholds, tiny and huge ones too."""
    return (torch.rand((), generator=g) * 3 + 0.01, torch.rand(4, 1, 1, generator=g) * 3 + 0.01,
            torch.tensor(2.0**-20), torch.tensor(3.0 * 2**40))


def exact_code(ref: torch.Tensor, theta: torch.Tensor, T: int, signed: bool) -> torch.Tensor:
    """The code of started membranes ``ref``, computed in float64 (the reference)."""
    code = coding.binary_code(ref.double().abs() if signed else ref.double(), theta.double(), T)
    return code * torch.sign(ref.double()) if signed else code


@pytest.mark.parametrize("T", [1, 4, 16, 24])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("rounding", ["nearest", "floor"])
@pytest.mark.parametrize("block", [None, 7, 200])
def test_start_and_code_is_start_generate_then_code(T, signed, rounding, block, block_size):
    """start_and_code (bias, rounding offset, saturation count and int32 code in one blocked
    pass) gives exactly the membranes' codes and the float32 saturation test's count of
    start_generate: membranes on, just below and just above the saturation boundary, the code
    range and code boundaries, scalar and per-channel thresholds (tiny and huge too), blocks
    of every kind (whole channels, parts of channels, the whole tensor)."""
    if block is not None:
        block_size(block)
    g = torch.Generator().manual_seed(T)
    for theta in boundary_thetas(g):
        v, bias, ref = boundary_membranes(T, signed, rounding, theta, g)
        want = float32_saturations(ref, theta, T, rounding, signed)
        work = torch.full((max(block or 1, 1),), float("nan"), dtype=torch.float64)
        code, sat = start_and_code(v.clone(), bias, theta, T, rounding, signed, work=work)
        assert code.dtype == torch.int32 and int(sat) == want
        assert torch.equal(code.double(), exact_code(ref, theta, T, signed))
        assert 0 < want < v.numel()  # both sides of the boundary were probed
        fresh = v.clone()
        assert int(start_and_code(fresh, bias, theta, T, rounding, signed, out=torch.empty(
            v.shape, dtype=torch.int32))[1]) == want
        _, none = start_and_code(v.clone(), bias, theta, T, rounding, signed, saturations=False)
        assert none is None


@pytest.fixture
def compile_all(monkeypatch):
    """Every population of two or more dimensions takes the compiled kernel (the state of the
    compiled forms is the test's own)."""
    monkeypatch.setattr(compiled, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(compiled, "_state", {})
    monkeypatch.delenv("SPIKECONVERTER_COMPILE", raising=False)


def compiled_or_skip(call, *args, **kwargs):
    """``call(*args, **kwargs)``, skipped where torch.compile cannot build here (no C++
    compiler): the eager kernels then run instead, which other tests check."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = call(*args, **kwargs)
    failed = [w for w in seen if "torch.compile of" in str(w.message)]
    if failed:
        pytest.skip(f"torch.compile unavailable here: {failed[0].message}")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("signed", [False, True])
def test_compiled_kernel_is_exact_at_every_boundary(signed, compile_all):
    """The compiled kernel (float32 floor division checked by Dekker's product; spikes by
    shifts and masks) gives exactly the eager kernel's codes, saturation counts, spike and
    weighted spike totals and decoded values, at every code and saturation boundary, for
    scalar and per-channel, tiny and huge thresholds."""
    g = torch.Generator().manual_seed(16 + signed)
    for T in (1, 4, 16, 23):
        for rounding in ("nearest", "floor"):
            for theta in boundary_thetas(g):
                v, bias, ref = boundary_membranes(T, signed, rounding, theta, g)
                weight = torch.randint(0, 5000, v.shape[1:], generator=g, dtype=torch.int32)
                found: dict = {}
                code, sat = compiled_or_skip(start_and_code, v.clone(), bias, theta, T,
                                             rounding, signed, weight=weight, found=found)
                assert set(found) == {"totals", "value"}  # the compiled kernel ran
                assert int(sat) == float32_saturations(ref, theta, T, rounding, signed)
                assert torch.equal(code.double(), exact_code(ref, theta, T, signed))
                train = SpikeTrain(theta.float(), T, 0, code=code)
                per = train.counts(signed)
                assert torch.equal(found["totals"],
                                   torch.stack([per.sum(), (per * weight.double()).sum()]))
                assert torch.equal(found["value"], train.value())


def test_shift_and_mask_popcount_is_the_table():
    n = torch.cat([torch.arange(1 << 16), torch.randint(0, 1 << 31, (5000,),
                                                         generator=torch.Generator().manual_seed(0))])
    n = n.to(torch.int32)
    assert torch.equal(compiled.popcount32(n).long(), popcount(n.double()).long())


def test_a_failed_compilation_leaves_the_eager_kernel(compile_all, monkeypatch):
    """Where torch.compile fails (no compiler), one warning names the cause, the eager kernel
    gives its results, and the compiled form is not tried again."""
    calls = []

    def broken(fn, **_):
        def run(*args):
            calls.append(1)
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    g = torch.Generator().manual_seed(3)
    v, bias, ref = boundary_membranes(8, False, "nearest", torch.tensor(0.5), g)
    with pytest.warns(RuntimeWarning, match="no C.. compiler"):
        code, _ = start_and_code(v.clone(), bias, torch.tensor(0.5), 8, "nearest", False)
    assert torch.equal(code.double(), exact_code(ref, torch.tensor(0.5), 8, False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        start_and_code(v.clone(), bias, torch.tensor(0.5), 8, "nearest", False)
    assert len(calls) == 1


def test_decoded_values_serve_factor_one_only():
    code = torch.tensor([[3, 0, 7]], dtype=torch.int32)
    theta = torch.tensor(0.75)
    plain = SpikeTrain(theta, 3, 0, code=code)
    decoded = plain.value()
    train = SpikeTrain(theta, 3, 0, code=code, decoded=decoded)
    assert train.value() is decoded and torch.equal(train.value(0.5), plain.value(0.5))
    with pytest.raises(ValueError, match="decoded values come with a code"):
        SpikeTrain(theta, 3, 0, frames=unpack_code(code, 3), decoded=decoded)


def test_blocks_cover_every_element_once(block_size):
    block_size(50)
    for shape in [(3, 5, 4, 4), (3, 40, 2), (2, 7), (200, 3), (1, 3, 9, 9), (4, 1), (5,)]:
        seen = torch.zeros(shape, dtype=torch.int64)
        for bs, cs in kernels.blocks(shape, True):
            seen[bs, cs] += 1
        assert (seen == 1).all(), shape
    assert kernels.blocks((3, 5, 4, 4), False) == ((slice(None), Ellipsis),)


@pytest.fixture(scope="module")
def float32_nets():
    """Float32 networks with signed trains and residual adds (mobilenet_v2 at 32x32) and with
    max pooling (the small CNN), with calibration images and inputs of which some saturate."""
    import torchvision

    torch.manual_seed(0)
    models = {"small_cnn": (tiny()[0], (1, 8, 8)),
              "mobilenet_v2": (torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.35)
                               .eval(), (3, 32, 32))}
    g = torch.Generator().manual_seed(4)
    out = {}
    for name, (model, shape) in models.items():
        cal = torch.rand(8, *shape, generator=g)
        net = convert(model, cal, T=6, correction="none", progress=False)
        out[name] = net, torch.cat([cal[:2], 3 * torch.rand(3, *shape, generator=g)])
    return out


def trains_of(net, x) -> list[SpikeTrain]:
    """The trains of a call of ``net`` on ``x`` (caught on their way out of population_train)."""
    seen: list[SpikeTrain] = []
    original = type(net).population_train

    def catch(self, pop, trains):
        seen.append(original(self, pop, trains))
        return seen[-1]

    with pytest.MonkeyPatch.context() as m:
        m.setattr(type(net), "population_train", catch)
        net(x)
    return seen


@pytest.mark.parametrize("rounding", ["nearest", "floor"])
def test_fused_float32_network_equals_the_float_code_path(float32_nets, rounding, monkeypatch):
    """The fused float32 network (int32 codes from the float64 quotient, value through a work
    buffer, saturations counted on the quotient, spikes by table on the int32 codes) gives bit
    for bit the logits and exactly the stats of the float-code path (fmod codes, float32
    saturation test), with saturations, signed trains, residual adds and max pooling."""
    from spikeconverter.converters import norse_backend

    for name, (net, x) in float32_nets.items():
        monkeypatch.setattr(net.graph, "rounding", rounding)  # read by every call
        got = [net(x), net.stats]
        got2 = [net(x), net.stats]  # the work buffers reused
        codes = [t.code for t in trains_of(net, x) if t.code is not None]
        assert codes and all(c.dtype == torch.int32 for c in codes)
        with monkeypatch.context() as m:
            m.setattr(norse_backend, "fast_code", lambda v, T: False)
            m.setattr(kernels, "fast_code", lambda v, T: False)
            want = [net(x), net.stats]
            codes = [t.code for t in trains_of(net, x) if t.code is not None]
            assert codes and all(c.dtype == torch.float32 for c in codes)
        for out, stats in (got, got2):
            assert torch.equal(out, want[0]), name
            assert stats == want[1], name
        assert want[1]["saturations"] > 0 and want[1]["spikes"] > 0
        if name == "mobilenet_v2":
            assert any(p["kind"] == "signed" and p["saturations"] for p in
                       want[1]["populations"].values())


@pytest.mark.slow
def test_compiled_network_equals_the_eager_network(float32_nets, compile_all, monkeypatch):
    """With every population on the compiled kernel (codes, saturations, counts and decoded
    values in one loop), the fused float32 networks give bit for bit the eager path's logits
    and exactly its stats (saturations, signed trains, residual adds, max pooling)."""
    for name, (net, x) in float32_nets.items():
        for rounding in ("nearest", "floor"):
            monkeypatch.setattr(net.graph, "rounding", rounding)
            got = [compiled_or_skip(net, x), net.stats]
            assert net._counted == {} and got[1]["spikes"] > 0
            with monkeypatch.context() as m:
                m.setenv("SPIKECONVERTER_COMPILE", "0")
                want = [net(x), net.stats]
            assert torch.equal(got[0], want[0]), name
            assert got[1] == want[1], name


def test_work_buffers_are_scratch_not_state():
    """A copy of a network that has run, and a network whose work buffers were released, give
    the same logits (the buffers are remade, never copied or saved)."""
    import copy

    model, x, _ = tiny()
    net = convert(model, x, T=5, correction="none", progress=False)
    want = net(x)
    twin = copy.deepcopy(net)
    assert not twin._work and torch.equal(twin(x), want)
    net.release_workspace()
    assert torch.equal(net(x), want)


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
