"""Best-on-validation selection from a held-out split, distillation from the ANN, and resume
consistency with both."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from trainhelpers import digits_and_ann

from spikeconverter.converters import convert, load
from spikeconverter.training import evaluate, finetune
from spikeconverter.training.holdout import holdout_indices, split_holdout
from spikeconverter.training.losses import distillation_loss


@pytest.fixture(scope="module")
def digits():
    """sklearn digits (8x8): 600 training images and an ANN trained on them."""
    return digits_and_ann(1)


def test_holdout_indices_are_a_seeded_partition():
    tr, va = holdout_indices(103, 0.1, seed=3)
    assert len(va) == 11 and sorted(tr + va) == list(range(103))
    assert holdout_indices(103, 0.1, seed=3) == (tr, va)
    assert holdout_indices(103, 0.1, seed=4)[1] != va
    assert holdout_indices(2, 0.99, seed=0)[0]  # at least one item is left for training
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="val_fraction"):
            holdout_indices(10, bad, seed=0)
    x, y = torch.arange(20.0).reshape(10, 2), torch.arange(10)
    (xt, yt), (xv, yv) = split_holdout((x, y), 0.3, 0, 4)
    assert len(xv) == 3 and set(yt.tolist()).isdisjoint(yv.tolist())
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    train, val = split_holdout(loader, 0.3, 0, 4)
    assert sorted(int(v) for _, b in val for v in b) == sorted(yv.tolist())
    assert sum(len(b) for _, b in train) == 7
    with pytest.raises(TypeError, match="val_data instead"):
        split_holdout(iter(loader), 0.3, 0, 4)


def test_best_on_validation_keeps_the_best_epoch(digits, tmp_path):
    """Epochs 1-2 train, epoch 3 ascends the loss (a deliberately bad epoch): the network kept,
    its checkpoint and ``best_epoch`` are those of the best validation, not the last."""
    model, (x, y) = digits
    net = convert(model, x[:128], T=2, rounding="floor", correction="none",
                  threshold_granularity="layer", progress=False)
    steps_per_epoch = 480 // 60
    calls = {"n": 0}

    def loss_fn(logits, labels):
        calls["n"] += 1
        sign = -1.0 if calls["n"] > 2 * steps_per_epoch else 1.0  # epoch 3 goes uphill
        return sign * F.cross_entropy(logits, labels)

    ckpt = tmp_path / "best.snn"
    h = finetune(net, (x, y), epochs=3, val_fraction=0.2, batch_size=60, lr=0.05,
                 loss_fn=loss_fn, progress=False, checkpoint=ckpt)
    acc = h["val_accuracy"]
    assert h["val_epochs"] == [0, 1, 2, 3] and h["steps"] == 3 * steps_per_epoch
    assert acc[3] < max(acc[1:3]) - 0.1, acc  # the bad epoch really is worse
    best = max(range(4), key=lambda i: (acc[i], -i))
    assert h["best_epoch"] == best != 3 and h["best_accuracy"] == acc[best]
    _, (xv, yv) = split_holdout((x, y), 0.2, 0, 60)  # the same seeded split
    assert evaluate(net, (xv, yv)) == pytest.approx(acc[best])
    assert evaluate(load(ckpt), (xv, yv)) == pytest.approx(acc[best])
    with pytest.raises(ValueError, match="not both"):
        finetune(net, (x, y), val_data=(xv, yv), val_fraction=0.2)


def test_distillation_loss_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 2, 0])
    tau, w = 3.0, 0.7
    p_t = torch.softmax(t / tau, 1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / tau, 1))).sum(1).mean()
    expected = w * tau ** 2 * kl + (1 - w) * F.cross_entropy(s, y)
    got = distillation_loss(s, t, y, temperature=tau, weight=w)
    torch.testing.assert_close(got, expected)
    # pure distillation: zero at the teacher, gradient tau * (softmax(s/tau) - p_t) / B
    assert float(distillation_loss(t, t, y, temperature=tau, weight=1.0)) == pytest.approx(0)
    (grad,) = torch.autograd.grad(distillation_loss(s, t, y, temperature=tau, weight=1.0), s)
    torch.testing.assert_close(grad, tau * (torch.softmax(s / tau, 1) - p_t) / 5)
    with pytest.raises(ValueError, match="shape"):
        distillation_loss(s, t[:, :3], y)
    with pytest.raises(ValueError, match="weight"):
        distillation_loss(s, t, y, weight=1.5)


def test_finetune_distils_from_the_teacher(digits):
    """The first step's loss is the distillation loss of the spiking logits and the ANN's on
    the first shuffled batch; weight 0 trains exactly as without a teacher."""
    model, (x, y) = digits
    net = convert(model, x[:128], T=2, progress=False)
    data = (x[:128], y[:128])
    h = finetune(copy.deepcopy(net), data, max_steps=1, batch_size=32, teacher=model,
                 distill_weight=0.8, distill_temperature=2.0, progress=False, lr=1e-3)
    xb, yb = next(iter(DataLoader(TensorDataset(*data), batch_size=32, shuffle=True,
                                  generator=torch.Generator().manual_seed(0))))
    with torch.no_grad():
        expected = distillation_loss(net(xb), model(xb), yb, temperature=2.0, weight=0.8)
    assert h["loss"][0] == pytest.approx(float(expected), rel=1e-4)
    plain = finetune(copy.deepcopy(net), data, max_steps=3, batch_size=32, progress=False)
    zero = finetune(copy.deepcopy(net), data, max_steps=3, batch_size=32, progress=False,
                    teacher=model, distill_weight=0.0)
    assert zero["loss"] == pytest.approx(plain["loss"], rel=1e-6)


def test_resume_with_holdout_and_distillation_equals_uninterrupted(digits, tmp_path):
    """A run that crashes in its second epoch, resumed from the state written at the end of
    the first, ends exactly as the uninterrupted run (same batches, augmentation stream,
    cosine schedule, validations and best epoch)."""
    model, (x, y) = digits
    small = (x[:200], y[:200])
    base = convert(model, x[:128], T=2, progress=False)
    opts = dict(epochs=2, batch_size=40, val_fraction=0.2, teacher=model, optimizer="adam",
                lr=1e-3, cosine=True, progress=False)
    straight = copy.deepcopy(base)
    h = finetune(straight, small, **opts)
    calls = {"n": 0}

    def crashing(logits, labels):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("crash")
        return F.cross_entropy(logits, labels)

    ckpt = tmp_path / "net.snn"
    with pytest.raises(RuntimeError, match="crash"):
        finetune(copy.deepcopy(base), small, checkpoint=ckpt, loss_fn=crashing, **opts)
    resumed = copy.deepcopy(base)
    h2 = finetune(resumed, small, checkpoint=ckpt, resume=True, **opts)
    assert h2["steps"] == h["steps"] == 8 and h2["epochs"] == 2
    assert h2["loss"] == pytest.approx(h["loss"], rel=1e-5)
    assert h2["val_accuracy"] == h["val_accuracy"] and h2["best_epoch"] == h["best_epoch"]
    with torch.no_grad():
        torch.testing.assert_close(resumed(x[:50]), straight(x[:50]))


def test_cli_val_fraction_and_distill(digits, tmp_path, capsys):
    """``--val-fraction`` holds out unaugmented training images, ``--distill`` loads the ANN
    from a model file and its weights; the report names the network kept."""
    import argparse

    import numpy as np
    from PIL import Image

    from spikeconverter.training.cli import add_finetune_parser, run_finetune

    model, (x, y) = digits
    for i in range(50):
        folder = tmp_path / "train" / str(int(y[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((x[i, 0].numpy() * 255).astype(np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "ann.py").write_text(
        "from spikeconverter.models import small_cnn\n\n\n"
        "def ann():\n    return small_cnn(input_size=8, width=8, hidden=32)\n")
    torch.save(model.state_dict(), tmp_path / "ann.pt")
    net = convert(model, x[:64], T=2, progress=False)
    net.save(tmp_path / "net.snn")
    parser = argparse.ArgumentParser(prog="spikeconverter")
    add_finetune_parser(parser.add_subparsers(dest="command", required=True))
    common = ["finetune", str(tmp_path / "net.snn"), "-d", str(tmp_path / "train"), "-o",
              str(tmp_path / "ft.snn"), "--batch-size", "20", "--no-progress", "--epochs", "2"]
    args = parser.parse_args(common + [
        "--val-fraction", "0.2", "--augment", "--distill", f"{tmp_path / 'ann.py'}:ann",
        "--distill-checkpoint", str(tmp_path / "ann.pt"), "--distill-weight", "1",
        "--ema", "0.9", "--select-on", "kl"])
    assert run_finetune(args) == 0
    text = capsys.readouterr().out
    assert "4 steps, 2 epochs" in text and "(best: " in text.split("after")[-1]
    load(tmp_path / "ft.snn").graph.validate()
    for extra, match in ((["--val-fraction", "1.5"], "val-fraction"),
                         (["--val-fraction", "0.2", "--val", str(tmp_path)], "pass one"),
                         (["--distill-checkpoint", "w.pt"], "--distill MODEL"),
                         (["--select-on", "kl"], "--distill MODEL"),
                         (["--ema", "1"], "ema")):
        with pytest.raises(ValueError, match=match):
            run_finetune(parser.parse_args(common + extra))


def _turning_run(digits):
    """A converted digits net and a loss that descends for two epochs of 16 batches and
    ascends in the third (so the last validation is worse than an earlier one)."""
    model, (x, y) = digits
    net = convert(model, x[:128], T=2, rounding="floor", correction="none",
                  threshold_granularity="layer", progress=False)
    calls = {"n": 0}

    def loss_fn(logits, labels):  # epochs 1-2 descend, epoch 3 ascends
        calls["n"] += 1
        return (-1.0 if calls["n"] > 16 else 1.0) * F.cross_entropy(logits, labels)

    return model, net, (x, y), loss_fn


def test_select_on_kl_keeps_the_validation_closest_to_the_teacher(digits):
    """``select_on="kl"`` keeps the network of the lowest validation KL to the ANN at the
    distillation temperature (recorded per validation next to accuracy and agreement, which
    are those of ``validation_scores``); the KL is the definition's; without a teacher it is
    refused."""
    from spikeconverter.training.finetune import validation_scores

    model, net, (x, y), loss_fn = _turning_run(digits)
    h = finetune(net, (x, y), epochs=3, val_fraction=0.2, batch_size=60, lr=0.05,
                 loss_fn=loss_fn, teacher=model, distill_weight=0.0, select_on="kl",
                 distill_temperature=3.0, progress=False)
    kl = h["val_kl"]
    assert len(kl) == len(h["val_agreement"]) == 4 and h["select_on"] == "kl"
    best = min(range(4), key=lambda i: (kl[i], i))
    assert h["best_step"] == h["val_steps"][best] and h["best_score"] == -kl[best]
    assert h["best_accuracy"] == h["val_accuracy"][best]
    _, (xv, yv) = split_holdout((x, y), 0.2, 0, 60)
    s = validation_scores(net, (xv, yv), model, temperature=3.0)
    assert s["kl"] == pytest.approx(kl[best], rel=1e-9)
    assert s["accuracy"] == pytest.approx(h["val_accuracy"][best])
    with torch.no_grad():
        out, ref = net(xv).double(), model(xv).double()
    p = torch.softmax(ref / 3, 1)
    manual = float((p * (p.log() - torch.log_softmax(out / 3, 1))).sum(1).mean())
    assert s["kl"] == pytest.approx(manual, rel=1e-9)
    assert s["agreement"] == pytest.approx(float((out.argmax(1) == ref.argmax(1)).double().mean()))
    with pytest.raises(ValueError, match="teacher"):
        finetune(net, (x, y), val_fraction=0.2, select_on="kl")
    with pytest.raises(ValueError, match="select_on"):
        finetune(net, (x, y), val_fraction=0.2, teacher=model, select_on="loss")


def _fine_tuned_copies(digits, runs: list[dict]) -> tuple[list[dict], object, tuple]:
    """Fine-tune one copy of a converted digits net per ``runs`` entry (extra ``finetune``
    options); their floating-point parameters and buffers, the converted net, the data."""
    model, (x, y) = digits
    base = convert(model, x[:128], T=2, progress=False)
    data, opts = (x[:128], y[:128]), dict(batch_size=32, lr=0.05, progress=False)
    weights = []
    for extra in runs:
        net = copy.deepcopy(base)
        finetune(net, data, **opts, **extra)
        named = dict(net.named_parameters()) | dict(net.named_buffers())
        weights.append({k: v for k, v in named.items() if v.is_floating_point()})
    return weights, base, data


def _assert_mean_and_copy(w: list[dict], copy_of: int) -> None:
    """Run 2 wrote back the mean of runs 0 and 1, run 3 the parameters of run ``copy_of``, and
    runs 0 and 1 really differ."""
    moved = 0
    for k, w1 in w[1].items():
        torch.testing.assert_close(w[2][k], (w[0][k] + w1) / 2)
        torch.testing.assert_close(w[3][k], w[copy_of][k])
        moved += not torch.equal(w[0][k], w1)
    assert moved > 0


def test_ema_keeps_the_moving_average_of_the_parameters(digits):
    """``ema=0.5`` writes back ``(w1 + w2) / 2`` after two steps (the average's first update
    copies), ``ema=0`` the latest parameters, exactly as without it."""
    w, base, data = _fine_tuned_copies(digits, [
        dict(max_steps=1), dict(max_steps=2), dict(max_steps=2, ema=0.5),
        dict(max_steps=2, ema=0.0)])
    _assert_mean_and_copy(w, copy_of=1)
    with pytest.raises(ValueError, match="ema"):
        finetune(copy.deepcopy(base), data, ema=1.0)


def test_select_on_last_keeps_the_end_of_the_run(digits):
    """``select_on="last"`` keeps the network of the last validation even when an earlier one
    scored better (a deliberately bad last epoch), still records every validation, and needs
    no teacher."""
    _, net, (x, y), loss_fn = _turning_run(digits)
    h = finetune(net, (x, y), epochs=3, val_fraction=0.2, batch_size=60, lr=0.05,
                 loss_fn=loss_fn, select_on="last", progress=False)
    acc = h["val_accuracy"]
    assert len(acc) == 4 and acc[3] < max(acc[1:3]) - 0.1, acc
    assert h["best_step"] == h["steps"] == h["val_steps"][-1] and h["best_accuracy"] == acc[3]
    assert h["best"].startswith(f"step {h['steps']} ") and h["select_on"] == "last"
    _, (xv, yv) = split_holdout((x, y), 0.2, 0, 60)
    assert evaluate(net, (xv, yv)) == pytest.approx(acc[3])


def test_swa_from_keeps_the_uniform_average_of_the_late_steps(digits):
    """``swa_from=2`` over 3 steps writes back ``(w2 + w3) / 2`` (the parameters after steps 2
    and 3); a run that ends before it begins writes back the latest parameters; ``ema`` and
    ``swa_from`` together are refused."""
    w, base, data = _fine_tuned_copies(digits, [
        dict(max_steps=2), dict(max_steps=3), dict(max_steps=3, swa_from=2),
        dict(max_steps=2, swa_from=3)])
    _assert_mean_and_copy(w, copy_of=0)
    with pytest.raises(ValueError, match="not both"):
        finetune(copy.deepcopy(base), data, ema=0.9, swa_from=2)
    with pytest.raises(ValueError, match="swa_from"):
        finetune(copy.deepcopy(base), data, swa_from=0)


def test_mixup_distils_on_the_mixed_batch(digits):
    """With ``mixup`` the first step's loss is the distillation loss on the batch mixed by
    ``mixup(x, alpha, mixup_seed(seed, 0))`` (the teacher labels the mixed images, the hard
    part mixes both labels); the mixing is a seeded convex blend with a permutation."""
    from spikeconverter.training.finetune import mixup_seed
    from spikeconverter.training.losses import mixup

    model, (x, y) = digits
    net = convert(model, x[:128], T=2, progress=False)
    data = (x[:128], y[:128])
    h = finetune(copy.deepcopy(net), data, max_steps=1, batch_size=32, teacher=model,
                 distill_weight=0.6, distill_temperature=2.0, mixup=0.4, seed=3,
                 progress=False, lr=1e-3)
    xb, yb = next(iter(DataLoader(TensorDataset(*data), batch_size=32, shuffle=True,
                                  generator=torch.Generator().manual_seed(3))))
    mixed, lam, perm = mixup(xb, 0.4, mixup_seed(3, 0))
    assert 0 < lam < 1 and sorted(perm.tolist()) == list(range(32))
    torch.testing.assert_close(mixed, lam * xb + (1 - lam) * xb[perm])
    with torch.no_grad():
        out, ref = net(mixed), model(mixed)
    hard = lam * F.cross_entropy(out, yb) + (1 - lam) * F.cross_entropy(out, yb[perm])
    soft = distillation_loss(out, ref, yb, temperature=2.0, weight=1.0)
    assert h["loss"][0] == pytest.approx(float(0.4 * hard + 0.6 * soft), rel=1e-4)
    unmixed = distillation_loss(net(xb), model(xb), yb, temperature=2.0, weight=0.6)
    assert h["loss"][0] != pytest.approx(float(unmixed), rel=1e-3)
    assert mixup(xb, 0.4, 7)[1] == mixup(xb, 0.4, 7)[1] != mixup(xb, 0.4, 8)[1]
    with pytest.raises(ValueError, match="mixup"):
        finetune(net, data, mixup=0.0)
