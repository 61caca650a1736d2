"""Training converted networks: surrogate-gradient fine-tuning through the iLIF simulation.

>>> history = finetune(net, (x_train, y_train), epochs=2, val_data=(x_val, y_val))
"""

from spikeconverter.training.config import FinetuneConfig
from spikeconverter.training.finetune import evaluate, finetune, state_path
from spikeconverter.training.trainable import SURROGATES, TrainableSpikingNetwork

__all__ = ["SURROGATES", "FinetuneConfig", "TrainableSpikingNetwork", "evaluate", "finetune",
           "state_path"]
