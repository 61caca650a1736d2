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
optimiser state, epoch, step, best score, history, torch's random state -- to
``PATH + ".state"``. Both are written
atomically (temporary file + ``os.replace``). ``resume=True`` continues from the state file.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from spikeconverter.atomic import atomic_path
from spikeconverter.converters.capture import capture
from spikeconverter.converters.ir import NEURON_KINDS, Graph
from spikeconverter.converters.norse_backend import SpikingNetwork
from spikeconverter.converters.reconstruction import blocks
from spikeconverter.converters.serialize import write
from spikeconverter.devices import resolve_device
from spikeconverter.distributed import is_distributed, rank
from spikeconverter.training.config import FinetuneConfig
from spikeconverter.training.holdout import split_holdout
from spikeconverter.training.losses import distillation_loss, feature_loss, mixup
from spikeconverter.training.trainable import TrainableSpikingNetwork

__all__ = ["STATE_FORMAT", "FinetuneConfig", "evaluate", "feature_populations", "finetune",
           "lr_factor", "mixup_seed", "state_path", "teacher_graph", "validation_scores"]

_LOG = logging.getLogger(__name__)
STATE_FORMAT = "spikeconverter.finetune-state"
_STATE_VERSION = 2  # 2: three optimiser groups (weights, biases, thresholds)


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


def _sharded(loader: Iterable, seed: int) -> Iterable:
    """Under torch.distributed: ``loader`` 's dataset through a shuffling
    :class:`~torch.utils.data.DistributedSampler` (each process its share, ``loader`` 's batch
    size per process); else ``loader`` itself."""
    if not is_distributed():
        return loader
    if not isinstance(loader, DataLoader):
        raise TypeError("distributed fine-tuning needs a DataLoader over a Dataset (to shard "
                        f"it with a DistributedSampler), got {type(loader).__name__}")
    return DataLoader(loader.dataset, batch_size=loader.batch_size,
                      sampler=DistributedSampler(loader.dataset, shuffle=True, seed=seed),
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      drop_last=loader.drop_last)


def _device_of(net: torch.nn.Module) -> torch.device:
    return next(itertools.chain(net.parameters(), net.buffers())).device


def _xy(batch: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
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
    dev = _device_of(net)
    with torch.no_grad():
        for batch in tqdm(_loader(data, batch_size, False, 0, "data"), desc="evaluate",
                          disable=not progress, leave=False):
            x, y = _xy(batch, "data")
            correct += int((net(x.to(dev)).argmax(1) == y.to(dev)).sum())
            total += len(y)
    if total == 0:
        raise ValueError("evaluation data is empty")
    return correct / total


def validation_scores(net: torch.nn.Module, data: Any, teacher: torch.nn.Module | None = None,
                      *, batch_size: int = 256, temperature: float = 1.0
                      ) -> dict[str, float | None]:
    """``{"accuracy", "kl", "agreement"}`` of ``net`` on ``data``: top-1 accuracy, and with a
    ``teacher`` the mean KL(teacher || net) of the softmax outputs at ``temperature`` (both
    logits divided by it) and the share of images whose top-1 class is the teacher's
    (``None`` without a teacher)."""
    if teacher is None:
        return {"accuracy": evaluate(net, data, batch_size=batch_size), "kl": None,
                "agreement": None}
    correct = agree = total = 0
    kl = 0.0
    dev = _device_of(net)
    with torch.no_grad():
        for batch in _loader(data, batch_size, False, 0, "data"):
            x, y = _xy(batch, "data")
            x, y = x.to(dev), y.to(dev)
            out, ref = net(x).to(torch.float64), teacher(x).to(torch.float64)
            kl += float(F.kl_div(F.log_softmax(out / temperature, 1),
                                 F.log_softmax(ref / temperature, 1), reduction="sum",
                                 log_target=True))
            pred = out.argmax(1)
            correct += int((pred == y).sum())
            agree += int((pred == ref.argmax(1)).sum())
            total += len(y)
    if total == 0:
        raise ValueError("evaluation data is empty")
    return {"accuracy": correct / total, "kl": kl / total, "agreement": agree / total}


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def finetune(
    net: SpikingNetwork,
    train_data: Any,
    epochs: int | None = None,
    *,
    val_data: Any = None,
    config: FinetuneConfig | None = None,
    **options: Any,
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
    epochs : int, optional
        Passes over ``train_data`` (default: the config's, 1).
    val_data : optional
        Validation data (same forms): the spiking simulation's accuracy is measured before
        training, every ``val_every`` steps and at the end of each epoch; the best parameters
        are kept and are the ones ``net`` ends with. Or hold out part of ``train_data`` with
        ``val_fraction``.
    config : FinetuneConfig, optional
        The settings (defaults: the paper's SGD); ``epochs`` and ``options`` override fields.
    **options
        Any field of :class:`FinetuneConfig` (``lr``, ``momentum``, ``weight_decay``,
        ``batch_size``, ``val_every``, ``checkpoint``, ``resume``, ``progress``, ``max_steps``,
        ``cosine``, ``warmup``, ``threshold_lr_scale``, ``weight_lr_scale``, ``optimizer``,
        ``clip_grad_norm``, ``train_thresholds``, ``surrogate``,
        ``alpha``, ``loss_fn``, ``seed``, ``val_fraction``, ``teacher``,
        ``distill_temperature``, ``distill_weight``, ``feature_weight``, ``mixup``,
        ``mixup_kind``, ``ema``, ``swa_from``, ``select_on``,
        ``on_validate``), documented there.

    Returns
    -------
    dict
        ``steps``, ``epochs`` (completed), ``loss`` (per step), ``val_steps`` and
        ``val_accuracy`` and ``val_epochs`` (per validation; epochs completed when it was
        measured), ``val_kl`` and ``val_agreement`` (per validation, with a ``teacher``: see
        :func:`validation_scores`; ``None`` without), ``select_on`` and ``best_score`` (the
        winning validation's score; the KL negated), ``best_accuracy``/``best_step``/
        ``best_epoch`` (the winning validation:
        its step and the epochs completed then; ``None`` without validation), ``best`` (which
        network was kept, in words: ``"converted"`` -- the network before training, step 0 --,
        ``"step S (epoch E)"`` with ``E`` the epochs done as a decimal, e.g. ``"step 25
        (epoch 0.34)"`` inside the first epoch, ``"step S"`` when the epoch length is
        unknown; ``None`` without validation),
        ``seconds`` (wall time of this call) and ``cpu_seconds`` (process CPU
        time of this call).

    Raises
    ------
    ValueError
        Bad settings; ``resume`` without a checkpoint or state file; a state file that does not
        fit the network.
    TypeError
        ``net`` is no SpikingNetwork, the data are not ``(x, y)`` batches, or an option is no
        field of :class:`FinetuneConfig`.
    """
    if not isinstance(net, SpikingNetwork):
        raise TypeError(f"net must be a SpikingNetwork (from spikeconverter.convert or load), "
                        f"got {type(net).__name__}")
    if epochs is not None:
        options["epochs"] = epochs
    cfg = (config or FinetuneConfig()).updated(**options)
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    run = _Run(net, train_data, val_data, cfg)
    history = run.fit()
    run.write_back()
    history["seconds"] = time.perf_counter() - t_wall
    history["cpu_seconds"] = time.process_time() - t_cpu
    return history


def _optimizer(trainable: TrainableSpikingNetwork, cfg: FinetuneConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over the weights, the biases (both decayed) and the thresholds (not
    decayed), each group at its multiple of ``lr``."""
    groups = trainable.parameter_groups()
    param_groups = [
        {"params": groups["weights"], "weight_decay": cfg.weight_decay,
         "lr": cfg.lr * cfg.weight_lr_scale, "lr_scale": cfg.weight_lr_scale},
        {"params": groups["biases"], "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
        {"params": groups["thresholds"], "weight_decay": 0.0, "lr": cfg.lr * cfg.threshold_lr_scale,
         "lr_scale": cfg.threshold_lr_scale},
    ]
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum)


def mixup_seed(seed: int, step: int) -> int:
    """The seed of step ``step`` 's mixing (:func:`~spikeconverter.training.losses.mixup`) in
    a run with ``seed``."""
    return seed * 1_000_003 + step


def lr_factor(step: int, warmup: int = 0, total: int | None = None) -> float:
    """The learning rate of optimiser step ``step`` (0-based: steps done so far) as a share of
    the peak: ``(step + 1) / warmup`` during a linear warm-up of ``warmup`` steps, then 1, or
    with ``total`` (the run's steps) a cosine decay from 1 to 0 over the steps after the
    warm-up."""
    if step < warmup:
        return (step + 1) / warmup
    if total is None:
        return 1.0
    frac = min((step - warmup) / max(total - warmup, 1), 1.0)
    return 0.5 * (1 + math.cos(math.pi * frac))


def _total_steps(train: Iterable, cfg: FinetuneConfig) -> int | None:
    """Optimiser steps of the whole run, if known (needed by the cosine schedule)."""
    total = None
    if hasattr(train, "__len__"):
        total = cfg.epochs * len(train)
    if cfg.max_steps is not None:
        total = cfg.max_steps if total is None else min(total, cfg.max_steps)
    if cfg.cosine and total is None:
        raise ValueError("cosine=True needs train_data with a length or max_steps")
    return total


class _Run:
    """One fine-tuning run: the trainable copy of the network, its optimiser and history.

    ``epoch`` and ``skip`` (batches of that epoch already done) say where training resumes.
    """

    def __init__(self, net: SpikingNetwork, train_data: Any, val_data: Any,
                 cfg: FinetuneConfig):
        self.net, self.val_data, self.cfg = net, val_data, cfg
        self.loss_fn = cfg.loss_fn or F.cross_entropy
        self.dev = resolve_device(cfg.device) if cfg.device is not None else _device_of(net)
        if cfg.teacher is not None:
            cfg.teacher.eval().to(self.dev)  # its BN statistics must stay as they are
        self.trainable = TrainableSpikingNetwork(
            copy.deepcopy(net.graph), net.schedule, surrogate=cfg.surrogate, alpha=cfg.alpha,
            train_thresholds=cfg.train_thresholds, dtype=net.dtype).to(self.dev)
        self.trainable.record_values = feature_populations(self.trainable.graph,
                                                           cfg.feature_weight)
        self.teacher_graph: Graph | None = None  # the ANN, for feature distillation
        if self.trainable.record_values:  # checked before any training step
            self.teacher_graph = teacher_graph(cfg.teacher, self.trainable.graph,
                                               self.trainable.record_values)
        if cfg.weight_lr_scale == 0:  # before DDP, which hooks the parameters with gradients
            for p in self.trainable.parameter_groups()["weights"]:
                p.requires_grad_(False)  # saves the weight-gradient part of the backward
        # under torch.distributed DDP averages the gradients of the processes' batches
        self.model: torch.nn.Module = self.trainable
        if is_distributed():
            self.model = DistributedDataParallel(
                self.trainable, device_ids=[self.dev] if self.dev.type == "cuda" else None)
        self.opt = _optimizer(self.trainable, cfg)
        self.ema = None  # the parameters' average: moving (ema) or uniform (swa_from)
        if cfg.ema is not None:
            self.ema = AveragedModel(self.trainable,
                                     multi_avg_fn=get_ema_multi_avg_fn(cfg.ema))
        elif cfg.swa_from is not None:
            self.ema = AveragedModel(self.trainable)
        if cfg.val_fraction is not None:
            if val_data is not None:
                raise ValueError("pass either val_data or val_fraction, not both")
            train_data, self.val_data = split_holdout(train_data, cfg.val_fraction, cfg.seed,
                                                      cfg.batch_size)
        own = _loader(train_data, cfg.batch_size, True, cfg.seed, "train_data")
        # a loader made here is reshuffled from seed + epoch, so a resumed run sees the
        # batches of the uninterrupted one (a caller's loader keeps its own generator)
        self.own_shuffle = own is not train_data or cfg.val_fraction is not None
        self.train = _sharded(own, cfg.seed)
        self.total = _total_steps(self.train, cfg)
        self.history: dict[str, Any] = {
            "steps": 0, "epochs": 0, "loss": [], "val_steps": [], "val_accuracy": [],
            "val_kl": [], "val_agreement": [], "val_epochs": [], "best_accuracy": None,
            "best_score": None, "select_on": cfg.select_on, "best_step": None,
            "best_epoch": None, "best": None}
        self.epoch, self.skip = 0, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.ckpt = Path(cfg.checkpoint) if cfg.checkpoint is not None else None
        if cfg.resume:
            self.epoch, self.skip, self.best_state = _load_state(
                state_path(self.ckpt), self.trainable, self.opt, self.history, self.dev,
                self.ema)
        self.bar: Any = None
        self.started = time.perf_counter()

    def fit(self) -> dict[str, Any]:
        """Train until ``epochs`` or ``max_steps``; the history."""
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, initial=self.history["steps"], desc="finetune",
                        disable=not self.cfg.progress or rank() != 0)
        try:
            if not self.cfg.resume and self.val_data is not None:
                self.validate_and_save(0)  # the converted network competes for "best" too
            self.trainable.train()
            while self.epoch < self.cfg.epochs and not self.done():
                self.run_epoch()
        finally:
            self.bar.close()
        return self.history

    def done(self) -> bool:
        """Whether ``max_steps`` is reached."""
        return self.cfg.max_steps is not None and self.history["steps"] >= self.cfg.max_steps

    def run_epoch(self) -> None:
        """The rest of the current epoch (all of it unless resumed mid-epoch)."""
        gen = getattr(self.train, "generator", None)
        if self.own_shuffle and gen is not None:
            gen.manual_seed(self.cfg.seed + self.epoch)
        sampler = getattr(self.train, "sampler", None)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(self.epoch)  # a new shuffle each epoch, the same on every rank
        batches = iter(self.train)
        if self.skip:
            batches = itertools.islice(batches, self.skip, None)
        b, exhausted = self.skip, True
        for batch in batches:
            self.step(batch)
            b += 1
            if self.cfg.val_every is not None and self.history["steps"] % self.cfg.val_every == 0:
                self.validate_and_save(b)
            if self.done():
                exhausted = False
                break
        if b == 0:
            raise ValueError("train_data gave no batches (a one-shot iterator can only be "
                             "used for one epoch; pass a DataLoader or tensors)")
        self.skip = 0
        if exhausted:
            self.epoch += 1
            self.history["epochs"] = self.epoch
        self.validate_and_save(0 if exhausted else b)

    def step(self, batch: Any) -> None:
        """One optimiser step on ``batch``."""
        x, y = _xy(batch, "train_data")
        self.schedule_lr()
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(x.to(self.dev), y.to(self.dev))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {float(loss)} at step {self.history['steps']}; lower lr "
                f"(now {self.opt.param_groups[0]['lr']})")
        loss.backward()
        if self.cfg.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.trainable.parameters(), self.cfg.clip_grad_norm)
        self.opt.step()
        self.trainable.project_()
        h = self.history
        if self.ema is not None and h["steps"] + 1 >= (self.cfg.swa_from or 0):
            self.ema.update_parameters(self.trainable)
        h["steps"] += 1
        h["loss"].append(loss.item())
        self.bar.update(1)
        if not (h["steps"] % 10):
            self.bar.set_postfix(loss=f"{sum(h['loss'][-10:]) / 10:.3f}")

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch: ``loss_fn``, or distillation from the teacher;
        with ``mixup`` on the mixed batch."""
        hard = self.loss_fn
        if self.cfg.mixup is not None:
            # a stream per step: a resumed run mixes as the uninterrupted one did
            x, lam, perm = mixup(x, self.cfg.mixup,
                                 mixup_seed(self.cfg.seed, self.history["steps"]),
                                 self.cfg.mixup_kind)

            def hard(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
                return lam * self.loss_fn(logits, labels) + (1 - lam) * self.loss_fn(
                    logits, labels[perm])
        logits = self.model(x.to(self.net.dtype))
        teacher = self.cfg.teacher
        if teacher is None:
            return hard(logits, y)
        with torch.no_grad():
            target = teacher(x)
        loss = distillation_loss(logits, target, y, temperature=self.cfg.distill_temperature,
                                 weight=self.cfg.distill_weight, hard_loss=hard)
        if self.teacher_graph is not None:
            with torch.no_grad():
                ann = self.teacher_graph.forward(x.to(self.net.dtype), quantized=False)
            loss = loss + self.cfg.feature_weight * feature_loss(
                self.trainable.values, {n: ann[n] for n in self.trainable.record_values})
        return loss

    def schedule_lr(self) -> None:
        """Set each parameter group's learning rate for the coming step (:func:`lr_factor`
        times ``lr`` times the group's scale)."""
        factor = lr_factor(self.history["steps"], self.cfg.warmup,
                           self.total if self.cfg.cosine else None)
        for g in self.opt.param_groups:
            g["lr"] = self.cfg.lr * g.get("lr_scale", 1.0) * factor

    @property
    def evaluated(self) -> TrainableSpikingNetwork:
        """The network validated, kept and written back: the parameters' average with ``ema``
        or ``swa_from`` (once it has begun), else the trained network itself."""
        if self.ema is None or (self.cfg.swa_from is not None and not int(self.ema.n_averaged)):
            return self.trainable
        return self.ema.module

    def validate_and_save(self, batch_in_epoch: int) -> None:
        """Validate, keep the parameters if they are the best so far, write the checkpoint
        (rank 0 writes; every rank validates on all of the validation data, so all agree)."""
        self.trainable.eval()
        self.evaluated.eval()
        writer = self.ckpt is not None and rank() == 0
        if self.validate():
            self.best_state = {k: v.detach().clone()
                               for k, v in self.evaluated.state_dict().items()}
            if writer:
                _save_network(self.evaluated, self.net, self.ckpt)
        if writer:
            self.save_state(batch_in_epoch)
        if is_distributed():
            dist.barrier()  # no rank runs ahead of a checkpoint being written
        self.trainable.train()

    def validate(self) -> bool:
        """Measure validation accuracy (once per step); whether the parameters are the best."""
        h = self.history
        if self.val_data is None:
            return True  # without validation the latest parameters are kept
        if h["val_steps"] and h["val_steps"][-1] == h["steps"]:
            return False  # already measured at this step
        # a fixed seed: randomly augmented validation data show the same images every time,
        # and validation leaves the training run's random stream alone
        with torch.random.fork_rng():
            torch.manual_seed(self.cfg.seed)
            scores = validation_scores(self.evaluated, self.val_data, self.cfg.teacher,
                                       batch_size=self.cfg.batch_size,
                                       temperature=self.cfg.distill_temperature)
        acc = scores["accuracy"]
        h["val_steps"].append(h["steps"])
        h["val_accuracy"].append(acc)
        h["val_kl"].append(scores["kl"])
        h["val_agreement"].append(scores["agreement"])
        h["val_epochs"].append(self.epoch)
        # the score to maximise: the KL is minimised; "last": every newer network wins
        select = self.cfg.select_on
        score = -scores["kl"] if select == "kl" else scores["accuracy" if select == "last"
                                                            else select]
        improved = select == "last" or h["best_score"] is None or score > h["best_score"]
        if improved:
            h["best_score"], h["best_accuracy"] = score, acc
            h["best_step"], h["best_epoch"] = h["steps"], self.epoch
            h["best"] = self.label(h["steps"])
        self.bar.set_postfix(loss=f"{h['loss'][-1]:.3f}" if h["loss"] else "-", val=f"{acc:.4f}")
        self.log_validation(scores, improved)
        if self.cfg.on_validate is not None:
            self.cfg.on_validate(self.evaluated, h)
        return improved

    def label(self, step: int) -> str:
        """``"converted"`` for step 0, else ``"step S (epoch E)"`` (epochs done, a decimal)."""
        if step == 0:
            return "converted"
        per_epoch = len(self.train) if hasattr(self.train, "__len__") else None
        return f"step {step} (epoch {step / per_epoch:.2f})" if per_epoch else f"step {step}"

    def log_validation(self, scores: dict[str, float | None], improved: bool) -> None:
        """One INFO line per validation (``logging``): epoch, step, mean training loss since
        the last validation, validation accuracy (KL and agreement with a teacher), wall time
        since the run started."""
        h = self.history
        since = h["val_steps"][-2] if len(h["val_steps"]) > 1 else 0
        losses = h["loss"][since:h["steps"]]
        mean = f"{sum(losses) / len(losses):.4f}" if losses else "-"
        extra = "" if scores["kl"] is None else (
            f", KL {scores['kl']:.5f}, agreement {100 * scores['agreement']:.2f} %")
        _LOG.info("epoch %d step %d: train loss %s, val %.2f %%%s%s, %.0f s", self.epoch,
                  h["steps"], mean, 100 * scores["accuracy"], extra,
                  " (best)" if improved else "", time.perf_counter() - self.started)

    def save_state(self, batch_in_epoch: int) -> None:
        """Write the training state beside the checkpoint (what ``resume`` reads)."""
        _atomic_torch_save({
            "format": STATE_FORMAT, "version": _STATE_VERSION,
            "model": self.trainable.state_dict(), "optimizer": self.opt.state_dict(),
            "epoch": self.epoch, "batch_in_epoch": batch_in_epoch, "history": self.history,
            "best_model": self.best_state, "rng": torch.get_rng_state(),
            "ema": None if self.ema is None else self.ema.state_dict(),
        }, state_path(self.ckpt))

    def write_back(self) -> None:
        """Put the best (else the last, averaged with ``ema`` or ``swa_from``) parameters into
        ``net`` 's graph and tensors."""
        if self.best_state is not None:
            self.trainable.load_state_dict(self.best_state)
        elif self.evaluated is not self.trainable:
            self.trainable.load_state_dict(self.evaluated.state_dict())
        net = self.net
        self.trainable.sync_to_graph(net.graph)
        fresh = SpikingNetwork(net.graph, net.schedule, mode=net.mode, dtype=net.dtype)
        net.load_state_dict(fresh.state_dict())


def feature_populations(graph: Graph, weight: float) -> frozenset[str]:
    """The populations whose values feature distillation matches (``weight > 0``): the output
    of each block (:func:`~spikeconverter.converters.reconstruction.blocks`) that is a
    population of neurons (``NEURON_KINDS``; max pooling only repeats its source's spikes)."""
    if not weight > 0:
        return frozenset()
    return frozenset(b[-1].name for b in blocks(graph) if b[-1].kind in NEURON_KINDS)


def teacher_graph(teacher: torch.nn.Module, graph: Graph, names: frozenset[str]) -> Graph:
    """``teacher`` captured as a graph (traced on zeros of ``graph``'s input shape), checked
    to have ``graph``'s populations ``names``.

    Raises
    ------
    ValueError
        A population of ``names`` that the teacher's graph lacks or holds in another shape
        (the teacher is not the ANN the network was converted from).
    """
    p = next(teacher.parameters(), None)
    like = {"dtype": p.dtype, "device": p.device} if p is not None else {}
    captured = capture(teacher, torch.zeros((2, *graph[graph.input].shape), **like), check=False)
    for name in sorted(names):
        mine = tuple(graph[name].shape)
        theirs = (tuple(captured[name].shape) if name in captured.populations else None)
        if theirs != mine:
            raise ValueError(
                f"feature distillation: the teacher has no population {name!r} of shape {mine} "
                f"(it has {theirs}); the teacher must be the ANN the network was converted from")
    return captured


def _save_network(trainable: TrainableSpikingNetwork, net: SpikingNetwork, path: Path) -> None:
    """Save ``trainable`` 's current parameters as a network file with ``net`` 's options."""
    graph = trainable.sync_to_graph(copy.deepcopy(trainable.graph))
    write(path, graph, net.schedule, net.save_options)


def _load_state(path: Path, trainable: TrainableSpikingNetwork, opt: torch.optim.Optimizer,
                history: dict[str, Any], device: torch.device,
                ema: AveragedModel | None = None
                ) -> tuple[int, int, dict[str, torch.Tensor] | None]:
    if not path.is_file():
        raise ValueError(f"resume=True but there is no training state {path} (it is written "
                         "beside the checkpoint during a run with checkpoint=...)")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
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
        if (ema is None) != (blob.get("ema") is None):
            raise ValueError("ema is " + ("off" if ema is None else "on") + " but the run "
                             "that wrote the state had it " + ("on" if ema is None else "off"))
        if ema is not None:
            ema.load_state_dict(blob["ema"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: the training state does not fit this network ({exc})") \
            from exc
    history.update(blob["history"])
    if isinstance(blob.get("rng"), torch.Tensor):  # augmentation continues where it stopped
        torch.set_rng_state(blob["rng"])
    return int(blob["epoch"]), int(blob["batch_in_epoch"]), blob.get("best_model")
