"""Run configurations that select the im2col Conv models."""

from __future__ import annotations

from typing import Any

from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv

from spikeconverter.processes.fastconv.models import (
    PyConvModelIm2colFixed,
    PyConvModelIm2colFloat,
)


def fast_conv_run_config(select_tag: str = "floating_pt", **kwargs: Any) -> Loihi2SimCfg:
    """A ``Loihi2SimCfg`` whose ``Conv`` Processes run the im2col models.

    Parameters
    ----------
    select_tag : {"floating_pt", "fixed_pt"}
        Which family of models to run (as in ``Loihi2SimCfg``).
    **kwargs
        Passed on to ``Loihi2SimCfg``; an ``exception_proc_model_map`` given here is extended.
    """
    if select_tag not in ("floating_pt", "fixed_pt"):
        raise ValueError(f"select_tag must be 'floating_pt' or 'fixed_pt', got {select_tag!r}")
    model = PyConvModelIm2colFloat if select_tag == "floating_pt" else PyConvModelIm2colFixed
    exceptions = dict(kwargs.pop("exception_proc_model_map", None) or {})
    exceptions.setdefault(Conv, model)
    return Loihi2SimCfg(select_tag=select_tag, exception_proc_model_map=exceptions, **kwargs)
