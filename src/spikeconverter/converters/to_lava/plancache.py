"""A network's float and fixed-point Lava plans, cached in a file beside the network file.

Building the plans (synapse matrices, fixed-point rounding, the core-budget report) costs
seconds to minutes for a deep network, the same every run. :func:`save_plans` writes them as
plain containers (``torch.save`` of tensors, numbers, strings; read back with
``weights_only=True``, so loading runs no code) keyed by the graph's fingerprint, the
membrane peaks, the margin and :data:`PLAN_VERSION`; :func:`load_plans` returns nothing when
any of them changed (the network was fine-tuned, recalibrated, or this code plans differently).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from spikeconverter.atomic import atomic_path
from spikeconverter.converters.to_lava.plan import LavaPlan, PopulationSpec
from spikeconverter.converters.to_lava.synapses import SynapseSpec

__all__ = ["PLAN_VERSION", "load_plans", "plan_cache_path", "plan_key", "save_plans"]

#: Bump when the planner's output changes for the same network.
PLAN_VERSION = 4
_FORMAT = "spikeconverter.lavaplan"


def plan_cache_path(network_file: str | os.PathLike) -> Path:
    """Where the plans of a network file are cached: ``<file>.lavaplan`` beside it."""
    path = Path(network_file)
    return path.with_name(path.name + ".lavaplan")


def plan_key(fingerprint: str, peaks: dict[str, float] | None, margin: float) -> str:
    """What the cached plans depend on, as one string."""
    p = "none" if peaks is None else repr(sorted((k, float(v)) for k, v in peaks.items()))
    return f"v{PLAN_VERSION}|{fingerprint}|{float(margin)!r}|{p}"


def _plain(value: Any) -> Any:
    if sp.issparse(value):
        c = value.tocsr()
        return {"__csr__": True, "data": torch.from_numpy(np.ascontiguousarray(c.data)),
                "indices": torch.from_numpy(c.indices.astype(np.int64)),
                "indptr": torch.from_numpy(c.indptr.astype(np.int64)), "shape": tuple(c.shape)}
    if isinstance(value, np.ndarray):
        return {"__nd__": True, "value": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _back(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("__csr__"):
            return sp.csr_matrix((value["data"].numpy(), value["indices"].numpy(),
                                  value["indptr"].numpy()), shape=tuple(value["shape"]))
        if value.get("__nd__"):
            return value["value"].numpy()
        return {k: _back(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_back(v) for v in value)
    return value


def _plan_to_plain(plan: LavaPlan) -> dict[str, Any]:
    d = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)
         if f.name not in ("populations", "synapses")}
    d["populations"] = [dataclasses.asdict(p) for p in plan.populations.values()]
    d["synapses"] = [{f.name: getattr(s, f.name) for f in dataclasses.fields(s)}
                     for s in plan.synapses]
    return _plain(d)


def _plan_from_plain(d: dict[str, Any]) -> LavaPlan:
    d = _back(d)
    pops = {p["name"]: PopulationSpec(**{**p, "shape": tuple(p["shape"])})
            for p in d.pop("populations")}
    syns = [SynapseSpec(**{**s, "in_shape": tuple(s["in_shape"]),
                           "out_shape": tuple(s["out_shape"])}) for s in d.pop("synapses")]
    return LavaPlan(populations=pops, synapses=syns, **d)


def save_plans(path: str | os.PathLike, key: str, plans: dict[bool, LavaPlan],
               report: dict[str, Any] | None) -> Path:
    """Write ``plans`` (float and/or fixed point) and the fixed-point report, atomically."""
    path = Path(path)
    blob = {"format": _FORMAT, "key": key, "report": _plain(report),
            "plans": {("fixed" if k else "float"): _plan_to_plain(p) for k, p in plans.items()}}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


def load_plans(path: str | os.PathLike,
               key: str) -> tuple[dict[bool, LavaPlan], dict[str, Any] | None] | None:
    """The cached plans and report if ``path`` holds plans for ``key``, else ``None``."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT or blob.get("key") != key:
            return None
        plans = {name == "fixed": _plan_from_plain(p) for name, p in blob["plans"].items()}
        return plans, _back(blob.get("report"))
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
        return None
