"""Capture: trace a trained torch model with torch.fx into the graph IR (numpy parameters).

Rules (see :mod:`spikeconverter.converters.ir` for the IR itself):

* BatchNorm is folded into the conv/linear before it (``torch.nn.utils.fusion``). A BatchNorm
  with no conv/linear of its own before it becomes an affine op (a depthwise 1x1 conv, or a
  diagonal linear).
* Populations sit at ReLU/ReLU6 (``"relu"``, ReLU6 with ``clip=6``), max pooling
  (``"maxpool"``), the input and the output (``"readout"``).
* Everything linear between populations becomes the op chain of an edge. A residual add sums
  linear expressions, so its population gets one edge per term.
* An edge holds at most one weighted layer (conv/linear; it maps to one synapse group in
  hardware). A linear expression that already holds a weighted layer becomes a ``"signed"``
  population when it feeds another weighted layer, or when it is used more than once (a block
  output of MobileNet-v2 that feeds both the next block and its residual add).
* ``conv -> maxpool -> relu`` is reordered into ``relu -> maxpool`` (max and ReLU commute).
* An adaptive average pooling that is not an exact average pooling (e.g. 1x1 -> 7x7 in VGG on
  small inputs) is folded into the Linear layer that follows it.

The capture checks itself: the IR's float forward must reproduce the model's output on the
example input.

Modules: :mod:`~.errors` (``ConversionError``, ``SUPPORTED_OPERATIONS``), :mod:`~.tracing`
(torch.fx tracing, BatchNorm folding), :mod:`~.expr` (the linear-expression algebra),
:mod:`~.activations` (ReLU-like nodes), :mod:`~.visitor` (the fx visitor), :mod:`~.handlers`
(one handler per supported fx target), :mod:`~.pipeline` (:func:`capture`).
"""

from spikeconverter.converters.capture.errors import SUPPORTED_OPERATIONS, ConversionError
from spikeconverter.converters.capture.pipeline import capture

__all__ = ["SUPPORTED_OPERATIONS", "ConversionError", "capture"]
