"""``finetune``: train a converted network's weights, biases and thresholds through its spikes.

The paper fine-tunes after conversion with SGD (lr 0.01, momentum 0.9, weight decay 5e-4); these
are the defaults. Training runs the Norse iLIF simulation itself
(:class:`~spikeconverter.training.trainable.TrainableSpikingNetwork`: the backend's fused
simulation with Norse surrogate gradients at the spike threshold), not a proxy model, so what
is optimised is what the network computes; every validation score is the exact spiking
simulation's accuracy. The fused simulation costs about as much as the ANN (one synapse op per
edge and window, ``T`` elementwise generate steps), so this is as cheap as training a quantised
ANN with a straight-through estimator, and its gradient is a smoothed version of that
estimator (see the trainable module's docstring).

After training the parameters are written back into ``net.graph`` and ``net`` 's own tensors
are rebuilt from it: same graph, same schedule, new numbers -- the network converts to Lava
(or any backend) exactly as before.

Checkpoints: ``checkpoint=PATH`` writes the best network so far (by validation accuracy; the
latest without validation data) to ``PATH`` with :func:`spikeconverter.converters.save`
(readable by :func:`spikeconverter.converters.load`), and the training state -- parameters,
optimiser state, epoch, step, best score, history -- to ``PATH + ".state"``. Both are written
atomically (temporary file + ``os.replace``). ``resume=True`` continues from the state file.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from spikeconverter.atomic import atomic_path
from spikeconverter.converters.norse_backend import SpikingNetwork
from spikeconverter.converters.serialize import save
from spikeconverter.training.trainable import TrainableSpikingNetwork

__all__ = ["STATE_FORMAT", "evaluate", "finetune", "state_path"]

STATE_FORMAT = "spikeconverter.finetune-state"
_STATE_VERSION = 1


def state_path(checkpoint: str | os.PathLike) -> Path:
    """Where the training state of ``checkpoint`` lives (``<checkpoint>.state``)."""
    p = Path(checkpoint)
    return p.with_name(p.name + ".state")


def _loader(data: Any, batch_size: int, shuffle: bool, seed: int, what: str) -> Iterable:
    """An iterable of ``(x, y)`` batches, re-iterable once per epoch."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"{what}: inputs and labels need the same, non-zero length, got "
                             f"{len(x)} and {len(y)}")
        return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(seed))
    if isinstance(data, torch.Tensor) or not isinstance(data, Iterable):
        raise TypeError(f"{what} must be a DataLoader / iterable of (x, y) batches or a tuple "
                        f"(inputs, labels) of tensors, got {type(data).__name__}")
    return data


def _pair(batch: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) >= 2
            and isinstance(batch[0], torch.Tensor) and isinstance(batch[1], torch.Tensor)):
        raise TypeError(f"{what} must yield (inputs, labels) pairs of tensors, got "
                        f"{type(batch).__name__}")
    return batch[0], batch[1]


def evaluate(net: torch.nn.Module, data: Any, *, batch_size: int = 256,
             progress: bool = False) -> float:
    """Top-1 accuracy of ``net`` (e.g. a :class:`SpikingNetwork`: the spiking simulation) on
    ``data`` (``(inputs, labels)`` tensors or an iterable of ``(x, y)`` batches)."""
    from tqdm.auto import tqdm

    correct = total = 0
    with torch.no_grad():
        for batch in tqdm(_loader(data, batch_size, False, 0, "data"), desc="evaluate",
                          disable=not progress, leave=False):
            x, y = _pair(batch, "data")
            correct += int((net(x).argmax(1) == y).sum())
            total += len(y)
    if total == 0:
        raise ValueError("evaluation data is empty")
    return correct / total


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _check_positive(value: Any, name: str, integer: bool = False, zero: bool = False) -> None:
    ok_type = (isinstance(value, int) and not isinstance(value, bool)) if integer else (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
    if not ok_type or value < 0 or (value == 0 and not zero):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {kind} {'>=' if zero else '>'} 0, got {value!r}")


def finetune(
    net: SpikingNetwork,
    train_data: Any,
    epochs: int = 1,
    *,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 64,
    val_data: Any = None,
    val_every: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
    cosine: bool = False,
    optimizer: str = "sgd",
    clip_grad_norm: float | None = 1.0,
    train_thresholds: bool = True,
    surrogate: str = "triangle",
    alpha: float = 1.0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Fine-tune a converted network through its iLIF spiking simulation (in place).

    Parameters
    ----------
    net : SpikingNetwork
        From :func:`spikeconverter.convert` or :func:`spikeconverter.converters.load`. Its graph
        and tensors are updated in place; its mode and schedule stay as they are.
    train_data : DataLoader, iterable or tuple
        ``(x, y)`` batches (re-iterable for several epochs), or ``(inputs, labels)`` tensors
        (then shuffled into batches of ``batch_size`` with ``seed``).
    epochs : int
        Passes over ``train_data``.
    lr, momentum, weight_decay : float
        Optimiser settings (SGD: the paper's). Weight decay applies to weights and biases, not
        thresholds. ``momentum`` is SGD's momentum; with ``optimizer="adam"`` it is Adam's
        ``beta1`` (``beta2`` = 0.999) and the decay is AdamW's decoupled decay.
    batch_size : int
        Batch size when the data are tensors (train and validation).
    val_data : optional
        Validation data (same forms): the spiking simulation's accuracy is measured every
        ``val_every`` steps and at the end of each epoch; the best parameters are kept and are
        the ones ``net`` ends with.
    val_every : int, optional
        Steps between validations (default: once per epoch).
    checkpoint : path, optional
        Best network file (loadable with ``spikeconverter.converters.load``) plus the training
        state in ``<checkpoint>.state``, both written atomically at each validation and at the
        end of each epoch.
    resume : bool
        Continue from ``<checkpoint>.state`` (parameters, optimiser, epoch, step, best score).
        With a shuffling loader the rest of the interrupted epoch sees different batches.
    progress : bool
        tqdm progress bar with the running loss and the last validation accuracy.
    max_steps : int, optional
        Stop after this many optimiser steps in total (counting resumed ones).
    cosine : bool
        Cosine learning-rate decay to 0 over the run (needs ``len(train_data)`` or
        ``max_steps``); constant otherwise.
    optimizer : {"sgd", "adam"}
        ``"sgd"`` (the paper's, default) or ``"adam"`` (AdamW, per-parameter step sizes).
    clip_grad_norm : float, optional
        Clip the global gradient norm to this value before each step (1 by default; ``None``
        trains unclipped, as the paper did). Deep BN-folded networks need it: on the CIFAR-10
        ResNet-20 at T=2 (``benchmarks/finetune_resnet20.py``, 40 steps of batch 64) SGD at lr
        0.01 overshoots in the first steps (loss 12, test top-1 48 % -> 11 %), while the same
        settings with ``clip_grad_norm=1`` gain 25 points (48 % -> 74 %).
    train_thresholds : bool
        Train each population's threshold (kept > 0 and under ReLU6 caps).
    surrogate, alpha : str, float
        Norse surrogate gradient of the spike threshold, applied to the membrane in threshold
        units (see :mod:`spikeconverter.training.trainable`).
    loss_fn : callable, optional
        ``loss_fn(logits, labels)``; cross-entropy by default.
    seed : int
        Seeds shuffling of tensor data.

    Returns
    -------
    dict
        ``steps``, ``epochs`` (completed), ``loss`` (per step), ``val_steps`` and
        ``val_accuracy`` (per validation), ``best_accuracy``/``best_step`` (``None`` without
        validation), ``seconds`` (wall time of this call) and ``cpu_seconds`` (process CPU
        time of this call).

    Raises
    ------
    ValueError
        Bad settings; ``resume`` without a checkpoint or state file; a state file that does not
        fit the network.
    TypeError
        ``net`` is no SpikingNetwork, or the data are not ``(x, y)`` batches.
    """
    from tqdm.auto import tqdm

    if not isinstance(net, SpikingNetwork):
        raise TypeError(f"net must be a SpikingNetwork (from spikeconverter.convert or load), "
                        f"got {type(net).__name__}")
    _check_positive(epochs, "epochs", integer=True, zero=True)
    _check_positive(batch_size, "batch_size", integer=True)
    _check_positive(lr, "lr")
    _check_positive(momentum, "momentum", zero=True)
    _check_positive(weight_decay, "weight_decay", zero=True)
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if clip_grad_norm is not None:
        _check_positive(clip_grad_norm, "clip_grad_norm")
    if val_every is not None:
        _check_positive(val_every, "val_every", integer=True)
    if max_steps is not None:
        _check_positive(max_steps, "max_steps", integer=True)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=PATH (the file to resume from)")
    loss_fn = loss_fn or F.cross_entropy
    t_wall, t_cpu = time.perf_counter(), time.process_time()

    trainable = TrainableSpikingNetwork(copy.deepcopy(net.graph), net.schedule,
                                        surrogate=surrogate, alpha=alpha,
                                        train_thresholds=train_thresholds, dtype=net.dtype)
    groups = trainable.parameter_groups()
    param_groups = [
        {"params": groups["weights"] + groups["biases"], "weight_decay": weight_decay},
        {"params": groups["thresholds"], "weight_decay": 0.0},
    ]
    if optimizer == "adam":
        if momentum >= 1:
            raise ValueError(f"with optimizer='adam', momentum is beta1 and must be < 1, got "
                             f"{momentum!r}")
        opt: torch.optim.Optimizer = torch.optim.AdamW(param_groups, lr=lr,
                                                       betas=(momentum, 0.999))
    else:
        opt = torch.optim.SGD(param_groups, lr=lr, momentum=momentum)
    train = _loader(train_data, batch_size, True, seed, "train_data")
    steps_per_epoch = len(train) if hasattr(train, "__len__") else None
    total = None
    if steps_per_epoch is not None:
        total = epochs * steps_per_epoch
    if max_steps is not None:
        total = max_steps if total is None else min(total, max_steps)
    if cosine and total is None:
        raise ValueError("cosine=True needs train_data with a length or max_steps")

    history: dict[str, Any] = {"steps": 0, "epochs": 0, "loss": [], "val_steps": [],
                               "val_accuracy": [], "best_accuracy": None, "best_step": None}
    epoch, skip = 0, 0
    best_state: dict[str, torch.Tensor] | None = None
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume:
        epoch, skip, best_state = _load_state(state_path(ckpt), trainable, opt, history)

    def schedule_lr() -> None:
        if cosine:
            frac = min(history["steps"] / total, 1.0)
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * frac))

    def validate_and_save(batch_in_epoch: int) -> None:
        nonlocal best_state
        trainable.eval()
        improved = val_data is None  # without validation the latest parameters are kept
        if val_data is not None and (not history["val_steps"]
                                     or history["val_steps"][-1] != history["steps"]):
            acc = evaluate(trainable, val_data, batch_size=batch_size)
            history["val_steps"].append(history["steps"])
            history["val_accuracy"].append(acc)
            improved = history["best_accuracy"] is None or acc > history["best_accuracy"]
            if improved:
                history["best_accuracy"], history["best_step"] = acc, history["steps"]
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}" if history["loss"] else "-",
                            val=f"{acc:.4f}")
        if improved:
            best_state = {k: v.detach().clone() for k, v in trainable.state_dict().items()}
            if ckpt is not None:
                _save_network(trainable, net, ckpt)
        if ckpt is not None:
            _atomic_torch_save({
                "format": STATE_FORMAT, "version": _STATE_VERSION,
                "model": trainable.state_dict(), "optimizer": opt.state_dict(),
                "epoch": epoch, "batch_in_epoch": batch_in_epoch, "history": history,
                "best_model": best_state,
            }, state_path(ckpt))
        trainable.train()

    def done() -> bool:
        return max_steps is not None and history["steps"] >= max_steps

    bar = tqdm(total=total, initial=history["steps"], desc="finetune", disable=not progress)
    if not resume and val_data is not None:
        validate_and_save(0)  # the converted network competes for "best" too
    trainable.train()
    try:
        while epoch < epochs and not done():
            batches = iter(train)
            if skip:
                batches = itertools.islice(batches, skip, None)
            b = skip
            exhausted = True
            for batch in batches:
                x, y = _pair(batch, "train_data")
                schedule_lr()
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(trainable(x.to(net.dtype)), y)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss became {float(loss)} at step {history['steps']}; lower lr "
                        f"(now {opt.param_groups[0]['lr']})")
                loss.backward()
                if clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(trainable.parameters(), clip_grad_norm)
                opt.step()
                trainable.project_()
                history["steps"] += 1
                b += 1
                history["loss"].append(loss.item())
                bar.update(1)
                if not (history["steps"] % 10):
                    bar.set_postfix(loss=f"{sum(history['loss'][-10:]) / 10:.3f}")
                if val_every is not None and history["steps"] % val_every == 0:
                    validate_and_save(b)
                if done():
                    exhausted = False
                    break
            if b == 0:
                raise ValueError("train_data gave no batches (a one-shot iterator can only be "
                                 "used for one epoch; pass a DataLoader or tensors)")
            skip = 0
            if exhausted:
                epoch += 1
                history["epochs"] = epoch
            validate_and_save(0 if exhausted else b)
    finally:
        bar.close()
    if best_state is not None:
        trainable.load_state_dict(best_state)
    trainable.sync_to_graph(net.graph)
    fresh = SpikingNetwork(net.graph, net.schedule, mode=net.mode, dtype=net.dtype)
    net.load_state_dict(fresh.state_dict())
    history["seconds"] = time.perf_counter() - t_wall
    history["cpu_seconds"] = time.process_time() - t_cpu
    return history


def _save_network(trainable: TrainableSpikingNetwork, net: SpikingNetwork, path: Path) -> None:
    """Save ``trainable`` 's current parameters as a network file with ``net`` 's options."""
    graph = trainable.sync_to_graph(copy.deepcopy(trainable.graph))
    save(SimpleNamespace(graph=graph, schedule=net.schedule, mode=net.mode, dtype=net.dtype),
         path)


def _load_state(path: Path, trainable: TrainableSpikingNetwork, opt: torch.optim.Optimizer,
                history: dict[str, Any]) -> tuple[int, int, dict[str, torch.Tensor] | None]:
    if not path.is_file():
        raise ValueError(f"resume=True but there is no training state {path} (it is written "
                         "beside the checkpoint during a run with checkpoint=...)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt files fail in many ways
        raise ValueError(f"{path}: not a readable training state ({type(exc).__name__}: "
                         f"{exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a spikeconverter fine-tuning state")
    if blob.get("version") != _STATE_VERSION:
        raise ValueError(f"{path}: state version {blob.get('version')!r} is not supported "
                         f"(reads {_STATE_VERSION})")
    try:
        trainable.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: the training state does not fit this network ({exc})") \
            from exc
    history.update(blob["history"])
    return int(blob["epoch"]), int(blob["batch_in_epoch"]), blob.get("best_model")
