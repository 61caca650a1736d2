"""Emitting a converted graph as a Lava process graph (see :mod:`..lava_backend`)."""
