"""Training converted networks: surrogate-gradient fine-tuning through the iLIF simulation.

>>> history = finetune(net, (x_train, y_train), epochs=2, val_data=(x_val, y_val))

Best-on-validation selection on a seeded held-out part of the training data, distilling
from the ANN the network was converted from (the recipe that lands at T = 2 and 3)::

    history = finetune(net, train_loader, epochs=3, val_fraction=0.1, teacher=ann,
                       optimizer="adam", lr=1e-3, cosine=True, weight_decay=0.0)
    history["best"]  # the network kept: "converted" or e.g. "step 146 (epoch 2.00)"
"""

from spikeconverter.training.config import FinetuneConfig
from spikeconverter.training.finetune import evaluate, finetune, state_path
from spikeconverter.training.holdout import holdout_indices, split_holdout
from spikeconverter.training.losses import distillation_loss
from spikeconverter.training.trainable import SURROGATES, TrainableSpikingNetwork

__all__ = ["SURROGATES", "FinetuneConfig", "TrainableSpikingNetwork", "distillation_loss",
           "evaluate", "finetune", "holdout_indices", "split_holdout", "state_path"]
