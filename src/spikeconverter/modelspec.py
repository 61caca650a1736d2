"""Building a model from a short text spec and loading its weights.

Specs:

* ``torchvision:NAME`` -- ``torchvision.models.get_model(NAME, weights=None, **kwargs)``
  (``num_classes`` and friends pass through; weights come from a file, never downloaded);
* ``NAME`` or ``zoo:NAME`` -- :func:`spikeconverter.models.get_model` (``cifar_resnet20``, ...);
* ``path/to/file.py:factory`` -- a function or class in a Python file, called with ``**kwargs``.

Weights are a ``state_dict`` or a checkpoint dict holding one (under ``state_dict``,
``model_state_dict``, ``model``, ``net``, ...); prefixes that wrappers add (``module.`` from
DataParallel, ``model.``, ``_orig_mod.`` from ``torch.compile``) are stripped when that makes the
keys match the model's.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "state", "weights")
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.", "net.")

__all__ = ["build_model", "extract_state_dict", "load_model", "load_weights"]


def _zoo():
    try:
        from spikeconverter import models
    except ImportError as e:  # pragma: no cover - the zoo ships with the package
        raise ValueError(f"the spikeconverter model zoo is not available ({e})") from None
    return models


def build_model(spec: str, **kwargs: Any) -> nn.Module:
    """The (untrained) model that ``spec`` names; see the module docstring for the forms."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"model spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec.startswith("torchvision:"):
        return _torchvision(spec.split(":", 1)[1], kwargs)
    head, sep, tail = spec.rpartition(":")
    if sep and head.endswith(".py"):
        return _from_file(Path(head), tail, kwargs)
    if spec.endswith(".py"):
        raise ValueError(f"model spec {spec!r} names a file but no factory: write "
                         f"'{spec}:FUNCTION_OR_CLASS'")
    name = spec[4:] if spec.startswith("zoo:") else spec
    zoo = _zoo()
    known = list(zoo.list_models())
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(
            f"unknown model {spec!r}{hint}: use one of the zoo's {known}, 'torchvision:NAME' "
            "(e.g. torchvision:resnet18) or 'path/to/file.py:factory'"
        )
    return _checked(zoo.get_model(name, **kwargs), spec)


def _torchvision(name: str, kwargs: dict[str, Any]) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models()
    if name not in available:
        close = difflib.get_close_matches(name, available, n=5, cutoff=0.6)
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise ValueError(f"torchvision has no model {name!r}{hint}; see "
                         "torchvision.models.list_models()")
    try:
        return _checked(torchvision.models.get_model(name, weights=None, **kwargs),
                        f"torchvision:{name}")
    except TypeError as e:
        raise ValueError(f"torchvision:{name} does not accept {sorted(kwargs)}: {e}") from None


def _from_file(path: Path, factory: str, kwargs: dict[str, Any]) -> nn.Module:
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    if not factory.isidentifier():
        raise ValueError(f"{factory!r} is not a Python name: write '{path}:FUNCTION_OR_CLASS'")
    mod_name = f"_spikeconverter_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise ValueError(f"importing {str(path)!r} failed: {type(e).__name__}: {e}") from None
    fn = getattr(module, factory, None)
    if fn is None or not callable(fn):
        names = sorted(n for n in vars(module) if not n.startswith("_") and callable(
            getattr(module, n)))
        raise ValueError(f"{str(path)!r} has no callable {factory!r}; it defines {names}")
    try:
        model = fn(**kwargs)
    except TypeError as e:
        raise ValueError(f"calling {factory}(**{kwargs}) from {str(path)!r} failed: {e}") from None
    return _checked(model, f"{path}:{factory}")


def _checked(model: Any, spec: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{spec} gave a {type(model).__name__}, not a torch.nn.Module")
    return model


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of a state_dict, or of the state_dict a checkpoint dict (or module) holds."""
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict())
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source} holds a {type(obj).__name__}, not a state_dict or a "
                         "checkpoint dict")
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    for key in CHECKPOINT_KEYS:
        if key in obj and isinstance(obj[key], (Mapping, nn.Module)):
            return extract_state_dict(obj[key], f"{source}[{key!r}]")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors:  # a state_dict with some extra entries (epoch, metrics) mixed in
        return tensors
    raise ValueError(
        f"{source} has no weights: expected tensors or one of the keys {list(CHECKPOINT_KEYS)}, "
        f"found {sorted(map(str, obj))[:10]}"
    )


def _strip_prefixes(state: dict[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes while that makes more keys match ``wanted``."""

    def score(s: dict[str, torch.Tensor]) -> int:
        return len(wanted.intersection(s))

    best = state
    changed = True
    while changed:
        changed = False
        for p in WRAPPER_PREFIXES:
            if best and all(k.startswith(p) for k in best):
                cand = {k[len(p):]: v for k, v in best.items()}
                if score(cand) > score(best) or (score(best) == 0 and score(cand) == 0):
                    best, changed = cand, True
                    break
    return best


def _show(keys: list[str], n: int = 6) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_weights(model: nn.Module, path: str | os.PathLike, *, trusted: bool = False) -> nn.Module:
    """Load a state_dict or checkpoint file into ``model`` (in place) and return it.

    Parameters
    ----------
    model : torch.nn.Module
        The model built from the same architecture.
    path : str or path
        A ``torch.save``-d state_dict or checkpoint dict.
    trusted : bool
        Allow full unpickling (arbitrary code: only for files you trust), needed for
        checkpoints that hold whole modules or custom objects.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file holds no weights, or its keys or shapes do not match the model (named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{str(path)!r} holds objects beyond tensors and plain containers; if you trust the "
            f"file, allow full unpickling (--trust-checkpoint / trusted=True) ({e})".splitlines()[0]
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{str(path)!r} is not a torch checkpoint: {e}") from None
    state = extract_state_dict(obj, repr(str(path)))
    own = model.state_dict()
    state = _strip_prefixes(state, set(own))
    # Old BatchNorm checkpoints (and the akamaster ResNets) have no num_batches_tracked; it
    # does not change inference.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing from the file: {_show(missing)}")
        if unexpected:
            parts.append(f"not in the model: {_show(unexpected)}")
        raise ValueError(
            f"weights in {str(path)!r} do not fit {type(model).__name__} ({'; '.join(parts)}); "
            "check the model spec and its options (e.g. num_classes)"
        )
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
           if k in state and state[k].shape != own[k].shape]
    if bad:
        raise ValueError(
            f"weights in {str(path)!r} have other shapes than {type(model).__name__} "
            f"(file vs model): {_show(bad, 4)}; check the model options (e.g. num_classes)"
        )
    model.load_state_dict(state, strict=False)
    return model


def load_model(
    spec: str,
    weights: str | os.PathLike | None = None,
    *,
    trusted: bool = False,
    eval_mode: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """:func:`build_model` then :func:`load_weights`; in eval mode by default."""
    model = build_model(spec, **kwargs)
    if weights is not None:
        load_weights(model, weights, trusted=trusted)
    return model.eval() if eval_mode else model
