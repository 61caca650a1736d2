"""``FinetuneConfig``: the settings of :func:`spikeconverter.training.finetune.finetune`.

Its own module so that the command line can build one without importing the simulation.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from spikeconverter.devices import resolve_device
from spikeconverter.options import MIXUP_KINDS

__all__ = ["SELECTION_SCORES", "FinetuneConfig"]

#: Validation scores that can select the network kept (``FinetuneConfig.select_on``).
SELECTION_SCORES = ("accuracy", "kl", "agreement", "last")


def _check_positive(value: Any, name: str, integer: bool = False, zero: bool = False) -> None:
    ok_type = (isinstance(value, int) and not isinstance(value, bool)) if integer else (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
    if not ok_type or value < 0 or (value == 0 and not zero):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {kind} {'>=' if zero else '>'} 0, got {value!r}")


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of :func:`~spikeconverter.training.finetune.finetune`, all but network and data.

    Checked on construction; ``dataclasses.replace`` checks again.

    Attributes
    ----------
    epochs : int
        Passes over the training data.
    lr, momentum, weight_decay : float
        Optimiser settings (SGD: the paper's). Weight decay applies to weights and biases, not
        thresholds. ``momentum`` is SGD's momentum; with ``optimizer="adam"`` it is Adam's
        ``beta1`` (``beta2`` = 0.999) and the decay is AdamW's decoupled decay.
    batch_size : int
        Batch size when the data are tensors (train and validation).
    val_every : int, optional
        Steps between validations (default: once per epoch).
    checkpoint : path, optional
        Best network file (loadable with ``spikeconverter.converters.load``) plus the training
        state in ``<checkpoint>.state``, both written atomically at each validation and at the
        end of each epoch.
    resume : bool
        Continue from ``<checkpoint>.state`` (parameters, optimiser, epoch, step, best score,
        torch's random state). Tensor data and ``val_fraction`` splits are reshuffled from
        ``seed + epoch`` each epoch, so a resumed run trains on the same batches as an
        uninterrupted one; a caller's shuffling DataLoader draws new ones.
    progress : bool
        tqdm progress bar with the running loss and the last validation accuracy.
    max_steps : int, optional
        Stop after this many optimiser steps in total (counting resumed ones).
    cosine : bool
        Cosine learning-rate decay to 0 over the run (needs ``len(train_data)`` or
        ``max_steps``); constant otherwise. After a warm-up the decay spans the remaining steps.
    warmup : int
        Linear learning-rate warm-up over this many optimiser steps (step ``s`` of the warm-up
        uses ``lr * s / warmup``), then the constant or cosine schedule. Adam's first steps
        move every parameter by about ``lr`` whatever its gradient's size (the moment
        estimates are still those of one batch), which knocks a converted network off its
        calibrated point; a warm-up lets the estimates settle first. 0: none.
    threshold_lr_scale : float
        The thresholds' learning rate as a multiple of ``lr`` (same schedule); 1 trains them
        at ``lr``, 0 keeps them where calibration put them while weights and biases train.
    weight_lr_scale : float
        The weights' learning rate as a multiple of ``lr`` (biases always train at ``lr``).
        0 freezes the weights (no weight gradients are computed): only biases and thresholds
        train, about a thousand numbers on a ResNet-20, a gentle end-to-end version of the
        post-training bias and threshold correction that cannot move the folded weights off
        their calibrated point.
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
        Seeds shuffling of tensor data (and of the DistributedSampler under
        torch.distributed) and the ``val_fraction`` split.
    val_fraction : float, optional
        Hold out this seeded share of ``train_data`` (tensors, or a DataLoader over a map-style
        dataset) as validation data, for best-on-validation selection without touching the
        test images (the split depends only on ``seed`` and the data's length, so ``resume``
        sees the same one). Not together with ``val_data``. A DataLoader's validation part
        uses its dataset's transforms; random augmentation is then drawn with a fixed seed at
        every validation, so all validations see the same images (better: split with
        :func:`~spikeconverter.training.holdout.split_holdout` and an unaugmented copy).
    teacher : torch.nn.Module, optional
        Distil from this network (the ANN the network was converted from): the loss becomes
        :func:`~spikeconverter.training.losses.distillation_loss` of the spiking logits and
        the teacher's, with ``loss_fn`` (or cross-entropy) as its hard-label part. It is put
        in eval mode, on the training device.
    distill_temperature, distill_weight : float
        The distillation temperature (> 0) and the share of the distillation term (0..1).
    feature_weight : float
        Weight (>= 0) of a feature-distillation term added to the loss
        (:func:`~spikeconverter.training.losses.feature_loss`): the decoded value of each
        block's output population (:func:`~spikeconverter.converters.reconstruction.blocks`:
        each residual block of a ResNet, each layer of a chain) against the teacher's
        activation there, its squared error relative to the activation's mean square,
        averaged over the blocks (the block reconstruction's targets, trained end to end).
        Thousands of values per image where the logits give ten. Needs ``teacher``; 0: off.
    mixup : float, optional
        Train on mixed batches (:func:`~spikeconverter.training.losses.mixup`): each batch
        blended with a shuffled copy of itself, ``lam ~ Beta(mixup, mixup)`` drawn per step
        from ``seed`` and the step; the teacher labels the mixed images, the hard-label part
        is ``lam * loss(y) + (1 - lam) * loss(y[perm])``. ``None``: off.
    mixup_kind : {"mixup", "cutmix", "both"}
        How the batch is mixed (see :func:`~spikeconverter.training.losses.mixup`): blended,
        a box pasted (CutMix), or one of the two per step.
    ema : float, optional
        Keep an exponential moving average of the parameters with this decay (in ``[0, 1)``,
        e.g. 0.9; :class:`torch.optim.swa_utils.AveragedModel`) and validate, keep and write
        back the averaged network instead of the latest. At very low T a single step flips
        the codes of neurons near a boundary and moves the test accuracy by ~1 % either way
        (ResNet-20, T=3); averaging the steps smooths that noise out. ``None``: off.
    swa_from : int, optional
        Stochastic weight averaging (Izmailov et al. 2018): from the ``swa_from``-th
        optimiser step on (1-based), keep the uniform average of the parameters after each
        step (:class:`torch.optim.swa_utils.AveragedModel`) and validate, keep and write back
        it; before that step, the latest parameters. Every late step weighs the same, where an
        ``ema`` forgets them geometrically. Not with ``ema``. ``None``: off.
    select_on : {"accuracy", "kl", "agreement", "last"}
        Which validation score picks the network kept: top-1 ``"accuracy"`` (default), the
        lowest mean ``"kl"`` divergence KL(teacher || network) of the softmax outputs at
        ``distill_temperature`` (the divergence the distillation loss minimises), or the
        highest ``"agreement"`` (share of images whose top-1 class is the teacher's). The
        last two need ``teacher``. Validation images come from the data the ANN was trained
        on, where the converted network already scores ~95 %: a few hundred of them cannot
        tell small accuracy gains from noise, while the KL to the ANN is continuous.
        ``"last"`` keeps the network at the end of the run (with ``ema``, the final average,
        as stochastic weight averaging does) whatever the validation says: a rule fixed
        before any score is seen, for when validation cannot rank the candidates (ResNet-20
        at T=3: one step moves the test count by up to 17 images, more than the gains
        sought). Validation is still measured and reported.
    on_validate : callable, optional
        ``on_validate(network, history)`` after each validation (the trainable network, in
        eval mode, and the history so far): e.g. to log a diagnostic. Its result is unused.
    device : str or torch.device, optional
        Where training runs (``"cpu"``, ``"cuda"``, ``"cuda:N"``; default: where the network
        is).

    Raises
    ------
    ValueError
        A setting out of range, an unknown optimiser, ``resume`` without a checkpoint.
    """

    epochs: int = 1
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    val_every: int | None = None
    checkpoint: str | os.PathLike | None = None
    resume: bool = False
    progress: bool = True
    max_steps: int | None = None
    cosine: bool = False
    warmup: int = 0
    threshold_lr_scale: float = 1.0
    weight_lr_scale: float = 1.0
    optimizer: str = "sgd"
    clip_grad_norm: float | None = 1.0
    train_thresholds: bool = True
    surrogate: str = "triangle"
    alpha: float = 1.0
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    seed: int = 0
    val_fraction: float | None = None
    teacher: torch.nn.Module | None = None
    distill_temperature: float = 4.0
    distill_weight: float = 0.9
    feature_weight: float = 0.0
    mixup: float | None = None
    mixup_kind: str = "mixup"
    ema: float | None = None
    swa_from: int | None = None
    select_on: str = "accuracy"
    on_validate: Callable[[torch.nn.Module, dict], Any] | None = None
    device: str | torch.device | None = None

    def __post_init__(self) -> None:
        _check_positive(self.epochs, "epochs", integer=True, zero=True)
        _check_positive(self.batch_size, "batch_size", integer=True)
        _check_positive(self.lr, "lr")
        _check_positive(self.warmup, "warmup", integer=True, zero=True)
        _check_positive(self.threshold_lr_scale, "threshold_lr_scale", zero=True)
        _check_positive(self.weight_lr_scale, "weight_lr_scale", zero=True)
        _check_positive(self.momentum, "momentum", zero=True)
        _check_positive(self.weight_decay, "weight_decay", zero=True)
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.clip_grad_norm is not None:
            _check_positive(self.clip_grad_norm, "clip_grad_norm")
        if self.val_every is not None:
            _check_positive(self.val_every, "val_every", integer=True)
        if self.max_steps is not None:
            _check_positive(self.max_steps, "max_steps", integer=True)
        self._check_selection_and_distillation()
        if self.resume and self.checkpoint is None:
            raise ValueError("resume=True needs checkpoint=PATH (the file to resume from)")
        if self.device is not None:
            resolve_device(self.device)
        if self.optimizer == "adam" and self.momentum >= 1:
            raise ValueError(f"with optimizer='adam', momentum is beta1 and must be < 1, got "
                             f"{self.momentum!r}")

    def _check_selection_and_distillation(self) -> None:
        if self.val_fraction is not None and not (
                isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1):
            raise ValueError(f"val_fraction must lie strictly between 0 and 1, got "
                             f"{self.val_fraction!r}")
        if self.teacher is not None and not isinstance(self.teacher, torch.nn.Module):
            raise TypeError(f"teacher must be a torch.nn.Module (the ANN), got "
                            f"{type(self.teacher).__name__}")
        _check_positive(self.distill_temperature, "distill_temperature")
        if self.ema is not None and not (isinstance(self.ema, (int, float))
                                         and not isinstance(self.ema, bool)
                                         and 0 <= self.ema < 1):
            raise ValueError(f"ema must be a decay in [0, 1) (e.g. 0.9) or None, got "
                             f"{self.ema!r}")
        if self.mixup is not None:
            _check_positive(self.mixup, "mixup")
        if self.mixup_kind not in MIXUP_KINDS:
            raise ValueError(f"mixup_kind must be one of {MIXUP_KINDS}, got "
                             f"{self.mixup_kind!r}")
        if self.swa_from is not None:
            _check_positive(self.swa_from, "swa_from", integer=True)
            if self.ema is not None:
                raise ValueError("pass either ema (a moving average) or swa_from (a uniform "
                                 "average from that step on), not both")
        if self.select_on not in SELECTION_SCORES:
            raise ValueError(f"select_on must be one of {SELECTION_SCORES}, got "
                             f"{self.select_on!r}")
        if self.select_on in ("kl", "agreement") and self.teacher is None:
            raise ValueError(f"select_on={self.select_on!r} compares with the ANN: pass "
                             "teacher=ANN (or select_on='accuracy')")
        if not (isinstance(self.distill_weight, (int, float)) and 0 <= self.distill_weight <= 1):
            raise ValueError(f"distill_weight must lie in [0, 1], got {self.distill_weight!r}")
        _check_positive(self.feature_weight, "feature_weight", zero=True)
        if self.feature_weight > 0 and self.teacher is None:
            raise ValueError("feature_weight > 0 matches the ANN's activations: pass teacher=ANN "
                             "(or feature_weight=0)")

    def updated(self, **options: Any) -> FinetuneConfig:
        """A copy with ``options`` (field names) changed.

        Raises
        ------
        TypeError
            An option that is no field.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(f"unknown fine-tuning option(s) {', '.join(unknown)}; the options "
                            f"are {', '.join(sorted(names))}")
        return dataclasses.replace(self, **options)
