"""SpikeConverter's neurons and helpers as Lava Processes, with CPU ProcessModels.

* :class:`ILIF` -- the iLIF neuron (accumulate, then generate an MSB-first train);
* :class:`SpikingMaxPool` -- exact max pooling of MSB-first trains of one population;
* :class:`Delay` -- delays a vector of spikes (binary or graded) by whole windows;
* :class:`Readout` -- an accumulate-only population whose membrane holds the logits;
* :func:`simulation` -- runs a process graph and always stops the Lava runtime.

Batched twins (a leading batch axis ``B``: ``B`` samples side by side in one runtime, each
computed exactly as it would be alone): :class:`BatchConv` and :class:`BatchDense` (Lava's
Conv and Dense/Sparse per sample), :class:`BatchILIF`, :class:`BatchMaxPool`, and the host I/O
of a batched run, :class:`BatchFeed` (input windows through a Lava external pipe) and
:class:`WindowCollector` (one output vector per window back to the host).

Every Process has a ``floating_pt`` model and a ``fixed_pt`` / ``bit_accurate_loihi`` model
(choose with ``Loihi2SimCfg(select_tag=...)``). What they share lives outside the Process
folders (which Lava scans for models): :mod:`~spikeconverter.processes.base` (the abstract
Processes and argument checks) and :mod:`~spikeconverter.processes.loihi` (the models' window
clock and fixed-point conventions). The models are numpy only; the maths they share with the
Norse neuron comes from :mod:`spikeconverter.coding`.
"""

try:
    import lava.magma.core.process.process  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "spikeconverter.processes needs lava-nc 0.10.0 on Python 3.10; "
        "pip install lava-nc==0.10.0"
    ) from err

from spikeconverter.processes.batchconv.process import BatchConv
from spikeconverter.processes.batchdense.process import BatchDense
from spikeconverter.processes.batchilif.process import BatchILIF
from spikeconverter.processes.batchpool.process import BatchMaxPool
from spikeconverter.processes.collect.process import WindowCollector
from spikeconverter.processes.delay.process import Delay
from spikeconverter.processes.feed.process import BatchFeed
from spikeconverter.processes.ilif.process import ILIF
from spikeconverter.processes.maxpool.process import SpikingMaxPool
from spikeconverter.processes.readout.process import Readout
from spikeconverter.processes.run import run_config, simulation

MaxPool = SpikingMaxPool

__all__ = ["BatchConv", "BatchDense", "BatchFeed", "BatchILIF", "BatchMaxPool", "Delay", "ILIF",
           "MaxPool", "Readout", "SpikingMaxPool", "WindowCollector", "run_config",
           "simulation"]
