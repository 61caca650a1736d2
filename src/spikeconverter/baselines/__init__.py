"""Rate-coded IF conversions that SpikeConverter is compared against (paper Fig. 6 and 7).

Hard reset (Sengupta et al. 2019), soft reset / reset by subtraction (RMP-SNN, Han et al. 2020)
and the threshold shift of Deng & Gu (2021), all run on the same graph IR as the iLIF converter,
with per-layer thresholds from data-based normalisation (Rueckauer et al. 2017).

Examples
--------
>>> lam = rate_thresholds(graph, calibration_images)            # doctest: +SKIP
>>> res = simulate_rate(graph, images, lam, "soft_reset", steps=(32, 256, 2048))  # doctest: +SKIP
>>> res.logits[256].argmax(1)                                    # doctest: +SKIP
"""

from spikeconverter.baselines.counting import ann_macs, fanout
from spikeconverter.baselines.normalization import (
    JUNCTION_RULES,
    NORMALIZATION_MODES,
    rate_thresholds,
    spike_norm_thresholds,
)
from spikeconverter.baselines.rate import (
    DEFAULT_STEPS,
    INPUT_ENCODINGS,
    RATE_METHODS,
    RateNetwork,
    RateResult,
    simulate_rate,
)

__all__ = [
    "DEFAULT_STEPS",
    "INPUT_ENCODINGS",
    "JUNCTION_RULES",
    "NORMALIZATION_MODES",
    "RATE_METHODS",
    "RateNetwork",
    "RateResult",
    "ann_macs",
    "fanout",
    "rate_thresholds",
    "simulate_rate",
    "spike_norm_thresholds",
]
