"""Emitting a converted graph as a Lava process graph (used by :mod:`..lava_backend`).

Importing this package has no side effects: Lava's process modules, which fix the
multiprocessing start method when first imported, are imported only when a network is built,
after :func:`spikeconverter.converters.to_lava.runtime.import_lava_runtime`.
"""
